"""Model input and predictions of a :class:`~cellbook.annotation.CellTypeClassifier` (a mixin of it)."""
from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..preprocess.scrna import align_genes, matrix_and_names
from ..train import NotFittedError
from ._data import _counts_matrix


class _Predicting:
    """Features, probabilities, labels and attention weights; names derived from the parameters."""

    # ------------------------------------------------------------ derived from the parameters
    def _architectures(self) -> list[str]:
        arch = self.architecture
        return [arch] if isinstance(arch, str) else list(arch)

    def _resolved_ensemble(self):
        """``ensemble``, or ``"joint"`` for a list of architectures given without one."""
        if len(self._architectures()) > 1 and self.ensemble is None:
            return "joint"
        return self.ensemble

    @property
    def n_members(self) -> int:
        archs = self._architectures()
        if self._resolved_ensemble() is None:
            return 1
        return len(archs) if len(archs) > 1 else int(self.k)

    def _member_archs(self) -> list[str]:
        archs = self._architectures()
        if len(archs) > 1:
            return archs
        return archs * self.n_members

    @property
    def name(self) -> str:
        arch = "+".join(a.upper().replace("_ATT", "+att") for a in self._architectures())
        ensemble = self._resolved_ensemble()
        return arch if ensemble is None else f"{arch} ensemble ({ensemble})"

    # ----------------------------------------------------------------------------- features
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

    def _check_fitted(self, fitting: bool = False):
        if not hasattr(self, "module_") and not fitting:
            raise NotFittedError(f"this CellTypeClassifier ({self.name}) is not fitted yet; call fit(X, y) or "
                                 f"fit_adata(adata) before predict / predict_proba / annotate")

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "module_")

    def _aligned_features(self, X, names, what: str = "X", min_overlap: float = 0.5, stacklevel: int = 4,
                          checked: bool = False):
        """Model input for counts ``X`` whose columns are the genes ``names``, matched by name.

        The model's genes missing from ``names`` are zeros (warned); library sizes (log1p) are taken
        over ``X``'s genes that the model was fitted on (see ``transform``).  ``(features, n model genes
        found)``.  ``checked``: ``X`` already went through the count checks.
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

    # ---------------------------------------------------------------------------- predict
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
        """Predicted labels for ``X`` (as in :meth:`predict_proba`): the most probable class of ``classes_`` per
        cell, in the training labels' type (integers for integer labels); no threshold is applied (an
        ``"Unassigned"`` label is :func:`~cellbook.annotation.annotate`'s, written to ``.obs``)."""
        proba = self.predict_proba(X, gene_names, layer)
        return self.classes_[proba.argmax(1)]

    def attention(self, X, gene_names: Sequence[str] | None = None, layer: str | None = "counts") -> pd.DataFrame:
        """Attention weights of an LSTM + attention model: one row per cell, one column per gene chunk.

        ``X`` as in :meth:`predict_proba`.  Computed on the model's own device, batch by batch.
        Columns are named by the chunk's first and last gene; each row sums to 1.
        """
        self._check_fitted()
        if self._architectures() != ["lstm_att"] or self._resolved_ensemble() is not None:
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
