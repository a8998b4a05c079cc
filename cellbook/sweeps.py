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
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from .baselines import code_classifier, logistic_all_genes, pca_classifier, reconstruction_mse
from .config import resolve_device
from .datasets.registry import info_for, locate
from .enrichment import overrepresentation, read_gmt
from .metrics import classification, mse_per_sample, pair_vs_nearest, rank_shares, rep_ranks, summarize
from .models.autoencoder import describe
from .models.vision import MODELS, fit_classifier
from .parallel import map_tasks
from .preprocess.bulk import split_transform
from .preprocess.imaging import feature_classifier
from .report import pm
from .splits import stratified_kfold
from .train import train_autoencoder, train_classifier_autoencoder
from .validation import SEED, Interval, Options, validate_params


def code_size(architecture: str) -> int:
    """The code (last layer) size of an autoencoder architecture string, e.g. ``"L300,G,L30"`` -> 30."""
    last = architecture.split(",")[-1].strip()
    if not last.startswith("L") or not last[1:].isdigit():
        raise ValueError(f"architecture {architecture!r} does not end in a linear code layer such as 'L30'")
    return int(last[1:])


# Part II ------------------------------------------------------------------------------------------------
#: The feature baselines of Part II (standardised logistic regression on image features, one name per feature set):
#: brightness of the raw image (:func:`cellbook.preprocess.imaging.brightness_features`), hand-crafted morphology
#: and texture (:func:`cellbook.preprocess.imaging.handcrafted_features`), any other features, and cell size beside
#: brightness (:func:`cellbook.models.vision.size_brightness_features`).
FEATURE_BASELINES = ("brightness only + LR", "hand-crafted + LR", "features + LR", "size + brightness + LR")
#: Every model :func:`fit_image_model` fits: the CNNs of :data:`cellbook.models.vision.MODELS`, then the baselines.
IMAGE_MODELS = (*MODELS, *FEATURE_BASELINES)


@validate_params({"model": Options(*IMAGE_MODELS), "seed": SEED, "device": str, "widths": [tuple, list],
                  "epochs": Interval(int, 1, None), "batch_size": Interval(int, 1, None),
                  "lr": Interval(float, 0, None, closed="neither"), "keep": bool})
