import numpy as np
import pytest
import scipy.sparse as sp
import torch
from torch import nn

from cellbook import Trainer, count_parameters, seed_everything


def blobs(n=300, d=20, k=3, seed=0, sep=3.0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, sep, size=(k, d))
    y = rng.integers(0, k, size=n)
    X = centres[y] + rng.normal(size=(n, d))
    return X.astype(np.float32), np.array([f"c{i}" for i in y])


def mlp(d=20, k=3):
    return nn.Sequential(nn.Linear(d, 32), nn.ReLU(), nn.Linear(32, k))


def test_loss_decreases_and_separates():
    X, y = blobs()
    seed_everything(0)
    tr = Trainer(mlp(), max_epochs=15, lr=1e-2, batch_size=32, patience=None, device="cpu", progress=False).fit(X, y)
    h = tr.history
    assert list(h.columns[:2]) == ["epoch", "train_loss"]
    assert h["train_loss"].iloc[-1] < 0.5 * h["train_loss"].iloc[0]
    assert (tr.predict(X) == y).mean() > 0.95
    proba = tr.predict_proba(X)
    assert proba.shape == (len(X), 3) and np.allclose(proba.sum(1), 1, atol=1e-5)
    assert set(tr.predict(X)) <= set(y)  # labels come back in the original vocabulary
    assert tr.fit_seconds > 0


def test_sparse_input_matches_dense():
    X, y = blobs(n=200)
    X[X < 0.5] = 0
    Xs = sp.csr_matrix(X)
    dense = Trainer(mlp(), max_epochs=3, device="cpu", progress=False, seed=1)
    seed_everything(1)
    dense.model = mlp()
    dense.fit(X, y)
    sparse = Trainer(mlp(), max_epochs=3, device="cpu", progress=False, seed=1)
    seed_everything(1)
    sparse.model = mlp()
    sparse.fit(Xs, y)
    np.testing.assert_allclose(dense.history["train_loss"], sparse.history["train_loss"], rtol=1e-5)
    np.testing.assert_allclose(dense.predict_proba(X), sparse.predict_proba(Xs), rtol=1e-4, atol=1e-6)


def test_sparse_batches_are_densified_per_batch(monkeypatch):
    X, y = blobs(n=256)
    Xs = sp.csr_matrix(X)
    seen = []
    orig = sp.csr_matrix.toarray

    def spy(self, *a, **k):
        seen.append(self.shape[0])
        return orig(self, *a, **k)

    monkeypatch.setattr(sp.csr_matrix, "toarray", spy)
    Trainer(mlp(), max_epochs=1, batch_size=32, val_fraction=0, device="cpu", progress=False).fit(Xs, y)
    assert seen and max(seen) <= 32


def test_best_checkpoint_is_restored(tmp_path):
    X, y = blobs(n=200)
    ckpt = tmp_path / "best.pt"
    tr = Trainer(mlp(), max_epochs=12, lr=5e-2, device="cpu", progress=False, patience=None,
                 checkpoint=str(ckpt)).fit(X, y)
    best_row = tr.history.loc[tr.history["val_loss"].idxmin()]
    assert tr.best_epoch == int(best_row["epoch"])
    saved = torch.load(ckpt)
    for k, v in tr.model.state_dict().items():
        assert torch.equal(v.cpu(), saved[k].cpu())
    # the restored model reproduces the best epoch's validation loss
    assert tr._evaluate(*_val(tr, X, y))["val_loss"] == pytest.approx(best_row["val_loss"], rel=1e-4)


def _val(tr, X, y):
    codes = np.searchsorted(tr.classes_, y)
    _, val_idx = tr._split(len(X), codes)
    return X, codes, val_idx


def test_early_stopping_stops():
    X, y = blobs(n=200)
    tr = Trainer(mlp(), max_epochs=200, lr=5e-2, patience=2, device="cpu", progress=False).fit(X, y)
    assert len(tr.history) < 200


def test_lr_schedule_steps_per_iteration():
    X, y = blobs(n=320)
    tr = Trainer(mlp(), max_epochs=2, batch_size=32, lr=1e-3, lr_step=5, lr_gamma=0.5, val_fraction=0,
                 device="cpu", progress=False).fit(X, y)
    # 10 iterations per epoch, halving every 5: after 20 iterations lr = 1e-3 * 0.5**4
    assert tr.history["lr"].iloc[-1] == pytest.approx(1e-3 * 0.5 ** 4)


