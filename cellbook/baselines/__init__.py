"""Simple, strong baselines that stand beside every deep model (scikit-learn estimators).

- :class:`HVGLogisticRegression` -- CellTypist-style: log-normalise, highly variable genes
  (chosen on the training cells), scale, multinomial logistic regression (fixed ``C``).
- :class:`PCAKNN` -- log-normalise, HVG, scale, PCA, k-nearest neighbours.
- :class:`TunedLogisticRegression` -- what a careful user runs: log1p counts per ``target_sum``, HVGs of the
  training cells, *unscaled*, multinomial logistic regression whose ``C`` (and optionally class weights,
  ``target_sum``, ``n_top_genes``) is chosen by stratified inner K-fold CV on the training cells only.
- :class:`LinearSVMClassifier` -- the winner of Abdelaal et al. (2019): a linear SVM on the same features, its
  ``C`` chosen by inner CV on the training cells, probabilities from a sigmoid calibration on the inner folds.
- :class:`HVGGradientBoosting` -- LightGBM on log1p CP10k of the training cells' HVGs, early stopping on a
  stratified validation split of the training cells, then refitted on all of them.
- :class:`ScanviClassifier`, :class:`SingleRClassifier` -- optional (``pip install 'cellbook[anchors]'``): scANVI
  (scvi-tools) and SingleR (BiocPy's ``singler``), trained on the training cells; their package is imported when
  they are fitted, and :func:`missing_package` says (importing nothing) whether it is installed.
- :class:`CellTypistClassifier` -- the real ``celltypist`` package (``celltypist.train`` / ``annotate``),
  optionally with its over-clustering + majority voting.
- :func:`reconstruction_mse` -- PCA / NMF / kernel-PCA reconstruction error at a given dimension;
  :func:`code_classifier`, :func:`pca_classifier`, :func:`logistic_all_genes` -- Part III's plain classifiers.

Each classifier is a scikit-learn estimator (``clone``, ``get_params`` / ``set_params``, ``cross_val_score``)
with ``fit(X, y, gene_names=None)``, ``predict(X, gene_names=None)``, ``predict_proba(X, gene_names=None)``
(columns in ``classes_`` order) and ``classes_``; ``X`` is cells x genes raw counts (dense or sparse, a
DataFrame or an AnnData) unless ``counts=False``.  Fitted with gene names (``gene_names=``, DataFrame columns,
``var_names``), predict matches genes by name; predict before fit is scikit-learn's ``NotFittedError``;
labels are checked for missing values and keep their own type (integers in, integers out; a pandas Categorical
gives its values).  Each declares its parameters' constraints (``_parameter_constraints``), which ``fit``
checks before any work: a wrong value is a :class:`cellbook.validation.InvalidParameterError` naming it.
"""
from ._anchors import ANCHORS, ScanviClassifier, SingleRClassifier, make_anchor, missing_package
from ._celltypist_model import CellTypistClassifier, celltypist_over_clustering
from ._expression import PCAKNN, HVGLogisticRegression, torch_threads
from ._linear_svm import LINEAR_SVM_GRID, LinearSVMClassifier
from ._reconstruction import code_classifier, logistic_all_genes, pca_classifier, reconstruction_mse
from ._tuned import TUNED_LR_GRID, TUNED_LR_WIDE_GRID, HVGGradientBoosting, TunedLogisticRegression

__all__ = ["ANCHORS", "CellTypistClassifier", "HVGGradientBoosting", "HVGLogisticRegression", "LINEAR_SVM_GRID",
           "LinearSVMClassifier", "PCAKNN", "ScanviClassifier", "SingleRClassifier", "TUNED_LR_GRID",
           "TUNED_LR_WIDE_GRID", "TunedLogisticRegression", "celltypist_over_clustering", "code_classifier",
           "logistic_all_genes", "make_anchor", "missing_package", "pca_classifier", "reconstruction_mse",
           "torch_threads"]
