"""NetClassifier: the recipe, weighted loss, data layouts, sklearn compatibility."""

import math
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.model_selection import GridSearchCV, train_test_split
from skorch.callbacks import Callback
from torch.utils.data import TensorDataset

from sk_coreset.trainer import NetClassifier, random_crop_flip

REPO = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("SK_CORESET_DATA", REPO.parent / "shared" / "data"))


def shared_file(name: str) -> Path:
    path = DATA_DIR / name
    if not path.is_file():
        pytest.fail(f"{path} is missing: set SK_CORESET_DATA to the shared .npz folder")
    return path


@pytest.fixture(scope="module")
def digits_split():
    X, y = load_digits(return_X_y=True)
    return train_test_split(X, y, test_size=0.3, stratify=y, random_state=0)


def mlp(**kwargs):
    params = dict(max_epochs=12, lr=0.1, batch_size=64, random_state=0)
    params.update(kwargs)
    return NetClassifier("mlp", **params)


def test_mlp_reaches_95_percent_on_digits_and_weights_2_equal_weights_1(digits_split):
    X_tr, X_te, y_tr, y_te = digits_split
    ones = mlp().fit(X_tr, y_tr, sample_weight=np.ones(len(y_tr)))
    assert ones.score(X_te, y_te) >= 0.95
    twos = mlp().fit(X_tr, y_tr, sample_weight=2 * np.ones(len(y_tr)))
    np.testing.assert_array_equal(twos.predict(X_te), ones.predict(X_te))
    np.testing.assert_array_equal(twos.predict_proba(X_te), ones.predict_proba(X_te))
    unweighted = mlp().fit(X_tr, y_tr)
    np.testing.assert_array_equal(unweighted.predict_proba(X_te), ones.predict_proba(X_te))


def test_weighted_loss_is_sum_wl_over_sum_w():
    clf = mlp(max_epochs=1).fit(np.random.RandomState(0).rand(20, 4), np.arange(20) % 3)
    logits = torch.randn(6, 3, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 2, 1, 0])
    w = torch.tensor([0.5, 2.0, 0.0, 1.0, 3.0, 0.25], dtype=torch.float64)
    log_p = logits.log_softmax(1).numpy()
    per_sample = -log_p[np.arange(6), y.numpy()]
    expected = (w.numpy() * per_sample).sum() / w.numpy().sum()
    got = clf.get_loss(logits, y, X={"sample_weight": w}, training=True)
    assert math.isclose(float(got), expected, rel_tol=1e-12)


def test_integer_weights_equal_repeated_rows_in_full_batch_training():
    # With one batch per epoch, weight k on a row is the same objective as k copies of it.
    rng = np.random.RandomState(0)
    X = rng.randn(30, 5)
    y = np.arange(30) % 3
    w = rng.randint(1, 4, size=30)
    params = dict(max_epochs=4, batch_size=-1, mean=np.zeros(5), std=np.ones(5))
    weighted = mlp(**params).fit(X, y, sample_weight=w)
    repeated = mlp(**params).fit(np.repeat(X, w, axis=0), np.repeat(y, w))
    np.testing.assert_allclose(
        weighted.predict_proba(X), repeated.predict_proba(X), rtol=0, atol=1e-5
    )


def test_zero_weights_equal_dropping_the_rows_in_full_batch_training():
    rng = np.random.RandomState(1)
    X = rng.randn(24, 5)
    y = np.arange(24) % 2
    keep = rng.rand(24) < 0.6
    params = dict(max_epochs=3, batch_size=-1, mean=np.zeros(5), std=np.ones(5))
    weighted = mlp(**params).fit(X, y, sample_weight=keep.astype(float))
    dropped = mlp(**params).fit(X[keep], y[keep])
    np.testing.assert_allclose(weighted.predict_proba(X), dropped.predict_proba(X), atol=1e-5)


