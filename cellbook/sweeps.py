"""The book's sweeps, one fit per task.

Each function here is one independent task of a grid: a fold, a split, an architecture. It takes
everything it needs as arguments (its seed included) and returns plain results, so that
:func:`cellbook.parallel.map_tasks` can run a list of them in this process, on a local Dask cluster or on
a cluster of many machines, and get the same numbers::

    data = cb.sweeps.prepare_folds(X, cb.splits.stratified_kfold(y, n_folds=3, seed=0), n_genes=1000)
    tasks = [dict(X_train=Xtr, X_test=Xte, architecture=a, seed=0 + f, epochs=20, ...)
             for f, (Xtr, Xte) in enumerate(data) for a in architectures]
    results = cb.map_tasks(cb.sweeps.fit_autoencoder_fold, tasks, desc="architectures")

Part I's sweep (every model on every split) is :func:`cellbook.comparison.evaluate_models`; Part II's
WS x SSN grid is :func:`cellbook.preprocess.spectral.ssn_grid`. Both run their tasks the same way.
"""
from __future__ import annotations

import time

import numpy as np
import pandas as pd


def code_size(architecture: str) -> int:
    """The code (last layer) size of an autoencoder architecture string, e.g. ``"L300,G,L30"`` -> 30."""
    last = architecture.split(",")[-1].strip()
    if not last.startswith("L") or not last[1:].isdigit():
        raise ValueError(f"architecture {architecture!r} does not end in a linear code layer such as 'L30'")
    return int(last[1:])


# Part II ------------------------------------------------------------------------------------------------
def fit_image_model(X, labels, train, test, model: str, *, seed: int, device: str = "auto", widths=(16, 32, 64),
                    epochs: int = 20, batch_size: int = 16, lr: float = 2e-3, positive=None,
                    keep: bool = False) -> dict:
    """Fit one Part II model on ``train`` and predict ``test``.

    ``model`` is a CNN of :data:`cellbook.models.vision.MODELS` (``X``: image stacks ``(n, C, H, W)``) or any
    other name for the feature baseline (``X``: features ``(n, F)``, standardised logistic regression).
    Returns ``pred`` (test labels), ``fit_seconds``, ``score`` (P(``positive``) per test image, when
    ``positive`` is given) and ``estimator`` (when ``keep``).
    """
    from .models import vision as vis
    from .preprocess import imaging as im

    train, test = np.asarray(train), np.asarray(test)
    if model in vis.MODELS:
        est = vis.fit_classifier(model, X[train], labels[train], widths=tuple(widths), epochs=epochs,
                                 batch_size=batch_size, lr=lr, seed=seed, device=device)
        secs = est.fit_seconds
    else:
        t0 = time.perf_counter()
        est = im.feature_classifier(seed=seed).fit(X[train], labels[train])
        secs = time.perf_counter() - t0
    out = {"pred": np.asarray(est.predict(X[test])), "fit_seconds": float(secs)}
    if positive is not None:
        out["score"] = np.asarray(est.predict_proba(X[test]))[:, list(est.classes_).index(positive)]
    if keep:
        out["estimator"] = est
    return out


# Part III -----------------------------------------------------------------------------------------------
def prepare_folds(X, folds, *, n_genes: int, counts: bool = True, scale01: bool = False) -> list[tuple]:
    """Each fold's training and test matrices, preprocessed on its training samples only
    (:func:`cellbook.preprocess.bulk.split_transform`): a list of ``(X_train, X_test)``.

    Done once per fold, before the sweep: every task of a fold then shares the same two arrays (sent
    once to each worker by :func:`cellbook.parallel.map_tasks`)."""
    from .preprocess.bulk import split_transform

    out = []
    for train, test in folds:
        Xtr, Xte, _ = split_transform(X, train, test, n_top_genes=n_genes, counts=counts, scale01=scale01)
        out.append((Xtr, Xte))
    return out


