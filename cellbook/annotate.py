"""Cell-type classifiers on raw counts, annotation of new cells by gene name, and model files.

:class:`CellTypeClassifier` is the whole Part I pipeline in one scikit-learn-style estimator:
gene selection learned on the training cells only (genes detected in ``min_cells_per_gene``
cells, optionally the ``n_genes`` most variable of them), an input transform (``"counts"`` = raw
counts as in the paper, ``"log1p"`` = log1p of counts per 10k), a torch model from
:mod:`cellbook.models` (single, jointly trained ensemble, or independently trained members with
soft / hard voting), trained by :class:`cellbook.Trainer`.

:func:`annotate` applies a fitted classifier (this one, or a baseline of :mod:`cellbook.baselines`,
or a saved model file) to an AnnData of new cells: genes are aligned by name (missing genes are
filled with zeros and counted in a warning; too few shared genes is an error), and the predicted
label and its confidence (the top class probability) go to ``adata.obs``.  Given ``reference=``
(labelled cells), it first trains a model on the genes the new cells share with the reference,
in the same call (CellTypist's ``train`` + ``annotate``).  Optionally: ``threshold=`` (cells below
it are ``"Unassigned"``) and ``majority_voting=True`` (each over-cluster of the new cells takes its
majority label).

:func:`save_model` / :func:`load_model` keep a fitted model in one shareable file.

    clf = CellTypeClassifier("cnn", ensemble="joint", k=5, transform="counts", max_epochs=30).fit_adata(train)
    cellbook.annotate(new_cells, clf)          # new_cells.obs["predicted_cell_type"], ..._confidence
    clf.save("bm.cbm"); clf = load_model("bm.cbm")
    cellbook.annotate(new_cells, reference=train, model="logreg", threshold=0.5, majority_voting=True)
"""
from __future__ import annotations

import datetime as _dt
import inspect
import io
import json
import os
import time
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from .datasets.scrna import check_counts
from .preprocess.scrna import align_genes, genes_detected, highly_variable, log_normalize, matrix_and_names
from .splits import as_labels, check_labels
from .train import NotFittedError, Trainer, count_parameters

ARCHITECTURES = ("mlp", "cnn", "lstm", "lstm_att")
ENSEMBLES = (None, "joint", "soft", "hard")
TRANSFORMS = ("counts", "log1p")
# The paper's optimiser settings (section 2.3): the Trainer defaults of this pipeline.
PAPER_TRAINING = dict(batch_size=128, lr=5e-4, optimizer="adam", lr_step=200, lr_gamma=0.9)
# Method names that annotate / fit_reference / `cellbook annotate --method` train on a reference.
METHODS = ("logreg", "logreg_scaled", "gbm", "celltypist", "knn", *ARCHITECTURES)
_BASELINE_METHODS = {"logreg": "TunedLogisticRegression", "logreg_scaled": "HVGLogisticRegression",
                     "gbm": "HVGGradientBoosting", "celltypist": "CellTypistClassifier", "knn": "PCAKNN"}
UNASSIGNED = "Unassigned"          # label of cells whose confidence is below annotate's threshold
HETEROGENEOUS = "Heterogeneous"    # majority-voting label of a cluster whose majority is below min_prop
MIN_SHARED_GENES = 50              # fewest genes a reference and a query must share to train on them


def build_model(architecture: str, n_genes: int, n_classes: int, **kwargs) -> torch.nn.Module:
    """One member network: ``"mlp"``, ``"cnn"``, ``"lstm"`` or ``"lstm_att"`` (LSTM + attention)."""
    from .models.cnn1d import CNN1D
    from .models.mlp import MLP
    from .models.recurrent import LSTMClassifier

    if architecture == "mlp":
        return MLP(n_genes, n_classes, **kwargs)
    if architecture == "cnn":
        return CNN1D(n_genes, n_classes, **kwargs)
    if architecture in ("lstm", "lstm_att"):
        return LSTMClassifier(n_genes, n_classes, attention=architecture == "lstm_att", **kwargs)
    raise ValueError(f"unknown architecture {architecture!r}; valid: {', '.join(ARCHITECTURES)}")


def _counts_matrix(X, what="counts"):
    if hasattr(X, "X") and hasattr(X, "obs"):
        raise ValueError("pass a matrix here; use fit_adata / predict(adata) / annotate for an AnnData")
    if not hasattr(X, "shape") or len(X.shape) != 2:
        raise ValueError(f"{what}: expected a 2-D cells x genes matrix")
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise ValueError(f"{what}: empty matrix of shape {X.shape}")
    check_counts(X, what)
    return sp.csr_matrix(X, dtype=np.float32)


