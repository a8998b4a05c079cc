"""Part I's comparison: every model of Table 1, strong baselines and a stacked ensemble, split by split.

    zoo = model_zoo(k=5)                        # name -> spec
    records, predictions, fitted = evaluate_models(X, y, repeated_splits(y, seeds), zoo, gene_names=genes)
    verdict = paired_verdict(records, baseline="Logistic regression (tuned)")

A spec is one of

- ``CellTypeClassifier`` arguments (a deep model).  With ``"grid"`` (a list of setting overrides,
  the first being the paper's settings) the model is trained once per setting, each with early
  stopping on the same validation split of the training cells, and gives two entries: ``name``
  with the paper's settings and ``name + TUNED`` with the setting of best validation accuracy
  (:func:`fit_tuned`).  The test cells are never looked at.
- ``{"baseline": kind}`` for a scikit-learn baseline of :mod:`cellbook.baselines` (the optional scANVI and
  SingleR entries only when their package is installed: :func:`skipped_models` says which are left out).
- ``{"shares": other, ...}``: a voting ensemble or CellTypist variant that reuses another entry's
  fitted members (no retraining).
- ``{"stack": [member names], "n_folds": 3}``: a :class:`StackedEnsemble` whose members and weights
  are chosen on out-of-fold predictions of the training cells only.

Every model is fitted on the training cells of a split and scored once on its test cells.
"""

from ._conclusion import (
    CONCLUSION_MODELS,
    FAMILIES,
    annotate_cli,
    chapter_figures,
    conclusion_table,
    deep_verdict,
    family_table,
    family_verdict,
    lineage_confusion,
    lineage_scores,
    load_query,
    model_family,
    scratch_dir,
)
from ._evaluate import FitCollector, evaluate_models, evaluate_split, paired_verdict
from ._heldout import (
    EARLY_TYPES,
    HIERARCHY,
    chapter3_predictions,
    error_anatomy,
    first_split_predictions,
    healthy_donors,
    heldout_change,
    hierarchy_order,
    lodo_figures,
    mean_sd_columns,
    per_type_recall,
    random_split_records,
    random_split_results,
    random_vs_heldout,
)
from ._stacking import StackedEnsemble
from ._tables import (
    BASELINE,
    STACKED,
    artifacts_dir,
    deep_models,
    is_deep,
    mean_sd_by_model,
    mean_sd_text,
    model_sizes,
    record_summary,
    summary_figures,
    table1,
    table1_record,
    tuning_choices,
    write_for_next_chapters,
)
from ._zoo import (
    BASELINE_GENES,
    BASELINES,
    DEEP_MODELS,
    OPTIONAL,
    PAPER,
    PAPER_TABLE1,
    REGULARISED_MLP,
    TUNED,
    deep_settings,
    entry_names,
    fit_model,
    fit_tuned,
    is_deep_name,
    make_baseline,
    model_zoo,
    skipped_models,
    with_voting,
)

__all__ = ["BASELINE", "BASELINES", "BASELINE_GENES", "CONCLUSION_MODELS", "DEEP_MODELS", "EARLY_TYPES", "FAMILIES",
           "FitCollector", "HIERARCHY", "OPTIONAL", "PAPER", "PAPER_TABLE1", "REGULARISED_MLP", "STACKED",
           "StackedEnsemble", "TUNED", "annotate_cli", "artifacts_dir", "chapter3_predictions", "chapter_figures",
           "conclusion_table", "deep_models", "deep_settings", "deep_verdict", "entry_names", "error_anatomy",
           "evaluate_models", "evaluate_split", "family_table", "family_verdict", "first_split_predictions",
           "fit_model", "fit_tuned", "healthy_donors", "heldout_change", "hierarchy_order", "is_deep", "is_deep_name",
           "lineage_confusion", "lineage_scores", "load_query", "lodo_figures", "make_baseline", "mean_sd_by_model",
           "mean_sd_columns", "mean_sd_text", "model_family", "model_sizes", "model_zoo", "paired_verdict",
           "per_type_recall", "random_split_records", "random_split_results", "random_vs_heldout", "record_summary",
           "scratch_dir", "skipped_models", "summary_figures", "table1", "table1_record", "tuning_choices",
           "with_voting", "write_for_next_chapters"]
