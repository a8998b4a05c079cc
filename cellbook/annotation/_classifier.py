"""CellTypeClassifier: gene selection + input transform + torch model (+ ensemble), a scikit-learn estimator."""
from __future__ import annotations

import datetime as _dt
import inspect
import io
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils import TransformerTags
from sklearn.utils.multiclass import check_classification_targets

from ..baselines._expression import label_values
from ..config import resolve_device
from ..datasets.scrna import check_unique_genes
from ..models.cnn1d import CNN1D
from ..models.ensemble import JointEnsemble, VotingEnsemble
from ..models.mlp import MLP
from ..models.recurrent import LSTMClassifier
from ..preprocess.scrna import genes_detected, highly_variable, log_normalize, matrix_and_names
from ..splits import check_labels, check_missing
from ..train import Trainer, count_parameters
from ..train._settings import TRAINER_CONSTRAINTS
from ..validation import Interval, InvalidParameterError, Options, check_params
from ._data import MIN_SHARED_GENES, _counts_matrix, _reference_data
from ._file_format import (
    _SAVE_FIX,
    _STATE,
    _jsonable,
    class_labels_meta,
    classes_from_meta,
    read_model_file,
    write_model_file,
)
from ._predicting import _Predicting

ARCHITECTURES = ("mlp", "cnn", "lstm", "lstm_att")
ENSEMBLES = (None, "joint", "soft", "hard")
TRANSFORMS = ("counts", "log1p")
# The paper's optimiser settings (section 2.3): the defaults of CellTypeClassifier's training parameters.
PAPER_TRAINING = dict(batch_size=128, lr=5e-4, optimizer="adam", lr_step=200, lr_gamma=0.9)
# The parameters of CellTypeClassifier that go to the Trainer, by name.
TRAINER_PARAMS = ("max_epochs", "batch_size", "lr", "optimizer", "weight_decay", "lr_step", "lr_gamma",
                  "val_fraction", "patience", "label_smoothing", "class_weight", "amp", "resident", "graphs",
                  "predict_batch_size", "progress", "augment", "checkpoint", "monitor")
_MEMBER_CLASSES = {"mlp": MLP, "cnn": CNN1D, "lstm": LSTMClassifier, "lstm_att": LSTMClassifier}
_SET_BY_BUILD = {"self", "n_genes", "n_classes", "attention"}    # member arguments model_kwargs cannot give
# What each parameter of CellTypeClassifier takes (the Trainer's settings as the Trainer declares them);
# ``architecture`` as a list is checked name by name, ``model_kwargs``' keys against the member constructors.
CONSTRAINTS = {
    "architecture": [Options(*ARCHITECTURES), list, tuple], "ensemble": Options(*ENSEMBLES),
    "k": Interval(int, 1, None), "transform": Options(*TRANSFORMS), "n_genes": [None, Interval(int, 1, None)],
    "min_cells_per_gene": Interval(int, 0, None), "model_kwargs": [None, dict],
    "seed": TRAINER_CONSTRAINTS["seed"], "device": TRAINER_CONSTRAINTS["device"],
    **{name: TRAINER_CONSTRAINTS[name] for name in TRAINER_PARAMS},
}


def _class_labels(y) -> np.ndarray:
    """The training labels in their own type: integers, booleans and numbers stay so (:func:`label_values`;
    a continuous target is refused as scikit-learn refuses it), anything else becomes text (as always)."""
    y = label_values(check_missing(y, "y"))
    if y.dtype.kind in "iubf":
        check_classification_targets(y)
        return y
    return y.astype(str)


def build_model(architecture: str, n_genes: int, n_classes: int, **kwargs) -> torch.nn.Module:
    """One member network: ``"mlp"``, ``"cnn"``, ``"lstm"`` or ``"lstm_att"`` (LSTM + attention)."""
    if architecture == "mlp":
        return MLP(n_genes, n_classes, **kwargs)
    if architecture == "cnn":
        return CNN1D(n_genes, n_classes, **kwargs)
    if architecture in ("lstm", "lstm_att"):
        return LSTMClassifier(n_genes, n_classes, attention=architecture == "lstm_att", **kwargs)
    raise ValueError(f"unknown architecture {architecture!r}; valid: {', '.join(ARCHITECTURES)}")


