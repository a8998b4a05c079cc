"""Part II's pages: the helpers its chapters call instead of defining functions, and the notebooks' visible code
(short cells, no function definitions, tables through the book's renderer)."""
from __future__ import annotations

import ast
import json
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from cellbook.models import vision
from cellbook.preprocess import imaging

REPO = Path(__file__).resolve().parents[1]
PART2 = sorted((REPO / "notebooks" / "part2").glob("*.ipynb"))


# --------------------------------------------------------------------------------------------
# preprocess helpers

def test_overview_one_row_per_class():
    imgs = [np.zeros((4, 6, 3), np.uint8)] * 3 + [np.zeros((4, 6), np.uint8)]
    ims = SimpleNamespace(images=imgs, skipped=["bad.tif"], info=SimpleNamespace(name="toy"),
                          counts=lambda: pd.DataFrame({"images": [2, 2], "groups": [1, 2]},
                                                      index=pd.Index(["a", "b"], name="label")))
    out = imaging.overview(ims)
    assert list(out.columns) == ["dataset", "label", "images", "groups", "image size (px)", "unreadable skipped"]
    assert out["dataset"].tolist() == ["toy", "toy"] and out["unreadable skipped"].tolist() == [1, 1]
    assert out["image size (px)"].iloc[0] == "4x6x3, 4x6"


def test_draw_plate_is_stratified_reproducible_and_matches_the_inline_draw():
    y = np.array([1] * 70 + [0] * 82)
    a, b = np.random.default_rng(0), np.random.default_rng(0)
    plate = imaging.draw_plate(y, 96, a)
    # the draw the chapter used to define inline: positives first, then negatives, from one generator
    n_pos = int(round(96 * y.mean()))
    ref = np.sort(np.r_[b.choice(np.flatnonzero(y == 1), n_pos, replace=False),
                        b.choice(np.flatnonzero(y == 0), 96 - n_pos, replace=False)])
    np.testing.assert_array_equal(plate, ref)
    assert len(np.unique(plate)) == 96 and y[plate].sum() == n_pos
    np.testing.assert_array_equal(imaging.draw_plate(y, 96, a), np.sort(np.r_[
        b.choice(np.flatnonzero(y == 1), n_pos, replace=False),
        b.choice(np.flatnonzero(y == 0), 96 - n_pos, replace=False)]))   # the generator moves on alike
    with pytest.raises(ValueError, match="plate of 200"):
        imaging.draw_plate(y, 200, np.random.default_rng(0))


def test_handcrafted_feature_count_matches_its_docstring():
    rng = np.random.default_rng(0)
    F = imaging.handcrafted_features([rng.integers(0, 255, (64, 80), dtype=np.uint8) for _ in range(2)])
    assert F.shape == (2, 21) and "21 columns" in imaging.handcrafted_features.__doc__


# --------------------------------------------------------------------------------------------
# vision helpers

def test_cost_table_rows_and_the_scnn_is_cheapest():
    cost = vision.cost_table((10, 36, 48), {"scnn": [16, 32, 64], "resnet": [8, 16, 32], "vgg": [8, 16, 32]})
    assert list(cost.columns) == ["model", "setting", "widths", "parameters", "MACs (millions)"]
    assert cost["setting"].tolist() == ["as run", "220x300, widths 32-64-128"] * 3
    assert cost["model"].tolist()[::2] == list(vision.LABELS.values())
    paper = cost[cost["setting"] != "as run"].set_index("model")
    assert paper["MACs (millions)"].idxmin() == vision.LABELS["scnn"]


def test_fit_tasks_seeds_cnns_per_repeat_and_baselines_once():
    splits = [{"repeat": r, "size": 20, "train": np.arange(4), "test": np.arange(4, 6)} for r in (0, 1)]
    meta, tasks = vision.fit_tasks(splits, {"scnn": "X", "resnet": "X", "hand": "F"}, seed=3,
                                   widths={"scnn": (4, 8), "resnet": (2, 4)}, labels="y", epochs=2)
    assert [m for _, m in meta] == ["scnn", "resnet", "hand"] * 2
    assert [t["seed"] for t in tasks] == [3, 3, 3, 4, 4, 3]
    assert [t["widths"] for t in tasks[:3]] == [(4, 8), (2, 4), ()]
    assert all(t["labels"] == "y" and t["epochs"] == 2 for t in tasks)
    _, tasks = vision.fit_tasks([{"fold": 2, "train": [0], "test": [1]}], {"scnn": "X", "f": "F"}, seed=0,
                                by="fold", widths=(8,))
    assert [(t["seed"], t["widths"]) for t in tasks] == [(2, (8,)), (0, (8,))]
    meta, tasks = vision.fit_tasks([([0, 1], [2]), ([2, 1], [0])], {"scnn": "X"}, seed=5, by="fold")
    assert [(s["fold"], s["test"], t["seed"], t["test"]) for (s, _), t in zip(meta, tasks)] == [
        (0, [2], 5, [2]), (1, [0], 6, [0])]
    assert "widths" not in tasks[0]


