"""Part III's plain baselines: decomposition reconstruction error and classifiers of codes or PCA scores."""
from __future__ import annotations

import numpy as np
from sklearn.decomposition import NMF, PCA, KernelPCA
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC


def reconstruction_mse(method: str, X_train, X_test, n_components: int = 30, seed: int = 0) -> float:
    """Test-set reconstruction MSE of a linear/kernel decomposition fitted on ``X_train``.

    ``method``: ``"pca"``, ``"nmf"`` (needs non-negative data), ``"kpca_poly"``, ``"kpca_cosine"``,
    ``"kpca_rbf"`` (kernel PCA with ``fit_inverse_transform=True``).  Shapes: samples x genes.
    """
    Xtr, Xte = np.asarray(X_train, dtype=np.float64), np.asarray(X_test, dtype=np.float64)
    if method == "pca":
        model = PCA(n_components=n_components, random_state=seed)
    elif method == "nmf":
        if (Xtr < 0).any() or (Xte < 0).any():
            raise ValueError("NMF needs non-negative data")
        model = NMF(n_components=n_components, init="nndsvda", max_iter=500, random_state=seed)
    elif method.startswith("kpca_"):
        kernel = method.split("_", 1)[1]
        if kernel not in ("poly", "cosine", "rbf"):
            raise ValueError(f"unknown kernel {kernel!r}; valid: poly, cosine, rbf")
        model = KernelPCA(n_components=n_components, kernel=kernel, fit_inverse_transform=True, random_state=seed)
    else:
        raise ValueError(f"unknown method {method!r}; valid: pca, nmf, kpca_poly, kpca_cosine, kpca_rbf")
    model.fit(Xtr)
    rec = model.inverse_transform(model.transform(Xte))
    return float(np.mean((rec - Xte) ** 2))


def code_classifier(kind: str = "rf", seed: int = 0, n_trees: int = 500):
    """The paper's two classifiers for codes / PCA scores: ``"rf"`` (random forest, ``n_trees`` trees) or
    ``"svm"`` (RBF SVM on standardised features)."""
    if kind == "rf":
        return RandomForestClassifier(n_estimators=n_trees, random_state=seed, n_jobs=1)
    if kind == "svm":
        return make_pipeline(StandardScaler(), SVC(kernel="rbf", C=1.0, gamma="scale", random_state=seed))
    raise ValueError(f"unknown classifier {kind!r}; valid: rf, svm")


def pca_classifier(kind: str = "rf", n_components: int = 30, seed: int = 0, n_trees: int = 500):
    """PCA (fitted on the training samples) to ``n_components``, then :func:`code_classifier`."""
    return make_pipeline(PCA(n_components=n_components, random_state=seed), code_classifier(kind, seed, n_trees))


def logistic_all_genes(C: float = 0.1, seed: int = 0):
    """Plain baseline: standardised genes -> multinomial logistic regression."""
    return make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=2000, random_state=seed))