def fit_image_model(X, labels, train, test, model: str, *, seed: int, device: str = "auto", widths=(16, 32, 64),
                    epochs: int = 20, batch_size: int = 16, lr: float = 2e-3, positive=None,
                    keep: bool = False) -> dict:
    """Fit one Part II model on ``train`` and predict ``test``.

    ``model`` is a CNN of :data:`cellbook.models.vision.MODELS` (``X``: image stacks ``(n, C, H, W)``) or a
    feature baseline of :data:`FEATURE_BASELINES` (``X``: features ``(n, F)``, standardised logistic regression);
    any other name (names are case-sensitive) is an :class:`~cellbook.validation.InvalidParameterError` listing
    :data:`IMAGE_MODELS`.
    Returns ``pred`` (test labels), ``fit_seconds``, ``score`` (P(``positive``) per test image, when
    ``positive`` is given) and ``estimator`` (when ``keep``).
    """
    train, test = np.asarray(train), np.asarray(test)
    if model in MODELS:
        est = fit_classifier(model, X[train], labels[train], widths=tuple(widths), epochs=epochs,
                                 batch_size=batch_size, lr=lr, seed=seed, device=device)
        secs = est.fit_seconds
    else:
        t0 = time.perf_counter()
        est = feature_classifier(seed=seed).fit(X[train], labels[train])
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
    t0 = time.perf_counter()
    model, trainer = train_autoencoder(X_train, architecture, X_test=X_test, epochs=epochs, batch_size=batch_size,
                                       lr=lr, optimizer=optimizer, device=resolve_device(device), seed=seed)
    out = {"test_mse": float(np.mean(mse_per_sample(X_test, model.reconstruct(X_test)))),
           "seconds": time.perf_counter() - t0,
           "curve": [(int(e), float(v)) for e, v in zip(trainer.history["epoch"], trainer.history["test_loss"])],
           "gene_variance": float(X_test.var(0).mean()), "n_genes": int(X_train.shape[1])}
    if pca_components is not None:
        k = code_size(architecture) if pca_components == "code" else int(pca_components)
        out["pca_mse"] = reconstruction_mse("pca", X_train, X_test, min(k, len(X_train) - 1), seed=seed)
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
    y = np.asarray(y)
    te, tr = np.flatnonzero(y == held_out), np.flatnonzero(y != held_out)
    Xtr, Xte, pre = split_transform(X, tr, te, n_top_genes=n_genes, counts=counts)
    model, _ = train_autoencoder(Xtr, architecture, epochs=epochs, batch_size=batch_size, lr=lr, optimizer=optimizer,
                                 device=resolve_device(device), seed=seed)
    rep = model.reconstruct(Xte)
    sp_pairs = pair_vs_nearest(Xte, rep, "spearman", reference=Xtr)
    mse_pairs = pair_vs_nearest(Xte, rep, "mse", reference=Xtr)
    row = {"tissue": held_out, "n_held_out": len(te),
           "median_spearman": float(sp_pairs["rep"].median()), "median_mse": float(mse_pairs["rep"].median()),
           "closer_spearman": float(sp_pairs["closer"].mean()), "closer_mse": float(mse_pairs["closer"].mean()),
           "median_nearest_train_mse": float(mse_pairs["nearest"].median()),
           "median_mse_seen": float(np.median(mse_per_sample(Xtr, model.reconstruct(Xtr))))}
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
    device = resolve_device(device)
    y = np.asarray(y)
    tr, te = train_test_split(np.arange(len(y)), test_size=test_size, stratify=y, random_state=split_seed)
    Xtr, Xte, _ = split_transform(X, tr, te, n_top_genes=n_genes, counts=counts)
    ytr, yte = y[tr], y[te]
    k = code_size(architecture)
    preds = {}
    for kind in ("rf", "svm"):
        preds[f"PCA-{k} + {kind.upper()}"] = pca_classifier(
            kind, k, seed=split_seed, n_trees=n_trees).fit(Xtr, ytr).predict(Xte)
    train = dict(epochs=epochs, batch_size=batch_size, lr=lr, optimizer=optimizer, device=device, seed=split_seed)
    ae, _ = train_autoencoder(Xtr, architecture, **train)
    Ztr, Zte = ae.codes(Xtr), ae.codes(Xte)
    for kind in ("rf", "svm"):
        preds[f"code + {kind.upper()}"] = code_classifier(
            kind, seed=split_seed, n_trees=n_trees).fit(Ztr, ytr).predict(Zte)
    cae, _, classes = train_classifier_autoencoder(Xtr, ytr, architecture, hidden=classifier_hidden or None,
                                                   mse_weight=mse_weight, **train)
    preds["classifier AE (softmax)"] = classes[cae.logits(Xte).argmax(1)]
    Ctr, Cte = cae.codes(Xtr), cae.codes(Xte)
    for kind in ("rf", "svm"):
        preds[f"classifier AE code + {kind.upper()}"] = code_classifier(
            kind, seed=split_seed, n_trees=n_trees).fit(Ctr, ytr).predict(Cte)
    preds["logistic regression, genes"] = logistic_all_genes(seed=split_seed).fit(Xtr, ytr).predict(Xte)
    rows = []
    for name, p in preds.items():
        m = classification(yte, p)
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
    predict[logreg] = logistic_all_genes(seed=seed).fit(Xtr, ytr).predict
    rng = np.random.default_rng([int(seed), int(fold)])          # this fold's own noise draw
    rows, disagree = [], []
    for sd_test in test_noise_sds:
        Xt = Xte if sd_test == 0 else (Xte + rng.normal(0, sd_test, Xte.shape)).astype(np.float32)
        preds = {name: np.asarray(f(Xt)) for name, f in predict.items()}
        for name, pr in preds.items():
            m = classification(yte, pr)
            rows.append({"data": tag, "model": name, "test noise SD": sd_test, "fold": fold,
                         "accuracy": m["accuracy"], "f1_macro": m["f1_macro"]})
        disagree.append({"data": tag, "test noise SD": sd_test, "fold": fold,
                         "denoising AE vs control": float(np.mean(preds[den] != preds[ctrl])),
                         "denoising AE vs logistic regression": float(np.mean(preds[den] != preds[logreg]))})
    return rows, disagree


# Part III: the chapters' tables and facts, from the tasks' results -----------------------------------------
def autoencoder_tasks(data, architectures, *, seed: int, pca=None, **fit) -> tuple[list, list]:
    """:func:`fit_autoencoder_fold`'s arguments for every (fold, architecture) pair, fold by fold.

    ``data``: :func:`prepare_folds`'s ``(X_train, X_test)`` per fold; fold ``f`` trains from ``seed + f``;
    ``pca``: ``{architecture: components}`` adds the PCA baseline to those tasks (components, or ``"code"``
    for the code's size); a single value adds it to every task. ``fit``: the training settings.
    Returns ``(meta, tasks)``: ``(fold, architecture)`` per task, and the tasks."""
    pca = dict.fromkeys(architectures, pca) if pca is not None and not isinstance(pca, dict) else (pca or {})
    meta = [(f, a) for f in range(len(data)) for a in architectures]
    tasks = [dict(X_train=data[f][0], X_test=data[f][1], architecture=a, seed=seed + f,
                  pca_components=pca.get(a), **fit) for f, a in meta]
    return meta, tasks


