"""Prediction by gene name, a block of cells at a time: from a matrix in memory or from an .h5ad file on disk.

Every model :func:`~cellbook.annotation.annotate` applies works cell by cell (library sizes, log1p, a linear
layer or a network in evaluation mode), so a query can be read, aligned and predicted ``chunk_size`` cells at a
time: memory grows with the chunk, not with the query.  Only the top label's index and its probability are
kept per cell.  :class:`H5adCounts` reads the rows of an .h5ad's counts (CSR, or a dense matrix) without
loading the file.
"""
from __future__ import annotations

import contextlib
import inspect
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..config import ANNOTATE_CHUNK_SIZE
from ..datasets.scrna import _check_hdf5
from ..preprocess.scrna import align_genes
from ..train import NotFittedError
from ._classifier import CellTypeClassifier
from ._data import _counts_matrix
from ._model_files import _model_genes

#: Cells per block when annotating (about 0.2-1 GB of working memory for 20k cells of a 30k-gene query).
DEFAULT_CHUNK_SIZE = ANNOTATE_CHUNK_SIZE


def _predict_by_name(model, X, names: list[str], min_overlap: float, depth: int = 0):
    """``(proba, n model genes found, n model genes)`` for counts ``X`` whose genes are ``names``.

    ``depth``: frames between the user's call and the caller of this function, beyond annotate's own (for the
    warnings' ``stacklevel``)."""
    if isinstance(model, CellTypeClassifier):
        model._check_fitted()
        if model.genes_ is None:
            raise ValueError("the model was fitted without gene names (use fit_adata or fit(..., gene_names=...)); "
                             "annotate aligns genes by name")
        Z, n_found = model._aligned_features(X, names, "adata", min_overlap, stacklevel=6 + depth, checked=True)
        return model.predict_proba(None, _features=Z), n_found, len(model.genes_)
    if not hasattr(model, "classes_"):
        raise NotFittedError(f"this {type(model).__name__} is not fitted yet; fit it (or pass reference= to annotate "
                             f"to train it there)")
    if getattr(model, "counts", True) is False:
        raise ValueError(f"{type(model).__name__} was built with counts=False, but annotate gives models raw counts; "
                         f"use counts=True")
    known, used = _model_genes(model)
    if known is None:
        raise ValueError(f"the {type(model).__name__} was fitted without gene names (fit(X, y, gene_names=...), a "
                         f"DataFrame or an AnnData); annotate aligns genes by name")
    present = pd.Index(names)
    n_model = len(used)
    n_found = int(pd.Index(used).isin(present).sum())
    if n_found < max(1, int(np.ceil(min_overlap * n_model))):
        raise ValueError(f"only {n_found} of the model's {n_model} genes are in adata's gene names (need >= "
                         f"{min_overlap:.0%}); are the gene names the same kind (symbols vs Ensembl ids) and the same "
                         f"species? Or train on the shared genes: annotate(adata, reference=ref, model=...)")
    if n_found < n_model:
        missing = [g for g in used if g not in set(present)]
        warnings.warn(f"{n_model - n_found} of the model's {n_model} genes are missing from adata "
                      f"({', '.join(missing[:5])}{', ...' if len(missing) > 5 else ''}); they are filled with zeros",
                      UserWarning, stacklevel=4 + depth)
    if names != known:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")   # counted above, among the genes the model uses
            X, _ = align_genes(X, names, known, "adata", min_overlap=0.0)
    if "gene_names" in inspect.signature(model.predict_proba).parameters:
        proba = model.predict_proba(X, gene_names=known)
    else:
        proba = model.predict_proba(pd.DataFrame(X.toarray() if sp.issparse(X) else X, columns=known))
    return np.asarray(proba), n_found, n_model


def cell_by_cell(model) -> bool:
    """Whether ``model`` labels each cell on its own (so that blocks of cells give the same labels as the whole):
    not a CellTypist model with its own majority voting, which clusters the cells it is given."""
    return not bool(getattr(model, "majority_voting", False))


