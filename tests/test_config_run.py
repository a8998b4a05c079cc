"""Profiles, overrides, the runner's errors, and notebook hygiene."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cellbook import config, layout, runner
from cellbook.book import executed_chapters, toc_files
from cellbook.nbtools import code, error_outputs, hygiene_problems, md, params, write_notebook

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = layout.list_notebooks()


def test_profiles_file_has_quick_and_full():
    assert {"quick", "full"} <= set(config.profile_names())


def test_unknown_profile_lists_valid_ones():
    with pytest.raises(ValueError, match=r"unknown profile 'fast'; valid profiles: full, quick"):
        config.profile_parameters("fast", "part1/01_data")


def test_profile_defaults_and_notebook_values(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text(yaml.safe_dump({"quick": {"defaults": {"epochs": 2, "seed": 0},
                                           "notebooks": {"a/b": {"epochs": 5}}}}))
    config._load_profiles.cache_clear()
    assert config.profile_parameters("quick", "a/b", f) == {"epochs": 5, "seed": 0}
    assert config.profile_parameters("quick", "a/c", f) == {"epochs": 2, "seed": 0}


def test_parse_overrides_types():
    assert runner.parse_overrides(["epochs=3", "lr=1e-3", "name=cnn", "flag=true", "x=null"]) == \
        {"epochs": 3, "lr": 1e-3, "name": "cnn", "flag": True, "x": None}
    with pytest.raises(ValueError, match="key=value"):
        runner.parse_overrides(["epochs"])


def test_resolve_device_cpu_and_bad():
    assert config.resolve_device("cpu") == "cpu"
    assert config.resolve_device("auto") in ("cpu", "cuda")
    with pytest.raises(ValueError, match="unknown device"):
        config.resolve_device("gpu0")


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_source_notebook_hygiene(name):
    path = REPO / "notebooks" / f"{name}.ipynb"
    assert hygiene_problems(path) == []


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_papermill_sees_every_parameter(name):
    """papermill silently drops a parameter whose line it cannot parse (e.g. '=' in a comment)."""
    import ast
    nb = json.loads((REPO / "notebooks" / f"{name}.ipynb").read_text())
    cell = next(c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", []))
    src = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
    assigned = {t.id for node in ast.parse(src).body if isinstance(node, ast.Assign)
                for t in node.targets if isinstance(t, ast.Name)}
    assert assigned == set(layout.notebook_parameters(name)), "papermill does not see: " + \
        ", ".join(sorted(assigned - set(layout.notebook_parameters(name))))


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_every_profile_key_is_a_notebook_parameter(name):
    valid = layout.notebook_parameters(name)
    for p in ("profile", "device", "seed"):
        assert p in valid, f"{name}: parameters cell lacks {p}"
    for profile in config.profile_names():
        runner.plan(name, profile, "cpu", {})  # raises on unknown names


def test_every_notebook_is_in_the_toc_and_vice_versa():
    assert sorted(executed_chapters()) == sorted(NOTEBOOKS)
    for f in toc_files():
        if not f.startswith("notebooks/"):
            assert any((REPO / f"{f}{ext}").exists() for ext in (".md", ".ipynb")), f


def test_profile_notebook_keys_name_real_notebooks():
    for profile in config.profile_names():
        spec = config._load_profiles(str(config.PROFILES_FILE))[profile]
        for nb in (spec.get("notebooks") or {}):
            assert nb in NOTEBOOKS, f"profiles.yaml {profile}: {nb} is not a notebook"


def test_unknown_parameter_and_notebook_are_errors():
    with pytest.raises(ValueError, match="unknown parameter.*valid:"):
        runner.plan("part1/01_data", "quick", "cpu", {"no_such_param": 1})
    with pytest.raises(ValueError, match="unknown notebook 'part9/xx'"):
        layout.resolve_names(["part9/xx"])
    assert layout.resolve_names(["part1"]) == [n for n in NOTEBOOKS if n.startswith("part1/")]


def _fixture_repo(tmp_path, body):
    nbdir = tmp_path / "notebooks" / "demo"
    write_notebook(nbdir / "ok.ipynb", [md("# ok"), params('profile = "quick"\ndevice = "auto"\nseed = 0\nn = 1'),
                                        code("x = n + 1\nprint('x =', x)")])
    write_notebook(nbdir / "bad.ipynb", [md("# bad"), params('profile = "quick"\ndevice = "auto"\nseed = 0'),
                                         code("a = 1"), code(body)])
    return tmp_path


def test_run_executes_into_build_tree_and_never_touches_source(tmp_path):
    root = _fixture_repo(tmp_path, "raise RuntimeError('boom')")
    src = root / "notebooks" / "demo" / "ok.ipynb"
    before = src.read_text()
    out = runner.run_notebook("demo/ok", "quick", "cpu", {"n": 41}, root=root, progress=False)
    assert out == root / "book" / "_build" / "executed" / "demo" / "ok.ipynb"
    assert src.read_text() == before
    text = out.read_text()
    assert "x = 42" in text
    assert error_outputs(out) == []


def test_failing_notebook_names_notebook_and_cell(tmp_path):
    root = _fixture_repo(tmp_path, "raise RuntimeError('boom')")
    with pytest.raises(runner.NotebookFailed,
                       match=r"notebook demo/bad failed in cell 4 .*raise RuntimeError.*RuntimeError: boom"):
        runner.run_notebook("demo/bad", "quick", "cpu", {}, root=root, progress=False)
    # nothing is published; the failed copy is kept for debugging, with the same cell number
    assert not (root / "book" / "_build" / "executed" / "demo" / "bad.ipynb").exists()
    failed = root / "book" / "_build" / "failed" / "demo" / "bad.ipynb"
    assert error_outputs(failed)[0] == "cell 4: RuntimeError: boom"


def test_cli_exit_code_and_message(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    res = subprocess.run([sys.executable, "-m", "cellbook.cli", "run", "part1/01_data", "--profile", "nope"],
                         capture_output=True, text=True, env=env, cwd=REPO)
    assert res.returncode == 1
    assert "unknown profile 'nope'; valid profiles: full, quick" in res.stderr
    res = subprocess.run([sys.executable, "-m", "cellbook.cli", "run", "part1/01_data", "-p", "bogus=1"],
                         capture_output=True, text=True, env=env, cwd=REPO)
    assert res.returncode == 1 and "unknown parameter(s) bogus" in res.stderr and "Traceback" not in res.stderr


def test_book_check_reports_missing_and_failed(tmp_path, monkeypatch):
    from cellbook import book
    (tmp_path / "book").mkdir()
    (tmp_path / "book" / "intro.md").write_text("# hi")
    (tmp_path / "_toc.yml").write_text(yaml.safe_dump({
        "format": "jb-book", "root": "book/intro",
        "chapters": [{"file": "notebooks/demo/bad"}, {"file": "notebooks/demo/gone"},
                     {"file": "book/missing_page"}]}))
    nb = tmp_path / "book" / "_build" / "executed" / "demo" / "bad.ipynb"
    nb.parent.mkdir(parents=True)
    nb.write_text(json.dumps({"cells": [{"cell_type": "code", "outputs": [
        {"output_type": "error", "ename": "ValueError", "evalue": "x", "traceback": []}]}]}))
    half = tmp_path / "book" / "_build" / "executed" / "demo" / "half.ipynb"
    half.write_text(json.dumps({"cells": [{"cell_type": "code", "outputs": [],
                                           "metadata": {"papermill": {"status": "pending"}}}]}))
    toc = yaml.safe_load((tmp_path / "_toc.yml").read_text())
    toc["chapters"].append({"file": "notebooks/demo/half"})
    (tmp_path / "_toc.yml").write_text(yaml.safe_dump(toc))
    problems = book.check(tmp_path)
    assert any("demo/half: cell 1: not completed" in p for p in problems)  # cells count from 1
    assert any("demo/bad: cell 1: ValueError" in p for p in problems)
    assert any("demo/gone: no executed copy" in p for p in problems)
    assert any("book/missing_page" in p for p in problems)


def test_exercise_commands_write_apart_and_name_real_parameters():
    """Every `cellbook run` in the exercises writes to book/_build/exercises and sets real parameters."""
    import re
    import shlex

    from cellbook.layout import REPO_ROOT, notebook_parameters

    n_commands = 0
    for page in sorted((REPO_ROOT / "book").glob("exercises_part*.md")):
        text = page.read_text().replace("\\\n", " ")
        for line in text.splitlines():
            if "cellbook run " not in line:
                continue
            args = shlex.split(line.split("cellbook run ", 1)[1].split("#")[0])
            assert args[:2] == ["--out", "book/_build/exercises"], f"{page.name}: {line.strip()}"
            names = [a for a in args[2:] if re.fullmatch(r"part\d/\w+", a)]
            keys = [args[i + 1].split("=", 1)[0] for i, a in enumerate(args) if a == "-p"]
            assert names, f"{page.name}: no notebook in {line.strip()}"
            for name in names:
                params = notebook_parameters(name)
                assert all(k in params for k in keys), f"{page.name}: {name} has no parameter among {keys}"
            n_commands += 1
    assert n_commands >= 9


def test_smoke_cuts_loops_only_for_notebooks_that_have_them(tmp_path, capsys):
    """`--profile full --smoke`: the overlay's loop sizes, applied like -p where a notebook has the parameter."""
    smoke = config.profile_smoke("full")
    part1 = runner.smoke_overrides("full", ["part1/03_table1"])
    assert part1["seeds"] == smoke["seeds"] and part1["n_cells"] == smoke["n_cells"] and "sizes" not in part1
    assert "held_out_classes" not in part1 and "stack_folds" in part1
    assert runner.smoke_overrides("full", ["part2/03_models_learning_curves"])["sizes"] == smoke["sizes"]
    assert runner.smoke_overrides("full", ["part3/04_unseen_tissues"])["held_out_classes"] == 2
    full = config.profile_parameters("full", "part1/03_table1")
    assert not set(smoke) & {"n_genes", "transform", "tune_grid", "stack_members", "celltypist", "k"}
    assert full["n_genes"] is None and full["transform"] == "counts"     # every other full setting stays
    from cellbook import cli

    assert cli.main(["run", "part1/01_data", "--profile", "quick", "--smoke", "--out", str(tmp_path)]) == 1
    assert "profile 'quick' has no smoke overlay; --smoke goes with: full" in capsys.readouterr().err