def architecture_summary(meta, results, n_genes: int) -> pd.DataFrame:
    """III.1's table: test MSE and training time per architecture, mean / SD / SE over folds, best first.

    ``meta``: ``(fold, architecture)`` per task; ``results``: :func:`fit_autoencoder_fold`'s results in
    the same order (those with ``pca_mse`` add a "PCA-30 (baseline)" row per fold). ``layers`` describes
    each architecture on ``n_genes`` inputs."""
    runs = pd.DataFrame([{"architecture": a, "fold": f, "test_mse": o["test_mse"], "seconds": o["seconds"]}
                         for (f, a), o in zip(meta, results)]
                        + [{"architecture": "PCA-30 (baseline)", "fold": f, "test_mse": o["pca_mse"], "seconds": 0.0}
                           for (f, a), o in zip(meta, results) if "pca_mse" in o])
    summary = summarize(runs, by="architecture", metrics=["test_mse", "seconds"]).sort_values("test_mse_mean")
    summary["layers"] = [describe(a, n_genes) if not a.startswith("PCA") else "linear projection, 30 components"
                         for a in summary["architecture"]]
    return summary


def curve_summary(results, meta=None, key: str | None = None) -> pd.DataFrame:
    """Test MSE per epoch (``curve`` of :func:`fit_autoencoder_fold`), mean / SD / SE over folds.

    ``meta``: ``(fold, value)`` per result, grouped by ``key`` (e.g. the code size) as well as the epoch;
    without it, result ``i`` is fold ``i`` and the curves are grouped by epoch only."""
    if meta is None:
        rows = [{"fold": f, "epoch": e, "test_mse": v} for f, o in enumerate(results) for e, v in o["curve"]]
        return summarize(pd.DataFrame(rows), by="epoch", metrics=["test_mse"])
    rows = [{key: c, "fold": f, "epoch": e, "test_mse": v} for (f, c), o in zip(meta, results) for e, v in o["curve"]]
    return summarize(pd.DataFrame(rows), by=[key, "epoch"], metrics=["test_mse"])


def final_summary(meta, results, key: str = "code") -> pd.DataFrame:
    """III.2's table: the last epoch's test MSE and PCA's at the same dimension, mean / SD / SE over folds,
    per ``key`` (``meta``: ``(fold, value)`` per result of :func:`fit_autoencoder_fold`)."""
    rows = [{key: c, "fold": f, "test_mse": o["test_mse"], "pca_mse": o["pca_mse"]} for (f, c), o in zip(meta, results)]
    return summarize(pd.DataFrame(rows), by=key, metrics=["test_mse", "pca_mse"])


def rank_experiment(X, y, *, n_genes: int, seed: int, test_size: float, counts: bool, architecture: str,
                    epochs: int, batch_size: int, lr: float, optimizer: str, device: str = "auto") -> dict:
    """III.3's (b-f) on one stratified split (seeded by ``seed``): train the autoencoder on the training
    samples, reproduce the test samples, and rank each REP among all test GEPs (and each GEP among all
    REPs, the reverse experiment), by Spearman r and by MSE.

    Returns ``n_test``, ``Xtr``, ``Xte`` (preprocessed), ``rep``, ``model``, ``y_test``; per measure
    (``"Spearman"``, ``"MSE"``) the rank shares, ``<measure>_reverse`` and ``<measure>_pairs`` (REP-GEP
    against GEP-nearest-other-GEP, :func:`cellbook.metrics.pair_vs_nearest`)."""
    tr, te = train_test_split(np.arange(len(y)), test_size=test_size, stratify=y, random_state=seed)
    Xtr, Xte, pre = split_transform(X, tr, te, n_top_genes=n_genes, counts=counts)
    model, trainer = train_autoencoder(Xtr, architecture, epochs=epochs, batch_size=batch_size, lr=lr,
                                       optimizer=optimizer, device=device, seed=seed)
    rep = model.reconstruct(Xte)
    out = {"n_test": len(te), "Xtr": Xtr, "Xte": Xte, "rep": rep, "model": model, "y_test": y[te]}
    for metric, name in (("spearman", "Spearman"), ("mse", "MSE")):
        out[name] = rank_shares(rep_ranks(Xte, rep, metric))
        out[name + "_reverse"] = rank_shares(rep_ranks(Xte, rep, metric, reverse=True))
        out[name + "_pairs"] = pair_vs_nearest(Xte, rep, metric)
    return out


