"""The page-making pieces: the table renderer, figures drawn for the column, the raw-output check of
published chapters, the claims ledger and the build comparison."""
from __future__ import annotations

import json
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from cellbook import claims, plots, report  # noqa: E402
from cellbook.nbtools import is_progress_bar, raw_outputs, strip_progress_bars  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------------------------
# the table renderer

def test_format_table_per_column_kind():
    df = pd.DataFrame({"model": ["logistic regression, a long name", "CNN"], "accuracy": [0.7512, 0.66434],
                       "fit (s)": [1.3, 12.345], "cells": [10032.0, 5.0], "p (paired t)": [6e-17, 0.0312],
                       "beats": [True, False], "macro-F1": [np.nan, 0.00527], "paper": [None, 0.904]})
    out = report.format_table(df)
    assert out["accuracy"].tolist() == ["0.751", "0.664"]       # same decimals down the column
    assert out["fit (s)"].tolist() == ["1.3", "12.3"]           # seconds: one decimal
    assert out["cells"].tolist() == ["10,032", "5"]             # integer-valued floats stay integers
    assert out["p (paired t)"].tolist() == ["6.0e-17", "0.031"]  # p-values: fmt_p, never 0.0
    assert out["beats"].tolist() == ["yes", "no"]
    assert out["macro-F1"].tolist() == ["–", "0.0053"]          # missing: en dash; never more than 4 decimals
    assert out["paper"].tolist() == ["–", "0.904"]


def test_table_html_scrolls_in_its_box_and_offers_the_full_precision_csv():
    import base64
    import re

    df = pd.DataFrame({"model": ["a", "b"], "accuracy": [0.123456789, 0.5]})
    markup = report.table_html(df, name="Table 1")
    assert markup.startswith('<div class="cellbook-table">')
    assert '<td class="num">0.123</td>' in markup and '<td class="text">a</td>' in markup
    assert "nan" not in markup.lower().replace("nan", "", 0) or "nan" not in markup
    csv = base64.b64decode(re.search(r"base64,([^\"]+)", markup).group(1)).decode()
    assert "0.123456789" in csv and 'download="Table_1.csv"' in markup
    assert "cellbook-csv" not in report.table_html(df)            # no name: no download link
    # a named index is shown as the first column; a plain range index is not
    assert ">model<" in report.table_html(df.set_index("model"), csv=False)
    assert ">0<" not in report.table_html(df, csv=False).split("<tbody>")[0]


def test_table_refuses_what_is_not_a_table():
    with pytest.raises(ValueError, match="DataFrame"):
        report.table_html([1, 2, 3])


def test_collapsible_uses_the_renderer():
    out = report.collapsible(pd.DataFrame({"x": [0.123456, np.nan]}), "numbers")
    text = out.data if hasattr(out, "data") else out
    assert "0.123" in text and "0.123456" not in text and "nan" not in text.lower()


# --------------------------------------------------------------------------------------------
# figures drawn for the column

def _png_text_chunks(data: bytes) -> dict:
    out, pos = {}, 8
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        if kind == b"tEXt":
            k, v = body.split(b"\0", 1)
            out[k.decode()] = v.decode()
        elif kind == b"zTXt":
            k, rest = body.split(b"\0", 1)
            out[k.decode()] = zlib.decompress(rest[1:]).decode()
        pos += 12 + n
    return out


def test_page_png_narrows_a_wide_figure_keeps_its_text_size_and_records_it():
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for ax in axes:
        ax.plot([1, 2, 3])
        ax.set_title("a panel", fontsize=11)
        ax.tick_params(labelsize=8)
    png = plots.page_png(fig)
    w, _ = struct.unpack(">II", png[16:24])
    assert w <= plots.COLUMN_IN * plots.DPI + 2           # one column wide: never shrunk by the browser
    small = float(_png_text_chunks(png)[plots.MIN_TEXT_KEY])
    assert small == pytest.approx(8 * plots.DPI / 72, abs=0.05)   # text kept its point size
    plt.close(fig)


def test_min_text_px_finds_the_smallest_drawn_text():
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.plot([0, 1], [0, 1])
    ax.text(0.5, 0.5, "tiny", fontsize=5)
    ax.text(0.5, 0.2, "", fontsize=2)                      # empty text is not text
    fig.canvas.draw()
    assert plots.min_text_px(fig) == pytest.approx(5 * plots.DPI / 72, abs=0.01)
    plt.close(fig)


