"""Part I models: forward shapes, ensembles, and the classifier pipeline on small made-up data."""
import numpy as np
import pytest
import torch

from cellbook.annotation import CellTypeClassifier, build_model
from cellbook.models.cnn1d import CNN1D
from cellbook.models.ensemble import JointEnsemble, VotingEnsemble, joint
from cellbook.models.mlp import MLP
from cellbook.models.recurrent import LSTMClassifier

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize("make", [
    lambda: MLP(300, 5),
    lambda: CNN1D(300, 5),
    lambda: LSTMClassifier(300, 5, chunk=40),
    lambda: LSTMClassifier(300, 5, chunk=40, attention=True),
])
def test_forward_shape(make):
    torch.manual_seed(0)
    m = make().eval()
    out = m(torch.rand(7, 300))
    assert out.shape == (7, 5)
    assert torch.isfinite(out).all()


def test_cnn_reference_architecture_sizes():
    m = CNN1D(13822, 14)
    # 13822 -> conv s4 -> 3456 -> pool4 -> 864 -> conv s2 -> 432 -> pool4 -> 108; 128 channels
    assert m.flat_size == 128 * 108
    convs = [layer for layer in m.features if isinstance(layer, torch.nn.Conv1d)]
    assert ([(c.in_channels, c.out_channels, c.kernel_size[0], c.stride[0]) for c in convs]
            == [(1, 64, 7, 4), (64, 128, 5, 2)])
    assert m.classifier[-1].out_features == 14


def test_cnn_too_few_genes_is_a_clear_error():
    with pytest.raises(ValueError, match="too short"):
        CNN1D(20, 3)
    assert CNN1D(CNN1D.min_genes(), 3)(torch.rand(2, CNN1D.min_genes())).shape == (2, 3)


def test_lstm_chunks_pad_the_last_step():
    m = LSTMClassifier(105, 3, chunk=50)
    assert m.n_steps == 3
    seq = m.to_sequence(torch.arange(2 * 105, dtype=torch.float32).view(2, 105))
    assert seq.shape == (2, 3, 50)
    assert seq[0, 2, 5:].abs().sum() == 0 and seq[0, 2, 4] == 104


def test_attention_weights_sum_to_one():
    m = LSTMClassifier(100, 3, chunk=10, attention=True).eval()
    m(torch.rand(4, 100))
    assert m.last_attention.shape == (4, 10)
    assert torch.allclose(m.last_attention.sum(1), torch.ones(4))


class _Fixed(torch.nn.Module):
    def __init__(self, logits):
        super().__init__()
        self.logits = torch.tensor(logits, dtype=torch.float32)

    def forward(self, x):
        return self.logits.expand(x.shape[0], -1)


def test_joint_ensemble_averages_logits():
    e = JointEnsemble([_Fixed([1.0, 0.0, 0.0]), _Fixed([0.0, 3.0, 0.0])])
    assert torch.allclose(e(torch.zeros(2, 4))[0], torch.tensor([0.5, 1.5, 0.0]))


def test_soft_and_hard_voting_differ_by_hand():
    # members' probabilities: two weakly for class 0, one strongly for class 1
    members = [_Fixed([0.2, 0.0]), _Fixed([0.2, 0.0]), _Fixed([0.0, 5.0])]
    soft = torch.softmax(VotingEnsemble(members, "soft")(torch.zeros(1, 2)), 1)[0]
    hard = torch.softmax(VotingEnsemble(members, "hard")(torch.zeros(1, 2)), 1)[0]
    assert soft.argmax() == 1          # mean prob of class 1 is ~0.66
    assert hard.argmax() == 0          # two votes of three for class 0
    assert abs(float(hard[0]) - 2 / 3) < 0.01
    assert torch.allclose(soft.sum(), torch.tensor(1.0))


def test_ensemble_bad_input():
    with pytest.raises(ValueError, match="voting mode"):
        VotingEnsemble([MLP(10, 2)], mode="median")
    with pytest.raises(ValueError, match="at least one member"):
        JointEnsemble([])
    e = joint(lambda i: MLP(10, 2), k=3, seed=0)
    assert len(e.members) == 3
    assert not torch.equal(e.members[0].head.weight, e.members[1].head.weight)