def noise_experiment(X, y, n_folds: int, tag: str, *, seed: int, **noise):
    """III.7: :func:`noise_fold` on every fold of a stratified ``n_folds``-fold split (one task per fold,
    through :func:`cellbook.parallel.map_tasks`); ``noise`` are :func:`noise_fold`'s other arguments.

    Returns ``(scores, disagreement)`` as DataFrames: per fold, model and test-noise SD; per fold and SD,
    how often the models' predictions differ."""
    cv = stratified_kfold(y, n_folds, seed)
    out = map_tasks(noise_fold, [dict(X=X, y=y, train=tr, test=te, fold=f, tag=tag, seed=seed, **noise)
                                 for f, (tr, te) in enumerate(cv)], desc=f"{tag}: folds")
    return (pd.DataFrame([r for rows, _ in out for r in rows]),
            pd.DataFrame([d for _, dis in out for d in dis]))


def noise_table(summary: pd.DataFrame, names) -> pd.DataFrame:
    """Accuracy "mean ± SE" over folds: one row per test-noise SD, one column per model (``names``, in
    that order), from :func:`cellbook.metrics.summarize` of :func:`noise_experiment`'s scores."""
    t = summary.assign(cell=[pm(m, s) for m, s in zip(summary["accuracy_mean"], summary["accuracy_se"])])
    return t.pivot(index="test noise SD", columns="model", values="cell")[list(names)]


def sweep_facts(summary: pd.DataFrame, disagree: pd.DataFrame, tag: str, names, sds) -> dict:
    """What a noise sweep shows, for the take-aways: per model (``names``) its clean accuracy, its
    accuracy at the largest SD of ``sds`` and the first SD where it falls below 90 % of the clean value
    (``breaks_at``, None: never); ``tie_at``, the SDs where the three means lie within the largest SE; and
    ``disagree``, per SD the mean share of test samples on which the models' predictions differ."""
    s = summary.set_index(["model", "test noise SD"])
    sds = list(sds)
    out = {"tag": tag}
    for name in names:
        clean = s.loc[(name, 0.0), "accuracy_mean"]
        broken = [sd for sd in sds if sd > 0 and s.loc[(name, sd), "accuracy_mean"] < 0.9 * clean]
        out[name] = {"clean": float(clean), "at_max": float(s.loc[(name, sds[-1]), "accuracy_mean"]),
                     "breaks_at": broken[0] if broken else None}
    ties = []
    for sd in sds:
        means = [s.loc[(n, sd), "accuracy_mean"] for n in names]
        ses = [s.loc[(n, sd), "accuracy_se"] for n in names]
        ties.append(bool(max(means) - min(means) <= max(ses)))
    out["tie_at"] = [sd for sd, t in zip(sds, ties) if t]
    d = disagree.groupby("test noise SD")[["denoising AE vs control", "denoising AE vs logistic regression"]].mean()
    out["disagree"] = {float(k): {c: float(v) for c, v in row.items()} for k, row in d.iterrows()}
    return out


def sweep_sentence(facts: dict | None, names, sds) -> str:
    """One take-away bullet (Markdown, ending in a newline) from :func:`sweep_facts` (read back from the
    results, so SD keys may be strings); "" without facts. ``names``: denoising AE, control, logistic
    regression."""
    if not facts:
        return ""
    sds = list(sds)
    den, ctrl, lr_ = (facts[n] for n in names)
    disagree = {float(k): v for k, v in facts["disagree"].items()}
    d0, dmax = disagree[0.0], disagree[float(sds[-1])]

    def brk(m):
        return f"SD {m['breaks_at']:g}" if m["breaks_at"] else f"never (up to SD {sds[-1]:g})"

    tie = (f"The three are **tied** (within one SE) at test SD {', '.join(f'{x:g}' for x in facts['tie_at'])}."
           if facts["tie_at"] else "At no noise level are all three within one SE of each other.")
    return (f"- **{facts['tag']}**: clean accuracy {den['clean']:.1%} (denoising AE), {ctrl['clean']:.1%} (control), "
            f"{lr_['clean']:.1%} (logistic regression); at test SD {sds[-1]:g}: {den['at_max']:.1%}, "
            f"{ctrl['at_max']:.1%}, {lr_['at_max']:.1%}. Accuracy falls below 90 % of its clean value at test "
            f"{brk(den)} (denoising AE), {brk(ctrl)} (control) and {brk(lr_)} (logistic regression). "
            f"{tie} The denoising AE and the control disagree on {d0['denoising AE vs control']:.1%} of test samples "
            f"on clean input and {dmax['denoising AE vs control']:.1%} at SD {sds[-1]:g}.\n")