def test_score_fits_and_held_out_scores():
    labels = np.array(["a", "b", "a", "b"])
    meta = [({"fold": 0, "test": np.array([0, 1])}, "scnn"), ({"fold": 1, "test": np.array([2, 3])}, "scnn")]
    outs = [{"pred": np.array(["a", "a"]), "fit_seconds": 1.0, "score": np.array([0.9, 0.6]), "estimator": "m0"},
            {"pred": np.array(["a", "b"]), "fit_seconds": 2.0, "score": np.array([0.7, 0.2]), "estimator": "m1"}]
    rec = vision.score_fits(meta, outs, labels, keys=("fold",))
    assert rec.columns.tolist() == ["fold", "n_test", "model", "accuracy", "f1_macro", "fit_seconds"]
    assert rec["accuracy"].tolist() == [0.5, 1.0] and set(rec["model"]) == {vision.LABELS["scnn"]}
    score, fitted = vision.held_out_scores(meta, outs, 4)
    np.testing.assert_allclose(score[vision.LABELS["scnn"]], [0.9, 0.6, 0.7, 0.2])
    assert fitted[1, vision.LABELS["scnn"]] == "m1"
    with pytest.raises(ValueError, match="without a held-out score"):
        vision.held_out_scores(meta[:1], outs[:1], 4)


def test_paired_tests_pairs_repeats_and_tests_time_between_cnns_only():
    rows = []
    for r in range(4):
        rows += [{"size": 100, "repeat": r, "model": vision.LABELS["scnn"], "accuracy": 0.7 + 0.01 * r,
                  "fit_seconds": 5.0 + r},
                 {"size": 100, "repeat": r, "model": vision.LABELS["resnet"], "accuracy": 0.6 + 0.02 * r,
                  "fit_seconds": 9.0 + 0.5 * r},
                 {"size": 100, "repeat": r, "model": "base", "accuracy": 0.7 + 0.01 * r, "fit_seconds": 0.1}]
    out = vision.paired_tests(pd.DataFrame(rows), 100, [vision.LABELS["resnet"], "base"])
    assert out[["comparison", "metric"]].values.tolist() == [
        [f"SCNN vs {vision.LABELS['resnet']}", "accuracy"], [f"SCNN vs {vision.LABELS['resnet']}", "fit_seconds"],
        ["SCNN vs base", "accuracy"]]
    assert out.loc[2, "p"] == 1.0 and out.loc[2, "t"] == 0.0          # identical values
    assert out.loc[0, "mean SCNN"] == pytest.approx(0.715) and 0 < out.loc[1, "p"] < 0.05
    one = vision.paired_tests(pd.DataFrame(rows[:3]), 100, ["base"])
    assert np.isnan(one.loc[0, "p"])                                    # one repeat: no test


def test_predict_from_raw_and_time_screening():
    class Echo:
        def predict_proba(self, X):
            return np.c_[np.zeros(len(X)), np.asarray(X).reshape(len(X), -1)[:, 0]]

    rng = np.random.default_rng(0)
    raw = [rng.integers(0, 255, (60, 80, 3), dtype=np.uint8) for _ in range(3)]
    assert vision.predict_from_raw(Echo(), raw, "brightness").shape == (3, 2)
    assert vision.predict_from_raw(Echo(), raw, "handcrafted").shape == (3, 2)
    assert vision.predict_from_raw(Echo(), raw, "stack", img_size=(16, 24)).shape == (3, 2)
    with pytest.raises(ValueError, match="img_size"):
        vision.predict_from_raw(Echo(), raw, "stack")
    with pytest.raises(ValueError, match="unknown inputs"):
        vision.predict_from_raw(Echo(), raw, "pixels")
    times = vision.time_screening({"a": (Echo(), "brightness"), "b": (Echo(), "handcrafted")}, raw, 2)
    assert list(times) == ["a", "b"] and all(len(v) == 2 and min(v) > 0 for v in times.values())


# --------------------------------------------------------------------------------------------
# the notebooks' visible code

def _cells(path):
    return json.loads(path.read_text())["cells"]


def _visible_code(path):
    for i, c in enumerate(_cells(path)):
        tags = c.get("metadata", {}).get("tags", [])
        if c["cell_type"] == "code" and not {"remove-input", "remove-cell", "hide-input"} & set(tags):
            yield i, c["source"]


@pytest.mark.parametrize("path", PART2, ids=lambda p: p.stem)
def test_visible_code_is_short_and_narrow(path):
    for i, src in _visible_code(path):
        lines = src.splitlines()
        assert len(lines) <= 15, f"{path.name} cell {i}: {len(lines)} visible lines"
        assert max(map(len, lines)) <= 88, f"{path.name} cell {i}: a line over 88 characters"


@pytest.mark.parametrize("path", PART2, ids=lambda p: p.stem)
def test_no_function_definitions_raw_tables_or_odd_aliases(path):
    code = "\n".join(c["source"] for c in _cells(path) if c["cell_type"] == "code")
    tree = ast.parse(code)
    defs = [getattr(n, "name", "lambda") for n in ast.walk(tree)
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))]
    assert not defs, f"{path.name} defines {defs}"
    assert not re.search(r"\.style\b|\.round\(\d\)\s*$", code, re.M), f"{path.name}: a raw or rounded table"
    odd = re.findall(r"\bas (sp|pim|im|vis)\b", code)
    assert not odd, f"{path.name} imports with the aliases {odd}"
    # unused imports: tests/test_pages.py checks every notebook

def test_last_chapter_ends_with_the_claims():
    cells = _cells(PART2[-1])
    sources = [c["source"] for c in cells]
    assert sources[-3] == "## The paper's claims, checked"
    assert 'cb.claims.part_table("part2", rec)' in sources[-2]
    assert "remove-input" in cells[-2]["metadata"]["tags"] and sources[-1].strip() == "rec.save();"
