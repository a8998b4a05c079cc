"""Cell-type classifiers on raw counts, annotation of new cells by gene name, and model files.

:class:`CellTypeClassifier` is the whole Part I pipeline in one scikit-learn estimator:
gene selection learned on the training cells only (genes detected in ``min_cells_per_gene``
cells, optionally the ``n_genes`` most variable of them), an input transform (``"counts"`` = raw
counts as in the paper, ``"log1p"`` = log1p of counts per 10k), a torch model from
:mod:`cellbook.models` (single, jointly trained ensemble, or independently trained members with
soft / hard voting), trained by :class:`cellbook.Trainer`.

:func:`annotate` applies a fitted classifier (this one, or a baseline of :mod:`cellbook.baselines`,
or a saved model file) to an AnnData of new cells: genes are aligned by name (missing genes are
filled with zeros and counted in a warning; too few shared genes is an error), and the predicted
label and its confidence (the top class probability) go to ``adata.obs``.  Given ``reference=``
(labelled cells), it first trains a model on the genes the new cells share with the reference,
in the same call (CellTypist's ``train`` + ``annotate``).  Optionally: ``threshold=`` (cells below
it are ``"Unassigned"``) and ``majority_voting=True`` (each over-cluster of the new cells takes its
majority label).  The cells are predicted a block (``chunk_size``) at a time; :func:`annotate_file`
labels an .h5ad file of any size, reading its counts block by block from disk.

:func:`save_model` / :func:`load_model` keep a fitted model in one shareable file.

    clf = CellTypeClassifier("cnn", ensemble="joint", k=5, transform="counts", max_epochs=30).fit_adata(train)
    cellbook.annotate(new_cells, clf)          # new_cells.obs["predicted_cell_type"], ..._confidence
    clf.save("bm.cbm"); clf = cellbook.load_model("bm.cbm")
    cellbook.annotate(new_cells, reference=train, model="logreg", threshold=0.5, majority_voting=True)
"""
from ._annotate import UNASSIGNED, annotate, summary
from ._annotate_file import annotate_file
from ._classifier import (
    ARCHITECTURES,
    ENSEMBLES,
    PAPER_TRAINING,
    TRAINER_PARAMS,
    TRANSFORMS,
    CellTypeClassifier,
    build_model,
)
from ._data import MIN_SHARED_GENES, REFERENCE_DATASETS, load_reference, shared_genes
from ._file_format import MODEL_FORMAT, MODEL_FORMAT_VERSION
from ._lineage import LINEAGE_RULES_GSE194122, LINEAGES_VANGALEN, to_lineage
from ._model_files import load_model, save_model
from ._reference import METHODS, fit_reference, make_model
from ._streaming import DEFAULT_CHUNK_SIZE, H5adCounts
from ._voting import HETEROGENEOUS, default_resolution, majority_vote, over_cluster

__all__ = [
    "ARCHITECTURES", "CellTypeClassifier", "DEFAULT_CHUNK_SIZE", "ENSEMBLES", "H5adCounts", "HETEROGENEOUS",
    "LINEAGES_VANGALEN", "LINEAGE_RULES_GSE194122", "METHODS", "MIN_SHARED_GENES", "MODEL_FORMAT",
    "MODEL_FORMAT_VERSION", "PAPER_TRAINING", "REFERENCE_DATASETS", "TRAINER_PARAMS", "TRANSFORMS", "UNASSIGNED",
    "annotate", "annotate_file", "build_model", "default_resolution", "fit_reference", "load_model",
    "load_reference", "majority_vote", "make_model", "over_cluster", "save_model", "shared_genes", "summary",
    "to_lineage",
]
