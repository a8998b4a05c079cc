"""Autoencoders built from architecture strings (Part III)."""
import numpy as np
import pytest
import torch
from torch import nn

from cellbook.models.autoencoder import Autoencoder, ClassifierAutoencoder, parse_architecture
from cellbook.train import (
    classifier_ae_loss,
    gaussian_noise,
    pack_targets,
    train_autoencoder,
    train_classifier_autoencoder,
)


@pytest.fixture(autouse=True)
def one_thread():
    """Small models train faster on one thread than on two contended ones; restored afterwards."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_parse_architecture():
    assert parse_architecture("L300,G,L30") == [("linear", 300), ("act", "G"), ("linear", 30)]
    assert parse_architecture("L300, softmax, L100, L30")[1] == ("act", "S")
    assert parse_architecture("l20,Sig,L5")[1] == ("act", "SIG")


@pytest.mark.parametrize("spec,bad", [("L300,X,L30", "'X'"), ("L300,G,Lx", "'Lx'"), ("G,L30", "start with a linear"),
                                      ("L300,G,G,L30", "two activations"), ("", "non-empty"), ("L0", "'L0'")])
def test_parse_errors_name_the_token(spec, bad):
    with pytest.raises(ValueError, match=bad):
        parse_architecture(spec)


def test_shapes_and_mirrored_decoder():
    ae = Autoencoder(100, "L40,G,L20,L8")
    x = torch.randn(5, 100)
    assert ae.encode(x).shape == (5, 8)
    assert ae(x).shape == (5, 100)
    assert ae.decode(torch.randn(3, 8)).shape == (3, 100)
    lin = [m for m in ae.decoder if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in lin] == [(8, 20), (20, 40), (40, 100)]
    # LogSigmoid follows the 40-unit layer in both halves, nothing after the output layer
    assert isinstance(ae.encoder[1], nn.LogSigmoid) and isinstance(ae.decoder[-2], nn.LogSigmoid)
    assert isinstance(ae.decoder[-1], nn.Linear)
    assert ae.reconstruct(np.zeros((4, 100), np.float32)).shape == (4, 100)
    assert ae.codes(np.zeros((4, 100), np.float32)).shape == (4, 8)
    with pytest.raises(ValueError, match="100 genes"):
        ae.codes(np.zeros((4, 99), np.float32))


def test_classifier_autoencoder_and_loss():
    m = ClassifierAutoencoder(20, 3, "L10,S,L4", hidden=6)
    recon, logits = m(torch.randn(7, 20))
    assert recon.shape == (7, 20) and logits.shape == (7, 3)
    X = np.random.default_rng(0).normal(size=(7, 20)).astype(np.float32)
    y = np.array([0, 1, 2, 0, 1, 2, 0])
    Y = torch.from_numpy(pack_targets(X, y))
    xb = torch.from_numpy(X)
    l1 = classifier_ae_loss(1.0)(m, xb, Y)[0]
    r, _ = m(xb)
    assert torch.isclose(l1, nn.functional.mse_loss(r, xb))
    l0 = classifier_ae_loss(0.0)(m, xb, Y)[0]
    assert torch.isclose(l0, nn.functional.cross_entropy(m(xb)[1], torch.from_numpy(y)))


def test_noise_on_input_only():
    torch.manual_seed(0)
    x = torch.zeros(1000, 10)
    out = gaussian_noise(0.1)(x)
    assert abs(float(out.std()) - 0.1) < 0.01 and float(x.abs().sum()) == 0


def test_training_reduces_test_mse_and_is_seeded():
    rng = np.random.default_rng(0)
    Z = rng.normal(size=(120, 3))
    X = (Z @ rng.normal(size=(3, 40)) + 0.05 * rng.normal(size=(120, 40))).astype(np.float32)
    m, tr = train_autoencoder(X[:90], "L16,G,L3", X_test=X[90:], epochs=15, batch_size=16, lr=3e-3)
    h = tr.history
    assert "test_loss" in h and h["test_loss"].iloc[-1] < 0.5 * h["test_loss"].iloc[0]
    m2, tr2 = train_autoencoder(X[:90], "L16,G,L3", X_test=X[90:], epochs=15, batch_size=16, lr=3e-3)
    np.testing.assert_allclose(h["test_loss"], tr2.history["test_loss"], rtol=1e-6)


def test_classifier_autoencoder_learns_with_noise():
    rng = np.random.default_rng(1)
    y = np.repeat([0, 1, 2], 30)
    X = (rng.normal(size=(3, 30))[y] + 0.3 * rng.normal(size=(90, 30))).astype(np.float32)
    m, tr, classes = train_classifier_autoencoder(X, y.astype(str), "L16,G,L4", epochs=25, lr=3e-3,
                                                  noise_sd=0.1)
    pred = classes[m.logits(X).argmax(1)]
    assert (pred == y.astype(str)).mean() > 0.9
    with pytest.raises(ValueError, match=">= 2 classes"):
        train_classifier_autoencoder(X, np.zeros(90), "L16,G,L4", epochs=1)


def test_offset_centres_inside_the_model():
    ae = Autoencoder(4, "L3,G,L2").set_offset(np.array([1, 2, 3, 4]))
    x = torch.tensor([[1.0, 2, 3, 4]])
    # the mean profile is encoded as the code of a zero input, and decode() adds the mean back
    assert torch.allclose(ae.encode(x), ae.encoder(torch.zeros(1, 4)))
    assert torch.allclose(ae.decode(torch.zeros(1, 2)), ae.decoder(torch.zeros(1, 2)) + x)
    with pytest.raises(ValueError, match="4 values"):
        ae.set_offset(np.zeros(3))


def test_perturb_components_and_top_genes():
    from cellbook.models.autoencoder import perturb_components, top_genes
    ae = Autoencoder(5, "L2")          # linear: decode(z) = W z + b
    with torch.no_grad():
        ae.decoder[0].weight.copy_(torch.tensor([[1.0, 0], [0, 2], [0, 0], [3, 0], [0, -5]]))
    Z = np.array([[0.0, 0], [2, 2]])   # SD of each component = sqrt(2)
    ch = perturb_components(ae, Z, shift_sd=2.0)
    s = 2 * np.sqrt(2)
    np.testing.assert_allclose(ch, [[s, 0, 0, 3 * s, 0], [0, 2 * s, 0, 0, -5 * s]], rtol=1e-5, atol=1e-6)
    tg = top_genes(ch, ["a", "b", "c", "d", "e"], n=2)
    assert tg == {"C1": ["d", "a"], "C2": ["e", "b"]}