class CellTypeClassifier:
    """Gene selection + input transform + torch model (+ ensemble), trained with the Trainer.

    Parameters
    ----------
    architecture : str or list of str
        ``"mlp"``, ``"cnn"``, ``"lstm"``, ``"lstm_att"``; a list (e.g. ``["cnn", "lstm"]``) makes a
        mixed ensemble with one member of each (``k`` is then ignored).
    ensemble : None, "joint", "soft" or "hard"
        ``"joint"``: K members' logits averaged and trained as one model (the authors' code);
        ``"soft"`` / ``"hard"``: K members trained independently (seeds ``seed*1000 + i``) and
        combined by soft / hard voting.
    k : int
        Ensemble size (5 in the paper).
    transform : "counts" or "log1p"
        Raw counts (the paper) or log1p of counts per 10k.  The library size (a cell's total count)
        is summed over the genes the classifier was *fitted on* (every column of the training matrix,
        before gene selection), at training and at prediction alike: at prediction, over the new
        cells' genes among those (a missing gene counts as zero, a gene the model never saw is left
        out).  So a cell gets the same input whatever other genes its file holds, and a model trained
        on the genes a query shares with the reference (``fit_adata(ref, genes=query.var_names)``)
        sees totals over the shared genes when it is trained and when it annotates that query.  (The
        baselines in :mod:`cellbook.baselines` do the same: they align new cells to their training
        genes before log-normalising.)
    n_genes : int or None
        Keep the ``n_genes`` most variable genes (chosen on the training cells); ``None`` keeps every
        gene detected in ``min_cells_per_gene`` training cells (the paper: all 13822 genes).
    model_kwargs : dict
        Passed to the member constructor (e.g. ``{"chunk": 100}`` for the LSTM).
    **trainer_kwargs
        Passed to :class:`cellbook.Trainer` (defaults: the paper's batch 128, Adam, lr 5e-4, x0.9 every
        200 iterations).
    """

    def __init__(self, architecture: str | Sequence[str] = "cnn", ensemble: str | None = None, k: int = 5,
                 transform: str = "log1p", n_genes: int | None = 2000, min_cells_per_gene: int = 3,
                 model_kwargs: dict | None = None, seed: int = 0, device: str = "auto", **trainer_kwargs):
        archs = [architecture] if isinstance(architecture, str) else list(architecture)
        for a in archs:
            if a not in ARCHITECTURES:
                raise ValueError(f"unknown architecture {a!r}; valid: {', '.join(ARCHITECTURES)}")
        if ensemble not in ENSEMBLES:
            raise ValueError(f"unknown ensemble {ensemble!r}; valid: None, joint, soft, hard")
        if len(archs) > 1 and ensemble is None:
            ensemble = "joint"
        if transform not in TRANSFORMS:
            raise ValueError(f"unknown transform {transform!r}; valid: {', '.join(TRANSFORMS)}")
        if ensemble is not None and int(k) < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        if n_genes is not None and int(n_genes) < 1:
            raise ValueError(f"n_genes must be >= 1 or None, got {n_genes}")
        self.architectures, self.ensemble, self.k = archs, ensemble, int(k)
        self.transform, self.n_genes, self.min_cells_per_gene = transform, n_genes, int(min_cells_per_gene)
        self.model_kwargs = dict(model_kwargs or {})
        self.seed, self.device = int(seed), device
        self.trainer_kwargs = {**PAPER_TRAINING, **trainer_kwargs}
        self.trainer_kwargs.setdefault("progress", False)

    def _init_params(self) -> dict:
        """The constructor's arguments (what :func:`save_model` stores to rebuild the classifier)."""
        arch = self.architectures[0] if len(self.architectures) == 1 else list(self.architectures)
        return {"architecture": arch, "ensemble": self.ensemble, "k": self.k, "transform": self.transform,
                "n_genes": self.n_genes, "min_cells_per_gene": self.min_cells_per_gene,
                "model_kwargs": dict(self.model_kwargs), "seed": self.seed, "device": self.device,
                **self.trainer_kwargs}

    # ----------------------------------------------------------------- features
    @property
    def n_members(self) -> int:
        if self.ensemble is None:
            return 1
        return len(self.architectures) if len(self.architectures) > 1 else self.k

    def _member_archs(self) -> list[str]:
        if len(self.architectures) > 1:
            return self.architectures
        return self.architectures * self.n_members

    def _transform(self, Xsel, totals):
        if self.transform == "counts":
            return Xsel
        scale = np.divide(1e4, totals, out=np.zeros_like(totals, dtype=np.float64), where=totals > 0)
        Z = sp.csr_matrix(sp.diags(scale.astype(np.float32)) @ Xsel)
        Z.data = np.log1p(Z.data)
        return Z

    def features(self, X) -> sp.csr_matrix:
        """Model input for raw counts ``X`` (cells x all the genes seen at fit time, in that order)."""
        self._check_fitted(fitting=hasattr(self, "gene_idx_"))
        X = _counts_matrix(X)
        if X.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {X.shape[1]} genes; the classifier was fitted on {self.n_features_in_} "
                             f"(use cellbook.annotate to align genes by name)")
        totals = np.asarray(X.sum(axis=1)).ravel()
        return self._transform(X[:, self.gene_idx_], totals)

    # ---------------------------------------------------------------------- fit
    def fit(self, X, y, gene_names: Sequence[str] | None = None) -> "CellTypeClassifier":
        """Fit on raw counts ``X`` (cells x genes, dense or sparse) and labels ``y`` (one per cell).

        ``gene_names`` (one per column; taken from the columns of a DataFrame ``X``) lets
        :meth:`predict` and :func:`annotate` align new cells' genes by name.  A missing label
        (NaN / None) is a ``ValueError`` naming the cells.
        """
        X, gene_names = matrix_and_names(X, gene_names, what="X")
        X = _counts_matrix(X)
        y = as_labels(y, "y")
        if len(y) != X.shape[0]:
            raise ValueError(f"X has {X.shape[0]} cells but y has {len(y)} labels")
        check_labels(y, min_per_class=2 if self.trainer_kwargs.get("val_fraction", 0.1) > 0 else 1)
        if gene_names is not None:
            from .datasets.scrna import check_unique_genes

            check_unique_genes(gene_names, "gene_names", "give unique names (sum or drop the duplicated genes' "
                                                         "columns first, or use Ensembl ids)")
        self.n_features_in_ = X.shape[1]
        self.feature_names_in_ = None if gene_names is None else np.asarray(gene_names, dtype=object)
        self._order_warned = False
        self.model_file_ = None     # set by load_model; a refit model no longer is the file's
        self.training_ = {"n_cells": int(X.shape[0]), "n_genes_in": int(X.shape[1]),
                          "date_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
        detected = np.flatnonzero(genes_detected(X, self.min_cells_per_gene))
        if len(detected) < 2:
            raise ValueError(f"fewer than 2 genes are detected in >= {self.min_cells_per_gene} training cells")
        if self.n_genes is not None and len(detected) > self.n_genes:
            hv = highly_variable(log_normalize(X[:, detected]), self.n_genes)
            detected = detected[hv]
        self.gene_idx_ = np.sort(detected)
        self.genes_ = (np.asarray(gene_names).astype(str)[self.gene_idx_] if gene_names is not None else None)
        Z = self.features(X)
        self.classes_ = np.unique(y)
        n_in, n_cls = len(self.gene_idx_), len(self.classes_)
        t0 = time.perf_counter()
        tk = dict(self.trainer_kwargs)
        if self.ensemble in (None, "joint"):
            from .models.ensemble import JointEnsemble

            torch.manual_seed(self.seed)
            members = []
            for i, arch in enumerate(self._member_archs()):
                torch.manual_seed(self.seed * 1000 + i)
                members.append(build_model(arch, n_in, n_cls, **self._kwargs_for(arch)))
            module = members[0] if self.ensemble is None else JointEnsemble(members)
            self.trainer_ = Trainer(module, seed=self.seed, device=self.device, **tk).fit(Z, y)
            self.histories_ = [self.trainer_.history]
        else:
            from .models.ensemble import VotingEnsemble

            members, self.histories_ = [], []
            for i, arch in enumerate(self._member_archs()):
                s = self.seed * 1000 + i
                torch.manual_seed(s)
                m = build_model(arch, n_in, n_cls, **self._kwargs_for(arch))
                tr = Trainer(m, seed=s, device=self.device, **tk).fit(Z, y)
                members.append(tr.model)
                self.histories_.append(tr.history)
            self.trainer_ = Trainer(VotingEnsemble(members, self.ensemble), seed=self.seed, device=self.device, **tk)
            self.trainer_.classes_ = self.classes_
        self.module_ = self.trainer_.model
        self.fit_seconds_ = time.perf_counter() - t0
        self.n_parameters_ = count_parameters(self.module_)
        return self

    def _kwargs_for(self, arch: str) -> dict:
        kw = self.model_kwargs.get(arch, None)
        if isinstance(kw, dict):
            return dict(kw)
        # flat kwargs go to every member whose constructor takes them (e.g. chunk -> LSTM only)
        import inspect

        from .models.cnn1d import CNN1D
        from .models.mlp import MLP
        from .models.recurrent import LSTMClassifier

        cls = {"mlp": MLP, "cnn": CNN1D, "lstm": LSTMClassifier, "lstm_att": LSTMClassifier}[arch]
        accepted = set(inspect.signature(cls.__init__).parameters)
        return {k: v for k, v in self.model_kwargs.items() if k not in ARCHITECTURES and k in accepted}

    def fit_adata(self, adata, label_key: str = "cell_type", layer: str | None = "counts",
                  genes: Sequence[str] | None = None, min_shared_genes: int = MIN_SHARED_GENES) -> "CellTypeClassifier":
        """Fit on an AnnData: raw counts from ``layers[layer]`` (else ``X``), labels from ``obs[label_key]``.

        ``genes`` (e.g. ``query.var_names``): train on the genes of ``adata`` that are among them only,
        restricted *before* gene selection and library sizes (see ``transform``), so that a query with
        those genes is annotated with every model gene present.  Fewer than ``min_shared_genes`` shared
        genes is a ``ValueError`` naming the counts.  ``training_`` records the cells, label key and genes.
        """
        X, y, names, shared = _reference_data(adata, label_key, layer, genes, min_shared_genes)
        self.fit(X, y, gene_names=names)
        self.training_.update({"label_key": label_key,
                               "layer": layer if layer and layer in adata.layers else "X", **shared})
        return self

    def save(self, path) -> Path:
        """Write the fitted classifier to one file (see :func:`save_model`); returns the path."""
        return save_model(self, path)

    @classmethod
    def load(cls, path, device: str = "cpu") -> "CellTypeClassifier":
        """Read a classifier written by :meth:`save` (see :func:`load_model`)."""
        model = load_model(path, device=device)
        if not isinstance(model, cls):
            raise ValueError(f"{path} holds a {type(model).__name__}, not a CellTypeClassifier; read it with "
                             f"cellbook.annotate.load_model")
        return model

    # ------------------------------------------------------------------ predict
    def _check_fitted(self, fitting: bool = False):
        if not hasattr(self, "module_") and not fitting:
            raise NotFittedError(f"this CellTypeClassifier ({self.name}) is not fitted yet; call fit(X, y) or "
                                 f"fit_adata(adata) before predict / predict_proba / annotate")

    def _aligned_features(self, X, names, what: str = "X", min_overlap: float = 0.5, stacklevel: int = 4,
                          checked: bool = False):
        """Model input for counts ``X`` whose columns are the genes ``names``, matched by name.

        The model's genes missing from ``names`` are zeros (warned); library sizes (log1p) are taken
        over ``X``'s genes that the model was fitted on (see ``transform``).  ``(features, n model genes
        found)``.  ``checked``: ``X`` already went
        through ``_counts_matrix``.
        """
        X = X if checked else _counts_matrix(X, what)
        if len(names) != X.shape[1]:
            raise ValueError(f"{len(names)} gene names but {what} has {X.shape[1]} genes (columns)")
        if self.genes_ is None:
            raise ValueError("the model was fitted without gene names, so genes cannot be matched by name; refit "
                             "with fit_adata(adata) or fit(X, y, gene_names=...), or pass a bare matrix whose "
                             "columns are the training genes in the training order")
        known = getattr(self, "feature_names_in_", None)
        if known is not None and list(names) == list(known):
            return self.features(X), len(self.genes_)          # same genes, same order: nothing to align
        Xm, n_found = align_genes(X, names, self.genes_, what, min_overlap, stacklevel=stacklevel)
        if self.transform == "counts":
            return Xm, n_found
        cols = np.flatnonzero(pd.Index(list(map(str, names))).isin(list(map(str, known))))
        totals = np.asarray(X[:, cols].sum(axis=1)).ravel()
        return self._transform(Xm, totals), n_found

    def _input_features(self, X, gene_names, layer):
        """Model input for what predict / predict_proba got: AnnData / DataFrame / matrix (+ gene_names)."""
        self._check_fitted()
        M, names = matrix_and_names(X, gene_names, layer)
        if names is not None:
            return self._aligned_features(M, names, stacklevel=5)[0]
        if self.genes_ is not None and not getattr(self, "_order_warned", False):
            self._order_warned = True
            warnings.warn(f"{self.name}: predict got a bare matrix without gene names, so its columns are taken to be "
                          f"the {self.n_features_in_} training genes in the training order; a different order gives "
                          f"wrong predictions silently. Pass gene_names=..., an AnnData or a DataFrame to match "
                          f"genes by name (warned once per model)", UserWarning, stacklevel=4)
        return self.features(M)

    def predict_proba(self, X, gene_names: Sequence[str] | None = None, layer: str | None = "counts",
                      _features=None) -> np.ndarray:
        """Class probabilities ``(n_cells, n_classes)`` in ``classes_`` order.

        ``X``: raw counts as an AnnData (``layers[layer]`` else ``X``; genes matched by ``var_names``), a
        DataFrame (genes matched by column name), or a matrix: with ``gene_names`` its genes are matched by
        name; without, its columns must be the training genes in the training order (warned once when the
        model knows its gene names).
        """
        self._check_fitted()
        Z = self._input_features(X, gene_names, layer) if _features is None else _features
        return self.trainer_.predict_proba(Z)

    def predict(self, X, gene_names: Sequence[str] | None = None, layer: str | None = "counts") -> np.ndarray:
        """Predicted labels (``classes_``) for ``X`` (as in :meth:`predict_proba`)."""
        proba = self.predict_proba(X, gene_names, layer)
        return self.classes_[proba.argmax(1)]

    def attention(self, X, gene_names: Sequence[str] | None = None, layer: str | None = "counts") -> pd.DataFrame:
        """Attention weights of an LSTM + attention model: one row per cell, one column per gene chunk.

        ``X`` as in :meth:`predict_proba`.  Computed on the model's own device, batch by batch.
        Columns are named by the chunk's first and last gene; each row sums to 1.
        """
        self._check_fitted()
        if self.architectures != ["lstm_att"] or self.ensemble is not None:
            raise ValueError(f"attention weights exist for a single LSTM + attention model, not {self.name!r}")
        Z = self._input_features(X, gene_names, layer)

        def weights(model, xb):
            model(xb)
            return model.last_attention

        W = self.trainer_.forward(Z, fn=weights)
        chunk = self.module_.chunk
        genes = self.genes_ if self.genes_ is not None else np.array([f"gene {i}" for i in self.gene_idx_])
        cols = [f"{genes[i]} .. {genes[min(i + chunk, len(genes)) - 1]}" for i in range(0, len(genes), chunk)]
        return pd.DataFrame(W, columns=cols[:W.shape[1]])

    @property
    def history(self) -> pd.DataFrame:
        """Training history (per epoch) of the model, or of the first member for voting ensembles."""
        self._check_fitted()
        return self.histories_[0]

    @property
    def name(self) -> str:
        arch = "+".join(a.upper().replace("_ATT", "+att") for a in self.architectures)
        return arch if self.ensemble is None else f"{arch} ensemble ({self.ensemble})"


# ------------------------------------------------------------------ training on a reference
def _check_reference(adata, label_key: str, what: str = "reference"):
    if not (hasattr(adata, "obs") and hasattr(adata, "var_names")):
        raise ValueError(f"{what} must be an AnnData (cells x genes, raw counts, labels in obs[{label_key!r}]); "
                         f"got {type(adata).__name__}")
    if label_key not in adata.obs:
        raise ValueError(f"obs[{label_key!r}] is missing; columns present: {', '.join(map(str, adata.obs.columns))}")
    if adata.n_obs == 0 or adata.n_vars == 0:
        raise ValueError(f"{what} has {adata.n_obs} cells x {adata.n_vars} genes: nothing to train on")


def _name_key(g: str) -> str:
    """Gene name without case and Ensembl version suffix (only for the hint of :func:`shared_genes`)."""
    g = g.upper()
    return g.split(".")[0] if g.startswith("ENS") else g


def shared_genes(reference_genes: Sequence[str], genes: Sequence[str], min_shared: int = MIN_SHARED_GENES,
                 what: str = "query") -> tuple[np.ndarray, dict]:
    """Positions (in ``reference_genes`` order) of the reference genes that are among ``genes``.

    Returns ``(positions, {"n_shared_genes", "n_query_genes", "n_reference_genes"})``.  Fewer than
    ``min_shared`` shared genes is a ``ValueError`` naming the counts and the likely fix (gene names of
    another kind or species).
    """
    if isinstance(genes, str):
        raise ValueError(f"genes is the string {genes[:30]!r}; pass the {what}'s gene names, e.g. query.var_names")
    ref = pd.Index(list(map(str, reference_genes)))
    query = pd.Index(list(map(str, genes))).unique()
    pos = np.flatnonzero(ref.isin(query))
    info = {"n_shared_genes": int(len(pos)), "n_query_genes": int(len(query)), "n_reference_genes": int(len(ref))}
    if len(pos) < int(min_shared):
        loose = len(set(map(_name_key, ref)) & set(map(_name_key, query)))
        hint = (f" ({loose} match when case and Ensembl version suffixes are ignored: make the names agree first)"
                if loose > len(pos) else "")
        raise ValueError(f"only {len(pos)} of the {what}'s {len(query)} genes are among the reference's {len(ref)} "
                         f"genes (need >= {min_shared} to train on the shared genes){hint}; are both gene symbols "
                         f"(or both Ensembl ids) and of the same species? Map one set of names onto the other "
                         f"first (e.g. Ensembl ids -> symbols)")
    return pos, info


def _estimator_params(method: str) -> set:
    if method in _BASELINE_METHODS:
        from . import baselines

        return set(getattr(baselines, _BASELINE_METHODS[method])().get_params())
    keys = set(inspect.signature(CellTypeClassifier.__init__).parameters) | set(
        inspect.signature(Trainer.__init__).parameters)
    return keys - {"self", "model", "trainer_kwargs", "architecture", "task", "loss"}


def make_model(method: str, seed: int = 0, device: str = "auto", **params):
    """An unfitted estimator for a method name: ``"logreg"`` (:class:`~cellbook.baselines.TunedLogisticRegression`,
    its regularisation chosen by inner cross-validation), ``"logreg_scaled"`` (:class:`~cellbook.baselines.HVGLogisticRegression`),
    ``"gbm"`` (:class:`~cellbook.baselines.HVGGradientBoosting`), ``"celltypist"``
    (:class:`~cellbook.baselines.CellTypistClassifier`), ``"knn"`` (:class:`~cellbook.baselines.PCAKNN`) or a deep
    architecture (``"mlp"``, ``"cnn"``, ``"lstm"``, ``"lstm_att"``: a :class:`CellTypeClassifier`).  ``params`` go to its constructor (for the deep ones also
    the Trainer's, e.g. ``max_epochs=5``); an unknown one is a ``ValueError`` listing the valid ones.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; valid: {', '.join(METHODS)}")
    valid = _estimator_params(method)
    unknown = sorted(set(params) - valid)
    if unknown:
        raise ValueError(f"method {method!r} takes no parameter(s) {', '.join(unknown)}; valid: "
                         f"{', '.join(sorted(valid))}")
    params = {"seed": int(seed), **params}
    if method in _BASELINE_METHODS:
        from . import baselines

        return getattr(baselines, _BASELINE_METHODS[method])(**params)
    return CellTypeClassifier(method, **{"device": device, **params})


def _reference_data(adata, label_key: str, layer, genes, min_shared_genes: int):
    """A labelled reference's counts, labels and gene names, cut to the genes it shares with ``genes``.

    Returns ``(X, y, names, shared)``; ``shared`` summarises the overlap (``{}`` when ``genes`` is None).
    """
    _check_reference(adata, label_key)
    X = adata.layers[layer] if layer and layer in adata.layers else adata.X
    names = list(map(str, adata.var_names))
    shared = {}
    if genes is not None:
        keep, shared = shared_genes(names, genes, min_shared_genes)
        X = X[:, keep]
        names = [names[i] for i in keep]
    y = as_labels(adata.obs[label_key].to_numpy(), f"obs[{label_key!r}]", names=adata.obs_names)
    return X, y, names, shared


def fit_reference(reference, model="logreg", *, genes: Sequence[str] | None = None, label_key: str = "cell_type",
                  layer: str | None = "counts", min_shared_genes: int = MIN_SHARED_GENES, params: dict | None = None,
                  seed: int = 0, device: str = "auto"):
    """Train a classifier on a labelled reference AnnData, on the genes it shares with ``genes``.

    ``model``: a method name (:data:`METHODS`, built by :func:`make_model` with ``params``, ``seed`` and
    ``device``) or an estimator to fit (a :class:`CellTypeClassifier` or anything with
    ``fit(X, y, gene_names=...)``, ``predict_proba`` and ``classes_``; it is (re)fitted).
    ``genes`` (e.g. ``query.var_names``): restrict the reference to the genes among them before gene
    selection (see :func:`shared_genes`; ``None``: all the reference's genes).  Counts come from
    ``layers[layer]`` (else ``X``), labels from ``obs[label_key]``.  Returns the fitted model; its
    ``training_`` (:class:`CellTypeClassifier`) or ``cellbook_training_`` (others) records the
    training cells, label key, date and gene counts (saved with the model).
    """
    _check_reference(reference, label_key)
    if isinstance(model, str):
        est = make_model(model, seed=seed, device=device, **(params or {}))
    elif params:
        raise ValueError("params= applies to a method name (e.g. model='cnn'); set the parameters of an estimator "
                         "instance when you build it")
    else:
        est = model
    if isinstance(est, CellTypeClassifier):
        return est.fit_adata(reference, label_key=label_key, layer=layer, genes=genes,
                             min_shared_genes=min_shared_genes)
    if not (hasattr(est, "fit") and hasattr(est, "predict_proba")):
        raise ValueError(f"model must be a method name ({', '.join(METHODS)}) or an estimator with fit and "
                         f"predict_proba (e.g. cellbook.baselines.HVGLogisticRegression()); got {type(est).__name__}")
    if "gene_names" not in inspect.signature(est.fit).parameters:
        raise ValueError(f"{type(est).__name__}.fit takes no gene_names: annotate matches genes by name, so the "
                         f"model must learn them (fit(X, y, gene_names=...), as the cellbook baselines do)")
    uses_layer = bool(layer) and layer in reference.layers
    X, y, names, shared = _reference_data(reference, label_key, layer, genes, min_shared_genes)
    X = _counts_matrix(X, "reference counts" + (f" (layers[{layer!r}])" if uses_layer else " (X)"))
    est.fit(X, y, gene_names=names)
    if hasattr(est, "cellbook_model_file_"):
        del est.cellbook_model_file_     # refitted: no longer the model of the file it was read from
    est.cellbook_training_ = {"n_cells": int(X.shape[0]), "n_genes_in": int(X.shape[1]), "label_key": label_key,
                              "layer": layer if uses_layer else "X",
                              "date_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), **shared}
    return est


# ------------------------------------------------------------------------------ model files
MODEL_FORMAT = "cellbook-model"
MODEL_FORMAT_VERSION = 1
_META, _STATE, _PICKLE = "cellbook_model.json", "state_dict.pt", "estimator.pkl"
_SAVE_FIX = "save the model again (model.save(path), cellbook.annotate.save_model, or cellbook annotate --model-out)"


def _jsonable(value):
    """``(JSON-safe copy, True)`` of plain data (numbers, text, lists, dicts, NumPy scalars / arrays),
    else ``(None, False)``."""
    if value is None or isinstance(value, (bool, str)):
        return value, True
    if isinstance(value, (int, np.integer)):
        return int(value), True
    if isinstance(value, (float, np.floating)):
        return float(value), True
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, (list, tuple)):
        out = [_jsonable(v) for v in value]
        return [v for v, _ in out], all(ok for _, ok in out)
    if isinstance(value, dict):
        out = {str(k): _jsonable(v) for k, v in value.items()}
        return {k: v for k, (v, _) in out.items()}, all(ok for _, ok in out.values())
    return None, False


def _versions() -> dict:
    import platform

    import sklearn

    from . import __version__ as cellbook_version

    return {"cellbook": cellbook_version, "torch": torch.__version__, "sklearn": sklearn.__version__,
            "numpy": np.__version__, "python": platform.python_version()}


def _model_genes(model) -> tuple[list[str] | None, list[str] | None]:
    """``(input genes, genes the model uses)`` of a fitted classifier, by name (``None`` when unnamed)."""
    if isinstance(model, CellTypeClassifier):
        fn = model.feature_names_in_
        return (None if fn is None else list(map(str, fn)),
                None if model.genes_ is None else list(map(str, model.genes_)))
    fn = getattr(model, "feature_names_in_", None)
    if fn is None:
        return None, None
    fn = list(map(str, fn))
    sel = getattr(model, "genes_", None)
    if sel is None:
        return fn, fn
    sel = np.asarray(sel)
    if sel.dtype.kind in "iu":
        return fn, [fn[i] for i in sel]
    if sel.dtype == bool and len(sel) == len(fn):
        return fn, [g for g, keep in zip(fn, sel) if keep]
    return fn, list(map(str, sel))


def _model_name(model) -> str:
    return model.name if isinstance(model, CellTypeClassifier) else type(model).__name__


def _training_info(model) -> dict:
    info = getattr(model, "training_", None) if isinstance(model, CellTypeClassifier) else None
    info = info if info is not None else getattr(model, "cellbook_training_", None)
    return dict(info or {})


def save_model(model, path, training: dict | None = None) -> Path:
    """Write a fitted classifier to one file (conventionally ``*.cbm``); returns the path.

    Works for :class:`CellTypeClassifier` (every architecture and ensemble) and for scikit-learn-style
    classifiers with gene names (the baselines in :mod:`cellbook.baselines`).  The file is a zip archive:
    ``cellbook_model.json`` (format version, the class, its constructor parameters, input and model
    genes, classes, transform, training metadata -- cells, label key, date -- and the cellbook, torch,
    scikit-learn, NumPy and Python versions) plus the weights: a torch state dict (``state_dict.pt``)
    for a CellTypeClassifier, the pickled estimator (``estimator.pkl``) otherwise.  ``training``
    adds to / overrides the training metadata.  Written atomically: a crash leaves any previous file.
    """
    import pickle
    import zipfile

    from .fsutil import atomic_path

    fitted = {}
    if isinstance(model, CellTypeClassifier):
        model._check_fitted()
        params, dropped = {}, []
        for k, v in model._init_params().items():
            j, good = _jsonable(v)
            if good:
                params[k] = j
            else:
                dropped.append(k)
        buf = io.BytesIO()
        torch.save({k: v.detach().cpu() for k, v in model.module_.state_dict().items()}, buf)
        kind, payload_name, payload = "torch", _STATE, buf.getvalue()
        transform = {"name": model.transform, "target_sum": 1e4 if model.transform == "log1p" else None,
                     "library_size": "sum over the cell's genes among the model's input genes"}
        fitted = {"gene_idx": model.gene_idx_.tolist(), "n_features_in": int(model.n_features_in_),
                  "fit_seconds": float(getattr(model, "fit_seconds_", 0.0)),
                  "histories": [_jsonable(h.to_dict("list"))[0] for h in getattr(model, "histories_", [])],
                  "dropped_params": dropped}
    else:
        if not (hasattr(model, "predict_proba") and hasattr(model, "classes_")):
            raise ValueError(f"save_model needs a fitted classifier with predict_proba and classes_ (a "
                             f"CellTypeClassifier or a cellbook baseline); got {type(model).__name__}, "
                             f"{'not fitted' if hasattr(model, 'predict_proba') else 'no predict_proba'}")
        try:
            payload = pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL)
        except (pickle.PicklingError, TypeError, AttributeError) as err:
            raise ValueError(f"{type(model).__name__} cannot be pickled ({err}); remove unpicklable attributes "
                             f"(e.g. lambdas) before saving") from None
        raw = model.get_params(deep=False) if hasattr(model, "get_params") else {}
        params = {k: j for k, (j, good) in ((k, _jsonable(v)) for k, v in raw.items()) if good}
        kind, payload_name = "sklearn", _PICKLE
        transform = {"name": "inside the pickled estimator", "counts": bool(getattr(model, "counts", True))}
    genes, model_genes = _model_genes(model)
    meta = {"format": MODEL_FORMAT, "format_version": MODEL_FORMAT_VERSION, "kind": kind,
            "class": f"{type(model).__module__}.{type(model).__qualname__}", "name": _model_name(model),
            "params": params, "genes": genes, "model_genes": model_genes,
            "classes": [str(c) for c in model.classes_], "transform": transform,
            "training": _jsonable({**_training_info(model), **(training or {})})[0],
            "versions": _versions(),
            "saved_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), "fitted": fitted}
    path = Path(path)
    with atomic_path(path) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as z:
            z.writestr(_META, json.dumps(meta, indent=1))
            z.writestr(payload_name, payload)
    return path


def _read_model_file(path: Path) -> tuple[dict, bytes]:
    import zipfile
    import zlib

    if not path.exists():
        raise FileNotFoundError(f"model file {path} does not exist")
    if path.is_dir():
        raise ValueError(f"model file {path} is a folder; give the .cbm file written by model.save(path)")
    not_model = (f"{path} is not a cellbook model file ({path.stat().st_size} bytes)")
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
            if _META not in names:
                raise ValueError(f"{not_model}: it is a zip archive without {_META}; give a file written by "
                                 f"model.save(path) or cellbook annotate --model-out")
            meta = json.loads(z.read(_META).decode("utf-8"))
            if not isinstance(meta, dict) or meta.get("format") != MODEL_FORMAT:
                raise ValueError(f"{not_model}: its {_META} does not describe a cellbook model")
            version = meta.get("format_version")
            if not isinstance(version, int) or version < 1:
                raise ValueError(f"{path}: unknown cellbook model format version {version!r}; {_SAVE_FIX}")
            if version > MODEL_FORMAT_VERSION:
                saved = (meta.get("versions") or {}).get("cellbook", "?")
                raise ValueError(f"{path} was written by a newer cellbook ({saved}, model format version {version}); "
                                 f"this cellbook reads format version {MODEL_FORMAT_VERSION}: upgrade cellbook, or "
                                 f"save the model again with this version")
            payload_name = {"torch": _STATE, "sklearn": _PICKLE}.get(meta.get("kind"))
            if payload_name is None or payload_name not in names:
                raise ValueError(f"{path}: the model file has no weights ({meta.get('kind')!r} model without "
                                 f"{payload_name or 'a known payload'}); it is incomplete: {_SAVE_FIX}")
            payload = z.read(payload_name)
    except zipfile.BadZipFile as err:
        raise ValueError(f"{not_model}: not a readable zip archive ({err}); it is truncated, corrupt or another kind "
                         f"of file: {_SAVE_FIX}") from None
    except (zlib.error, EOFError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: the model file is corrupt ({type(err).__name__}: {err}); {_SAVE_FIX}") from None
    return meta, payload


def load_model(path, device: str = "cpu"):
    """Read a model written by :func:`save_model` (or :meth:`CellTypeClassifier.save`).

    A :class:`CellTypeClassifier` is rebuilt from its saved constructor parameters, genes and classes,
    and its state dict is loaded onto ``device`` (``"cpu"``, ``"cuda"``, ``"auto"``); its predictions
    equal the saved model's.  Other classifiers are unpickled.  ``model_file_`` (on a CellTypeClassifier;
    ``cellbook_model_file_`` on others) holds the file's metadata.  A missing file is a
    ``FileNotFoundError``; a file that is not a cellbook model, truncated, corrupt or of a newer format
    version is a ``ValueError`` naming it.

    **Security**: like CellTypist's models (pickles), a model file must come from a source you trust:
    loading a baseline unpickles it, which can run arbitrary code (a CellTypeClassifier's weights are read
    with ``torch.load(weights_only=True)``).
    """
    import pickle

    from .config import resolve_device

    path = Path(path)
    meta, payload = _read_model_file(path)
    saved_versions = meta.get("versions") or {}
    if meta["kind"] == "sklearn":
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")   # scikit-learn's version warning: ours below names the file
                model = pickle.loads(payload)
        except Exception as err:  # noqa: BLE001 - unpickling raises anything (missing module, renamed class...)
            raise ValueError(f"{path}: the saved {meta.get('class')} could not be unpickled ({type(err).__name__}: "
                             f"{err}); it was saved with cellbook {saved_versions.get('cellbook', '?')}, "
                             f"scikit-learn {saved_versions.get('sklearn', '?')}: install those, or train and save "
                             f"the model again") from None
        import sklearn

        if saved_versions.get("sklearn") not in (None, sklearn.__version__):
            warnings.warn(f"{path} was saved with scikit-learn {saved_versions['sklearn']}; this is "
                          f"{sklearn.__version__}: predictions may differ", UserWarning, stacklevel=2)
        if not (hasattr(model, "predict_proba") and hasattr(model, "classes_")):
            raise ValueError(f"{path}: the unpickled {type(model).__name__} is not a fitted classifier")
        model.cellbook_model_file_ = {**meta, "path": str(path)}
        return model
    dev = resolve_device(device)
    try:
        state = torch.load(io.BytesIO(payload), map_location=dev, weights_only=True)
    except Exception as err:  # noqa: BLE001 - torch raises RuntimeError / UnpicklingError / EOFError for torn data
        raise ValueError(f"{path}: the model weights could not be read ({type(err).__name__}: "
                         f"{str(err).splitlines()[0] if str(err) else ''}); the file is corrupt: {_SAVE_FIX}") from None
    params = dict(meta.get("params") or {})
    params["device"] = device
    fitted = meta.get("fitted") or {}
    try:
        clf = CellTypeClassifier(**params)
        clf.n_features_in_ = int(fitted["n_features_in"])
        genes = meta.get("genes")
        clf.feature_names_in_ = None if genes is None else np.asarray(genes, dtype=object)
        clf.gene_idx_ = np.asarray(fitted["gene_idx"], dtype=np.int64)
        clf.genes_ = None if genes is None else np.asarray(genes).astype(str)[clf.gene_idx_]
        clf.classes_ = np.asarray(meta["classes"]).astype(str)
        n_in, n_cls = len(clf.gene_idx_), len(clf.classes_)
        with torch.random.fork_rng(devices=[]):   # building the modules must not move the caller's RNG
            members = [build_model(a, n_in, n_cls, **clf._kwargs_for(a)) for a in clf._member_archs()]
        if clf.ensemble in ("soft", "hard"):
            from .models.ensemble import VotingEnsemble

            module = VotingEnsemble(members, clf.ensemble)
        elif clf.ensemble == "joint":
            from .models.ensemble import JointEnsemble

            module = JointEnsemble(members)
        else:
            module = members[0]
        module.load_state_dict(state)
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        raise ValueError(f"{path}: the saved {meta.get('name', 'model')} could not be rebuilt "
                         f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}); the file is "
                         f"corrupt or from an incompatible cellbook ({saved_versions.get('cellbook', '?')}): "
                         f"{_SAVE_FIX}") from None
    module.to(dev).eval()
    tk = {k: v for k, v in clf.trainer_kwargs.items() if k in inspect.signature(Trainer.__init__).parameters}
    clf.trainer_ = Trainer(module, seed=clf.seed, device=device, **tk)
    clf.trainer_.classes_ = clf.classes_
    clf.trainer_._fitted = True
    clf.module_ = module
    clf.histories_ = [pd.DataFrame(h) for h in fitted.get("histories", [])] or [pd.DataFrame()]
    clf.fit_seconds_ = float(fitted.get("fit_seconds", 0.0))
    clf.n_parameters_ = count_parameters(module)
    clf.training_ = dict(meta.get("training") or {})
    clf._order_warned = False
    clf.model_file_ = {**meta, "path": str(path)}
    return clf


# ------------------------------------------------------------------- majority voting
def default_resolution(n_cells: int) -> float:
    """CellTypist's over-clustering resolution for ``n_cells`` cells: 5 (< 5k), 10 (< 20k), 15 (< 40k),
    20 (< 100k), 25 (< 200k), else 30."""
    for limit, res in ((5000, 5.0), (20000, 10.0), (40000, 15.0), (100000, 20.0), (200000, 25.0)):
        if n_cells < limit:
            return res
    return 30.0


def _snn_graph(P: np.ndarray, n_neighbors: int) -> sp.csr_matrix:
    """Shared-nearest-neighbour graph (Jaccard weights, pruned below 1/15, as Seurat's FindNeighbors)."""
    from sklearn.neighbors import NearestNeighbors

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
        import networkx as nx

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
    from sklearn.decomposition import PCA

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


# -------------------------------------------------------------------------------- annotate
def _predict_by_name(model, X, names: list[str], min_overlap: float):
    """``(proba, n model genes found, n model genes)`` for counts ``X`` whose genes are ``names``."""
    if isinstance(model, CellTypeClassifier):
        model._check_fitted()
        if model.genes_ is None:
            raise ValueError("the model was fitted without gene names (use fit_adata or fit(..., gene_names=...)); "
                             "annotate aligns genes by name")
        Z, n_found = model._aligned_features(X, names, "adata", min_overlap, stacklevel=5, checked=True)
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
                      UserWarning, stacklevel=4)
    if names != known:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")   # counted above, among the genes the model uses
            X, _ = align_genes(X, names, known, "adata", min_overlap=0.0)
    if "gene_names" in inspect.signature(model.predict_proba).parameters:
        proba = model.predict_proba(X, gene_names=known)
    else:
        proba = model.predict_proba(pd.DataFrame(X.toarray() if sp.issparse(X) else X, columns=known))
    return np.asarray(proba), n_found, n_model


def _resolve_model(model, reference, genes, *, label_key, layer, min_shared_genes, params, seed, device):
    """``(fitted model, {"source": ...})`` from what annotate was given."""
    if reference is not None:
        model = "logreg" if model is None else model
        if isinstance(model, os.PathLike) or (isinstance(model, str) and model not in METHODS
                                              and Path(model).is_file()):
            raise ValueError(f"with reference=, model is a method name ({', '.join(METHODS)}) or an estimator to fit, "
                             f"not the file {str(model)!r}; to annotate with a saved model file, leave reference out")
        t0 = time.perf_counter()
        fitted = fit_reference(reference, model, genes=genes, label_key=label_key, layer=layer,
                               min_shared_genes=min_shared_genes, params=params, seed=seed, device=device)
        return fitted, {"source": "trained on reference", "fit_seconds": round(time.perf_counter() - t0, 2),
                        "method": model if isinstance(model, str) else type(model).__name__}
    if params:
        raise ValueError("params= applies when a model is trained here (with reference=)")
    if model is None:
        raise ValueError("pass model= (a fitted classifier or a model file) or reference= (labelled cells to train "
                         "on, with model='logreg' or another method)")
    if isinstance(model, (str, os.PathLike)):
        if isinstance(model, str) and model in METHODS:
            raise ValueError(f"model={model!r} is a method name: give the labelled cells to train it on with "
                             f"reference=..., or pass a fitted model or a model file")
        return load_model(model, device=device), {"source": "model file", "model_file": str(model)}
    if not isinstance(model, CellTypeClassifier) and not hasattr(model, "predict_proba"):
        raise ValueError(f"model must be a fitted cellbook CellTypeClassifier, a fitted classifier with "
                         f"predict_proba, classes_ and gene names (e.g. cellbook.baselines.HVGLogisticRegression), "
                         f"a model file, or a method name with reference=; got {type(model).__name__}")
    meta = getattr(model, "model_file_" if isinstance(model, CellTypeClassifier) else "cellbook_model_file_", None)
    if meta:
        return model, {"source": "model file", "model_file": str(meta.get("path"))}
    return model, {"source": "fitted model"}


def _h5_safe(d: dict) -> dict:
    """``d`` without ``None`` values (nested), so that it can be written to .h5ad."""
    return {k: (_h5_safe(v) if isinstance(v, dict) else v) for k, v in d.items() if v is not None}


def annotate(adata, model=None, key_added: str = "predicted_cell_type", layer: str | None = "counts",
             min_overlap: float = 0.5, copy: bool = False, *, reference=None, label_key: str = "cell_type",
             threshold: float | None = None, majority_voting: bool = False, over_clustering=None,
             resolution: float | None = None, min_prop: float = 0.0, cluster_method: str = "louvain",
             min_shared_genes: int = MIN_SHARED_GENES, params: dict | None = None, seed: int = 0,
             device: str = "auto"):
    """Predict cell types for the cells of ``adata`` (raw counts; ``layers[layer]`` else ``X``).

    ``model``:

    * a fitted :class:`CellTypeClassifier`, or any fitted classifier with ``predict_proba``, ``classes_``
      and gene names (``feature_names_in_``; e.g. the baselines in :mod:`cellbook.baselines`);
    * a model file written by :func:`save_model` (read with :func:`load_model` on ``device``; only
      from a source you trust: it may unpickle);
    * with ``reference=`` (an AnnData of labelled cells, labels in ``obs[label_key]``): a method name
      (:data:`METHODS`, default ``"logreg"``; ``params`` go to its constructor, see :func:`make_model`)
      or an unfitted estimator, trained here by :func:`fit_reference` on the genes ``adata`` shares with
      the reference (at least ``min_shared_genes``), with ``seed``.

    Genes are matched by name.  Model genes missing from ``adata`` are filled with zeros and counted in
    a warning; if fewer than ``min_overlap`` (a share of the model's genes) are present, a ``ValueError``
    is raised.  Library sizes (log1p transform) are sums over ``adata``'s genes among the model's input
    genes, as at training (see :class:`CellTypeClassifier`).

    Writes ``obs[key_added]`` (label), ``obs[key_added + "_confidence"]`` (the top class probability) and
    ``uns[key_added]`` (model, genes found / missing, cells unassigned, how the model was had).
    ``threshold``: cells whose confidence is below it are labelled ``"Unassigned"`` (``None``: none).
    ``majority_voting``: the cells are over-clustered (:func:`over_cluster` with ``resolution``,
    ``cluster_method`` and ``seed``; or ``over_clustering``, an ``obs`` column name or one cluster id per
    cell, which turns majority voting on) and every cell of a cluster gets the cluster's majority label
    (:func:`majority_vote`; ``"Unassigned"`` takes part, a majority below ``min_prop`` gives
    ``"Heterogeneous"``): ``obs[key_added + "_majority_voting"]`` and ``obs[key_added + "_over_clustering"]``.
    Returns ``adata`` (or the copy).
    """
    if not (hasattr(adata, "obs") and hasattr(adata, "var_names")):
        raise ValueError(f"adata must be an AnnData of the cells to annotate; got {type(adata).__name__}")
    if not 0 < float(min_overlap) <= 1:
        raise ValueError(f"min_overlap must be in (0, 1], got {min_overlap}")
    if threshold is not None and not 0 <= float(threshold) <= 1:
        raise ValueError(f"threshold must be a probability in [0, 1] (or None), got {threshold}")
    if not 0 <= float(min_prop) <= 1:
        raise ValueError(f"min_prop must be in [0, 1], got {min_prop}")
    if not isinstance(key_added, str) or not key_added:
        raise ValueError(f"key_added must be a non-empty string, got {key_added!r}")
    if adata.n_obs == 0:
        raise ValueError("adata has no cells")
    names = list(map(str, adata.var_names))
    clusters = None
    if over_clustering is not None:
        majority_voting = True
        if isinstance(over_clustering, str):
            if over_clustering not in adata.obs:
                raise ValueError(f"over_clustering={over_clustering!r} is not a column of adata.obs; give a column "
                                 f"name, one cluster id per cell, or None (cluster here)")
            clusters = adata.obs[over_clustering].astype(str).to_numpy()
        else:
            clusters = np.asarray(over_clustering).astype(str)
            if clusters.shape != (adata.n_obs,):
                raise ValueError(f"over_clustering has {clusters.size} entries but adata has {adata.n_obs} cells")
    uses_layer = bool(layer) and layer in adata.layers
    X = _counts_matrix(adata.layers[layer] if uses_layer else adata.X,
                       "adata counts" + (f" (layers[{layer!r}])" if uses_layer else " (X)"))
    model, source = _resolve_model(model, reference, names, label_key=label_key, layer=layer,
                                   min_shared_genes=min_shared_genes, params=params, seed=seed, device=device)
    proba, n_found, n_model = _predict_by_name(model, X, names, float(min_overlap))
    classes = np.asarray(model.classes_).astype(str)
    conf = proba.max(1)
    labels = classes[proba.argmax(1)]
    if threshold is not None:
        labels = np.where(conf < float(threshold), UNASSIGNED, labels)
    categories = list(dict.fromkeys([*classes, *([UNASSIGNED] if threshold is not None else [])]))
    if copy:
        adata = adata.copy()
    adata.obs[key_added] = pd.Categorical(labels, categories=categories)
    adata.obs[f"{key_added}_confidence"] = conf
    info = {"model": _model_name(model), "model_class": f"{type(model).__module__}.{type(model).__qualname__}",
            "n_cells": int(adata.n_obs), "n_genes_model": int(n_model), "n_genes_found": int(n_found),
            "n_genes_missing": int(n_model - n_found), "n_genes_query": len(names),
            "layer": layer if uses_layer else "X", "threshold": None if threshold is None else float(threshold),
            "n_unassigned": int((labels == UNASSIGNED).sum()) if threshold is not None else 0,
            "majority_voting": bool(majority_voting), **source,
            "training": _jsonable(_training_info(model))[0]}
    if majority_voting:
        if clusters is None:
            clusters, oc = _over_cluster_matrix(X, resolution, method=cluster_method, seed=seed)
        else:
            oc = {"method": "given", "n_clusters": int(len(np.unique(clusters)))}
        voted = majority_vote(labels, clusters, conf, min_prop)
        order = sorted(np.unique(clusters), key=lambda c: (len(c), c))   # "2" before "10"
        adata.obs[f"{key_added}_over_clustering"] = pd.Categorical(clusters, categories=order)
        vcats = [c for c in [*categories, HETEROGENEOUS] if c in set(voted) or c in categories]
        adata.obs[f"{key_added}_majority_voting"] = pd.Categorical(voted, categories=vcats)
        info["over_clustering"] = {**oc, "min_prop": float(min_prop),
                                   "n_changed": int((voted != labels).sum())}
    adata.uns[key_added] = _h5_safe(info)
    return adata


def summary(adata, key_added: str = "predicted_cell_type") -> pd.DataFrame:
    """Cells per predicted label (and per majority-voted label, when there is one), largest first."""
    if key_added not in adata.obs:
        raise ValueError(f"obs[{key_added!r}] is missing: run annotate(adata, ..., key_added={key_added!r}) first")
    table = pd.DataFrame({"cells": adata.obs[key_added].astype(str).value_counts()})
    mv = f"{key_added}_majority_voting"
    if mv in adata.obs:
        table = table.join(pd.DataFrame({"majority_voting": adata.obs[mv].astype(str).value_counts()}), how="outer")
        table = table.fillna(0).astype(int)
    table.index.name = "label"
    return table.sort_values(list(table.columns), ascending=False, kind="mergesort")


# Coarse lineages shared by the van Galen 2019 bone-marrow labels and GSE194122's fine labels, for
# cross-dataset checks (labels not listed map to None and are left out of the comparison).
LINEAGES_VANGALEN = {
    "HSC": "stem/progenitor", "Prog": "stem/progenitor", "GMP": "myeloid", "ProMono": "myeloid", "Mono": "myeloid",
    "cDC": "dendritic", "pDC": "dendritic", "earlyEry": "erythroid", "lateEry": "erythroid", "ProB": "B",
    "B": "B", "Plasma": "B", "T": "T/NK", "CTL": "T/NK", "NK": "T/NK",
}
LINEAGE_RULES_GSE194122 = [  # (whole word of the GSE194122 label, lineage), first match wins
    ("HSC", "stem/progenitor"), ("MK/E", "stem/progenitor"), ("G/M", "myeloid"), ("Mono", "myeloid"),
    ("cDC1", "dendritic"), ("cDC2", "dendritic"), ("pDC", "dendritic"), ("Proerythroblast", "erythroid"),
    ("Erythroblast", "erythroid"), ("Normoblast", "erythroid"), ("Reticulocyte", "erythroid"), ("B", "B"),
    ("Plasma", "B"), ("Plasmablast", "B"), ("NK", "T/NK"), ("ILC", "T/NK"), ("ILC1", "T/NK"), ("T", "T/NK"),
    ("MAIT", "T/NK"), ("gdT", "T/NK"),
]


def to_lineage(labels, mapping=None) -> np.ndarray:
    """Map cell-type labels to coarse lineages: a dict (exact labels) or ``(word, lineage)`` rules.

    With ``mapping=None`` the van Galen dict is tried first, then the GSE194122 rules (matched on whole
    words, so "integrinB7+" is not "B"); labels that match nothing (e.g. "Lymph prog") give None.
    """
    out = []
    for lab in np.asarray(labels).astype(str):
        if isinstance(mapping, dict):
            out.append(mapping.get(lab))
            continue
        if mapping is None and lab in LINEAGES_VANGALEN:
            out.append(LINEAGES_VANGALEN[lab])
            continue
        words = set(lab.split())
        rules = LINEAGE_RULES_GSE194122 if mapping is None else mapping
        out.append(next((lin for key, lin in rules if key in words), None))
    return np.array(out, dtype=object)