def _member_params(arch: str) -> set:
    """The arguments ``model_kwargs`` may give a member of architecture ``arch``."""
    return set(inspect.signature(_MEMBER_CLASSES[arch].__init__).parameters) - _SET_BY_BUILD


class CellTypeClassifier(_Predicting, ClassifierMixin, BaseEstimator):
    """Gene selection + input transform + torch model (+ ensemble), trained with the Trainer.

    A scikit-learn estimator: ``clone``, ``get_params`` / ``set_params``, ``cross_val_score`` and
    ``Pipeline`` work; the parameters are checked by :meth:`fit` against ``_parameter_constraints`` (a wrong
    value is an ``InvalidParameterError`` naming it, before any work).

    Labels keep their own type: integer labels give integer ``classes_`` and predictions (booleans and
    numbers likewise), text gives text, a pandas Categorical gives its values (the categories seen, sorted
    as ``numpy.unique`` sorts them; not a Categorical).  ``predict`` returns a label of ``classes_`` for every
    cell: it applies no threshold (:func:`~cellbook.annotation.annotate` does, writing text labels with
    ``"Unassigned"`` to ``.obs``).  A model file keeps the labels' type.

    Parameters
    ----------
    architecture : str or list of str
        ``"mlp"``, ``"cnn"``, ``"lstm"``, ``"lstm_att"``; a list (e.g. ``["cnn", "lstm"]``) makes a
        mixed ensemble with one member of each (``k`` is then ignored; ``ensemble=None`` means ``"joint"``).
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
    min_cells_per_gene : int
        A gene is kept only if it is detected in at least this many training cells.
    model_kwargs : dict or None
        Arguments of the member constructors (:mod:`cellbook.models`): flat keys go to every member whose
        constructor takes them (e.g. ``{"chunk": 100}`` reaches the LSTMs only); a key that is an
        architecture name holds that architecture's own arguments (``{"mlp": {"hidden": (512, 256)}}``).
    seed, device
        Seed of the weights and of the Trainer (members of a voting ensemble: ``seed*1000 + i``); the
        torch device (``"auto"``, ``"cpu"``, ``"cuda"``).
    max_epochs, batch_size, lr, optimizer, weight_decay, lr_step, lr_gamma, val_fraction, patience, \
label_smoothing, class_weight, amp, resident, graphs, predict_batch_size, progress, augment, checkpoint, monitor
        The :class:`cellbook.Trainer`'s settings; the defaults are the paper's (batch 128, Adam, lr 5e-4,
        x0.9 every 200 iterations) and the Trainer's own otherwise, without a progress bar.
    """

    _parameter_constraints = CONSTRAINTS

    def __init__(self, architecture: str | Sequence[str] = "cnn", ensemble: str | None = None, k: int = 5,
                 transform: str = "log1p", n_genes: int | None = 2000, min_cells_per_gene: int = 3,
                 model_kwargs: dict | None = None, seed: int = 0, device: str = "auto", *, max_epochs: int = 20,
                 batch_size: int = 128, lr: float = 5e-4, optimizer: str = "adam", weight_decay: float = 0.0,
                 lr_step: int | None = 200, lr_gamma: float = 0.9, val_fraction: float = 0.1,
                 patience: int | None = 5, label_smoothing: float = 0.0, class_weight=None, amp: bool = True,
                 resident: bool | str = "auto", graphs: bool | None = None, predict_batch_size: int = 1024,
                 progress: bool | None = False, augment=None, checkpoint: str | None = None, monitor: str = "val"):
        self.architecture, self.ensemble, self.k, self.transform = architecture, ensemble, k, transform
        self.n_genes, self.min_cells_per_gene, self.model_kwargs = n_genes, min_cells_per_gene, model_kwargs
        self.seed, self.device = seed, device
        self.max_epochs, self.batch_size, self.lr, self.optimizer = max_epochs, batch_size, lr, optimizer
        self.weight_decay, self.lr_step, self.lr_gamma = weight_decay, lr_step, lr_gamma
        self.val_fraction, self.patience, self.label_smoothing = val_fraction, patience, label_smoothing
        self.class_weight, self.amp, self.resident, self.graphs = class_weight, amp, resident, graphs
        self.predict_batch_size, self.progress, self.augment = predict_batch_size, progress, augment
        self.checkpoint, self.monitor = checkpoint, monitor

    @property
    def trainer_kwargs(self) -> dict:
        """The Trainer's settings (the parameters in :data:`TRAINER_PARAMS`)."""
        return {name: getattr(self, name) for name in TRAINER_PARAMS}

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.positive_only = True     # raw counts
        tags.input_tags.sparse = True
        # ``transform`` is the input-transform parameter (a string); scikit-learn's checks see an attribute of
        # that name as a transformer's method and need this tag to be set (their transformer checks then fail).
        tags.transformer_tags = TransformerTags(preserves_dtype=[])
        return tags

    # ------------------------------------------------------------------------ checks
    def _validate_params(self) -> None:
        """The declared constraints, then what they cannot say: each name of a list of architectures, and the
        keys of ``model_kwargs``; an ``InvalidParameterError`` naming the parameter."""
        check_params(type(self).__name__, self.get_params(deep=False), self._parameter_constraints)
        archs = self._architectures()
        bad = [a for a in archs if not Options(*ARCHITECTURES).holds(a)]
        if bad or not archs:
            raise InvalidParameterError(f"{type(self).__name__}: architecture={self.architecture!r} is not valid: "
                                        f"it must be one of {', '.join(map(repr, ARCHITECTURES))} or a non-empty "
                                        f"list of them (unknown: {', '.join(map(repr, bad)) or 'none given'})")
        self._validate_model_kwargs()

    def _validate_model_kwargs(self) -> None:
        """Refuse a ``model_kwargs`` key that no member constructor takes, naming the valid ones."""
        kwargs = self.model_kwargs or {}
        valid = set().union(*(_member_params(a) for a in ARCHITECTURES))
        for key, value in kwargs.items():
            if key in ARCHITECTURES and isinstance(value, dict):
                bad, ok = sorted(set(value) - _member_params(key)), _member_params(key)
            else:
                bad, ok = ([] if key in valid or key in ARCHITECTURES else [key]), valid
            if bad:
                where = f"model_kwargs[{key!r}]" if key in ARCHITECTURES else "model_kwargs"
                raise InvalidParameterError(f"{type(self).__name__}: {where}: no member constructor takes "
                                            f"{', '.join(map(repr, bad))}; valid: {', '.join(sorted(ok))} (or an "
                                            f"architecture name holding its own arguments)")

    def _kwargs_for(self, arch: str) -> dict:
        kwargs = self.model_kwargs or {}
        kw = kwargs.get(arch, None)
        if isinstance(kw, dict):
            return dict(kw)
        # flat kwargs go to every member whose constructor takes them (e.g. chunk -> LSTM only)
        accepted = set(inspect.signature(_MEMBER_CLASSES[arch].__init__).parameters)
        return {k: v for k, v in kwargs.items() if k not in ARCHITECTURES and k in accepted}

    # --------------------------------------------------------------------------- fit
    def fit(self, X, y, gene_names: Sequence[str] | None = None) -> CellTypeClassifier:
        """Fit on raw counts ``X`` (cells x genes, dense or sparse) and labels ``y`` (one per cell).

        ``gene_names`` (one per column; taken from the columns of a DataFrame ``X``) lets
        :meth:`predict` and :func:`~cellbook.annotation.annotate` align new cells' genes by name.
        A parameter outside ``_parameter_constraints`` is an ``InvalidParameterError`` (a ``ValueError``) before
        any work; a missing label (NaN / None; the error names the cells) is a ``ValueError``.  ``y`` keeps
        its type (see the class docstring).
        """
        self._validate_params()
        X, y, gene_names = self._fit_inputs(X, y, gene_names)
        self.architectures_, self.ensemble_ = self._architectures(), self._resolved_ensemble()
        self.n_features_in_ = X.shape[1]
        self.feature_names_in_ = None if gene_names is None else np.asarray(gene_names, dtype=object)
        self._order_warned = False
        self.model_file_ = None     # set by load_model; a refit model no longer is the file's
        self.training_ = {"n_cells": int(X.shape[0]), "n_genes_in": int(X.shape[1]),
                          "date_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
        self._select_genes(X, gene_names)
        Z = self.features(X)
        self.classes_ = np.unique(y)
        t0 = time.perf_counter()
        self._train(Z, y)
        self.module_ = self.trainer_.model
        self.fit_seconds_ = time.perf_counter() - t0
        self.n_parameters_ = count_parameters(self.module_)
        return self

    def _fit_inputs(self, X, y, gene_names):
        """The checked training counts (CSR), labels (their own type, see :func:`_class_labels`) and gene names."""
        X, gene_names = matrix_and_names(X, gene_names, what="X")
        X = _counts_matrix(X)
        y = _class_labels(y)
        if len(y) != X.shape[0]:
            raise ValueError(f"X has {X.shape[0]} cells but y has {len(y)} labels")
        check_labels(y, min_per_class=2 if self.val_fraction > 0 else 1)
        if gene_names is not None:
            check_unique_genes(gene_names, "gene_names", "give unique names (sum or drop the duplicated genes' "
                                                         "columns first, or use Ensembl ids)")
        return X, y, gene_names

    def _select_genes(self, X, gene_names) -> None:
        """``gene_idx_`` / ``genes_``: genes detected in enough cells, the most variable ``n_genes`` of them."""
        min_cells = int(self.min_cells_per_gene)
        detected = np.flatnonzero(genes_detected(X, min_cells))
        if len(detected) < 2:
            raise ValueError(f"fewer than 2 genes are detected in >= {min_cells} training cells")
        if self.n_genes is not None and len(detected) > self.n_genes:
            hv = highly_variable(log_normalize(X[:, detected]), self.n_genes)
            detected = detected[hv]
        self.gene_idx_ = np.sort(detected)
        self.genes_ = (np.asarray(gene_names).astype(str)[self.gene_idx_] if gene_names is not None else None)

    def _train(self, Z, y) -> None:
        """Build the members (seeded) and train them: ``trainer_`` and ``histories_``."""
        n_in, n_cls, seed, tk = len(self.gene_idx_), len(self.classes_), int(self.seed), self.trainer_kwargs
        if self.ensemble_ in (None, "joint"):
            torch.manual_seed(seed)
            members = []
            for i, arch in enumerate(self._member_archs()):
                torch.manual_seed(seed * 1000 + i)
                members.append(build_model(arch, n_in, n_cls, **self._kwargs_for(arch)))
            module = members[0] if self.ensemble_ is None else JointEnsemble(members)
            self.trainer_ = Trainer(module, seed=seed, device=self.device, **tk).fit(Z, y)
            self.histories_ = [self.trainer_.history]
            return
        members, self.histories_ = [], []
        for i, arch in enumerate(self._member_archs()):
            s = seed * 1000 + i
            torch.manual_seed(s)
            m = build_model(arch, n_in, n_cls, **self._kwargs_for(arch))
            tr = Trainer(m, seed=s, device=self.device, **tk).fit(Z, y)
            members.append(tr.model)
            self.histories_.append(tr.history)
        self.trainer_ = Trainer(VotingEnsemble(members, self.ensemble_), seed=seed, device=self.device, **tk)
        self.trainer_.classes_ = self.classes_

    def fit_adata(self, adata, label_key: str = "cell_type", layer: str | None = "counts",
                  genes: Sequence[str] | None = None, min_shared_genes: int = MIN_SHARED_GENES) -> CellTypeClassifier:
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

    # -------------------------------------------------------------------- model files
    def save(self, path, training: dict | None = None) -> Path:
        """Write the fitted classifier to one file (see :func:`~cellbook.annotation.save_model`); returns the path.

        The file holds :meth:`get_params`, the genes, classes, training metadata and the weights.
        ``training`` adds to / overrides the training metadata.
        """
        self._check_fitted()
        params, dropped = {}, []
        for k, v in self.get_params(deep=False).items():
            j, good = _jsonable(v)
            if good:
                params[k] = j
            else:
                dropped.append(k)
        buf = io.BytesIO()
        torch.save({k: v.detach().cpu() for k, v in self.module_.state_dict().items()}, buf)
        info = getattr(self, "training_", None)
        info = info if info is not None else getattr(self, "cellbook_training_", None)
        meta = {"kind": "torch", "class": f"{type(self).__module__}.{type(self).__qualname__}", "name": self.name,
                "params": params,
                "genes": None if self.feature_names_in_ is None else list(map(str, self.feature_names_in_)),
                "model_genes": None if self.genes_ is None else list(map(str, self.genes_)),
                "classes": [str(c) for c in self.classes_], **class_labels_meta(self.classes_),
                "transform": {"name": self.transform, "target_sum": 1e4 if self.transform == "log1p" else None,
                              "library_size": "sum over the cell's genes among the model's input genes"},
                "training": _jsonable({**dict(info or {}), **(training or {})})[0]}
        fitted = {"gene_idx": self.gene_idx_.tolist(), "n_features_in": int(self.n_features_in_),
                  "fit_seconds": float(getattr(self, "fit_seconds_", 0.0)),
                  "histories": [_jsonable(h.to_dict("list"))[0] for h in getattr(self, "histories_", [])],
                  "dropped_params": dropped}
        return write_model_file(path, meta, fitted, _STATE, buf.getvalue())

    @classmethod
    def load(cls, path, device: str = "cpu") -> CellTypeClassifier:
        """Read a classifier written by :meth:`save` (see :func:`~cellbook.annotation.load_model`)."""
        path = Path(path)
        meta, payload = read_model_file(path)
        if meta["kind"] != "torch":
            held = str(meta.get("class", "model")).rsplit(".", 1)[-1]
            raise ValueError(f"{path} holds a {held}, not a CellTypeClassifier; read it with cellbook.load_model")
        return cls._from_model_file(path, meta, payload, device)

    @classmethod
    def _from_model_file(cls, path: Path, meta: dict, payload: bytes, device: str) -> CellTypeClassifier:
        """The classifier of a model file's metadata and state dict, on ``device``; predicts as when saved."""
        dev = resolve_device(device)
        try:
            state = torch.load(io.BytesIO(payload), map_location=dev, weights_only=True)
        except Exception as err:  # noqa: BLE001 - torch raises RuntimeError / UnpicklingError / EOFError for torn data
            raise ValueError(f"{path}: the model weights could not be read ({type(err).__name__}: "
                             f"{str(err).splitlines()[0] if str(err) else ''}); the file is corrupt: "
                             f"{_SAVE_FIX}") from None
        known = set(cls._get_param_names())
        params = {k: v for k, v in (meta.get("params") or {}).items() if k in known}   # files list them flat
        params["device"] = device
        fitted = meta.get("fitted") or {}
        try:
            clf = cls(**params)
            clf._validate_params()
            module = clf._restore(meta, fitted)
            module.load_state_dict(state)
        except (KeyError, TypeError, ValueError, RuntimeError) as err:
            saved = (meta.get("versions") or {}).get("cellbook", "?")
            raise ValueError(f"{path}: the saved {meta.get('name', 'model')} could not be rebuilt "
                             f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}); the file is "
                             f"corrupt or from an incompatible cellbook ({saved}): {_SAVE_FIX}") from None
        module.to(dev).eval()
        clf._attach(module, device, meta, fitted, path)
        return clf

    def _restore(self, meta: dict, fitted: dict) -> torch.nn.Module:
        """The fitted gene and class attributes from a model file, and the (untrained) module to load into."""
        self.architectures_, self.ensemble_ = self._architectures(), self._resolved_ensemble()
        self.n_features_in_ = int(fitted["n_features_in"])
        genes = meta.get("genes")
        self.feature_names_in_ = None if genes is None else np.asarray(genes, dtype=object)
        self.gene_idx_ = np.asarray(fitted["gene_idx"], dtype=np.int64)
        self.genes_ = None if genes is None else np.asarray(genes).astype(str)[self.gene_idx_]
        self.classes_ = classes_from_meta(meta)
        n_in, n_cls = len(self.gene_idx_), len(self.classes_)
        with torch.random.fork_rng(devices=[]):   # building the modules must not move the caller's RNG
            members = [build_model(a, n_in, n_cls, **self._kwargs_for(a)) for a in self._member_archs()]
        if self.ensemble_ in ("soft", "hard"):
            return VotingEnsemble(members, self.ensemble_)
        if self.ensemble_ == "joint":
            return JointEnsemble(members)
        return members[0]

    def _attach(self, module, device: str, meta: dict, fitted: dict, path: Path) -> None:
        """The Trainer around a loaded module, and the fitted attributes a model file records."""
        self.trainer_ = Trainer(module, seed=int(self.seed), device=device, **self.trainer_kwargs)
        self.trainer_.classes_ = self.classes_
        self.trainer_._fitted = True
        self.module_ = module
        self.histories_ = [pd.DataFrame(h) for h in fitted.get("histories", [])] or [pd.DataFrame()]
        self.fit_seconds_ = float(fitted.get("fit_seconds", 0.0))
        self.n_parameters_ = count_parameters(module)
        self.training_ = dict(meta.get("training") or {})
        self._order_warned = False
        self.model_file_ = {**meta, "path": str(path)}
