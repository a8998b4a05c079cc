"""The field's anchors, optional: scANVI (scvi-tools) and SingleR (BiocPy's ``singler``).

Both packages are an extra (``pip install 'cellbook[anchors]'``) and are imported only when a model is fitted;
:func:`missing_package` says, without importing anything, whether one is absent (the model zoo then leaves its
entry out and the chapters print the note).
"""
from __future__ import annotations

import contextlib
import importlib
import importlib.util
import io
import logging
import warnings

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..preprocess.scrna import log_normalize
from ..splits import check_labels
from ..validation import SEED, Interval, Options
from ._expression import _ExpressionClassifier, _hvg, torch_threads

#: The optional models: kind -> (module imported, pip package).
ANCHORS = {"scanvi": ("scvi", "scvi-tools"), "singler": ("singler", "singler")}
_NAMES = {"scanvi": "scANVI", "singler": "SingleR"}
INSTALL_HINT = "pip install 'cellbook[anchors]'"


def missing_package(kind: str) -> str | None:
    """``None`` when the package of the optional model ``kind`` ("scanvi", "singler") is installed; otherwise why
    not, as a clause ("scvi-tools is not installed (pip install 'cellbook[anchors]')").  Nothing is imported."""
    module, package = ANCHORS[kind]
    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):        # a parent package missing, or a module entry set to None
        found = False
    return None if found else f"{package} is not installed ({INSTALL_HINT})"


def _require(kind: str):
    """The optional model's package, imported now; an ``ImportError`` with the install hint when it is absent."""
    module, package = ANCHORS[kind]
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ImportError(f"{_NAMES[kind]} needs {package}, which is not installed: {INSTALL_HINT}") from err


def make_anchor(kind: str, seed: int = 0, **params):
    """A fresh, unfitted optional model: ``"scanvi"`` (:class:`ScanviClassifier`) or ``"singler"``
    (:class:`SingleRClassifier`).  Building one needs no package; fitting does."""
    return {"scanvi": ScanviClassifier, "singler": SingleRClassifier}[kind](seed=seed, **params)


class ScanviClassifier(_ExpressionClassifier):
    """scANVI (Xu et al. 2021) as scvi-tools documents it: SCVI, then SCANVI from it, on raw counts.

    ``fit`` keeps the ``n_top_genes`` highly variable genes of the training cells (``None``: every gene; chosen on
    their log1p counts per 1e4, the counts themselves go to the model), trains ``scvi.model.SCVI`` with its
    defaults (``n_latent`` 10, one hidden layer of 128, ZINB) and early stopping on its validation split, then
    ``SCANVI.from_scvi_model`` with every training cell labelled, trained with scvi-tools' defaults (its epoch
    heuristic for a pretrained model, 100 cells sampled per label each epoch).  ``max_epochs`` caps both trainings
    (``None``: scvi-tools' heuristic, 400 epochs for fewer than 20,000 cells).  Only the training cells are seen.
    ``predict_proba`` maps new cells with the trained model (``SCANVI.predict(adata, soft=True)``: the classifier's
    posterior, columns in ``classes_`` order); the new cells are not trained on, as for every model of the zoo.

    Attributes: ``genes_``, ``model_`` (the SCANVI model), ``classes_``, ``n_parameters_``, ``n_epochs_``
    (``{"scvi": ..., "scanvi": ...}``: epochs trained).  Not a model file (``save_model`` refuses it).
    """

    _parameter_constraints = {"n_top_genes": [None, Interval(int, 1, None)],
                              "max_epochs": [None, Interval(int, 1, None)],
                              "early_stopping": bool, "batch_size": Interval(int, 2, None),
                              "accelerator": Options("auto", "cpu", "gpu"), "seed": SEED}

    def __init__(self, n_top_genes: int | None = 2000, max_epochs: int | None = None, early_stopping: bool = True,
                 batch_size: int = 128, accelerator: str = "auto", seed: int = 0):
        self.n_top_genes, self.max_epochs, self.early_stopping = n_top_genes, max_epochs, early_stopping
        self.batch_size, self.accelerator, self.seed = batch_size, accelerator, seed

    _UNLABELED = "__unlabeled__"

    def _adata(self, X, labels):
        import anndata as ad

        Z = sp.csr_matrix(X[:, self.genes_], dtype=np.float32)
        obs = pd.DataFrame({"label": pd.Categorical(labels)}, index=[f"c{i}" for i in range(Z.shape[0])])
        return ad.AnnData(X=Z, obs=obs, var=pd.DataFrame(index=[f"g{j}" for j in self.genes_]))

    def _train_kwargs(self) -> dict:
        return dict(max_epochs=self.max_epochs, batch_size=int(self.batch_size), accelerator=self.accelerator,
                    enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False)

    def _fit(self, X, y):
        scvi = _require("scanvi")
        check_labels(y, what="y")
        self.classes_ = np.unique(y)
        self.genes_ = _hvg(log_normalize(sp.csr_matrix(X)), self.n_top_genes)
        codes = np.searchsorted(self.classes_, y).astype(str)        # class indices as text: scvi's categories
        adata = self._adata(X, codes)
        with _quiet():
            scvi.settings.seed = int(self.seed)
            scvi.model.SCVI.setup_anndata(adata, labels_key="label")
            vae = scvi.model.SCVI(adata)
            vae.train(early_stopping=bool(self.early_stopping), **self._train_kwargs())
            model = scvi.model.SCANVI.from_scvi_model(vae, unlabeled_category=self._UNLABELED, labels_key="label")
            model.train(early_stopping=bool(self.early_stopping), **self._train_kwargs())
        self.model_ = model
        self.n_epochs_ = {"scvi": int(len(vae.history["elbo_train"])), "scanvi": int(len(model.history["elbo_train"]))}
        self.n_parameters_ = int(sum(p.numel() for p in model.module.parameters()))

    def _proba(self, X):
        adata = self._adata(X, [self._UNLABELED] * X.shape[0])
        with _quiet():
            soft = self.model_.predict(adata, soft=True)
        codes = [str(i) for i in range(len(self.classes_))]
        P = pd.DataFrame(soft).reindex(columns=codes, fill_value=0.0).to_numpy(dtype=np.float64)
        return P / P.sum(axis=1, keepdims=True)


