"""Every figure of merit in the book, in one module (scikit-learn underneath).

- :func:`classification` -- accuracy, precision/recall/F1 micro, macro and weighted.
- :func:`per_class` / :func:`confusion` -- per-type tables (for heatmaps).
- :func:`screening` -- binary screening figures: AUC, F1, accuracy, sensitivity,
  specificity, PPV, NPV (accuracy is (TP + TN) / all, not the paper's (TP + TN) / TP).
- :func:`roc` -- ROC curve points.
- :func:`summarize` -- mean, SD, SE and n over repeats (seeds, folds).
- :func:`ttest` / :func:`chi_square` -- the tests the papers report.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd
from scipy import stats
from scipy.stats import rankdata, ttest_ind
from sklearn import metrics as skm

from .enrichment import _adjust_bh
from .validation import Interval, Options, validate_params

SIMILARITY = Options("spearman", "mse")


def _labels(y_true, y_pred, labels=None):
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true has shape {y_true.shape} but y_pred has {y_pred.shape}")
    if y_true.size == 0:
        raise ValueError("no samples to score")
    if labels is None:
        labels = np.unique(np.concatenate([y_true, y_pred]))
    return y_true, y_pred, np.asarray(labels)


def classification(y_true, y_pred, labels=None) -> dict:
    """Single-label classification figures.

    Micro-averaged precision, recall and F1 all equal accuracy when every sample has
    exactly one true and one predicted label (each error is one false positive and one
    false negative), so macro (every class equal) and weighted (by support) are given too.
    """
    y_true, y_pred, labels = _labels(y_true, y_pred, labels)
    out = {"accuracy": skm.accuracy_score(y_true, y_pred), "n": int(y_true.size)}
    for avg in ("micro", "macro", "weighted"):
        p, r, f, _ = skm.precision_recall_fscore_support(
            y_true, y_pred, labels=labels, average=avg, zero_division=0)
        out.update({f"precision_{avg}": p, f"recall_{avg}": r, f"f1_{avg}": f})
    out["balanced_accuracy"] = skm.balanced_accuracy_score(y_true, y_pred)
    return {k: float(v) if k != "n" else v for k, v in out.items()}


def per_class(y_true, y_pred, labels=None) -> pd.DataFrame:
    """One row per class: precision, recall (= per-class accuracy), F1, support."""
    y_true, y_pred, labels = _labels(y_true, y_pred, labels)
    p, r, f, s = skm.precision_recall_fscore_support(
        y_true, y_pred, labels=labels, average=None, zero_division=0)
    return pd.DataFrame({"precision": p, "recall": r, "f1": f, "support": s},
                        index=pd.Index(labels, name="class"))


@validate_params({"normalize": Options("true", "pred", "all", None)})
def confusion(y_true, y_pred, labels=None, normalize: str | None = "true") -> pd.DataFrame:
    """Confusion matrix as a DataFrame (rows: true, columns: predicted).

    ``normalize="true"`` makes each row sum to 1 (row = per-type accuracy on the diagonal).
    """
    y_true, y_pred, labels = _labels(y_true, y_pred, labels)
    cm = skm.confusion_matrix(y_true, y_pred, labels=labels, normalize=normalize)
    return pd.DataFrame(cm, index=pd.Index(labels, name="true"), columns=pd.Index(labels, name="predicted"))


@validate_params({"top": Interval(int, 0, None)})
def hardest_pairs(y_true, y_pred, labels=None, top: int = 5) -> pd.DataFrame:
    """The most frequent (true -> predicted) confusions, as counts and as share of the true class."""
    cm = confusion(y_true, y_pred, labels, normalize=None)
    rows = []
    for t in cm.index:
        for p in cm.columns:
            if t != p and cm.loc[t, p] > 0:
                rows.append({"true": t, "predicted": p, "count": int(cm.loc[t, p]),
                             "share_of_true": cm.loc[t, p] / cm.loc[t].sum()})
    df = pd.DataFrame(rows, columns=["true", "predicted", "count", "share_of_true"])
    return df.sort_values(["count", "share_of_true"], ascending=False).head(top).reset_index(drop=True)


@validate_params({"threshold": Interval(float)})
def screening(y_true, y_score, threshold: float = 0.5, positive=1) -> dict:
    """Binary screening figures from scores (probability of the positive class).

    Returns AUC, F1, accuracy ((TP + TN) / all), sensitivity (TP / (TP + FN)),
    specificity (TN / (TN + FP)), PPV (TP / (TP + FP)), NPV (TN / (TN + FN)) and the counts.
    """
    y_true = np.asarray(y_true) == positive
    y_score = np.asarray(y_score, dtype=float)
    if y_true.shape != y_score.shape:
        raise ValueError(f"y_true has shape {y_true.shape} but y_score has {y_score.shape}")
    if y_true.all() or not y_true.any():
        raise ValueError("screening needs both positive and negative samples")
    pred = y_score >= threshold
    tp, tn = int(np.sum(pred & y_true)), int(np.sum(~pred & ~y_true))
    fp, fn = int(np.sum(pred & ~y_true)), int(np.sum(~pred & y_true))

    def ratio(a, b):
        return float(a / b) if b else float("nan")

    return {
        "auc": float(skm.roc_auc_score(y_true, y_score)),
        "f1": ratio(2 * tp, 2 * tp + fp + fn),
        "accuracy": ratio(tp + tn, tp + tn + fp + fn),
        "sensitivity": ratio(tp, tp + fn),
        "specificity": ratio(tn, tn + fp),
        "ppv": ratio(tp, tp + fp),
        "npv": ratio(tn, tn + fn),
        "tp": tp, "tn": tn, "fp": fp, "fn": fn,
    }


def roc(y_true, y_score, positive=1) -> pd.DataFrame:
    """ROC curve points: columns ``fpr``, ``tpr``, ``threshold``."""
    fpr, tpr, thr = skm.roc_curve(np.asarray(y_true) == positive, np.asarray(y_score, dtype=float))
    return pd.DataFrame({"fpr": fpr, "tpr": tpr, "threshold": thr})


@validate_params({"by": [None, str, list, tuple], "metrics": [None, list, tuple]})
def summarize(records: Iterable[Mapping] | pd.DataFrame, by: str | list[str] | None = None,
              metrics: list[str] | None = None) -> pd.DataFrame:
    """Mean, SD (ddof=1), SE and n of numeric columns over repeats.

    ``records`` is one row per repeat (e.g. per seed); ``by`` groups rows (e.g. ``"model"``).
    Returns a frame with columns ``<metric>_mean``, ``<metric>_sd``, ``<metric>_se`` and ``n``.
    """
    df = pd.DataFrame(list(records)) if not isinstance(records, pd.DataFrame) else records.copy()
    if df.empty:
        raise ValueError("no records to summarise")
    keys = [by] if isinstance(by, str) else list(by or [])
    metrics = metrics or [c for c in df.columns if c not in keys and pd.api.types.is_numeric_dtype(df[c])]
    groups = df.groupby(keys, sort=False) if keys else [((), df)]
    rows = []
    for key, g in groups:
        row = dict(zip(keys, key if isinstance(key, tuple) else (key,)))
        n = len(g)
        for m in metrics:
            vals = g[m].astype(float)
            sd = float(vals.std(ddof=1)) if n > 1 else float("nan")
            row.update({f"{m}_mean": float(vals.mean()), f"{m}_sd": sd,
                        f"{m}_se": sd / np.sqrt(n) if n > 1 else float("nan")})
        row["n"] = n
        rows.append(row)
    return pd.DataFrame(rows)


@validate_params({"paired": bool})
def ttest(a, b, paired: bool = False) -> dict:
    """Two-sided t-test (Welch's when unpaired): statistic, p-value, means."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.size < 2 or b.size < 2:
        raise ValueError("a t-test needs at least two values per group")
    res = stats.ttest_rel(a, b) if paired else stats.ttest_ind(a, b, equal_var=False)
    return {"statistic": float(res.statistic), "p_value": float(res.pvalue),
            "mean_a": float(a.mean()), "mean_b": float(b.mean())}


def chi_square(y_true, pred_a, pred_b) -> dict:
    """Chi-square test on the 2 x 2 table of correct / wrong counts of two classifiers."""
    y_true = np.asarray(y_true)
    ca, cb = np.asarray(pred_a) == y_true, np.asarray(pred_b) == y_true
    table = np.array([[ca.sum(), (~ca).sum()], [cb.sum(), (~cb).sum()]])
    if (table.sum(axis=0) == 0).any():
        return {"statistic": 0.0, "p_value": 1.0, "table": table.tolist()}
    chi2, p, _, _ = stats.chi2_contingency(table)
    return {"statistic": float(chi2), "p_value": float(p), "table": table.tolist()}


# ------------------------------------------------------------- Part III: codes (appended)
def _rank_rows(A: np.ndarray) -> np.ndarray:
    return rankdata(A, axis=1, method="average")


@validate_params({"metric": SIMILARITY})
def profile_similarity(A, B, metric: str = "spearman") -> np.ndarray:
    """Similarity of every row of ``A`` (n x genes) to every row of ``B`` (m x genes): ``(n, m)``.

    ``metric="spearman"``: Spearman correlation (higher = closer); ``"mse"``: *minus* the mean
    squared error (so that higher = closer for both).
    """
    A, B = np.asarray(A, dtype=np.float64), np.asarray(B, dtype=np.float64)
    if A.ndim != 2 or B.ndim != 2 or A.shape[1] != B.shape[1]:
        raise ValueError(f"A and B must be 2-D with the same number of genes; got {A.shape} and {B.shape}")
    if metric == "spearman":
        ra, rb = _rank_rows(A), _rank_rows(B)
        ra = ra - ra.mean(1, keepdims=True)
        rb = rb - rb.mean(1, keepdims=True)
        na, nb = np.linalg.norm(ra, axis=1), np.linalg.norm(rb, axis=1)
        return (ra @ rb.T) / np.outer(np.where(na > 0, na, 1), np.where(nb > 0, nb, 1))
    if metric == "mse":
        d2 = (A ** 2).sum(1)[:, None] + (B ** 2).sum(1)[None, :] - 2 * A @ B.T
        return -np.maximum(d2, 0) / A.shape[1]
    raise ValueError(f"unknown metric {metric!r}; valid: spearman, mse")


@validate_params({"metric": SIMILARITY, "reverse": bool})
def rep_ranks(gep, rep, metric: str = "spearman", reverse: bool = False) -> np.ndarray:
    """Rank of each sample's reproduced profile (REP) against the other original profiles (GEPs).

    Forward (paper Fig. 2b,c): for GEP i, rank = 1 + number of other GEPs j closer to GEP i than
    REP i.  ``reverse=True``: for REP i, rank = 1 + number of GEPs j != i closer to REP i than GEP i.
    Rank 1 means the pair is closer than any other sample.  Shapes: ``gep``, ``rep`` samples x genes.
    """
    gep, rep = np.asarray(gep, dtype=np.float64), np.asarray(rep, dtype=np.float64)
    if gep.shape != rep.shape:
        raise ValueError(f"gep and rep must have the same shape; got {gep.shape} and {rep.shape}")
    n = gep.shape[0]
    own = np.diag(profile_similarity(gep, rep, metric))          # sim(GEP i, REP i)
    if reverse:
        sim = profile_similarity(rep, gep, metric)                # row i: REP i vs every GEP
    else:
        sim = profile_similarity(gep, gep, metric)                # row i: GEP i vs every GEP
    np.fill_diagonal(sim, -np.inf)
    return 1 + (sim > own[:, None]).sum(axis=1).astype(int) if n else np.array([], int)


@validate_params({"top": Interval(int, 1, None)})
def rank_shares(ranks, top: int = 3) -> dict:
    """Share of samples at rank 1..top and beyond: ``{"1": 0.88, "2": 0.08, "3": 0.03, ">3": 0.01}``."""
    ranks = np.asarray(ranks)
    if ranks.size == 0:
        raise ValueError("no ranks")
    out = {str(r): float(np.mean(ranks == r)) for r in range(1, top + 1)}
    out[f">{top}"] = float(np.mean(ranks > top))
    return out


@validate_params({"metric": SIMILARITY})
def pair_vs_nearest(gep, rep, metric: str = "spearman", reference=None) -> pd.DataFrame:
    """Per sample: the GEP-REP value and the GEP-nearest-other-GEP value (Spearman r, or MSE).

    ``reference`` (other samples x genes): look for the nearest other GEP there instead of among
    the other rows of ``gep`` (e.g. the training set, for unseen tissues).  Columns: ``rep``,
    ``nearest``, ``closer`` (REP closer than the nearest other GEP).
    """
    gep = np.asarray(gep, dtype=np.float64)
    own = np.diag(profile_similarity(gep, rep, metric))
    if reference is None:
        sim = profile_similarity(gep, gep, metric)
        np.fill_diagonal(sim, -np.inf)
    else:
        sim = profile_similarity(gep, reference, metric)
    best = sim.max(axis=1)
    sign = -1.0 if metric == "mse" else 1.0
    return pd.DataFrame({"rep": sign * own, "nearest": sign * best, "closer": own > best})


@validate_params({"alternative": Options("two-sided", "greater", "less")})
def wilcoxon(a, b, alternative: str = "two-sided") -> dict:
    """Paired Wilcoxon signed-rank test: statistic, p-value, median difference."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape or a.size < 2:
        raise ValueError("the Wilcoxon test needs two paired samples of the same length (>= 2)")
    res = stats.wilcoxon(a, b, alternative=alternative)
    return {"statistic": float(res.statistic), "p_value": float(res.pvalue),
            "median_difference": float(np.median(a - b)), "n": int(a.size)}


def mse_per_sample(X, X_hat) -> np.ndarray:
    """Mean squared error of each row (sample) of a reconstruction."""
    X, X_hat = np.asarray(X, dtype=np.float64), np.asarray(X_hat, dtype=np.float64)
    if X.shape != X_hat.shape:
        raise ValueError(f"shapes differ: {X.shape} vs {X_hat.shape}")
    return ((X - X_hat) ** 2).mean(axis=1)


def differential_expression(A, B, genes) -> pd.DataFrame:
    """Genes up or down in the rows of ``A`` against the rows of ``B`` (both on a log2 scale).

    A : ``(n_a, n_genes)``, B : ``(n_b, n_genes)``, genes : ``(n_genes,)`` names.
    Per gene: ``log2fc`` (mean of A - mean of B), Welch's t statistic and two-sided p, and the
    Benjamini-Hochberg adjusted ``p_bh``. (The paper used limma's moderated t; with tens of samples per
    side the ordinary Welch test selects nearly the same genes.) Sorted by p.
    """
    A, B = np.asarray(A, dtype=float), np.asarray(B, dtype=float)
    genes = np.asarray(genes).astype(str)
    if A.ndim != 2 or B.ndim != 2 or A.shape[1] != B.shape[1] or len(genes) != A.shape[1]:
        raise ValueError(f"A {A.shape} and B {B.shape} must be samples x genes with the same genes, and genes "
                         f"({len(genes)}) must name every column")
    if len(A) < 2 or len(B) < 2:
        raise ValueError(f"each side needs at least 2 samples, got {len(A)} and {len(B)}")
    t, p = ttest_ind(A, B, axis=0, equal_var=False)
    p = np.where(np.isfinite(p), p, 1.0)                    # a gene constant on both sides: no evidence
    out = pd.DataFrame({"gene": genes, "log2fc": A.mean(0) - B.mean(0), "t": np.nan_to_num(t), "p": p,
                        "p_bh": _adjust_bh(p)})
    return out.sort_values(["p", "gene"]).reset_index(drop=True)
