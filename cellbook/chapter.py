"""One call that opens a chapter: read its parameters, seed, start the recorder, load the data.

Every notebook begins the same way, so that the page itself stays about its question::

    ch = cb.open_chapter(globals(), data="bmmc")      # Part I: the bone-marrow cells
    rec, adata = ch.rec, ch.data

``data`` names what the chapter reads:

* ``"scrna"``: :func:`cellbook.datasets.load_scrna` of the ``source`` parameter (an AnnData).
* ``"bmmc"``: the same, then :func:`cellbook.datasets.bmmc` with the chapter's ``n_types``, ``n_cells`` and
  ``min_cells_per_gene`` (the Part I selection; an AnnData with a ``counts`` layer).
* ``"bulk"``: :func:`cellbook.datasets.bulk.load_bulk` of ``source`` (Part III; an AnnData).
* a registered image dataset name, or a tuple of them: :func:`cellbook.datasets.load_images` (Part II; an
  ``ImageSet``, or a tuple of them in the same order).
* ``"results"``: every chapter's results JSON of this build (the summary page; ``results_path`` overrides
  the folder).
* ``None``: nothing is loaded.

Each dataset's provenance goes to the recorder, so that the page's provenance box and the results say what
was read (and say SYNTHETIC when a stand-in was asked for).
"""
from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass
from pathlib import Path

from .comparison import deep_settings
from .config import resolve_device, seed_everything
from .datasets import bmmc, load_images, load_scrna
from .datasets.bulk import load_bulk
from .plots import use_page_figures
from .results import Recorder, load_all, results_dir

#: parameter types a notebook's ``parameters`` cell may hold (papermill injects only these)
_PARAMETER_TYPES = (bool, int, float, str, list, tuple, dict, type(None))
_IMAGE_SETS = ("stemcell_passage_phase", "hek293a_ht1080_brightfield")


def chapter_parameters(namespace: dict) -> dict:
    """The notebook's parameters: the plain values among its globals (modules, functions and IPython's own
    names left out). Called before anything else is defined, this is exactly the ``parameters`` cell."""
    return {k: v for k, v in namespace.items()
            if not k.startswith("_") and k not in ("In", "Out") and isinstance(v, _PARAMETER_TYPES)}


@dataclass
class Chapter:
    """What :func:`open_chapter` returns: the parameters, the recorder, the resolved device and the data."""

    params: dict
    rec: Recorder
    device: str
    data: object = None
    raw: object = None      # for data="bmmc": every cell as loaded, before the chapter's selection
    X: object = None        # "bmmc": the raw counts (cells x genes); "bulk": the samples x genes matrix
    y: object = None        # "bmmc" / "bulk": the labels as strings (obs "cell_type")
    genes: list | None = None   # "bmmc" / "bulk": the gene names
    settings: dict | None = None    # "bmmc": the deep models' training settings (comparison.deep_settings);
    #                                 "bulk": the preprocessing's ``counts`` flag (CellNet ships log2 values)

    def __getitem__(self, key):
        return self.params[key]


