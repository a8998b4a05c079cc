"""annotate_file: label the cells of an .h5ad file of any size, reading its counts a block of cells at a time."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from ..fsutil import atomic_path
from ..validation import OPTIONAL_PATH, PATH, Interval, validate_params
from ._annotate import _annotation_info, _h5_safe, _label_columns, _resolve_model
from ._data import MIN_SHARED_GENES
from ._reference import REFERENCE_CONSTRAINTS
from ._streaming import DEFAULT_CHUNK_SIZE, H5adCounts, predict_in_chunks
from ._voting import HETEROGENEOUS, majority_vote


@validate_params({**REFERENCE_CONSTRAINTS, "query": PATH, "output": OPTIONAL_PATH, "key_added": str,
                  "min_overlap": Interval(float, 0, 1, closed="right"), "threshold": [None, Interval(float, 0, 1)],
                  "over_clustering": [None, str], "min_prop": Interval(float, 0, 1),
                  "chunk_size": Interval(int, 1, None), "progress": [None, bool]})
def annotate_file(query, output=None, model=None, *, reference=None, key_added: str = "predicted_cell_type",
                  layer: str | None = "counts", min_overlap: float = 0.5, threshold: float | None = None,
                  over_clustering: str | None = None, min_prop: float = 0.0, label_key: str = "cell_type",
                  min_shared_genes: int = MIN_SHARED_GENES, params: dict | None = None, seed: int = 0,
                  device: str = "auto", chunk_size: int = DEFAULT_CHUNK_SIZE,
                  progress: bool | None = None) -> pd.DataFrame:
    """:func:`annotate` for an .h5ad file of any size: its counts are read, aligned and predicted
    ``chunk_size`` cells at a time and never loaded whole, so peak memory follows the block, not the file.

    ``model``, ``reference`` (trained on the genes the file shares with it), ``key_added``, ``min_overlap``,
    ``threshold`` and the training arguments are :func:`annotate`'s.  ``layer``: the raw counts
    (``"counts"``: ``layers['counts']`` when present, else ``X``; ``"X"``; or a layer's name); they must be a
    CSR or dense matrix (what AnnData writes; a CSC matrix is refused with the fix).  ``over_clustering``: an
    ``obs`` column of the file holding cluster ids turns on majority voting over them (clustering the cells
    here would need every cell's counts in memory: for that, read the file and use :func:`annotate`).

    Returns a DataFrame indexed by the file's cell names: ``key_added``, ``key_added + "_confidence"`` (and
    ``..._majority_voting``), with what :func:`annotate` records in ``uns`` in ``.attrs["uns"]``.  With
    ``output`` (a path ending in .h5ad), the query file is copied there, as it is, with these columns added to
    its ``obs`` and the record to ``uns[key_added]``; the copy is written beside ``output`` and renamed into
    place only when complete.
    """
    query = Path(query)
    if output is not None and Path(output).suffix != ".h5ad":
        raise ValueError(f"annotate_file: output={str(output)!r} must be an .h5ad path (the query with labels added)")
    if output is not None and Path(output).resolve() == query.resolve():
        raise ValueError("annotate_file: output is the query file itself; give another path (the query is copied)")
    with H5adCounts(query, None if layer == "counts" else layer) as counts:
        names = counts.var_names
        model, source = _resolve_model(model, reference, names, label_key=label_key, layer=layer,
                                       min_shared_genes=min_shared_genes, params=params, seed=seed, device=device)
        what = f"query counts ({'X' if counts.layer is None else f'layers[{counts.layer!r}]'})"
        top, conf, n_found, n_model = predict_in_chunks(model, counts.rows, counts.n_obs, names, float(min_overlap),
                                                        chunk_size=chunk_size, progress=progress, what=what)
        cells = counts.obs_names()
        clusters = _file_clusters(counts, over_clustering) if over_clustering is not None else None
        where = counts.where
    labels, categories = _label_columns(model, top, conf, threshold)
    info = _annotation_info(model, labels, n_found, n_model, len(names), layer=where, threshold=threshold,
                            majority_voting=clusters is not None, source=source)
    info["chunk_size"] = int(chunk_size)
    columns = {key_added: pd.Categorical(labels, categories=categories), f"{key_added}_confidence": conf}
    if clusters is not None:
        voted = majority_vote(labels, clusters, conf, min_prop)
        vcats = [c for c in [*categories, HETEROGENEOUS] if c in set(voted) or c in categories]
        columns[f"{key_added}_majority_voting"] = pd.Categorical(voted, categories=vcats)
        info["over_clustering"] = {"method": "given", "column": over_clustering,
                                   "n_clusters": int(len(np.unique(clusters))), "min_prop": float(min_prop),
                                   "n_changed": int((voted != labels).sum())}
    table = pd.DataFrame(columns, index=cells)
    table.attrs["uns"] = _h5_safe(info)
    if output is not None:
        _write_copy(query, Path(output), table, key_added)
    return table


def _file_clusters(counts: H5adCounts, column: str) -> np.ndarray:
    try:
        return counts.obs_column(column).astype(str)
    except KeyError:
        raise ValueError(f"over_clustering={column!r} is not a column of {counts.path}'s obs; give a column of "
                         f"cluster ids, or read the file and use cellbook.annotate(adata, majority_voting=True)"
                         ) from None


def _write_copy(query: Path, output: Path, table: pd.DataFrame, key_added: str) -> None:
    """The query file copied to ``output`` with ``table``'s columns in ``obs`` and its record in ``uns``."""
    import anndata as ad
    import h5py

    with atomic_path(output) as tmp:
        shutil.copyfile(query, tmp)
        with h5py.File(tmp, "r+") as f:
            obs = f["obs"]
            order = [str(c) for c in obs.attrs.get("column-order", [])]
            for name in table.columns:
                if name in obs:
                    del obs[name]
                ad.io.write_elem(obs, name, table[name].to_numpy() if name.endswith("_confidence")
                                 else table[name].array)
                order = [c for c in order if c != name] + [name]
            obs.attrs["column-order"] = np.array(order, dtype=object)
            if "uns" not in f:
                ad.io.write_elem(f, "uns", {})
            if key_added in f["uns"]:
                del f["uns"][key_added]
            ad.io.write_elem(f["uns"], key_added, table.attrs["uns"])
