"""Reference outputs of :mod:`cellbook.train` on small synthetic data, for ``tests/test_train_reference.py``.

Each case in :data:`CASES` trains a small model on NumPy-generated data (a few hundred rows) with one
spread of settings and returns every history column but the wall-clock ones, the predictions / outputs,
the trained weights and the fitted attributes as NumPy arrays.  The test runs the same cases against the
code under test and asserts the arrays are byte-identical (``np.array_equal``).

Regenerate the reference only from code whose numbers are known good (e.g. the commit before a refactor)::

    PYTHONPATH=/path/to/known-good/checkout PYTHONHASHSEED=0 .venv/bin/python tests/data/make_train_reference.py

The script prints which ``cellbook`` it imported; it writes ``tests/data/train_reference.npz`` next to itself.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

OUT = Path(__file__).with_name("train_reference.npz")
TIMING = ("seconds",)                     # wall-clock history columns: never compared
SHOWN = 120                               # predictions / outputs are stored for the first rows


# ------------------------------------------------------------------------------------------------- data
def blobs(n=240, d=12, k=3, seed=0, sep=2.0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, sep, size=(k, d))
    y = rng.integers(0, k, size=n)
    X = centres[y] + rng.normal(size=(n, d))
    return X.astype(np.float32), np.array([f"c{i}" for i in y])


def counts(n=240, d=16, k=3, seed=1):
    """Non-negative, partly zero expression-like data with class structure."""
    X, y = blobs(n=n, d=d, k=k, seed=seed)
    X = np.log1p(np.maximum(X, 0) * 3).astype(np.float32)
    return X, y


def hard(n=200, d=12, k=3, seed=3):
    """Overlapping classes: a wide network overfits them, so early stopping has something to stop."""
    return blobs(n=n, d=d, k=k, seed=seed, sep=0.4)


def wide():
    return mlp(hidden=128)


def mlp(d=12, k=3, hidden=16):
    return nn.Sequential(nn.Linear(d, hidden), nn.ReLU(), nn.Linear(hidden, k))


def bn_mlp(d=12, k=3):
    return nn.Sequential(nn.Linear(d, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, k))


class TwoHeads(nn.Module):
    def __init__(self, d=12, k=3):
        super().__init__()
        self.enc, self.dec, self.head = nn.Linear(d, 4), nn.Linear(4, d), nn.Linear(4, k)

    def forward(self, x):
        z = torch.tanh(self.enc(x))
        return self.dec(z), self.head(z)


def plain_mse(model, xb, yb):
    """A custom loss without ``graph_safe`` that returns a scalar only."""
    out = model(xb)
    return nn.functional.mse_loss(out.float(), yb.float())


def shift_augment(xb):
    """A deterministic custom augment (no ``graph_safe``)."""
    return xb * 0.9 + 0.05


# ------------------------------------------------------------------------------------------------ cases
_TMP = {"dir": Path(".")}                  # where a checkpoint case writes its file


def _trainer(model, **kw):
    """A CPU Trainer; ``augment="noise"`` and ``checkpoint="CHECKPOINT"`` are made fresh here."""
    from cellbook.train import Trainer, gaussian_noise

    if kw.get("augment") == "noise":
        kw["augment"] = gaussian_noise(0.15)
    if kw.get("checkpoint") == "CHECKPOINT":
        kw["checkpoint"] = str(_TMP["dir"] / "best.pt")
    return Trainer(model, device="cpu", progress=False, **kw)


def _model(build, seed=0):
    torch.manual_seed(seed)
    return build()


def _clf(settings, data=blobs, build=mlp, fit_kw=None, seed=0):
    def run():
        X, y = data()
        tr = _trainer(_model(build, seed), seed=seed, **settings).fit(X, y, **(fit_kw(X, y) if fit_kw else {}))
        X = X[:SHOWN]
        outputs = {"proba": tr.predict_proba(X), "pred": tr.predict(X).astype(str)}
        if tr.checkpoint:
            saved = torch.load(tr.checkpoint, weights_only=True)
            outputs["checkpoint"] = np.concatenate([v.reshape(-1).float().numpy() for v in saved.values()])
        return tr, outputs
    return run


def _regression(settings, build=None, seed=0, targets=1):
    def run():
        X, y = blobs()
        rng = np.random.default_rng(5)
        Y = (X[:, :targets] * 0.5 + rng.normal(0, 0.1, size=(len(X), targets))).astype(np.float32)
        net = build or (lambda: mlp(k=targets))
        tr = _trainer(_model(net, seed), task="regression", seed=seed, **settings).fit(X, Y)
        return tr, {"out": tr.predict(X[:SHOWN])}
    return run


def _reconstruction(settings, seed=0, fit_val=False, sparse=False):
    def run():
        X, _ = counts()
        Xin = sp.csr_matrix(X) if sparse else X
        torch.manual_seed(seed)
        net = nn.Sequential(nn.Linear(16, 6), nn.Tanh(), nn.Linear(6, 16))
        tr = _trainer(net, task="reconstruction", seed=seed, **settings)
        tr.fit(Xin[:200], X_val=Xin[200:]) if fit_val else tr.fit(Xin)
        X = X[:SHOWN]
        return tr, {"out": tr.forward(X), "code": tr.forward(X, fn=lambda m, x: m[1](m[0](x)))}
    return run


def _custom_loss(settings, seed=0):
    def run():
        from cellbook.train import classifier_ae_loss, pack_targets

        X, y = blobs()
        codes = np.unique(y, return_inverse=True)[1]
        tr = _trainer(_model(TwoHeads, seed), task="regression", loss=classifier_ae_loss(0.3), seed=seed,
                      **settings).fit(X, pack_targets(X, codes))
        X = X[:SHOWN]
        return tr, {"out": tr.forward(X), "logits": tr.forward(X, fn=lambda m, x: m(x)[1])}
    return run


def _curve(seed=0):
    def run():
        from cellbook.train import CurveTrainer

        X, y = blobs()
        tr = CurveTrainer(_model(mlp, seed), device="cpu", progress=False, seed=seed, max_epochs=6, batch_size=32,
                          lr=5e-3, patience=2).fit(X[:180], y[:180], X_val=X[180:], y_val=y[180:])
        return tr, {"proba": tr.predict_proba(X[:SHOWN])}
    return run


def _train_autoencoder(**kw):
    def run():
        from cellbook.train import train_autoencoder

        X, _ = counts()
        args = dict(kw, X_test=X[200:] if kw.get("X_test") else None)
        model, tr = train_autoencoder(X[:200], "L8,G,L3", device="cpu", seed=2, **args)
        return tr, {"recon": model.reconstruct(X[:SHOWN]), "codes": model.codes(X[:SHOWN])}
    return run


def _train_classifier_autoencoder(**kw):
    def run():
        from cellbook.train import train_classifier_autoencoder

        X, y = counts()
        model, tr, classes = train_classifier_autoencoder(X, y, "L8,G,L3", device="cpu", seed=3, **kw)
        X = X[:SHOWN]
        return tr, {"recon": model.reconstruct(X), "logits": model.logits(X), "classes": classes.astype(str)}
    return run


BASE = dict(max_epochs=6, batch_size=32, lr=5e-3)
CASES = {
    "clf_val_early_stop": _clf(dict(BASE, max_epochs=40, lr=3e-3, patience=3), data=hard, build=wide),
    "clf_monitor_train_stop": _clf(dict(BASE, max_epochs=40, lr=0.5, patience=2, monitor="train", optimizer="sgd"),
                                   data=hard, build=wide),
    "clf_no_val": _clf(dict(BASE, val_fraction=0, patience=None)),
    "clf_class_weight_array": _clf(dict(BASE, class_weight=np.array([1.0, 2.0, 0.5]))),
    "clf_class_weight_dict_smooth": _clf(dict(BASE, class_weight={"c0": 0.3, "c1": 1.0, "c2": 3.0},
                                              label_smoothing=0.1)),
    "clf_label_smoothing": _clf(dict(BASE, label_smoothing=0.2, val_fraction=0.25)),
    "clf_monitor_train_xval": _clf(dict(BASE, monitor="train", patience=1),
                                   fit_kw=lambda X, y: {"X_val": X[:60], "y_val": y[:60]}),
    "clf_monitor_train_split": _clf(dict(BASE, monitor="train", patience=3, val_fraction=0.2)),
    "clf_lr_step_adam": _clf(dict(BASE, lr_step=5, lr_gamma=0.5)),
    "clf_sgd_weight_decay": _clf(dict(BASE, optimizer="sgd", lr=2e-2, weight_decay=1e-3, lr_step=7)),
    "clf_adamw": _clf(dict(BASE, optimizer="adamw", weight_decay=0.05)),
    "clf_augment_noise": _clf(dict(BASE, augment="noise")),
    "clf_augment_custom": _clf(dict(BASE, augment=shift_augment)),
    "clf_groups": _clf(dict(BASE, val_fraction=0.3), fit_kw=lambda X, y: {"groups": np.arange(len(X)) % 7}),
    "clf_sparse": _clf(dict(BASE), data=lambda: (sp.csr_matrix(np.where(counts()[0] > 0.5, counts()[0], 0)),
                                                 counts()[1]), build=lambda: mlp(d=16)),
    "clf_batchnorm_odd_batch": _clf(dict(BASE, batch_size=23, val_fraction=0.1), build=bn_mlp),
    "clf_seed_predict_batch": _clf(dict(BASE, predict_batch_size=50, val_fraction=0.2), seed=4),
    "clf_checkpoint": _clf(dict(BASE, checkpoint="CHECKPOINT")),
    "regression": _regression(dict(BASE, patience=2)),
    "regression_2d_sgd_step": _regression(dict(BASE, optimizer="sgd", lr=1e-2, lr_step=4), targets=2),
    "reconstruction": _reconstruction(dict(BASE, val_fraction=0.2)),
    "reconstruction_noise_xval": _reconstruction(dict(BASE, augment="noise", val_fraction=0), fit_val=True),
    "reconstruction_sparse": _reconstruction(dict(BASE, patience=1), sparse=True),
    "custom_loss_pack_targets": _custom_loss(dict(BASE, val_fraction=0, patience=None, augment="noise")),
    "custom_loss_scalar": _regression(dict(BASE, loss=plain_mse, val_fraction=0.2), targets=3,
                                      build=lambda: mlp(k=3)),
    "curve_trainer": _curve(),
    "train_autoencoder": _train_autoencoder(epochs=5, batch_size=16),
    "train_autoencoder_test_noise": _train_autoencoder(epochs=4, batch_size=32, noise_sd=0.2, lr=3e-3,
                                                       X_test=True),
    "train_autoencoder_sgd_uncentered": _train_autoencoder(epochs=3, optimizer="sgd", lr=1e-2, center=False),
    "train_classifier_autoencoder": _train_classifier_autoencoder(epochs=4, mse_weight=0.7),
    "train_classifier_autoencoder_noise": _train_classifier_autoencoder(epochs=3, noise_sd=0.1, hidden=5,
                                                                         batch_size=20),
    # the device paths, on the CPU: resident rows, and fixed-buffer (graph) steps
    "resident_clf_val_stop": _clf(dict(BASE, resident=True, patience=2, lr=5e-3, max_epochs=40), data=hard,
                                  build=wide),
    "graphs_clf_val_stop": _clf(dict(BASE, graphs=True, patience=2, lr=5e-3, max_epochs=40, lr_step=4), data=hard,
                                build=wide),
    "resident_clf_xval": _clf(dict(BASE, resident=True), fit_kw=lambda X, y: {"X_val": X[:50], "y_val": y[:50]}),
    "resident_sparse": _clf(dict(BASE, resident=True), data=lambda: (sp.csr_matrix(counts()[0]), counts()[1]),
                            build=lambda: mlp(d=16)),
    "resident_reconstruction_noise": _reconstruction(dict(BASE, resident=True, augment="noise")),
    "resident_regression_xval": _reconstruction(dict(BASE, resident=True, val_fraction=0.1), fit_val=True),
    "graphs_clf_lr_step": _clf(dict(BASE, graphs=True, lr_step=3, lr_gamma=0.7)),
    "graphs_clf_sgd_weight": _clf(dict(BASE, graphs=True, optimizer="sgd", lr=1e-2, class_weight=[1, 2, 1],
                                       batch_size=25)),
    "graphs_adamw_smooth_bn": _clf(dict(BASE, graphs=True, optimizer="adamw", label_smoothing=0.1, batch_size=23),
                                   build=bn_mlp),
    "graphs_reconstruction_noise": _reconstruction(dict(BASE, graphs=True, augment="noise", lr_step=10)),
    "graphs_custom_loss": _custom_loss(dict(BASE, graphs=True, val_fraction=0, patience=None)),
    "graphs_custom_augment_not_safe": _clf(dict(BASE, graphs=True, augment=shift_augment)),
}


def run_case(name: str, tmp_dir: Path | None = None) -> dict[str, np.ndarray]:
    """Run case ``name`` on one torch thread; every output as a NumPy array (key -> array)."""
    torch.set_num_threads(1)
    _TMP["dir"] = tmp_dir or Path(".")
    tr, outputs = CASES[name]()
    return _arrays(tr, outputs)


def _arrays(tr, outputs: dict) -> dict[str, np.ndarray]:
    h = tr.history
    cols = [c for c in h.columns if c not in TIMING]
    state = tr.model.state_dict()
    out = {
        "history": h[cols].to_numpy(dtype=np.float64),
        "history_columns": np.array(cols, dtype=str),
        "weights": np.concatenate([v.detach().cpu().reshape(-1).float().numpy() for v in state.values()]),
        "weight_names": np.array(list(state), dtype=str),
        "fitted": np.array([repr(tr.best_epoch), repr(tr.resident_), repr(tr.graphs_),
                            repr(None if tr.classes_ is None else list(map(str, tr.classes_))),
                            repr(getattr(tr, "class_weight_", None) is not None
                                 and list(map(float, tr.class_weight_)))], dtype=str),
    }
    for key, value in outputs.items():
        out[key] = np.asarray(value)
    return out


def main() -> None:
    import tempfile

    import cellbook

    print(f"cellbook from {Path(cellbook.__file__).parent}", file=sys.stderr)
    arrays = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in CASES:
            for key, value in run_case(name, Path(tmp)).items():
                arrays[f"{name}.{key}"] = value
            print(f"  {name}", file=sys.stderr)
    np.savez_compressed(OUT, **arrays)
    print(f"wrote {OUT} ({OUT.stat().st_size / 1024:.0f} kB, {len(CASES)} cases)", file=sys.stderr)


if __name__ == "__main__":
    main()