class _quiet:
    """scvi-tools and Lightning without their progress lines, device notes, data-loader hints and printed
    early-stopping verdicts."""

    _LOGGERS = ("scvi", "lightning", "lightning.pytorch", "pytorch_lightning", "lightning.fabric")

    def __enter__(self):
        self._stdout = contextlib.redirect_stdout(io.StringIO())   # the early-stopping callback prints its verdict
        self._stdout.__enter__()
        self._levels = {name: logging.getLogger(name).level for name in self._LOGGERS}
        for name in self._LOGGERS:
            logging.getLogger(name).setLevel(logging.ERROR)
        self._warnings = warnings.catch_warnings()
        self._warnings.__enter__()
        for message in (".*does not have many workers.*", ".*num_workers.*", ".*GPU available.*",
                        ".*TPU available.*", ".*LOCAL_RANK.*", ".*on_train_epoch_end.*", ".*not on the GPU.*",
                        ".*smaller than the logging interval.*"):
            warnings.filterwarnings("ignore", message=message)
        for category in (DeprecationWarning, FutureWarning):     # the libraries' own API changes, not the user's
            warnings.filterwarnings("ignore", category=category, module=r"(lightning|pytorch_lightning|scvi)\.")
        return self

    def __exit__(self, *exc):
        self._stdout.__exit__(*exc)
        self._warnings.__exit__(*exc)
        for name, level in self._levels.items():
            logging.getLogger(name).setLevel(level)
        return False


def _code(i: int) -> str:
    """The text label SingleR gets for class index ``i`` (singler takes text labels and gene names)."""
    return f"c{int(i)}"