def test_column_size():
    assert plots.column_size(0.5) == (plots.COLUMN_IN, plots.COLUMN_IN * 0.5)
    assert plots.column_size(1.0, width=0.5)[0] == pytest.approx(plots.COLUMN_IN / 2)


# --------------------------------------------------------------------------------------------
# nothing raw reaches the reader

def _nb(*outputs, tags=()):
    return {"cells": [{"cell_type": "code", "source": "x", "metadata": {"tags": list(tags)},
                       "outputs": list(outputs)}]}


def _html(text):
    return {"output_type": "display_data", "data": {"text/html": text, "text/plain": "<HTML>"}}


@pytest.mark.parametrize("output, what", [
    ({"output_type": "stream", "name": "stderr", "text": "something went to stderr\n"}, "stderr text"),
    ({"output_type": "stream", "name": "stdout", "text": "UserWarning: X has feature names\n"}, "a Python warning"),
    (_html("<table><td>nan</td></table>"), "nan"),
    (_html("<p>accuracy 0.123456</p>"), "more than 4 decimals"),
    ({"output_type": "stream", "name": "stdout", "text": "read /work/shared/data/x.h5ad\n"}, "a local path"),
    ({"output_type": "execute_result", "data": {"text/plain": "p = NaN"}}, "nan"),
])
def test_raw_outputs_names_what_a_reader_must_not_see(output, what):
    problems = raw_outputs(_nb(output))
    assert len(problems) == 1 and what in problems[0] and problems[0].startswith("cell 1")


def test_raw_outputs_passes_clean_and_unpublished_outputs():
    clean = _html('<div class="cellbook-table"><td>0.751</td><a href="data:text/csv;base64,bmFu">csv</a></div>')
    assert raw_outputs(_nb(clean, {"output_type": "stream", "name": "stdout", "text": "2,000 cells\n"})) == []
    hidden = {"output_type": "stream", "name": "stderr", "text": "Warning: nan at /tmp/x\n"}
    assert raw_outputs(_nb(hidden, tags=["remove-output"])) == []
    bar = {"output_type": "stream", "name": "stderr", "text": "folds: 100%|##########| 10/10 [00:03<00:00]\n"}
    assert is_progress_bar(bar["text"]) and raw_outputs(_nb(bar)) == []
    assert strip_progress_bars(_nb(bar, clean))["cells"][0]["outputs"] == [clean]


# --------------------------------------------------------------------------------------------
# the claims ledger: made-up results through each rule

FIGS = {"acc::A": [0.90, 0.01], "acc::B": [0.85, 0.02], "acc::C": [0.895, 0.02], "p_AB": 0.001, "p_AC": 0.4,
        "shares": {"Spearman": 0.88}, "err": {"X": 0.03, "Y": 0.06}, "err_sd": {"X": 0.01, "Y": 0.005},
        "winners": ["A"], "pval": 1e-20}


@pytest.mark.parametrize("rule, verdict, reason", [
    ({"kind": "better", "a": "acc::A", "b": "acc::B"}, claims.HOLDS, "more than the spread over repeats"),
    ({"kind": "better", "a": "acc::A", "b": "acc::B", "p": "p_AB"}, claims.HOLDS, "paired p = 0.001"),
    ({"kind": "better", "a": "acc::A", "b": "acc::C"}, claims.FAILS, "within the spread over repeats"),
    ({"kind": "better", "a": "acc::B", "b": "acc::A"}, claims.FAILS, "lower by 0.050, not better"),
    ({"kind": "better", "a": ["err", "X"], "b": ["err", "Y"], "lower": True, "a_sd": ["err_sd", "X"],
      "b_sd": ["err_sd", "Y"]}, claims.HOLDS, "better by 0.03"),
    ({"kind": "within", "value": ["shares", "Spearman"], "target": 0.884, "tolerance": 0.05}, claims.HOLDS, "within"),
    ({"kind": "within", "value": ["shares", "Spearman"], "target": 0.99, "tolerance": 0.05}, claims.FAILS, "outside"),
    ({"kind": "at_most", "value": "pval", "threshold": 1e-15, "p_value": True}, claims.HOLDS, "at most 1.0e-15"),
    ({"kind": "at_least", "value": ["shares", "Spearman"], "threshold": 0.95}, claims.FAILS, "not at least"),
    ({"kind": "member", "value": "winners", "item": "A"}, claims.HOLDS, "is among them"),
    ({"kind": "member", "value": "winners", "item": "B"}, claims.FAILS, "is not among them"),
    ({"kind": "untestable", "reason": "private data"}, claims.UNTESTABLE, "private data"),
    ({"kind": "better", "a": "acc::Z", "b": "acc::A"}, claims.UNTESTABLE, "recorded no 'acc::Z'"),
])
def test_each_rule_on_made_up_results(rule, verdict, reason):
    v = claims.judge(rule, FIGS)
    assert v.verdict == verdict and reason in v.reason, v