def test_seeded_fit_is_deterministic_and_restores_the_global_rng(digits_split):
    X_tr, X_te, y_tr, _ = digits_split
    state = torch.get_rng_state()
    a = mlp(max_epochs=2).fit(X_tr, y_tr)
    assert torch.equal(torch.get_rng_state(), state)
    b = mlp(max_epochs=2).fit(X_tr, y_tr)
    np.testing.assert_array_equal(a.predict_proba(X_te), b.predict_proba(X_te))
    c = mlp(max_epochs=2, random_state=1).fit(X_tr, y_tr)
    assert not np.array_equal(a.predict_proba(X_te), c.predict_proba(X_te))


def test_string_labels_and_clone_and_grid_search(digits_split):
    X_tr, X_te, y_tr, y_te = digits_split
    names = np.array(["zero", "one", "two", "three", "four", "five", "six", "seven",
                      "eight", "nine"])
    clf = mlp(max_epochs=3)
    twin = clone(clf)
    assert twin.get_params()["lr"] == 0.1 and twin.random_state == 0
    assert twin.device == "auto" and twin.train_split is None
    search = GridSearchCV(clf, {"lr": [0.05, 0.1], "max_epochs": [2]}, cv=2)
    search.fit(X_tr[:400], names[y_tr[:400]])
    assert set(search.best_estimator_.classes_) == set(names)
    assert set(search.predict(X_te[:20])) <= set(names)
    assert search.best_estimator_.device == "auto"


def test_cosine_schedule_matches_torch_cosine_annealing():
    seen = []

    class RecordLR(Callback):
        def on_batch_begin(self, net, training=False, **kwargs):
            if training:
                seen.append(net.optimizer_.param_groups[0]["lr"])

    X = np.random.RandomState(0).rand(50, 3)
    y = np.arange(50) % 2
    mlp(max_epochs=3, batch_size=16, min_lr=1e-3, callbacks=[("rec", RecordLR())]).fit(X, y)
    steps = 3 * math.ceil(50 / 16)
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps, eta_min=1e-3)
    expected = []
    for _ in range(steps):
        expected.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    np.testing.assert_allclose(seen, expected, rtol=1e-9)


def test_recipe_defaults():
    clf = NetClassifier()
    assert (clf.module, clf.lr, clf.momentum, clf.nesterov, clf.weight_decay) == (
        "resnet18", 0.1, 0.9, True, 5e-4)
    assert (clf.max_epochs, clf.batch_size, clf.min_lr, clf.schedule) == (200, 128, 1e-4, "cosine")
    assert clf.train_split is None and clf.device == "auto"
    fitted = mlp(max_epochs=1).fit(np.random.rand(10, 3), np.arange(10) % 2)
    opt = fitted.optimizer_
    assert isinstance(opt, torch.optim.SGD)
    group = opt.param_groups[0]
    assert group["momentum"] == 0.9 and group["nesterov"] and group["weight_decay"] == 5e-4
    assert fitted.device_ == torch.device("cpu")


def _oracle_is_crop_or_flip(src: np.ndarray, out: np.ndarray, pad: int = 4) -> bool:
    padded = np.pad(src, ((0, 0), (pad, pad), (pad, pad)), mode="reflect")
    h, w = src.shape[1:]
    for dy in range(2 * pad + 1):
        for dx in range(2 * pad + 1):
            crop = padded[:, dy:dy + h, dx:dx + w]
            if np.array_equal(crop, out) or np.array_equal(crop[:, :, ::-1], out):
                return True
    return False


def test_random_crop_flip_yields_reflect_padded_crops_and_flips():
    torch.manual_seed(0)
    x = torch.randn(16, 3, 10, 10)
    out = random_crop_flip(x)
    assert out.shape == x.shape
    for src, got in zip(x.numpy(), out.numpy()):
        assert _oracle_is_crop_or_flip(src, got)
    assert not torch.equal(out, x)


