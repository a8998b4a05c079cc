"""Notebook execution checks.

- One real chapter is executed with papermill on the real data (``-m notebook`` selects it).
- When the book has been built (``make book``), every executed chapter is checked: no error
  output, a results JSON with provenance, and real data wherever CELLBOOK_DATA is set.
"""
import json
import os
from pathlib import Path

import pytest

from cellbook import layout, runner
from cellbook.book import executed_chapters, executed_path
from cellbook.nbtools import error_outputs

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "book" / "_build" / "results"
BUILT = [n for n in executed_chapters() if executed_path(n).exists()]


@pytest.mark.notebook
def test_data_chapter_executes_on_real_data(tmp_path, data_root, monkeypatch):
    monkeypatch.setenv("CELLBOOK_DATA", str(data_root))
    out = runner.run_notebook("part1/01_data", "quick", "cpu", {"check_gse194122": False}, out_dir=tmp_path,
                           progress=False)
    assert error_outputs(out) == []
    res = json.loads((tmp_path / "results" / "part1" / "01_data.json").read_text())
    assert res["figures"]["n_cells"] == 3641 and res["figures"]["n_types"] == 15
    data = res["provenance"]["data"][0]
    assert data["real"] is True and data["sha256"].startswith("dcdf56c0")
    assert res["provenance"]["profile"] == "quick" and res["provenance"]["device"] == "cpu"
    assert "cellbook-provenance" in out.read_text()


@pytest.mark.parametrize("name", BUILT or [pytest.param("none", marks=pytest.mark.skip(
    reason="the book has not been built (run `make book`)"))])
def test_built_chapter_ran_cleanly_on_real_data(name):
    assert error_outputs(executed_path(name)) == []
    res_path = RESULTS / f"{name}.json"
    assert res_path.exists(), f"{name} wrote no results JSON (last cell must be rec.save())"
    res = json.loads(res_path.read_text())
    prov = res["provenance"]
    assert {"commit", "data", "profile", "device", "wall_s", "versions"} <= set(prov)
    if os.environ.get("CELLBOOK_DATA") and not name.startswith("summary/"):
        assert prov["data"], f"{name} recorded no dataset"
        fake = [d["name"] for d in prov["data"] if not d.get("real")]
        assert not fake, f"{name} used synthetic data although CELLBOOK_DATA is set: {fake}"
    assert "cellbook-provenance" in executed_path(name).read_text()


def test_notebooks_never_handle_tensors_or_fitted_modules():
    """A chapter calls cellbook; tensors, devices and a fitted model's ``module_`` stay in the package."""
    import re

    banned = re.compile(r"\.module_\b|torch\.(from_numpy|tensor|as_tensor|no_grad)|\.to\(\s*['\"]cuda|\.cuda\(\)")
    for name in layout.list_notebooks():
        cells = json.loads((layout.notebook_dir() / f"{name}.ipynb").read_text())["cells"]
        for i, c in enumerate(cells, 1):
            if c["cell_type"] == "code":
                hit = banned.search("".join(c["source"]))
                assert not hit, f"{name} cell {i}: {hit.group(0)!r} belongs in the package, not in a chapter"
