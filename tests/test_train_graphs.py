"""The Trainer's fixed-buffer steps (``graphs``): the code a CUDA graph captures.

On the CPU ``graphs=True`` runs those steps eagerly; they must give the default loop's numbers exactly
(gathering, augmentation, loss sums, the hand-written StepLR schedule, SGD and Adam).  The capture itself
needs a GPU: the last test runs only where CUDA is present (``bash benchmarks/gpu_check.sh`` runs it there).
"""
import numpy as np
import pytest
import scipy.sparse as sp
import torch
from torch import nn

from cellbook import Trainer, seed_everything
from cellbook.train import classifier_ae_loss, gaussian_noise, pack_targets


def blobs(n=203, d=20, k=3, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 3.0, size=(k, d))
    y = rng.integers(0, k, size=n)
    X = (centres[y] + rng.normal(size=(n, d))).astype(np.float32)
    return X, np.array([f"c{i}" for i in y])


def bn_net():
    return nn.Sequential(nn.Linear(20, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 3))


def fit(make, X, y=None, graphs=None, device="cpu", **kw):
    seed_everything(7)
    torch.manual_seed(7)
    return Trainer(make(), device=device, progress=False, seed=7, graphs=graphs, **kw).fit(X, y)


COLS = ["train_loss", "val_loss", "val_accuracy", "lr"]


@pytest.mark.parametrize("optimizer", ["adam", "sgd", "adamw"])
def test_static_steps_give_the_default_loops_numbers(optimizer):
    X, y = blobs()                      # 203 rows, batch 32: a shorter last batch every epoch
    X[X < 0.3] = 0
    for data in (X, sp.csr_matrix(X)):
        kw = dict(max_epochs=6, batch_size=32, lr=1e-2, patience=2, optimizer=optimizer, lr_step=3, lr_gamma=0.5,
                  class_weight={"c0": 1.0, "c1": 2.0, "c2": 0.5}, label_smoothing=0.1, weight_decay=1e-3)
        plain, static = fit(bn_net, data, y, **kw), fit(bn_net, data, y, graphs=True, **kw)
        assert plain.graphs_ is False and static.graphs_ == "static" and static.resident_ is True
        np.testing.assert_array_equal(plain.history[COLS].to_numpy(), static.history[COLS].to_numpy())
        np.testing.assert_array_equal(plain.predict_proba(data), static.predict_proba(data))
        assert plain.best_epoch == static.best_epoch
        assert static.history["lr"].nunique() > 1        # the schedule really changed the rate


def test_static_steps_denoising_and_classifier_autoencoder_match():
    X, y = blobs(n=90)
    ae = lambda: nn.Sequential(nn.Linear(20, 4), nn.Tanh(), nn.Linear(4, 20))
    runs = [fit(ae, X, None, graphs=g, task="reconstruction", max_epochs=4, batch_size=8, val_fraction=0,
                patience=None, augment=gaussian_noise(0.1)).history[["train_loss"]].to_numpy() for g in (None, True)]
    np.testing.assert_array_equal(runs[0], runs[1])

    class TwoHeads(nn.Module):
        def __init__(self):
            super().__init__()
            self.enc, self.dec, self.head = nn.Linear(20, 4), nn.Linear(4, 20), nn.Linear(4, 3)

        def forward(self, x):
            z = torch.tanh(self.enc(x))
            return self.dec(z), self.head(z)

    codes = np.unique(y, return_inverse=True)[1]
    T = pack_targets(X, codes)
    runs = [fit(TwoHeads, X, T, graphs=g, task="regression", loss=classifier_ae_loss(0.5), max_epochs=3, batch_size=8,
                val_fraction=0, patience=None, optimizer="sgd", lr=0.01).history[["train_loss"]].to_numpy()
            for g in (None, True)]
    np.testing.assert_array_equal(runs[0], runs[1])


def test_graphs_setting_environment_and_safety(monkeypatch):
    X, y = blobs(n=60)
    net = lambda: nn.Sequential(nn.Linear(20, 8), nn.ReLU(), nn.Linear(8, 3))
    monkeypatch.setenv("CELLBOOK_CUDA_GRAPHS", "1")
    tr = fit(net, X, y, max_epochs=1)
    assert tr.graphs_ is False and tr.resident_ is False      # the variable is about CUDA: the CPU is unchanged
    with pytest.raises(ValueError, match="graphs"):
        Trainer(net(), graphs="yes")
    t = Trainer(net(), augment=lambda xb: torch.flip(xb, dims=[-1]) if torch.rand(1).item() < 0.5 else xb)
    assert "augment" in t._graph_safe()                       # host-side randomness must not be frozen in a graph
    assert Trainer(net(), augment=gaussian_noise(0.1), loss=classifier_ae_loss())._graph_safe() is None
    from cellbook.models.vision import flip_augment
    assert not getattr(flip_augment, "graph_safe", False)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")
def test_cuda_graphs_capture_and_train_like_eager():
    X, y = blobs(n=4000)
    kw = dict(max_epochs=8, batch_size=128, lr=5e-3, patience=None, lr_step=20, lr_gamma=0.9, device="cuda")
    eager, graphed = fit(bn_net, X, y, graphs=False, **kw), fit(bn_net, X, y, graphs=True, **kw)
    assert graphed.graphs_ == "captured", graphed.graphs_
    assert eager.graphs_ is False
    # not bit-identical (cuDNN kernels, atomics), but the same training
    np.testing.assert_allclose(eager.history["train_loss"], graphed.history["train_loss"], rtol=0.1, atol=0.03)
    np.testing.assert_allclose(eager.history["lr"], graphed.history["lr"], rtol=1e-6)
    assert abs((eager.predict(X) == y).mean() - (graphed.predict(X) == y).mean()) < 0.02
    flipped = Trainer(bn_net(), device="cuda", graphs=True, progress=False, max_epochs=1,
                      augment=lambda xb: xb.flip(-1) if torch.rand(1).item() < 0.5 else xb).fit(X, y)
    assert flipped.graphs_.startswith("not graph-safe")