def fit_autoencoder_fold(X_train, X_test, architecture: str, *, seed: int, epochs: int = 20, batch_size: int = 32,
                         lr: float = 1e-3, optimizer: str = "adam", device: str = "auto",
                         pca_components=None) -> dict:
    """Train one autoencoder on ``X_train`` (samples x genes, preprocessed: :func:`prepare_folds`) and score
    it on ``X_test``.

    ``pca_components``: also the test MSE of PCA with that many components (``"code"``: the architecture's
    code size), capped at the number of training samples - 1.
    Returns ``test_mse``, ``seconds`` (training), ``curve`` (``(epoch, test MSE)`` per epoch),
    ``gene_variance`` (mean per-gene variance of the test data), ``n_genes`` and, if asked, ``pca_mse``.
    """
    from . import baselines, metrics
    from .config import resolve_device
    from .train import train_autoencoder

    t0 = time.perf_counter()
    model, trainer = train_autoencoder(X_train, architecture, X_test=X_test, epochs=epochs, batch_size=batch_size,
                                       lr=lr, optimizer=optimizer, device=resolve_device(device), seed=seed)
    out = {"test_mse": float(np.mean(metrics.mse_per_sample(X_test, model.reconstruct(X_test)))),
           "seconds": time.perf_counter() - t0,
           "curve": [(int(e), float(v)) for e, v in zip(trainer.history["epoch"], trainer.history["test_loss"])],
           "gene_variance": float(X_test.var(0).mean()), "n_genes": int(X_train.shape[1])}
    if pca_components is not None:
        k = code_size(architecture) if pca_components == "code" else int(pca_components)
        out["pca_mse"] = baselines.reconstruction_mse("pca", X_train, X_test, min(k, len(X_train) - 1), seed=seed)
    return out


def held_out_class(X, y, held_out: str, *, seed: int, n_genes: int, counts: bool, architecture: str, epochs: int,
                   batch_size: int, lr: float, optimizer: str, device: str = "auto", keep: bool = False) -> dict:
    """Part III's unseen-tissue test for one class: train on every other class, then ask whether each
    held-out REP is closer to its own GEP than to every training GEP (Spearman and MSE).

    Returns one row: ``n_held_out``, median Spearman r and MSE of REP vs own GEP, the share closer than
    every training GEP, the median MSE to the nearest training GEP and the median MSE on the training set.
    ``keep``: also ``rep`` (the held-out REPs), ``X_train``, ``y_train`` (preprocessed training GEPs and
    their classes) and ``genes`` (the columns of ``X`` they hold), for the differential-expression step.
    """
    from . import metrics
    from .config import resolve_device
    from .preprocess.bulk import split_transform
    from .train import train_autoencoder

    y = np.asarray(y)
    te, tr = np.flatnonzero(y == held_out), np.flatnonzero(y != held_out)
    Xtr, Xte, pre = split_transform(X, tr, te, n_top_genes=n_genes, counts=counts)
    model, _ = train_autoencoder(Xtr, architecture, epochs=epochs, batch_size=batch_size, lr=lr, optimizer=optimizer,
                                 device=resolve_device(device), seed=seed)
    rep = model.reconstruct(Xte)
    sp_pairs = metrics.pair_vs_nearest(Xte, rep, "spearman", reference=Xtr)
    mse_pairs = metrics.pair_vs_nearest(Xte, rep, "mse", reference=Xtr)
    row = {"tissue": held_out, "n_held_out": len(te),
           "median_spearman": float(sp_pairs["rep"].median()), "median_mse": float(mse_pairs["rep"].median()),
           "closer_spearman": float(sp_pairs["closer"].mean()), "closer_mse": float(mse_pairs["closer"].mean()),
           "median_nearest_train_mse": float(mse_pairs["nearest"].median()),
           "median_mse_seen": float(np.median(metrics.mse_per_sample(Xtr, model.reconstruct(Xtr))))}
    if keep:
        row.update(rep=rep, X_train=Xtr, y_train=y[tr], genes=np.asarray(pre.genes_))
    return row


