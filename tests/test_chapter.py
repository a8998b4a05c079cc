"""cellbook.open_chapter: the one call each chapter opens with."""
import json

import numpy as np
import pytest
import torch

import cellbook as cb
from cellbook import layout


def _namespace(**over):
    ns = {"profile": "quick", "device": "cpu", "seed": 3, "source": "tcga6", "data_path": None,
          "fallback": "error", "n_genes": 50, "sizes": [10, 20],
          # what a notebook's globals also hold, which are not parameters
          "np": np, "cb": cb, "_private": 1, "In": [""], "Out": {}, "helper": lambda x: x}
    ns.update(over)
    return ns


def test_open_chapter_reads_parameters_seeds_records_and_loads_real_data(data_root, monkeypatch):
    monkeypatch.setenv("CELLBOOK_DATA", str(data_root))
    n = torch.get_num_threads()
    try:
        ch = cb.open_chapter(_namespace(torch_threads=1), data="bulk")
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(n)
    assert set(ch.params) == {"profile", "device", "seed", "source", "data_path", "fallback", "n_genes", "sizes",
                              "torch_threads"}
    assert ch.rec.parameters == ch.params and ch.rec.seed == 3 and ch.rec.profile == "quick"
    assert ch.device == "cpu" and ch["n_genes"] == 50
    drawn = np.random.rand(3)
    cb.seed_everything(3)
    np.testing.assert_array_equal(drawn, np.random.rand(3))      # it seeded with the chapter's seed
    assert ch.data.n_obs > 100 and "cell_type" in ch.data.obs
    (info,) = ch.rec.datasets
    assert info["real"] is True and info["name"].startswith("tcga6")


def test_open_chapter_bmmc_applies_the_chapters_selection(data_root, monkeypatch):
    monkeypatch.setenv("CELLBOOK_DATA", str(data_root))
    ch = cb.open_chapter(_namespace(source="vangalen2019", n_types=5, n_cells=300, min_cells_per_gene=3),
                         data="bmmc")
    assert ch.data.n_obs == 300 and ch.data.obs["cell_type"].nunique() == 5
    assert "counts" in ch.data.layers and ch.rec.datasets[0]["real"] is True
    assert ch.raw.n_obs == 3641            # every cell as loaded stays at hand


def test_open_chapter_synthetic_stand_in_is_labelled(tmp_path, monkeypatch):
    monkeypatch.delenv("CELLBOOK_DATA", raising=False)
    monkeypatch.setenv("CELLBOOK_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("CELLBOOK_MIRROR", raising=False)
    ch = cb.open_chapter(_namespace(fallback="synthetic"), data="stemcell_passage_phase")
    assert len(ch.data) > 0
    assert ch.rec.datasets[0]["real"] is False


def test_open_chapter_rejects_bad_input():
    with pytest.raises(ValueError, match="'scrna', 'bmmc', 'bulk'"):
        cb.open_chapter(_namespace(), data="no_such_data")
    with pytest.raises(TypeError, match="globals"):
        cb.open_chapter(["profile"], data=None)


def test_deep_settings_come_from_the_chapter_parameters():
    p = dict(transform="log1p", n_genes=500, epochs=200, lr=2e-3, batch_size=128, chunk=50, patience=3,
             device="cpu")
    s = cb.comparison.deep_settings(p)
    assert s == dict(transform="log1p", n_genes=500, max_epochs=200, lr=2e-3, batch_size=128,
                     model_kwargs={"chunk": 50}, patience=3, device="cpu")
    assert "device" not in cb.comparison.deep_settings(p, device=False)


def test_every_chapter_opens_with_one_call():
    """The first code cell after the hidden setup cell opens the chapter with cb.open_chapter; no chapter
    seeds, starts a recorder or loads its data by hand."""
    import re

    for name in layout.list_notebooks():   # the summary page too: it opens with data="results"
        cells = [c for c in json.loads((layout.notebook_dir() / f"{name}.ipynb").read_text())["cells"]
                 if c["cell_type"] == "code"]
        tags = [set(c["metadata"].get("tags", [])) for c in cells]
        def imports_only(src):
            return all(not ln.strip() or ln.lstrip().startswith(("import ", "from ", "#"))
                       for ln in src.splitlines())

        first = next(c for c, t in zip(cells, tags) if not t & {"parameters", "cellbook-setup"}
                     and not imports_only("".join(c["source"])))   # a cell of imports alone may come first
        src = "".join(first["source"])
        assert re.search(r"cb\.open_chapter\(\s*globals\(\)", src), \
            f"{name}: its first cell does not call cb.open_chapter"
        body = "".join("".join(c["source"]) for c in cells)
        for by_hand in ("cb.Recorder(", "cb.seed_everything(", "torch.set_num_threads("):
            assert by_hand not in body, f"{name}: {by_hand} belongs to cb.open_chapter"