def _quiet_tqdm() -> None:
    """tqdm warns once in a headless kernel (no ipywidgets); import it here so the warning stays hidden."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import tqdm.auto  # noqa: F401
    warnings.filterwarnings("ignore", message="IProgress not found")


def _set_threads(params: dict) -> None:
    threads = params.get("threads", params.get("torch_threads"))
    if threads:
        import torch

        torch.set_num_threads(int(threads))   # a shared CPU runs faster single-threaded


def _load(kind, params: dict, seed: int):
    where = dict(path=params.get("data_path"), fallback=params.get("fallback", "error"), seed=seed)
    if kind is None:
        return None, [], None
    if kind == "results":
        return _results(params)
    if kind in ("scrna", "bmmc"):
        raw = load_scrna(params.get("source", "vangalen2019"), **where)
        if kind == "scrna":
            return raw, [raw.uns["cellbook_data"]], None
        adata = bmmc(raw, n_types=params.get("n_types", 15), n_cells=params.get("n_cells"),
                              min_cells_per_gene=params.get("min_cells_per_gene", 3), seed=seed)
        return adata, [adata.uns["cellbook_data"]], raw
    if kind == "bulk":
        adata = load_bulk(params.get("source", "tcga6"), **where)
        return adata, [adata.uns["cellbook_data"]], None
    names = (kind,) if isinstance(kind, str) else tuple(kind)
    unknown = [n for n in names if n not in _IMAGE_SETS]
    if unknown:
        raise ValueError(f"open_chapter: data={kind!r} is not one of 'scrna', 'bmmc', 'bulk', None or the image "
                         f"datasets {_IMAGE_SETS}")
    sets = tuple(load_images(n, **where) for n in names)
    return (sets[0] if isinstance(kind, str) else sets), [s.info for s in sets], None


def _results(params: dict):
    """The summary page's data: every chapter's results JSON of this build (``{notebook: payload}``, the
    summary's own left out) and its provenance (the results' combined checksum)."""
    where = Path(params["results_path"]) if params.get("results_path") else results_dir()
    results = {k: v for k, v in load_all(where).items() if not k.startswith("summary/")}
    digest = hashlib.sha256()
    for p in sorted(where.glob("part*/*.json")):
        digest.update(p.read_bytes())
    info = {"name": "results JSON of this build", "title": "the chapters' results JSON", "path": None,
            "source": "cellbook run", "sha256": digest.hexdigest(), "real": True,
            "note": f"{len(results)} notebook(s)"}
    return results, [info], None


def open_chapter(namespace: dict, data=None, *, name: str | None = None) -> Chapter:
    """Open a chapter from its notebook's globals.

    Reads the parameters (``profile``, ``device``, ``seed``, ``threads``/``torch_threads``, ``source``,
    ``data_path``, ``fallback`` and the chapter's own), hides tqdm's headless-kernel warning, sets the torch
    CPU threads, seeds Python, NumPy and torch, starts a :class:`~cellbook.results.Recorder` holding every
    parameter, and loads ``data`` (see the module docstring), recording its provenance.

    Returns a :class:`Chapter` with ``params``, ``rec``, ``device`` (``"cpu"`` or ``"cuda"``), ``data`` and,
    for ``"bmmc"``, ``raw`` (every cell as loaded, before the selection).
    """
    if not isinstance(namespace, dict):
        raise TypeError("open_chapter(globals(), ...): pass the notebook's globals() (a dict)")
    params = chapter_parameters(namespace)
    profile, device, seed = params.get("profile", "quick"), params.get("device", "auto"), params.get("seed", 0)
    _quiet_tqdm()
    use_page_figures()   # every figure drawn at the column's width, never shrunk by the browser
    _set_threads(params)
    seed_everything(seed)
    rec = Recorder(name, profile=profile, device=device, seed=seed, parameters=params)
    loaded, infos, raw = _load(data, params, seed)
    for info in infos:
        rec.data(info)
    ch = Chapter(params=params, rec=rec, device=resolve_device(device), data=loaded, raw=raw)
    if data in ("bmmc", "bulk"):
        _matrix(ch, data)
    return ch


def _matrix(ch: Chapter, kind: str) -> None:
    """The matrix, labels and gene names a Part I ("bmmc") or Part III ("bulk") chapter works on."""
    adata = ch.data
    ch.y = adata.obs["cell_type"].astype(str).to_numpy()
    ch.genes = list(adata.var_names)
    if kind == "bmmc":
        ch.X = adata.layers["counts"]
        deep = ("transform", "n_genes", "epochs", "lr", "batch_size", "chunk", "patience")
        ch.settings = deep_settings(ch.params) if all(k in ch.params for k in deep) else None
        what = f"{adata.n_obs} cells x {adata.n_vars} genes, {len(set(ch.y))} types" + (
            f"; deep models: {ch.settings}" if ch.settings else "")
    else:
        ch.X = adata.X
        ch.settings = dict(counts=ch.params.get("source", "tcga6") != "cellnet")
        what = f"{adata.n_obs} samples x {adata.n_vars} genes, {len(set(ch.y))} classes; device {ch.device}"
    print(what)