def _toy(n=240, g=160, c=3, seed=0):
    rng = np.random.default_rng(seed)
    y = np.repeat([f"t{i}" for i in range(c)], n // c)
    lam = np.full((n, g), 1.0)
    for i in range(c):
        lam[y == f"t{i}", i * 20:(i + 1) * 20] = 8.0
    return rng.poisson(lam).astype(np.float32), y


@pytest.mark.parametrize("arch,ens", [("mlp", None), ("cnn", "joint"), ("cnn", "soft"),
                                      ("lstm_att", None), (["cnn", "lstm"], "joint")])
def test_classifier_learns_toy_data(arch, ens):
    X, y = _toy()
    clf = CellTypeClassifier(arch, ensemble=ens, k=2, n_genes=None, max_epochs=8, device="cpu",
                             model_kwargs={"chunk": 20}, lr=3e-3, patience=None, batch_size=32,
                             transform="counts")
    clf.fit(X, y)
    proba = clf.predict_proba(X)
    assert proba.shape == (len(y), 3)
    assert np.allclose(proba.sum(1), 1, atol=1e-4)
    assert (clf.predict(X) == y).mean() > 0.8
    assert clf.n_members == (1 if ens is None else 2)


def test_classifier_is_seeded():
    X, y = _toy()
    p1 = CellTypeClassifier("cnn", n_genes=None, max_epochs=2, device="cpu", seed=3).fit(X, y).predict_proba(X)
    p2 = CellTypeClassifier("cnn", n_genes=None, max_epochs=2, device="cpu", seed=3).fit(X, y).predict_proba(X)
    assert np.allclose(p1, p2)


def test_gene_selection_is_learned_on_training_cells():
    X, y = _toy()
    X[:, 150:] = 0  # undetected genes are dropped
    clf = CellTypeClassifier("mlp", n_genes=50, max_epochs=1, device="cpu").fit(X, y)
    assert len(clf.gene_idx_) == 50 and clf.gene_idx_.max() < 150
    # the HVGs of the training cells only: refitting on half the cells changes the choice
    from cellbook.preprocess.scrna import highly_variable, log_normalize
    assert np.array_equal(clf.gene_idx_, np.sort(highly_variable(log_normalize(X[:, :150]), 50)))
    half = CellTypeClassifier("mlp", n_genes=50, max_epochs=1, device="cpu").fit(X[::2], y[::2])
    assert np.array_equal(half.gene_idx_, np.sort(highly_variable(log_normalize(X[::2, :150]), 50)))


@pytest.mark.parametrize("transform", ["counts", "log1p"])
def test_transforms(transform):
    X, y = _toy(n=30, g=40)
    clf = CellTypeClassifier("mlp", transform=transform, n_genes=None, max_epochs=1, device="cpu").fit(X, y)
    Z = clf.features(X).toarray()
    if transform == "counts":
        assert np.allclose(Z, X[:, clf.gene_idx_])
    else:
        tot = X.sum(1, keepdims=True)
        assert np.allclose(Z, np.log1p(X[:, clf.gene_idx_] / tot * 1e4), atol=1e-4)


@pytest.mark.parametrize("bad,match", [
    (lambda X: X * np.nan, "NaN"),
    (lambda X: X - 5, "negative"),
    (lambda X: X + 0.5, "non-integer"),
])
def test_bad_counts(bad, match):
    X, y = _toy(n=30, g=40)
    with pytest.raises(ValueError, match=match):
        CellTypeClassifier("mlp", max_epochs=1).fit(bad(X), y)


def test_fewer_than_two_classes():
    X, _ = _toy(n=30, g=40)
    with pytest.raises(ValueError, match="fewer than 2 classes"):
        CellTypeClassifier("mlp", max_epochs=1).fit(X, np.array(["a"] * 30))


def test_bad_settings_are_refused_at_fit():
    """scikit-learn's contract: the constructor stores its arguments, fit validates them."""
    X, y = _toy(n=30, g=40)
    for kwargs, what in (({"architecture": "transformer"}, "architecture"), ({"ensemble": "stack"}, "ensemble"),
                         ({"transform": "zscore"}, "transform")):
        clf = CellTypeClassifier(**{"architecture": "cnn", **kwargs})
        assert clf.get_params()[next(iter(kwargs))] == next(iter(kwargs.values()))
        with pytest.raises(ValueError, match=what):
            clf.fit(X, y)
    with pytest.raises(ValueError, match="architecture"):
        build_model("gru", 10, 2)


def test_voting_modes_share_members_and_zoo_runs():
    from cellbook.comparison import evaluate_models, model_zoo, with_voting
    from cellbook.splits import repeated_splits

    X, y = _toy(n=120, g=160)
    soft = CellTypeClassifier("cnn", ensemble="soft", k=2, n_genes=None, max_epochs=2, device="cpu").fit(X, y)
    hard = with_voting(soft, "hard")
    assert hard.module_.members[0] is soft.module_.members[0] and hard.module_.mode == "hard"
    assert soft.module_.mode == "soft"
    with pytest.raises(ValueError, match="voting ensemble"):
        with_voting(CellTypeClassifier("mlp", n_genes=None, max_epochs=1, device="cpu").fit(X, y), "hard")
    zoo = model_zoo(k=2, include=["MLP", "CNN ensemble (hard vote)", "Logistic regression (scaled)"])
    assert zoo["CNN ensemble (hard vote)"]["shares"] in zoo   # its soft-vote source comes along
    with pytest.raises(ValueError, match="unknown model"):
        model_zoo(include=["GPT"])
    recs, preds, _ = evaluate_models(X, y, repeated_splits(y, seeds=[0, 1]), zoo, n_genes=None, max_epochs=1,
                                     device="cpu", progress=False)
    assert len(recs) == 8 and set(recs["split"]) == {0, 1}
    hard_s = recs[recs.model == "CNN ensemble (hard vote)"]["fit_seconds"].to_numpy()
    soft_s = recs[recs.model == "CNN ensemble (soft vote)"]["fit_seconds"].to_numpy()
    assert np.allclose(hard_s, soft_s)        # trained once, for both voting modes
    assert recs[recs.model == "MLP"]["epochs"].notna().all()
    assert np.allclose(recs["f1_micro"], recs["accuracy"])
    assert len(preds[("MLP", 0)]) == 40


# ------------------------------------------------- the fused (one batched pass) joint ensemble
def _pair(make, k=3):
    """The same joint ensemble twice (same weights): member by member, and fused."""
    loop = joint(make, k=k, seed=4, fused=False)
    fused = joint(make, k=k, seed=4, fused=True)
    fused.load_state_dict(loop.state_dict())
    return loop, fused


@pytest.mark.parametrize("make", [lambda i: CNN1D(300, 5, dropout=0.0),
                                  lambda i: CNN1D(300, 5, channels=(8, 16, 16), kernels=(7, 5, 3), strides=(2, 1, 1),
                                                  pool=2, dropout=0.0),
                                  lambda i: MLP(300, 5, dropout=0.0)])
def test_fused_joint_ensemble_computes_what_the_loop_computes(make):
    from cellbook.models.ensemble import can_fuse

    loop, fused = _pair(make)
    assert can_fuse(fused.members)
    x = torch.rand(16, 300) * 5
    for train in (True, False):          # batch statistics (and their running update), then running ones
        loop.train(train), fused.train(train)
        a, b = loop(x), fused(x)
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-5)
        if train:
            a.square().sum().backward(), b.square().sum().backward()
            for (name, pa), pb in zip(loop.named_parameters(), fused.parameters()):
                torch.testing.assert_close(pb.grad, pa.grad, rtol=1e-4, atol=1e-5, msg=name)
            for (name, ba), bb in zip(loop.named_buffers(), fused.buffers()):
                torch.testing.assert_close(bb, ba, rtol=1e-5, atol=1e-6, msg=name)


def test_fused_path_only_for_identical_supported_members():
    from cellbook.models.ensemble import can_fuse

    assert not can_fuse([CNN1D(300, 5), CNN1D(300, 5, hidden=(256, 128))])    # different shapes
    assert not can_fuse([CNN1D(300, 5), MLP(300, 5)])
    assert not can_fuse([LSTMClassifier(300, 5), LSTMClassifier(300, 5)])     # not a CNN / MLP
    mixed = JointEnsemble([CNN1D(300, 5), LSTMClassifier(300, 5)], fused=True)   # falls back to the loop
    assert mixed(torch.rand(4, 300)).shape == (4, 5)
    drop = joint(lambda i: MLP(300, 5, input_dropout=0.3), k=2, fused=True).train()   # a mask per member
    out = drop(torch.rand(4, 300))
    assert out.shape == (4, 5) and torch.isfinite(out).all()
    with pytest.raises(ValueError, match="fused"):
        JointEnsemble([CNN1D(300, 5)], fused="always")