def test_augmentation_only_for_32x32_rgb_by_default():
    rng = np.random.RandomState(0)
    y = np.arange(8) % 2
    rgb = mlp(max_epochs=1).fit(rng.randint(0, 255, (8, 32, 32, 3), dtype=np.uint8), y)
    gray = mlp(max_epochs=1).fit(rng.randint(0, 255, (8, 28, 28), dtype=np.uint8), y)
    assert rgb.augment_ and not gray.augment_
    assert rgb.input_shape_ == (3, 32, 32) and gray.input_shape_ == (1, 28, 28)


def test_uint8_hwc_and_float_chw_layouts_agree():
    rng = np.random.RandomState(0)
    images = rng.randint(0, 256, (40, 12, 12, 3), dtype=np.uint8)
    y = np.arange(40) % 2
    as_float = (images.astype(np.float32) / 255).transpose(0, 3, 1, 2)
    a = NetClassifier("lenet", max_epochs=2, batch_size=8, random_state=0).fit(images, y)
    b = NetClassifier("lenet", max_epochs=2, batch_size=8, random_state=0).fit(as_float, y)
    np.testing.assert_allclose(a.mean_, images.reshape(-1, 3).mean(0) / 255, rtol=1e-5)
    np.testing.assert_allclose(a.predict_proba(images), b.predict_proba(as_float), atol=1e-4)


def test_torch_dataset_input():
    rng = np.random.RandomState(0)
    images = torch.from_numpy(rng.rand(24, 1, 16, 16).astype(np.float32))
    labels = torch.arange(24) % 3
    ds = TensorDataset(images, labels)
    clf = NetClassifier("lenet", max_epochs=2, batch_size=8, random_state=0).fit(ds)
    array_clf = NetClassifier("lenet", max_epochs=2, batch_size=8, random_state=0).fit(
        images.numpy(), labels.numpy()
    )
    np.testing.assert_allclose(clf.predict_proba(ds), array_clf.predict_proba(images.numpy()),
                               atol=1e-6)
    assert clf.predict(ds).shape == (24,)


def test_pickle_round_trip_keeps_auto_device(digits_split):
    X_tr, X_te, y_tr, _ = digits_split
    clf = mlp(max_epochs=1).fit(X_tr, y_tr)
    back = pickle.loads(pickle.dumps(clf))
    assert back.device == "auto"
    np.testing.assert_array_equal(back.predict_proba(X_te), clf.predict_proba(X_te))


def test_verbose_shows_an_epoch_progress_bar(capsys):
    mlp(max_epochs=2, verbose=1).fit(np.random.rand(10, 3), np.arange(10) % 2)
    assert "epoch" in capsys.readouterr().err


def test_cifar10_subset_trains_with_augmentation():
    with np.load(shared_file("cifar10.npz")) as f:
        X, y = f["X_test"][:96], f["y_test"][:96]  # the smaller member loads faster
    clf = NetClassifier("lenet", max_epochs=1, batch_size=32, random_state=0).fit(X, y)
    assert clf.augment_ and clf.input_shape_ == (3, 32, 32)
    np.testing.assert_allclose(clf.predict_proba(X[:5]).sum(1), 1, rtol=1e-5)


def test_bad_inputs_raise_value_errors():
    X = np.random.rand(10, 4)
    y = np.arange(10) % 2
    with pytest.raises(ValueError, match="needs images"):
        NetClassifier("resnet18", max_epochs=1).fit(X, y)
    with pytest.raises(ValueError, match="sample_weight"):
        mlp(max_epochs=1).fit(X, y, sample_weight=-np.ones(10))
    with pytest.raises(ValueError, match="labels"):
        mlp(max_epochs=1).fit(X, y[:5])
    with pytest.raises(ValueError, match="Unknown network"):
        NetClassifier("resnet19", max_epochs=1).fit(X.reshape(10, 1, 2, 2), y)
    with pytest.raises(ValueError, match="schedule"):
        mlp(schedule="step").fit(X, y)
    fitted = mlp(max_epochs=1).fit(X, y)
    with pytest.raises(ValueError, match="shape"):
        fitted.predict(np.random.rand(3, 5))
