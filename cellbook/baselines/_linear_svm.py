"""A linear SVM tuned by inner CV and calibrated for probabilities: the winner of Abdelaal et al. (2019)."""
from __future__ import annotations

import numpy as np
from sklearn.calibration import CalibratedClassifierCV
from sklearn.svm import LinearSVC

from ..validation import Interval
from ._tuned import _InnerCVTuned

#: The default search of :class:`LinearSVMClassifier`: ``C`` x ``target_sum`` (12 candidates), like
#: :data:`~cellbook.baselines.TUNED_LR_GRID`.  A linear SVM on unscaled log1p counts wants a much smaller ``C``
#: than scikit-learn's default 1: about 0.03-0.1 per 1e3 counts and 0.003 or less per 1e4 on van Galen 2019.
LINEAR_SVM_GRID = {"C": (0.001, 0.003, 0.01, 0.03, 0.1, 0.3), "target_sum": (1e3, 1e4)}


class LinearSVMClassifier(_InnerCVTuned):
    """A linear support vector machine, its ``C`` tuned by inner CV, calibrated for probabilities.

    The overall winner of Abdelaal et al. (2019, Genome Biology), "A comparison of automatic cell identification
    methods for single-cell RNA sequencing data": scikit-learn's ``LinearSVC`` (one-vs-rest, squared hinge loss)
    on log-transformed counts; its probabilities come, as in their ``SVM_rejection``, from
    ``CalibratedClassifierCV`` (Platt's sigmoid per class, then normalised).

    Features as :class:`~cellbook.baselines.TunedLogisticRegression`'s: ``log1p`` of counts per ``target_sum``
    of the ``n_top_genes`` highly variable genes of the training cells, unscaled.  ``C`` (and optionally class
    weights, ``target_sum``, ``n_top_genes``: ``param_grid``, ``None``: :data:`LINEAR_SVM_GRID`) is chosen by
    stratified ``n_folds``-fold CV on the training cells only (the plain SVM's accuracy, HVGs chosen in each inner
    fold); the winner is then fitted as ``CalibratedClassifierCV(LinearSVC(C), method="sigmoid", cv=<the same
    inner folds>)`` on all the training cells: on each inner fold an SVM is trained on its training part and its
    sigmoids on its validation part, and ``predict_proba`` averages the folds' calibrated probabilities.  With one
    candidate there is nothing to choose, but the inner folds still calibrate.  ``predict`` is the most probable
    class of ``predict_proba`` (so labels and confidences always agree).

    Attributes: those of :class:`~cellbook.baselines.TunedLogisticRegression` (``best_params_``, ``best_score_``,
    ``cv_results_``, ``cv_folds_``, ``genes_``, ``classes_``); ``model_`` is the fitted ``CalibratedClassifierCV``;
    ``n_parameters_`` counts every fold's SVM weights and sigmoid parameters; ``n_iter_`` is the largest number of
    iterations of the folds' SVMs.
    """

    # the tuned logistic regression's parameters; liblinear wants a tolerance > 0
    _parameter_constraints = {**_InnerCVTuned._parameter_constraints, "tol": Interval(float, 0, None, closed="neither")}
    _default_grid = LINEAR_SVM_GRID
    _folds_always = True            # the calibration uses the inner folds, even with one candidate

    def __init__(self, n_top_genes: int | None = 2000, target_sum: float = 1e4, C: float = 0.1,
                 class_weight=None, param_grid: dict | None = None, n_folds: int = 3, max_iter: int = 5000,
                 tol: float = 1e-4, seed: int = 0, max_tune_cells: int | None = 20_000):
        self.n_top_genes, self.target_sum, self.C, self.class_weight = n_top_genes, target_sum, C, class_weight
        self.param_grid, self.n_folds, self.max_iter, self.tol, self.seed = param_grid, n_folds, max_iter, tol, seed
        self.max_tune_cells = max_tune_cells

    def _candidate(self, C, class_weight, warm_start=False):
        # liblinear has no warm start; dual="auto" picks the primal problem when there are more cells than genes
        return LinearSVC(C=C, class_weight=class_weight, max_iter=self.max_iter, tol=self.tol,
                         random_state=self.seed)

    def _final(self, Z, y, C, class_weight):
        folds = list(self.cv_folds_)
        if self.n_tune_cells_ < len(y):      # tuned on a subsample: calibrate on folds of every cell
            folds = self._stratified_folds(y, np.arange(len(y)))
        return CalibratedClassifierCV(self._candidate(C, class_weight), method="sigmoid", cv=folds).fit(Z, y)

    @staticmethod
    def _size(model) -> tuple[int, int]:
        folds = model.calibrated_classifiers_
        weights = sum(c.estimator.coef_.size + c.estimator.intercept_.size for c in folds)
        sigmoids = sum(2 * len(c.calibrators) for c in folds)
        return int(weights + sigmoids), int(max(np.max(c.estimator.n_iter_) for c in folds))
