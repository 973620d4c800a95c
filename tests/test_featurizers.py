"""NetFeaturizer, the training-dynamics callback and DeepFool."""

import copy
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.special import log_softmax, softmax
from sklearn.base import clone
from sklearn.datasets import load_digits
from skorch.callbacks import Callback
from torch import nn

from sk_coreset.base import Signals
from sk_coreset.featurizers import NetFeaturizer, TrainingDynamics, deepfool
from sk_coreset.kernels import grad_explicit
from sk_coreset.trainer import NetClassifier

REPO = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("SK_CORESET_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return X[:300], y[:300]


@pytest.fixture(scope="module")
def fitted(digits):
    X, y = digits
    feat = NetFeaturizer("mlp", max_epochs=4, batch_size=32, lr=0.05, random_state=0,
                         record_proba_history=True)
    return feat.fit(X, y)


# ----------------------------------------------------------------------------- dynamics
class Snapshots(Callback):
    """Test-side recorder: the weights and batch before every training step."""

    def initialize(self):
        self.steps_ = []
        return self

    def on_epoch_begin(self, net, **kwargs):
        self.epoch_ = len(net.history) - 1

    def on_batch_begin(self, net, batch=None, training=False, **kwargs):
        if training:
            state = copy.deepcopy(net.module_.state_dict())
            self.steps_.append((self.epoch_, batch[0]["index"].clone(), batch[0]["data"].clone(),
                                state))


def _replay(net, steps, y_codes):
    """Recompute logits of every recorded batch with the saved pre-update weights."""
    module = copy.deepcopy(net.module_).train()
    n, epochs = len(y_codes), 1 + max(s[0] for s in steps)
    logits = np.full((n, epochs, len(net.classes_)), np.nan)
    for epoch, idx, data, state in steps:
        module.load_state_dict(state)
        with torch.no_grad():
            logits[idx.numpy(), epoch] = module(net.prepare(data)).double().numpy()
    return logits


def test_recorded_dynamics_match_a_replay_and_hand_counted_forgetting(digits):
    X, y = digits
    X, y = X[:120], y[:120]
    snaps = Snapshots()
    net = NetClassifier("mlp", max_epochs=5, batch_size=16, lr=0.05, schedule="constant",
                        random_state=3,
                        callbacks=[("dyn", TrainingDynamics()), ("snap", snaps)]).fit(X, y)
    rec = dict(net.callbacks_)["dyn"].arrays()
    steps = dict(net.callbacks_)["snap"].steps_
    logits = _replay(net, steps, y)
    assert not np.isnan(logits).any()  # every sample seen once per epoch

    rows = np.arange(len(y))[:, None]
    cols = np.arange(logits.shape[1])[None, :]
    true_logit = logits[rows, cols, y[:, None]]
    others = logits.copy()
    others[rows, cols, y[:, None]] = -np.inf
    np.testing.assert_array_equal(rec["correct"], (logits.argmax(2) == y[:, None]).astype(float))
    np.testing.assert_allclose(rec["true_proba"], softmax(logits, axis=2)[rows, cols, y[:, None]],
                               atol=1e-5)
    np.testing.assert_allclose(rec["margin"], true_logit - others.max(2), atol=1e-4)
    np.testing.assert_allclose(rec["loss"], -log_softmax(logits, axis=2)[rows, cols, y[:, None]],
                               atol=1e-4)

    # forgetting events: correct -> incorrect transitions, counted step by step as
    # Toneva et al. do, while replaying the batches in the order they were trained
    last = np.zeros(len(y), dtype=bool)
    hand = np.zeros(len(y), dtype=int)
    for epoch, idx, _, _ in steps:
        for i in idx.numpy():
            now = logits[i, epoch].argmax() == y[i]
            hand[i] += int(last[i] and not now)
            last[i] = now
    c = rec["correct"]
    derived = ((c[:, :-1] == 1) & (c[:, 1:] == 0)).sum(1)
    np.testing.assert_array_equal(derived, hand)
    assert hand.sum() > 0  # the toy run does forget something


def test_signals_of_the_fitted_data(fitted, digits):
    X, y = digits
    S = fitted.signals(X, y)
    assert isinstance(S, Signals)
    assert S["embedding"].shape == (300, 128)
    assert S["proba"].shape == S["logits"].shape == (300, 10)
    for name in ("correct", "true_proba", "margin", "loss"):
        assert S[name].shape == (300, 4) and np.isfinite(S[name]).all()
    hist = S["proba_history"]
    assert hist.shape == (300, 4, 10)
    np.testing.assert_allclose(hist.sum(2), 1, rtol=1e-5)
    np.testing.assert_allclose(hist[np.arange(300), :, y], S["true_proba"], rtol=1e-5)
    np.testing.assert_allclose(S["proba"], softmax(S["logits"].astype(float), axis=1), atol=1e-6)
    assert set(np.unique(S["correct"])) <= {0.0, 1.0}


def test_dynamics_only_for_the_fitted_data(fitted, digits):
    X, _ = digits
    assert "correct" in fitted.signals(X.copy())  # identical content counts as fitted data
    other = fitted.signals(X[:50])
    assert "correct" not in other and other["embedding"].shape == (50, 128)
    changed = X.copy()
    changed[0, 0] += 1
    assert "correct" not in fitted.signals(changed)


def test_embedding_is_the_input_of_the_final_layer_and_gives_autograd_gradients(fitted, digits):
    X, y = digits
    S = fitted.signals(X, y)
    head = fitted.nets_[0].module_.classifier
    W, b = head.weight.detach().double(), head.bias.detach().double()
    h = torch.as_tensor(S["embedding"], dtype=torch.float64)
    np.testing.assert_allclose((h @ W.T + b).numpy(), S["logits"], atol=1e-4)
    np.testing.assert_array_equal(fitted.transform(X), S["embedding"])

    # closed-form gradients from the signals vs autograd through the real output layer
    layer = copy.deepcopy(head).double()
    rows = []
    losses = nn.functional.cross_entropy(layer(h[:20]), torch.as_tensor(y[:20]), reduction="none")
    for i in range(20):
        gb, gw = torch.autograd.grad(losses[i], [layer.bias, layer.weight], retain_graph=True)
        rows.append(torch.cat([gb, gw.flatten()]).numpy())
    got = grad_explicit(S["embedding"][:20].astype(float), S["proba"][:20].astype(float), y[:20])
    np.testing.assert_allclose(got, np.stack(rows), atol=1e-5)


def test_several_inits_stack_on_axis_1_with_distinct_seeds(digits):
    X, y = digits
    labels = np.array(["a", "b", "c", "d", "e", "f", "g", "h", "i", "j"])[y]
    feat = NetFeaturizer("mlp", max_epochs=2, n_init=3, batch_size=64, random_state=0)
    S = feat.fit(X, labels).signals(X, labels, deepfool=True)
    assert S["embedding"].shape == (300, 3, 128)
    assert S["proba"].shape == (300, 3, 10)
    assert S["correct"].shape == (300, 3, 2)
    assert S["deepfool"].shape == (300, 3)
    assert S.per_init("margin").shape == (300, 3, 2)
    assert len(set(feat.seeds_.tolist())) == 3
    assert not np.allclose(S["embedding"][:, 0], S["embedding"][:, 1])
    assert feat.transform(X).shape == (300, 384)
    assert list(feat.classes_) == sorted(set(labels))
    again = NetFeaturizer("mlp", max_epochs=2, n_init=3, batch_size=64, random_state=0)
    np.testing.assert_array_equal(again.fit(X, labels).signals(X)["proba"], S["proba"])


def test_featurizer_is_a_clonable_transformer(fitted):
    twin = clone(fitted)
    assert twin.get_params() == fitted.get_params()
    assert not hasattr(twin, "nets_")
    assert fitted.get_feature_names_out().shape == (128,)
    back = pickle.loads(pickle.dumps(fitted))
    assert back.signals(np.zeros((2, 64)))["embedding"].shape == (2, 128)


def test_featurizer_on_mnist_images_with_lenet():
    path = DATA_DIR / "mnist.npz"
    if not path.is_file():
        pytest.fail(f"{path} is missing: set SK_CORESET_DATA to the shared .npz folder")
    with np.load(path) as f:
        X, y = f["X_test"][:128], f["y_test"][:128]
    feat = NetFeaturizer("lenet", max_epochs=1, batch_size=32, random_state=0).fit(X, y)
    S = feat.signals(X, y, deepfool=True)
    assert S["embedding"].shape == (128, 84)
    assert S["correct"].shape == (128, 1)
    assert S["deepfool"].shape == (128,)
    assert np.isfinite(S["deepfool"]).all() and (S["deepfool"] >= 0).all()


def test_featurizer_errors():
    X = np.random.rand(10, 4)
    with pytest.raises(ValueError, match="labels"):
        NetFeaturizer("mlp").fit(X)
    with pytest.raises(ValueError, match="instance"):
        NetFeaturizer(nn.Linear(4, 2), n_init=2).fit(X, np.arange(10) % 2)
    with pytest.raises(ValueError):
        NetFeaturizer("mlp", max_epochs=0).fit(X, np.arange(10) % 2)


# ----------------------------------------------------------------------------- DeepFool
def _analytic_sq_distance(W, b, x):
    """Squared distance of each x to the boundary of its predicted class's region.

    For a linear model the region {f_k0 >= f_k for all k} is a convex polytope, so the
    distance to its complement is the smallest distance to one of its hyperplanes.
    """
    f = x @ W.T + b
    k0 = f.argmax(1)
    out = np.empty(len(x))
    for i in range(len(x)):
        d = [(f[i, k0[i]] - f[i, k]) ** 2 / np.sum((W[k0[i]] - W[k]) ** 2)
             for k in range(len(b)) if k != k0[i]]
        out[i] = min(d)
    return out


def test_deepfool_on_a_linear_softmax_model_equals_the_analytic_distance():
    rng = np.random.RandomState(0)
    W, b = rng.randn(5, 8), rng.randn(5)
    x = rng.randn(40, 8)
    lin = nn.Linear(8, 5).double().eval()
    with torch.no_grad():
        lin.weight.copy_(torch.from_numpy(W))
        lin.bias.copy_(torch.from_numpy(b))
    xt = torch.from_numpy(x)
    res = deepfool(lin, xt)
    np.testing.assert_allclose(res.sq_norm.numpy(), _analytic_sq_distance(W, b, x), atol=1e-4)
    assert res.flipped.all() and (res.n_iter == 1).all()
    with torch.no_grad():
        before = lin(xt).argmax(1)
        after = lin(xt + res.perturbation).argmax(1)
    assert (before != after).all()
    assert lin.weight.grad is None


class LinearSoftmax(nn.Module):
    """A linear classifier on flat inputs; the trainer passes in_channels = n_features."""

    def __init__(self, n_classes, in_channels, image_size):
        super().__init__()
        self.classifier = nn.Linear(in_channels, n_classes)

    def forward(self, x):
        return self.classifier(x)


def test_featurizer_deepfool_signal_on_a_linear_proxy():
    rng = np.random.RandomState(1)
    X = rng.randn(60, 6)
    y = (X[:, 0] + X[:, 1] > 0).astype(int) + (X[:, 2] > 1)
    feat = NetFeaturizer(LinearSoftmax, max_epochs=3, batch_size=16, random_state=0)
    S = feat.fit(X, y).signals(X, deepfool=True)
    net = feat.nets_[0]
    W = net.module_.classifier.weight.detach().double().numpy()
    b = net.module_.classifier.bias.detach().double().numpy()
    z = (X - net.mean_) / net.std_  # DeepFool works in the network's normalised input space
    np.testing.assert_allclose(S["deepfool"], _analytic_sq_distance(W, b, z), rtol=1e-3,
                               atol=1e-4)


def test_deepfool_restricted_candidates_and_bad_arguments():
    torch.manual_seed(0)
    lin = nn.Linear(4, 12).eval()
    res = deepfool(lin, torch.randn(6, 4), n_candidates=3)
    assert res.flipped.all()
    with pytest.raises(ValueError, match="n_candidates"):
        deepfool(lin, torch.randn(2, 4), n_candidates=1)
