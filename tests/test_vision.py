"""cellbook.models.vision: shapes, parameter counts, MACs; training through the Trainer."""
import numpy as np
import pytest
import torch

from cellbook import count_parameters
from cellbook.models import vision as vis


def test_separable_conv_parameters_and_groups():
    conv = vis.SeparableConv2d(4, 8, kernel_size=3)
    # depthwise 4 * 3 * 3 + pointwise 4 * 8 (no bias)
    assert count_parameters(conv) == 4 * 9 + 4 * 8
    assert conv.depthwise.groups == 4
    x = torch.zeros(1, 4, 6, 6)
    x[0, 1] = 1.0                                         # only channel 1 non-zero
    with torch.no_grad():
        d = conv.depthwise(x)
    assert d[0, 0].abs().sum() == 0 and d[0, 1].abs().sum() > 0   # no mixing across channels
    assert conv(x).shape == (1, 8, 6, 6)
    assert vis.count_macs(conv, (4, 6, 6)) == 36 * (4 * 9) + 36 * (4 * 8)


@pytest.mark.parametrize("name", ["scnn", "resnet", "vgg"])
@pytest.mark.parametrize("shape", [(1, 36, 48), (10, 64, 64)])
def test_models_output_shape(name, shape):
    m = vis.build(name, in_channels=shape[0], n_classes=3, widths=(4, 8, 8))
    out = m(torch.randn(2, *shape))
    assert out.shape == (2, 3)
    assert vis.count_macs(m, shape) > 0


def test_parameter_counts_exact():
    # SCNN, 1 stage of width 4 on 2 input channels: sep (2*9 + 2*4) + BN (2*4) + FC (4*2 + 2)
    m = vis.SCNN(in_channels=2, n_classes=2, widths=(4,))
    assert count_parameters(m) == (18 + 8) + 8 + 10
    # VGG, 1 stage, 1 conv: conv 2*4*9 + BN 8 + FC (4*4 -> 5) 16*5+5 + FC 5*2+2
    v = vis.SmallVGG(in_channels=2, n_classes=2, widths=(4,), convs_per_stage=1, fc=5)
    assert count_parameters(v) == 72 + 8 + 85 + 12
    # separable < plain for the same widths
    assert (count_parameters(vis.build("scnn", 10, 2, widths=(16, 32, 64)))
            < count_parameters(vis.build("vgg", 10, 2, widths=(16, 32, 64))))


def test_build_rejects_bad_arguments():
    with pytest.raises(ValueError, match="unknown model"):
        vis.build("alexnet")
    with pytest.raises(ValueError, match="n_classes"):
        vis.build("scnn", 1, 1)
    with pytest.raises(ValueError, match="widths"):
        vis.build("resnet", 1, 2, widths=())
    with pytest.raises(ValueError, match="input_shape"):
        vis.count_macs(vis.build("scnn"), (8, 8))


def test_fit_classifier_learns_and_is_deterministic():
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 2, 16, 16)).astype(np.float32)
    y = np.repeat(["lo", "hi"], 20)
    X[y == "hi", 0, 4:12, 4:12] += 2.0                    # a bright square marks class "hi"
    t1 = vis.fit_classifier("scnn", X, y, widths=(8, 16), epochs=40, seed=0, device="cpu")
    acc = (t1.predict(X) == y).mean()
    assert acc > 0.9
    t2 = vis.fit_classifier("scnn", X, y, widths=(8, 16), epochs=40, seed=0, device="cpu")
    assert np.allclose(t1.predict_proba(X), t2.predict_proba(X))
    with pytest.raises(ValueError, match="at least 2 classes"):
        vis.fit_classifier("scnn", X, np.repeat("a", 40), epochs=1, device="cpu")
    with pytest.raises(ValueError, match="stack of images"):
        vis.fit_classifier("scnn", X[:, 0], y, epochs=1, device="cpu")


def test_screening_metrics_match_sklearn():
    """The II.4 figures (cellbook.metrics.screening) against scikit-learn on a made-up plate."""
    from sklearn import metrics as skm

    from cellbook import metrics

    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 96)
    score = np.clip(y * 0.3 + rng.uniform(0, 0.7, 96), 0, 1)
    m = metrics.screening(y, score, threshold=0.5)
    pred = (score >= 0.5).astype(int)
    tn, fp, fn, tp = skm.confusion_matrix(y, pred).ravel()
    assert m["auc"] == pytest.approx(skm.roc_auc_score(y, score))
    assert m["f1"] == pytest.approx(skm.f1_score(y, pred))
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))      # (TP + TN) / all
    assert m["sensitivity"] == pytest.approx(skm.recall_score(y, pred))
    assert m["specificity"] == pytest.approx(skm.recall_score(y, pred, pos_label=0))
    assert m["ppv"] == pytest.approx(skm.precision_score(y, pred))
    assert m["npv"] == pytest.approx(skm.precision_score(y, pred, pos_label=0))
    assert (m["tp"], m["tn"], m["fp"], m["fn"]) == (tp, tn, fp, fn)
    assert m["accuracy"] != pytest.approx((tp + tn) / tp)                    # not the paper's typo