def test_evaluate_needs_the_chapter_and_its_profile(tmp_path):
    ledger = {"part1": {"claims": [
        {"id": "I-1", "claim": "A beats B.", "chapter": "part1/x",
         "rule": {"kind": "better", "a": "acc::A", "b": "acc::B"}},
        {"id": "I-2", "claim": "Full only.", "chapter": "part1/x", "needs_profile": "full",
         "rule": {"kind": "better", "a": "acc::A", "b": "acc::B"}},
        {"id": "I-3", "claim": "Not run.", "chapter": "part1/y",
         "rule": {"kind": "member", "value": "w", "item": "A"}}]}}
    results = {"part1/x": {"figures": FIGS, "provenance": {"profile": "quick"}}}
    table = claims.evaluate(results, ledger)
    assert table["verdict"].tolist() == [claims.HOLDS, claims.UNTESTABLE, claims.UNTESTABLE]
    assert "`full` profile" in table["reason"][1] and "has not run" in table["reason"][2]
    assert claims.counts(table) == {claims.HOLDS: 1, claims.FAILS: 0, claims.UNTESTABLE: 2}
    assert "A beats B" in claims.takeaways(table)


def test_the_books_ledger_is_well_formed():
    ledger = claims.load_ledger()
    assert set(ledger) == {"part1", "part2", "part3"}
    names = {str(p.relative_to(REPO / "notebooks").with_suffix("")) for p in (REPO / "notebooks").glob("part*/*.ipynb")}
    for part, block in ledger.items():
        assert len(block["claims"]) >= 3, part
        for c in block["claims"]:
            assert c["chapter"] in names, f"claim {c['id']}: no chapter {c['chapter']}"


def test_a_broken_ledger_names_the_claim(tmp_path):
    bad = tmp_path / "claims.yml"
    bad.write_text("part1:\n  claims:\n    - {id: I-9, claim: x, chapter: part1/x, rule: {kind: guess}}\n")
    with pytest.raises(ValueError, match="I-9.*guess"):
        claims.load_ledger(bad)


# --------------------------------------------------------------------------------------------
# compare_builds: the same numbers, or a non-zero exit naming the difference

def _tree(root: Path, figures: dict, tables: dict | None = None):
    (root / "part1").mkdir(parents=True)
    (root / "part1" / "a.json").write_text(json.dumps({"figures": figures, "tables": tables or {},
                                                        "provenance": {"commit": str(root)}}))
    return root


def _compare(a, b, *extra):
    return subprocess.run([sys.executable, str(REPO / "benchmarks" / "compare_builds.py"), str(a), str(b), *extra],
                          capture_output=True, text=True)


def test_compare_builds_same_numbers_new_form(tmp_path):
    a = _tree(tmp_path / "a", {"acc": 0.75, "ours": "0.75 ± 0.00527", "fit_s::CNN": 1.2},
              {"t": [{"model": "x", "fit (s)": 1.0}, {"test": "t-test, seconds to classify", "p": 0.1}]})
    b = _tree(tmp_path / "b", {"acc": 0.75, "ours": "0.750 ± 0.005", "fit_s::CNN": 9.9},
              {"t": [{"model": "x", "fit (s)": 3.0}, {"test": "t-test, seconds to classify", "p": 0.3}]})
    res = _compare(a, b)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "0 difference(s)" in res.stdout


def test_compare_builds_fails_on_a_changed_number(tmp_path):
    a = _tree(tmp_path / "a", {"acc": 0.75, "ours": "0.750 ± 0.005"})
    b = _tree(tmp_path / "b", {"acc": 0.76, "ours": "0.760 ± 0.005"})
    res = _compare(a, b)
    assert res.returncode == 1
    assert "part1/a: figures.acc: 0.75 -> 0.76" in res.stdout and "figures.ours" in res.stdout
    assert _compare(a, b, "--allow", "part1/a").returncode == 0


