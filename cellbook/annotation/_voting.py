"""Majority voting (CellTypist's): over-clustering of the cells and each cluster's majority label."""
from __future__ import annotations

import networkx as nx
import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.decomposition import PCA
from sklearn.neighbors import NearestNeighbors

from ..preprocess.scrna import highly_variable, log_normalize
from ._data import _counts_matrix

HETEROGENEOUS = "Heterogeneous"    # majority-voting label of a cluster whose majority is below min_prop


def default_resolution(n_cells: int) -> float:
    """CellTypist's over-clustering resolution for ``n_cells`` cells: 5 (< 5k), 10 (< 20k), 15 (< 40k),
    20 (< 100k), 25 (< 200k), else 30."""
    for limit, res in ((5000, 5.0), (20000, 10.0), (40000, 15.0), (100000, 20.0), (200000, 25.0)):
        if n_cells < limit:
            return res
    return 30.0


def _snn_graph(P: np.ndarray, n_neighbors: int) -> sp.csr_matrix:
    """Shared-nearest-neighbour graph (Jaccard weights, pruned below 1/15, as Seurat's FindNeighbors)."""
    n = P.shape[0]
    k = min(int(n_neighbors), n)
    idx = NearestNeighbors(n_neighbors=k).fit(P).kneighbors(P, return_distance=False)
    idx[:, 0] = np.arange(n)   # each cell is its own first neighbour (ties between identical cells)
    A = sp.csr_matrix((np.ones(n * k, np.float32), (np.repeat(np.arange(n), k), idx.ravel())), shape=(n, n))
    S = (A @ A.T).tocoo()
    w = S.data / (2 * k - S.data)
    keep = (w >= 1 / 15) & (S.row != S.col)
    return sp.csr_matrix((w[keep], (S.row[keep], S.col[keep])), shape=(n, n))


def _communities(W: sp.csr_matrix, resolution: float, seed: int, method: str) -> np.ndarray:
    n = W.shape[0]
    if method == "leiden":
        try:
            import igraph as ig
            import leidenalg
        except ImportError:
            raise ValueError("method='leiden' needs the leidenalg and igraph packages (pip install leidenalg "
                             "igraph); or use method='louvain' (networkx, installed with cellbook)") from None
        U = sp.triu(W, 1).tocoo()
        g = ig.Graph(n=n, edges=list(zip(U.row.tolist(), U.col.tolist())), directed=False)
        g.es["weight"] = U.data.tolist()
        part = leidenalg.find_partition(g, leidenalg.RBConfigurationVertexPartition, weights="weight",
                                        resolution_parameter=float(resolution), seed=int(seed), n_iterations=-1)
        groups = [set(c) for c in part]
    elif method == "louvain":
        G = nx.from_scipy_sparse_array(W)
        groups = nx.community.louvain_communities(G, weight="weight", resolution=float(resolution), seed=int(seed))
    else:
        raise ValueError(f"unknown clustering method {method!r}; valid: louvain, leiden")
    groups = sorted(groups, key=lambda c: (-len(c), min(c)))
    labels = np.empty(n, dtype=np.int64)
    for i, members in enumerate(groups):
        labels[list(members)] = i
    return labels


def over_cluster(adata, layer: str | None = "counts", resolution: float | None = None, n_neighbors: int = 15,
                 n_pcs: int = 50, n_top_genes: int = 2000, method: str = "louvain", seed: int = 0):
    """Over-cluster the cells of ``adata`` for majority voting: ``(cluster ids (str), info dict)``.

    log1p counts per 10k (``layers[layer]`` else ``X``) -> the ``n_top_genes`` most variable genes ->
    scaled (clipped at 10) -> PCA (``n_pcs``) -> shared-nearest-neighbour graph (``n_neighbors``,
    Jaccard weights) -> community detection at a high ``resolution`` (default: CellTypist's, from the
    number of cells; :func:`default_resolution`).  ``method``: ``"louvain"`` (networkx, always installed;
    the default, so the same seed gives the same clusters everywhere) or ``"leiden"`` (needs the
    leidenalg and igraph packages).  Deterministic given ``seed``.  Clusters are numbered by size.
    """
    X = adata.layers[layer] if layer and layer in adata.layers else adata.X
    return _over_cluster_matrix(_counts_matrix(X, "adata counts"), resolution, n_neighbors, n_pcs, n_top_genes,
                                method, seed)


def _over_cluster_matrix(X, resolution=None, n_neighbors=15, n_pcs=50, n_top_genes=2000, method="louvain",
                         seed=0):
    if method not in ("louvain", "leiden"):
        raise ValueError(f"unknown clustering method {method!r}; valid: louvain, leiden")
    n = X.shape[0]
    resolution = default_resolution(n) if resolution is None else float(resolution)
    if resolution <= 0:
        raise ValueError(f"resolution must be > 0, got {resolution}")
    info = {"method": f"{method} ({'networkx' if method == 'louvain' else 'leidenalg'})", "resolution": resolution,
            "n_neighbors": int(min(n_neighbors, n)), "seed": int(seed)}
    if n < 3:
        info["n_clusters"] = 1
        return np.zeros(n, dtype=np.int64).astype(str), info
    Xl = log_normalize(X)
    hv = highly_variable(Xl, min(int(n_top_genes), X.shape[1]))
    Z = np.asarray(Xl[:, hv].toarray(), dtype=np.float32)
    sd = Z.std(0)
    Z = np.clip((Z - Z.mean(0)) / np.where(sd > 0, sd, 1.0), -10, 10)
    n_comp = int(min(n_pcs, n - 1, Z.shape[1] - 1))
    P = PCA(n_components=n_comp, random_state=int(seed)).fit_transform(Z) if n_comp >= 2 else Z
    info["n_pcs"] = int(P.shape[1])
    labels = _communities(_snn_graph(P, n_neighbors), resolution, seed, method)
    info["n_clusters"] = int(labels.max() + 1)
    return labels.astype(str), info


def majority_vote(labels, clusters, confidence=None, min_prop: float = 0.0) -> np.ndarray:
    """Each cluster's most frequent label, for every cell of it (CellTypist's majority voting).

    Ties go to the label with the larger summed ``confidence`` (then the first by name).  A cluster
    whose majority label holds less than ``min_prop`` of its cells gets ``"Heterogeneous"``.
    """
    labels, clusters = np.asarray(labels).astype(str), np.asarray(clusters).astype(str)
    if len(labels) != len(clusters):
        raise ValueError(f"{len(labels)} labels but {len(clusters)} cluster ids")
    conf = np.ones(len(labels)) if confidence is None else np.asarray(confidence, dtype=np.float64)
    df = pd.DataFrame({"cluster": clusters, "label": labels, "conf": conf})
    g = df.groupby(["cluster", "label"], sort=True)["conf"].agg(["size", "sum"]).reset_index()
    g = g.sort_values(["cluster", "size", "sum", "label"], ascending=[True, False, False, True], kind="mergesort")
    top = g.drop_duplicates("cluster").set_index("cluster")
    share = top["size"] / df.groupby("cluster").size()
    voted = top["label"].where(share >= float(min_prop), HETEROGENEOUS)
    return voted.loc[clusters].to_numpy().astype(str)
