"""One Trainer for every PyTorch model in the book.

The Trainer knows nothing about any one model.  It takes inputs as a NumPy array,
a torch tensor or a SciPy sparse matrix (rows are densified one minibatch at a
time, never the whole matrix), and targets as class labels (classification),
a float array (regression / reconstruction) or ``None`` (target = input, for
autoencoders).  A custom ``loss(model, xb, yb) -> scalar tensor`` covers models
with several outputs.

    trainer = Trainer(model, max_epochs=30, batch_size=128, lr=5e-4,
                      lr_step=200, lr_gamma=0.9, patience=5, seed=0)
    trainer.fit(X_train, y_train)          # validation split carved from the training data
    proba = trainer.predict_proba(X_test)  # (n_samples, n_classes)
    trainer.history                        # pandas DataFrame, one row per epoch

On a GPU the training data go to the device once when they fit (``resident``): each epoch's
shuffled batch order is copied over in one piece, batches are drawn by indexing on the device,
losses stay there until the epoch ends, and validation runs in large batches.  The batches, their
order and the maths are the same as on the CPU path; only where the rows are gathered changes.

With ``graphs`` (or ``CELLBOOK_CUDA_GRAPHS=1``) a resident fit on CUDA also captures one whole training
step (gather, forward, loss, backward, optimiser step) as a CUDA graph and replays it for every full batch,
so a step costs one launch instead of hundreds.  Only steps known to be the same every time are captured:
the built-in losses and :func:`gaussian_noise`; a custom ``loss`` or ``augment`` must say
``graph_safe = True`` (an augmentation that draws on the host, such as random flips, must not be captured).

The modules: ``_trainer`` (:class:`Trainer` and its fit steps), ``_settings`` (checks of its settings),
``_inputs`` (checks of the data, row access), ``_resident`` (rows on the device, CUDA-graph steps) and
``_autoencoder`` (the Part III autoencoders: :func:`train_autoencoder`, :func:`train_classifier_autoencoder`,
their loss, targets and input noise, and :class:`CurveTrainer`).
"""
from ._autoencoder import (
                           CurveTrainer,
                           classifier_ae_loss,
                           gaussian_noise,
                           pack_targets,
                           train_autoencoder,
                           train_classifier_autoencoder,
)
from ._inputs import count_parameters
from ._resident import resident_budget_bytes
from ._trainer import LossFn, NotFittedError, Trainer

__all__ = ["Trainer", "NotFittedError", "count_parameters", "CurveTrainer", "train_autoencoder",
           "train_classifier_autoencoder", "classifier_ae_loss", "gaussian_noise", "pack_targets",
           "resident_budget_bytes", "LossFn"]
