"""Cell-type classifiers on raw counts, and annotation of new cells by gene name.

:class:`CellTypeClassifier` is the whole Part I pipeline in one scikit-learn-style estimator:
gene selection learned on the training cells only (genes detected in ``min_cells_per_gene``
cells, optionally the ``n_genes`` most variable of them), an input transform (``"counts"`` = raw
counts as in the paper, ``"log1p"`` = log1p of counts per 10k), a torch model from
:mod:`cellbook.models` (single, jointly trained ensemble, or independently trained members with
soft / hard voting), trained by :class:`cellbook.Trainer`.

:func:`annotate` applies a fitted classifier to an AnnData of new cells: genes are aligned by
name (missing genes are filled with zeros and counted in a warning; too few shared genes is an
error), and the predicted label and its confidence (the top class probability) go to ``adata.obs``.

    clf = CellTypeClassifier("cnn", ensemble="joint", k=5, transform="counts", max_epochs=30).fit_adata(train)
    cellbook.annotate(new_cells, clf)          # new_cells.obs["predicted_cell_type"], ..._confidence
"""
from __future__ import annotations

import time
import warnings
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
        Raw counts (the paper) or log1p of counts per 10k (library size over all the cell's genes).
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

    def fit_adata(self, adata, label_key: str = "cell_type", layer: str | None = "counts") -> "CellTypeClassifier":
        """Fit on an AnnData: raw counts from ``layers[layer]`` (else ``X``), labels from ``obs[label_key]``."""
        if label_key not in adata.obs:
            raise ValueError(f"obs[{label_key!r}] is missing; columns present: {', '.join(map(str, adata.obs.columns))}")
        X = adata.layers[layer] if layer and layer in adata.layers else adata.X
        y = as_labels(adata.obs[label_key].to_numpy(), f"obs[{label_key!r}]", names=adata.obs_names)
        return self.fit(X, y, gene_names=list(adata.var_names))

    # ------------------------------------------------------------------ predict
    def _check_fitted(self, fitting: bool = False):
        if not hasattr(self, "module_") and not fitting:
            raise NotFittedError(f"this CellTypeClassifier ({self.name}) is not fitted yet; call fit(X, y) or "
                                 f"fit_adata(adata) before predict / predict_proba / annotate")

    def _aligned_features(self, X, names, what: str = "X", min_overlap: float = 0.5, stacklevel: int = 4,
                          checked: bool = False):
        """Model input for counts ``X`` whose columns are the genes ``names``, matched by name.

        The model's genes missing from ``names`` are zeros (warned); library sizes (log1p) are taken
        over all of ``X``'s genes.  ``(features, n model genes found)``.  ``checked``: ``X`` already went
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
        totals = np.asarray(X.sum(axis=1)).ravel()
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

    @property
    def history(self) -> pd.DataFrame:
        """Training history (per epoch) of the model, or of the first member for voting ensembles."""
        self._check_fitted()
        return self.histories_[0]

    @property
    def name(self) -> str:
        arch = "+".join(a.upper().replace("_ATT", "+att") for a in self.architectures)
        return arch if self.ensemble is None else f"{arch} ensemble ({self.ensemble})"


def annotate(adata, model: CellTypeClassifier, key_added: str = "predicted_cell_type", layer: str | None = "counts",
             min_overlap: float = 0.5, copy: bool = False):
    """Predict cell types for the cells of ``adata`` with a fitted :class:`CellTypeClassifier`.

    Genes are matched by name (``adata.var_names`` against the genes the model was trained on).
    Model genes missing from ``adata`` are filled with zeros and counted in a warning; if fewer
    than ``min_overlap`` (a share of the model's genes) are present, a ``ValueError`` is raised.
    Library sizes for the log1p transform are taken over all of ``adata``'s genes.

    Writes ``obs[key_added]`` (label), ``obs[key_added + "_confidence"]`` (top class probability)
    and ``uns[key_added]`` (gene-overlap summary).  Returns ``adata`` (or the copy).
    """
    if not isinstance(model, CellTypeClassifier):
        raise ValueError(f"model must be a fitted cellbook CellTypeClassifier, got {type(model).__name__}")
    model._check_fitted()
    if model.genes_ is None:
        raise ValueError("the model was fitted without gene names (use fit_adata or fit(..., gene_names=...)); "
                         "annotate aligns genes by name")
    if not 0 < float(min_overlap) <= 1:
        raise ValueError(f"min_overlap must be in (0, 1], got {min_overlap}")
    if adata.n_obs == 0:
        raise ValueError("adata has no cells")
    if copy:
        adata = adata.copy()
    X = adata.layers[layer] if layer and layer in adata.layers else adata.X
    what = "adata counts" + (f" (layers[{layer!r}])" if layer and layer in adata.layers else " (X)")
    X = _counts_matrix(X, what)
    Z, n_found = model._aligned_features(X, list(adata.var_names.astype(str)), "adata", min_overlap, stacklevel=4,
                                         checked=True)
    n_model = len(model.genes_)
    proba = model.predict_proba(None, _features=Z)
    adata.obs[key_added] = pd.Categorical(model.classes_[proba.argmax(1)], categories=model.classes_)
    adata.obs[f"{key_added}_confidence"] = proba.max(1)
    adata.uns[key_added] = {"model": model.name, "n_genes_model": n_model, "n_genes_found": n_found,
                            "n_genes_missing": n_model - n_found}
    return adata


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