def test_best_of_names_the_strongest_rival():
    v = claims.judge({"kind": "best_of", "a": "acc::A", "others": ["acc::B", "acc::C"]}, FIGS)
    assert v.verdict == claims.FAILS and "C" in v.reason and "within the spread over repeats" in v.reason
    v = claims.judge({"kind": "best_of", "a": "acc::A", "others": ["acc::B"]}, FIGS)
    assert v.verdict == claims.HOLDS and "strongest rival, B" in v.reason


def test_the_summary_opens_with_every_chapters_results(tmp_path, monkeypatch):
    import cellbook as cb

    (tmp_path / "part1").mkdir()
    (tmp_path / "part1" / "a.json").write_text(json.dumps({"figures": {"x": 1}, "provenance": {}}))
    (tmp_path / "summary").mkdir()
    (tmp_path / "summary" / "01_results.json").write_text("{}")
    ch = cb.open_chapter({"profile": "quick", "results_path": str(tmp_path)}, data="results", name="summary/t")
    assert list(ch.data) == ["part1/a"]                        # the summary's own results left out
    info = ch.rec.datasets[0]
    assert info["path"] is None and len(info["sha256"]) == 64   # provenance without a local path


# --------------------------------------------------------------------------------------------
# the notebooks' shape: code that shows the method only

HIDDEN = {"hide-input", "remove-input", "remove-cell", "cellbook-setup"}


def _chapters():
    from cellbook import layout

    return [(name, json.loads((layout.notebook_dir() / f"{name}.ipynb").read_text()))
            for name in layout.list_notebooks()]


def test_visible_code_is_short_and_fits_the_column():
    """Visible code cells show the calls that do the science: at most 15 lines, 88 characters a line."""
    problems = []
    for name, nb in _chapters():
        for i, c in enumerate(nb["cells"], 1):
            tags = set(c["metadata"].get("tags", []))
            if c["cell_type"] != "code" or tags & HIDDEN:
                continue
            lines = "".join(c["source"]).splitlines()
            if len(lines) > 15 and "parameters" not in tags:
                problems.append(f"{name} cell {i}: {len(lines)} visible lines (at most 15; hide bookkeeping)")
            long = [n for n, line in enumerate(lines, 1) if len(line) > 88]
            if long and "parameters" not in tags:
                problems.append(f"{name} cell {i}: line(s) {long} longer than 88 characters")
    assert not problems, "\n".join(problems)


def test_notebooks_define_no_functions_and_show_no_raw_frames():
    import re

    problems = []
    for name, nb in _chapters():
        for i, c in enumerate(nb["cells"], 1):
            if c["cell_type"] != "code":
                continue
            src = "".join(c["source"])
            if re.search(r"^\s*(def|class) \w+", src, flags=re.M):
                problems.append(f"{name} cell {i}: defines a function or class (it belongs in the package)")
            if re.search(r"\.style\b|\.to_html\(", src):
                problems.append(f"{name} cell {i}: shows a Styler / raw HTML table (use cellbook.report.table)")
    assert not problems, "\n".join(problems)


def test_the_book_drops_live_code_scripts():
    from types import SimpleNamespace

    from cellbook import sphinx_ext

    scripts = [SimpleNamespace(filename="_static/sphinx-thebe.js", attributes={}),
               SimpleNamespace(filename=None, attributes={"body": 'const THEBE_JS_URL = "x"'}),
               SimpleNamespace(filename="_static/mathjax/tex-chtml.js", attributes={})]
    context = {"script_files": scripts, "css_files": ["_static/sphinx-thebe.css", "_static/cellbook.css"]}
    sphinx_ext.drop_thebe_scripts(None, "index", "page.html", context, None)
    assert [s.filename for s in context["script_files"]] == ["_static/mathjax/tex-chtml.js"]
    assert context["css_files"] == ["_static/cellbook.css"]


def test_notebooks_import_only_what_they_use():
    """Every notebook's imports are used somewhere in it (names in f-strings count: they are ast.Name nodes)."""
    import ast

    problems = []
    for name, nb in _chapters():
        code = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
        tree = ast.parse(code)
        imported = {a.asname or a.name.split(".")[0] for n in ast.walk(tree)
                    if isinstance(n, (ast.Import, ast.ImportFrom)) for a in n.names}
        used = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
        unused = imported - used
        if unused:
            problems.append(f"{name}: unused imports {sorted(unused)}")
    assert not problems, "\n".join(problems)