def test_reconstruction_and_same_seed_same_numbers():
    X, _ = blobs(n=100)
    runs = []
    for _ in range(2):
        seed_everything(3)
        ae = nn.Sequential(nn.Linear(20, 4), nn.Tanh(), nn.Linear(4, 20))
        tr = Trainer(ae, task="reconstruction", max_epochs=5, device="cpu", progress=False, seed=3).fit(X)
        runs.append(tr.history["train_loss"].to_numpy())
        assert tr.predict(X).shape == X.shape
    np.testing.assert_array_equal(runs[0], runs[1])


def test_custom_loss_and_augment():
    X, y = blobs(n=120)
    calls = []

    def noisy(xb):
        calls.append(1)
        return xb + 0.1 * torch.randn_like(xb)

    def loss(model, xb, yb):
        return nn.functional.cross_entropy(model(xb), yb)

    tr = Trainer(mlp(), loss=loss, augment=noisy, max_epochs=2, device="cpu", progress=False).fit(X, y)
    assert calls and "val_loss" in tr.history


@pytest.mark.parametrize("kwargs, match", [
    ({"task": "clustering"}, r"task='clustering' is not valid: it must be one of 'classification'"),
    ({"optimizer": "rmsprop"}, r"optimizer='rmsprop' is not valid: it must be one of 'adam', 'adamw', 'sgd'"),
    ({"max_epochs": "3"}, r"max_epochs='3' is not valid: it must be an integer >= 1"),
    ({"lr": "abc"}, r"lr='abc' is not valid: it must be a number > 0"),
    ({"patience": 0}, r"patience=0 is not valid: it must be None or an integer >= 1"),
    ({"batch_size": 2.5}, r"batch_size=2.5 is not valid"),
    ({"amp": "yes"}, r"amp='yes' is not valid: it must be True or False"),
    ({"val_fraction": 1.5}, "val_fraction"),
    ({"device": "tpu"}, "unknown device"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Trainer(mlp(), **kwargs)


def test_bad_inputs():
    X, y = blobs(n=50)
    tr = Trainer(mlp(), device="cpu", progress=False)
    with pytest.raises(ValueError, match="rows"):
        tr.fit(X, y[:-1])
    Xn = X.copy()
    Xn[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        tr.fit(Xn, y)
    with pytest.raises(ValueError, match="at least 2 classes"):
        tr.fit(X, np.array(["a"] * len(X)))


def test_count_parameters():
    assert count_parameters(mlp()) == 20 * 32 + 32 + 32 * 3 + 3


def test_grouped_validation_split_holds_out_whole_groups():
    X, y = blobs(n=120)
    groups = np.repeat(np.arange(12), 10)
    tr = Trainer(mlp(), max_epochs=1, val_fraction=0.25, device="cpu", progress=False)
    codes = np.unique(y, return_inverse=True)[1]
    train_idx, val_idx = tr._split(len(X), codes, groups)
    assert set(groups[train_idx]).isdisjoint(groups[val_idx])
    assert len(val_idx) == 30
    tr.fit(X, y, groups=groups)
    assert "val_loss" in tr.history
    with pytest.raises(ValueError, match="groups has"):
        tr.fit(X, y, groups=groups[:-1])


def test_monitor_train_only_logs_validation():
    X, y = blobs(n=200)
    Xv, yv = blobs(n=60, seed=5)
    tr = Trainer(mlp(), max_epochs=8, lr=5e-2, patience=None, monitor="train", device="cpu",
                 progress=False).fit(X, y, X_val=Xv, y_val=yv)
    assert "val_loss" in tr.history
    assert tr.best_epoch == int(tr.history.loc[tr.history["train_loss"].idxmin(), "epoch"])
    with pytest.raises(ValueError, match=r"monitor=.* is not valid: it must be one of .val., .train."):
        Trainer(mlp(), monitor="test")


# ----------------------------------------------------------------- the resident (GPU) data path
def _fit_both(make_model, X, y=None, **kw):
    """Fit the same model from the same seed on the host path and on the resident path (CPU)."""
    out = []
    for resident in (False, True):
        seed_everything(7)
        torch.manual_seed(7)
        tr = Trainer(make_model(), device="cpu", progress=False, seed=7, resident=resident, **kw).fit(X, y)
        assert tr.resident_ is resident
        out.append(tr)
    return out


def test_resident_path_gives_the_same_numbers_as_the_host_path():
    X, y = blobs(n=203)   # 203 rows: a last batch of odd size
    X[X < 0.3] = 0
    bn = lambda: nn.Sequential(nn.Linear(20, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 3))
    for data in (X, sp.csr_matrix(X)):
        host, res = _fit_both(bn, data, y, max_epochs=6, batch_size=32, lr=1e-2, patience=2,
                              class_weight={"c0": 1.0, "c1": 2.0, "c2": 0.5}, label_smoothing=0.1)
        pd_cols = ["train_loss", "val_loss", "val_accuracy"]
        np.testing.assert_array_equal(host.history[pd_cols].to_numpy(), res.history[pd_cols].to_numpy())
        np.testing.assert_array_equal(host.predict_proba(data), res.predict_proba(data))
        assert host.best_epoch == res.best_epoch


def test_resident_path_denoising_reconstruction_matches():
    X, _ = blobs(n=90)
    ae = lambda: nn.Sequential(nn.Linear(20, 4), nn.Tanh(), nn.Linear(4, 20))
    runs = []
    for resident in (False, True):
        seed_everything(3)
        torch.manual_seed(3)
        tr = Trainer(ae(), task="reconstruction", max_epochs=4, batch_size=8, val_fraction=0, patience=None,
                     device="cpu", progress=False, seed=3, resident=resident,
                     augment=lambda xb: xb + 0.1 * torch.randn_like(xb))
        tr.fit(X, X_val=X[:30])
        runs.append(tr.history[["train_loss", "val_loss"]].to_numpy())
    np.testing.assert_array_equal(runs[0], runs[1])


def test_resident_auto_is_off_on_cpu_and_budget_env(monkeypatch):
    from cellbook.train import resident_budget_bytes

    X, y = blobs(n=60)
    tr = Trainer(mlp(), max_epochs=1, device="cpu", progress=False).fit(X, y)
    assert tr.resident_ is False            # the CPU keeps densifying batch by batch
    monkeypatch.setenv("CELLBOOK_RESIDENT_GB", "1")
    assert resident_budget_bytes("cpu") == 2 ** 30
    tr = Trainer(mlp(), max_epochs=1, device="cpu", progress=False).fit(X, y)
    assert tr.resident_ is True
    monkeypatch.setenv("CELLBOOK_RESIDENT_GB", "lots")
    with pytest.raises(ValueError, match="CELLBOOK_RESIDENT_GB"):
        resident_budget_bytes("cpu")
    with pytest.raises(ValueError, match="resident"):
        Trainer(mlp(), resident="yes")


@pytest.mark.parametrize("kwargs, y, out, match", [
    ({"val_fraction": 0.9}, list("aabbcc"), 3, r"val_fraction=0.9 leaves no training rows: X has 6 row\(s\)"),
    ({"task": "regression"}, "1d", 1, r"outputs rows of shape \(1,\) but the targets' rows have shape \(\); "
                                      r"give y one column per output"),
    ({"task": "reconstruction"}, None, 3, r"outputs rows of shape \(3,\) but the targets' rows have shape \(4,\)"),
])
def test_shapes_and_split_sizes_are_checked_before_training(kwargs, y, out, match):
    """A wrong output width or a split with no training rows is one clear error, not torch's broadcasting."""
    X = np.random.default_rng(0).normal(size=(6, 4)).astype(np.float32)
    y = X[:, 0] if isinstance(y, str) else (None if y is None else np.array(y))
    with pytest.raises(ValueError, match=match):
        Trainer(nn.Linear(4, out), max_epochs=1, progress=False, device="cpu", **kwargs).fit(X, y)


def test_a_small_validation_split_falls_back_to_unstratified():
    """Too few validation rows for every class: the split is drawn without stratification (not an error)."""
    X = np.random.default_rng(0).normal(size=(8, 4)).astype(np.float32)
    tr = Trainer(nn.Linear(4, 3), max_epochs=1, progress=False, device="cpu", val_fraction=0.2)
    tr.fit(X, np.array(list("aabbccaa")))
    assert len(tr.history) == 1