class SingleRClassifier(_ExpressionClassifier):
    """SingleR (Aran et al. 2019) through BiocPy's ``singler``: Spearman correlation to the reference cells of
    each type, on the markers of each pair of types.

    The reference is the training cells: log1p counts per ``target_sum`` of their ``n_top_genes`` highly
    variable genes (``None``: every gene); ``singler.train_single`` finds the "classic" markers between each
    pair of types (``num_de`` per pair; ``None``: SingleR's default) and, with ``aggregate=True``, first averages
    each type's cells into a few pseudo-bulk profiles.  ``singler.classify_single`` scores each new cell
    against each type (the ``quantile`` of its correlations to that type's reference profiles), then fine-tunes
    among the types within ``fine_tune_threshold`` of the best (``fine_tune``).

    SingleR gives a label, not probabilities: ``predict_proba`` is 1 for SingleR's label and 0 elsewhere (so
    ``predict`` is that label); :meth:`decision_function` gives the per-type scores (correlations).
    Attributes: ``genes_``, ``model_`` (SingleR's markers: ``model_["c<a>"]["c<b>"]``, the genes ``"g<j>"`` up in
    ``classes_[a]`` against ``classes_[b]``, ``j`` indexing ``genes_``), ``ref_`` (the reference matrix, genes x
    cells), ``classes_``,
    ``n_parameters_`` (marker genes used).  Not a model file (``save_model`` refuses it).
    """

    _parameter_constraints = {"n_top_genes": [None, Interval(int, 1, None)],
                              "target_sum": Interval(float, 0, None, closed="neither"),
                              "num_de": [None, Interval(int, 1, None)], "aggregate": bool,
                              "quantile": Interval(float, 0, 1, closed="both"), "fine_tune": bool,
                              "fine_tune_threshold": Interval(float, 0, None), "n_jobs": [None, Interval(int, 1, None)],
                              "seed": SEED}

    def __init__(self, n_top_genes: int | None = 2000, target_sum: float = 1e4, num_de: int | None = None,
                 aggregate: bool = False, quantile: float = 0.8, fine_tune: bool = True,
                 fine_tune_threshold: float = 0.05, n_jobs: int | None = None, seed: int = 0):
        self.n_top_genes, self.target_sum, self.num_de, self.aggregate = n_top_genes, target_sum, num_de, aggregate
        self.quantile, self.fine_tune, self.fine_tune_threshold = quantile, fine_tune, fine_tune_threshold
        self.n_jobs, self.seed = n_jobs, seed

    def _threads(self) -> int:
        return int(self.n_jobs) if self.n_jobs is not None else torch_threads()

    def _log(self, X) -> np.ndarray:
        """Genes x cells (SingleR's orientation): log1p counts per ``target_sum`` at the used genes."""
        Z = log_normalize(sp.csr_matrix(X, dtype=np.float64), self.target_sum)[:, self.genes_]
        return np.ascontiguousarray(Z.toarray().T, dtype=np.float64)

    def _fit(self, X, y):
        _require("singler")
        check_labels(y, what="y")
        self.classes_ = np.unique(y)
        self.genes_ = _hvg(log_normalize(sp.csr_matrix(X), self.target_sum), self.n_top_genes)
        self.ref_ = self._log(X)
        self.ref_labels_ = [_code(i) for i in np.searchsorted(self.classes_, y)]
        self._trained = self._train()
        self.model_ = {str(a): {str(b): [str(g) for g in genes] for b, genes in inner.items()}
                       for a, inner in self._trained.markers.items()}
        self.n_parameters_ = int(len(self._trained.marker_subset()))

    def _train(self, markers=None):
        import singler

        features = [f"g{j}" for j in range(self.ref_.shape[0])]       # singler wants text names and labels
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            # a fresh float64 array: mattress refuses an unpickled array's dtype object (pybind11 compares types)
            ref = np.asarray(self.ref_, dtype=np.float64).astype(np.float64)
            return singler.train_single(ref, self.ref_labels_, features, markers=markers,
                                        num_de=self.num_de, aggregate=bool(self.aggregate),
                                        aggregate_args={"seed": int(self.seed)} if self.aggregate else {},
                                        num_threads=self._threads())

    def __getstate__(self):
        """The state without SingleR's built reference (a C++ object); rebuilt from the markers when needed."""
        state = dict(super().__getstate__())
        state.pop("_trained", None)
        return state

    def _classify(self, X):
        import singler

        if getattr(self, "_trained", None) is None:
            self._trained = self._train(markers=self.model_)
        out = singler.classify_single(self._log(X), self._trained, quantile=float(self.quantile),
                                      use_fine_tune=bool(self.fine_tune),
                                      fine_tune_threshold=float(self.fine_tune_threshold), num_threads=self._threads())
        return out

    def decision_function(self, X, gene_names=None) -> np.ndarray:
        """SingleR's per-type scores ``(cells, classes)`` before fine-tuning, in ``classes_`` order."""
        out = self._classify(self._predict_input(X, gene_names))
        scores = out.get_column("scores")
        return np.column_stack([np.asarray(scores.get_column(_code(i)), dtype=np.float64)
                                for i in range(len(self.classes_))])

    def _proba(self, X):
        index = {_code(i): i for i in range(len(self.classes_))}
        best = np.array([index[b] for b in self._classify(X).get_column("best")], dtype=np.int64)
        P = np.zeros((X.shape[0], len(self.classes_)))
        P[np.arange(X.shape[0]), best] = 1.0
        return P