def predict_in_chunks(model, rows, n_cells: int, names: list[str], min_overlap: float, *,
                      chunk_size: int | None = DEFAULT_CHUNK_SIZE, progress: bool | None = None,
                      what: str = "adata counts", depth: int = 0):
    """``(index of the top class, its probability, n model genes found, n model genes)`` for every cell.

    ``rows(start, stop)`` gives the raw counts of cells ``start:stop`` (any matrix; checked block by block).
    ``chunk_size``: cells per block (``None``: all at once; a model that is not cell by cell, see
    :func:`cell_by_cell`, always gets every cell at once).  The first block's warnings (missing genes) are
    raised; the same warnings of later blocks are not repeated.  ``progress``: a bar over the blocks
    (``None``: when there are several).
    """
    size = n_cells if chunk_size is None or not cell_by_cell(model) else max(1, int(chunk_size))
    starts = range(0, n_cells, size)
    show = len(starts) > 1 if progress is None else bool(progress)
    bar = _bar(len(starts), n_cells, show)
    top = np.empty(n_cells, dtype=np.int32)
    conf = None                                   # the probabilities' own dtype (float32 models stay float32)
    n_found = n_model = 0
    try:
        for i, start in enumerate(starts):
            stop = min(n_cells, start + size)
            X = _counts_matrix(rows(start, stop), what if len(starts) == 1 else f"{what}, cells {start}-{stop - 1}")
            quiet = warnings.catch_warnings() if i else contextlib.nullcontext()
            with quiet:
                if i:
                    warnings.simplefilter("ignore")
                proba, n_found, n_model = _predict_by_name(model, X, names, min_overlap, depth=depth + 1)
            if conf is None:
                conf = np.empty(n_cells, dtype=proba.dtype)
            top[start:stop] = proba.argmax(1)
            conf[start:stop] = proba.max(1)
            del X, proba
            bar.update(1)
    finally:
        bar.close()
    return top, conf, n_found, n_model


def _bar(n_chunks: int, n_cells: int, show: bool):
    from tqdm.auto import tqdm

    return tqdm(total=n_chunks, desc=f"annotating {n_cells:,} cells", unit="block", disable=not show, leave=False)


class H5adCounts:
    """The raw counts of an .h5ad file, read ``rows(start, stop)`` at a time; the file stays on disk.

    ``layer``: ``None`` (``layers['counts']`` when present, else ``X``), ``"X"`` or a layer's name.  A CSR
    matrix (what AnnData writes for sparse counts) or a dense one is read by rows; a CSC matrix cannot be
    (every row needs the whole file) and is refused with the fix.  Use as a context manager, or ``close()``.
    """

    def __init__(self, path, layer: str | None = None, what: str = "query"):
        import anndata as ad
        import h5py

        self.path, self.what = Path(path), what
        _check_hdf5(self.path, what)
        self._file = h5py.File(self.path, "r")
        try:
            self.layer = self._pick_layer(layer)
            elem = self._file["X"] if self.layer is None else self._file["layers"][self.layer]
            self.var_names = list(map(str, ad.io.read_elem(self._file["var"]).index))
            self._matrix = self._open_matrix(elem)
        except BaseException:
            self._file.close()
            raise
        self.n_obs = int(self._matrix.shape[0])
        if self._matrix.shape[1] != len(self.var_names):
            self.close()
            raise ValueError(f"{what} {self.path}: its matrix has {self._matrix.shape[1]} genes but var has "
                             f"{len(self.var_names)}; the file is corrupt")

    def _pick_layer(self, layer):
        layers = list(self._file["layers"]) if "layers" in self._file else []
        if layer is None:
            return "counts" if "counts" in layers else None
        if layer == "X":
            return None
        if layer not in layers:
            raise ValueError(f"{self.what} {self.path} has no layers[{layer!r}] (layers: "
                             f"{', '.join(layers) or 'none'}); give the layer of the raw counts, 'X', or None "
                             f"('counts' if present, else X)")
        return layer

    def _open_matrix(self, elem):
        import anndata as ad

        kind = elem.attrs.get("encoding-type", "array")
        if kind == "csc_matrix":
            where = "X" if self.layer is None else f"layers[{self.layer!r}]"
            raise ValueError(f"{self.what} {self.path}: {where} is a CSC matrix, which cannot be read a block of "
                             f"cells at a time; convert it to CSR once (adata.X = adata.X.tocsr(); "
                             f"adata.write_h5ad(...)) or read the file whole and call cellbook.annotate on it")
        if kind == "csr_matrix":
            return ad.io.sparse_dataset(elem)
        return elem                                           # a dense h5py dataset: rows by slicing

    @property
    def where(self) -> str:
        """``"X"`` or the layer's name (as :func:`annotate` records it)."""
        return "X" if self.layer is None else self.layer

    def rows(self, start: int, stop: int):
        return self._matrix[start:stop]

    def obs_names(self) -> pd.Index:
        import anndata as ad

        obs = self._file["obs"]
        index_key = obs.attrs.get("_index", "_index")
        return pd.Index(ad.io.read_elem(obs[index_key])).astype(str)

    def obs_column(self, name: str) -> np.ndarray:
        """The values of ``obs[name]`` (a ``KeyError`` naming the columns when it is not there)."""
        import anndata as ad

        obs = self._file["obs"]
        if name not in obs or name == obs.attrs.get("_index", "_index"):
            columns = [str(c) for c in obs.attrs.get("column-order", [])]
            raise KeyError(f"{self.path}: obs has no column {name!r} (columns: {', '.join(columns) or 'none'})")
        return np.asarray(pd.Series(ad.io.read_elem(obs[name])))

    def close(self) -> None:
        self._file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