def classify_split(X, y, split_seed: int, *, test_size: float, n_genes: int, counts: bool, architecture: str,
                   classifier_hidden, mse_weight: float, epochs: int, batch_size: int, lr: float, optimizer: str,
                   n_trees: int, device: str = "auto"):
    """Part III's classifiers on one stratified split (seeded by ``split_seed``).

    PCA + RF/SVM, autoencoder code + RF/SVM, the classifier autoencoder (softmax, and its code + RF/SVM)
    and logistic regression on the genes. Returns ``(scores, predictions, y_test)``: a DataFrame with one
    row per method (errors, error rate, accuracy, macro-F1), ``{method: test predictions}`` and the test labels.
    """
    from sklearn.model_selection import train_test_split

    from . import baselines, metrics
    from .config import resolve_device
    from .preprocess.bulk import split_transform
    from .train import train_autoencoder, train_classifier_autoencoder

    device = resolve_device(device)
    y = np.asarray(y)
    tr, te = train_test_split(np.arange(len(y)), test_size=test_size, stratify=y, random_state=split_seed)
    Xtr, Xte, _ = split_transform(X, tr, te, n_top_genes=n_genes, counts=counts)
    ytr, yte = y[tr], y[te]
    k = code_size(architecture)
    preds = {}
    for kind in ("rf", "svm"):
        preds[f"PCA-{k} + {kind.upper()}"] = baselines.pca_classifier(
            kind, k, seed=split_seed, n_trees=n_trees).fit(Xtr, ytr).predict(Xte)
    train = dict(epochs=epochs, batch_size=batch_size, lr=lr, optimizer=optimizer, device=device, seed=split_seed)
    ae, _ = train_autoencoder(Xtr, architecture, **train)
    Ztr, Zte = ae.codes(Xtr), ae.codes(Xte)
    for kind in ("rf", "svm"):
        preds[f"code + {kind.upper()}"] = baselines.code_classifier(
            kind, seed=split_seed, n_trees=n_trees).fit(Ztr, ytr).predict(Zte)
    cae, _, classes = train_classifier_autoencoder(Xtr, ytr, architecture, hidden=classifier_hidden or None,
                                                   mse_weight=mse_weight, **train)
    preds["classifier AE (softmax)"] = classes[cae.logits(Xte).argmax(1)]
    Ctr, Cte = cae.codes(Xtr), cae.codes(Xte)
    for kind in ("rf", "svm"):
        preds[f"classifier AE code + {kind.upper()}"] = baselines.code_classifier(
            kind, seed=split_seed, n_trees=n_trees).fit(Ctr, ytr).predict(Cte)
    preds["logistic regression, genes"] = baselines.logistic_all_genes(seed=split_seed).fit(Xtr, ytr).predict(Xte)
    rows = []
    for name, p in preds.items():
        m = metrics.classification(yte, p)
        rows.append({"method": name, "split": split_seed, "errors": int((p != yte).sum()), "n_test": len(yte),
                     "error_rate": 1 - m["accuracy"], "accuracy": m["accuracy"], "f1_macro": m["f1_macro"]})
    return pd.DataFrame(rows), preds, yte


def noise_fold(X, y, train, test, fold: int, *, seed: int, n_genes: int, counts: bool, architecture: str,
               mse_weight: float, epochs: int, batch_size: int, lr: float, optimizer: str, noise_sd: float,
               test_noise_sds, names: tuple[str, str, str], tag: str, device: str = "auto"):
    """Part III's noise experiment on one fold.

    Trains the classifier autoencoder with input noise ``noise_sd`` and without (the control), and logistic
    regression on the genes (``names`` labels the three, in that order); tests each at every SD of
    ``test_noise_sds`` on the same noise draw (seeded by ``seed`` and ``fold``). Returns ``(scores,
    disagreement)``: lists of dicts (per model and SD; per SD, how often the models' predictions differ).
    """
    from . import baselines, metrics
    from .config import resolve_device
    from .preprocess.bulk import split_transform
    from .train import train_classifier_autoencoder

    den, ctrl, logreg = names
    y = np.asarray(y)
    Xtr, Xte, _ = split_transform(X, train, test, n_top_genes=n_genes, scale01=True, counts=counts)
    ytr, yte = y[train], y[test]
    predict = {}
    for name, sd in ((den, noise_sd), (ctrl, 0.0)):
        model, _, classes = train_classifier_autoencoder(
            Xtr, ytr, architecture, mse_weight=mse_weight, epochs=epochs, batch_size=batch_size, lr=lr,
            optimizer=optimizer, noise_sd=sd, device=resolve_device(device), seed=seed + fold)
        predict[name] = lambda Xt, m=model, c=classes: c[m.logits(Xt).argmax(1)]
    predict[logreg] = baselines.logistic_all_genes(seed=seed).fit(Xtr, ytr).predict
    rng = np.random.default_rng([int(seed), int(fold)])          # this fold's own noise draw
    rows, disagree = [], []
    for sd_test in test_noise_sds:
        Xt = Xte if sd_test == 0 else (Xte + rng.normal(0, sd_test, Xte.shape)).astype(np.float32)
        preds = {name: np.asarray(f(Xt)) for name, f in predict.items()}
        for name, pr in preds.items():
            m = metrics.classification(yte, pr)
            rows.append({"data": tag, "model": name, "test noise SD": sd_test, "fold": fold,
                         "accuracy": m["accuracy"], "f1_macro": m["f1_macro"]})
        disagree.append({"data": tag, "test noise SD": sd_test, "fold": fold,
                         "denoising AE vs control": float(np.mean(preds[den] != preds[ctrl])),
                         "denoising AE vs logistic regression": float(np.mean(preds[den] != preds[logreg]))})
    return rows, disagree