def paired_differences(runs: pd.DataFrame, control: str, x: str = "test noise SD",
                       metric: str = "accuracy") -> pd.DataFrame:
    """Each model's ``metric`` minus the ``control``'s, paired by fold and ``x``: mean, SD, SE and n over
    folds per (model, ``x``) (the control itself left out). For III.7's figure; records nothing."""
    ctrl = runs[runs["model"] == control].set_index(["fold", x])[metric]
    others = runs[runs["model"] != control]
    diff = others.assign(difference=others[metric].to_numpy()
                         - ctrl.loc[list(zip(others["fold"], others[x]))].to_numpy())
    return summarize(diff, by=["model", x], metrics=["difference"])


def component_enrichment(gene_lists: dict, collections: dict, symbols, *, data_path=None,
                         max_set_size: int | None = None, alpha: float = 0.01, strict: bool = True):
    """III.6: over-representation of each code component's genes in each gene-set collection.

    ``collections``: ``{label: GMT file}``, a path or a file name in the ``genesets`` dataset (found under
    ``data_path`` / ``$CELLBOOK_DATA``). Each component's list is tested against every set with at most
    ``max_set_size`` genes (:func:`cellbook.enrichment.overrepresentation`, universe: ``symbols``).
    The Bonferroni cut-off is 0.05 for a collection whose label names pathways, else ``alpha``.

    Returns ``(results, counts, skipped, genesets)``: ``{label: over-representation table}``; a table
    with one row per collection (sets, universe, significant links, components with a term, distinct
    terms at BH <= 0.05); ``{label: reason}`` for the collections that could not be used (a missing file
    raises unless ``strict`` is False); and the ``genesets`` dataset's provenance when it was used.
    """
    results, counts, skipped, genesets = {}, [], {}, None
    for label, name in collections.items():
        path = Path(str(name)).expanduser()
        if not path.is_file():
            folder = Path(locate("genesets", data_path))
            genesets = info_for("genesets", folder)
            path = folder / str(name)
        try:
            sets = read_gmt(path, max_size=max_set_size)
        except FileNotFoundError as err:
            if strict:
                raise
            skipped[label] = str(err)
            continue
        try:
            res = overrepresentation(gene_lists, sets, symbols)
        except ValueError as err:        # e.g. the synthetic stand-in has no real gene symbols
            skipped[label] = str(err)
            continue
        results[label] = res
        cut = 0.05 if "pathway" in label.lower() else alpha
        counts.append({"collection": label, "file": Path(str(name)).name, "sets": len(sets),
                       "universe": int(res["universe"].iloc[0]) if len(res) else 0,
                       "bonferroni_cutoff": cut,
                       "significant links (Bonferroni)": int((res["p_bonferroni"] <= cut).sum()),
                       "components with a term": int(res.loc[res["p_bonferroni"] <= cut, "query"].nunique()),
                       "distinct terms, BH <= 0.05": int(res.loc[res["p_bh"] <= 0.05, "term"].nunique())})
    return results, pd.DataFrame(counts), skipped, genesets


def stratified_subsample(adata, n_max: int | None, seed: int, key: str = "cell_type"):
    """At most ``n_max`` observations of ``adata``, drawn stratified by ``obs[key]`` (seeded by ``seed``)
    and kept in their original order; ``adata`` itself when it is no larger (or ``n_max`` is None / 0)."""
    if not n_max or adata.n_obs <= n_max:
        return adata
    keep, _ = train_test_split(np.arange(adata.n_obs), train_size=n_max, random_state=seed,
                               stratify=adata.obs[key].astype(str))
    return adata[np.sort(keep)].copy()


def nearest_class(rep, X_train, y_train) -> tuple[str, dict]:
    """III.4: the training class whose mean profile is closest to the mean of the reproduced profiles
    ``rep`` (Spearman r between the two mean profiles). Returns ``(nearest, {class: r})``."""
    rep_mean = pd.Series(np.asarray(rep).mean(0))
    y_train = np.asarray(y_train)
    rho = {c: pd.Series(X_train[y_train == c].mean(0)).corr(rep_mean, method="spearman")
           for c in sorted(set(y_train))}
    return max(rho, key=rho.get), rho
