"""Cal and DeepFool against brute-force oracles, and every selector of the geometry,
uncertainty, dynamics and boundary families end to end on NetFeaturizer signals."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from sk_coreset import Signals
from sk_coreset.selectors import make_selector
from sk_coreset.selectors.boundary import Cal, DeepFool


def brute_force_cal(E, P, k, eps=1e-8):
    """Full distance matrix, sort every row, drop the row itself, mean symmetric KL."""
    D = cdist(E, E)
    np.fill_diagonal(D, np.inf)
    k = min(k, len(E) - 1)
    Pc = np.clip(P, eps, None)
    scores = np.zeros(len(E))
    for i in range(len(E)):
        for j in np.argsort(D[i], kind="stable")[:k]:
            kl_ij = np.sum(P[i] * np.log(Pc[i] / Pc[j]))
            kl_ji = np.sum(P[j] * np.log(Pc[j] / Pc[i]))
            scores[i] += (0.5 * kl_ij + 0.5 * kl_ji) / k
    return scores


def cal_data(n=120, seed=0):
    rng = np.random.RandomState(seed)
    y = rng.randint(3, size=n)
    E = rng.normal(size=(n, 5)) + 3 * rng.normal(size=(3, 5))[y]
    P = rng.dirichlet(np.full(4, 0.6), size=n)
    P[::9] = np.eye(4)[y[::9]]  # exact zeros must stay finite
    return Signals(embedding=E, proba=P), y


def test_cal_unbalanced_equals_brute_force_knn_and_symmetric_kl():
    S, y = cal_data()
    sel = Cal(fraction=0.2, balance=False, random_state=0).fit(S, y)
    expected = brute_force_cal(S["embedding"], S["proba"], 10)
    np.testing.assert_allclose(sel.scores_, expected, rtol=1e-9)
    assert set(sel.sample_indices_) == set(np.argsort(-expected)[:24])


def test_cal_balanced_searches_neighbours_within_each_class(monkeypatch):
    import sk_coreset.selectors.boundary as boundary

    monkeypatch.setattr(boundary, "_BLOCK_BYTES", 512)  # several query blocks per class
    S, y = cal_data(seed=1)
    sel = Cal(fraction=0.2, n_neighbors=4, random_state=0).fit(S, y)
    for c, budget in enumerate(sel.budgets_):
        pool = np.flatnonzero(y == c)
        expected = brute_force_cal(S["embedding"][pool], S["proba"][pool], 4)
        np.testing.assert_allclose(sel.scores_[pool], expected, rtol=1e-9)
        top = pool[np.argsort(-expected)[:budget]]
        assert set(sel.sample_indices_[y[sel.sample_indices_] == c]) == set(top)


def test_cal_keep_lowest_float32_and_small_pools():
    S, y = cal_data(n=40, seed=2)
    S32 = Signals(embedding=S["embedding"].astype(np.float32),
                  proba=S["proba"].astype(np.float32))
    sel = Cal(fraction=8, balance=False, keep="lowest", n_neighbors=50).fit(S32, y)
    expected = brute_force_cal(S["embedding"], S["proba"], 39)
    np.testing.assert_allclose(sel.scores_, expected, rtol=1e-4, atol=1e-6)
    assert set(sel.sample_indices_) == set(np.argsort(expected)[:8])
    one = Cal(fraction=1).fit(Signals(embedding=np.ones((1, 2)), proba=np.ones((1, 2)) / 2), [0])
    assert one.scores_.tolist() == [0.0]


def test_cal_rejects_several_initialisations():
    S = Signals(embedding=np.ones((6, 2, 3)), proba=np.full((6, 2, 2), 0.5))
    with pytest.raises(ValueError, match="single initialisation"):
        Cal(fraction=0.5, balance=False).fit(S)


def test_deepfool_keeps_the_smallest_distances():
    rng = np.random.RandomState(3)
    dist = rng.gamma(2.0, size=90)
    y = rng.randint(3, size=90)
    sel = DeepFool(fraction=0.2, random_state=0).fit(Signals(deepfool=dist), y)
    np.testing.assert_array_equal(sel.scores_, dist)
    for c, budget in enumerate(sel.budgets_):
        pool = np.flatnonzero(y == c)
        low = pool[np.argsort(dist[pool])[:budget]]
        assert set(sel.sample_indices_[y[sel.sample_indices_] == c]) == set(low)
    flat = DeepFool(fraction=9, balance=False).fit(Signals(deepfool=dist), y)
    assert set(flat.sample_indices_) == set(np.argsort(dist)[:9])


def test_deepfool_averages_initialisations():
    dist = np.random.RandomState(4).gamma(2.0, size=(30, 3))
    sel = DeepFool(fraction=5, balance=False).fit(Signals(deepfool=dist))
    np.testing.assert_allclose(sel.scores_, dist.mean(axis=1))
    assert set(sel.sample_indices_) == set(np.argsort(dist.mean(axis=1))[:5])


def test_registered_names():
    assert isinstance(make_selector("Cal"), Cal)
    assert isinstance(make_selector("DeepFool"), DeepFool)


# ------------------------------------------------------------- end to end
ISSUE_SELECTORS = [
    "Herding", "kCenterGreedy", "ContextualDiversity", "LeastConfidence", "Entropy",
    "Margin", "Forgetting", "GraNd", "EL2N", "AUM", "Cal", "DeepFool",
]


@pytest.fixture(scope="module")
def digits_signals():
    from sklearn.datasets import load_digits

    from sk_coreset.featurizers import NetFeaturizer

    X, y = load_digits(return_X_y=True)
    X, y = X[:600].astype(np.float32) / 16.0, y[:600]
    feat = NetFeaturizer(module="mlp", max_epochs=2, random_state=0).fit(X, y)
    return feat.signals(X, y, deepfool=True), y


@pytest.mark.parametrize("name", ISSUE_SELECTORS)
def test_every_selector_runs_on_net_featurizer_signals(name, digits_signals):
    S, y = digits_signals
    sel = make_selector(name, fraction=0.1, random_state=0).fit(S, y)
    idx = sel.sample_indices_
    assert len(idx) == 60 == len(np.unique(idx))
    assert np.bincount(y[idx], minlength=10).tolist() == sel.budgets_.tolist()
    if sel.scores_ is not None:
        assert sel.scores_.shape == (600,) and np.all(np.isfinite(sel.scores_))


@pytest.mark.parametrize("name", ISSUE_SELECTORS)
def test_torch_tensor_signals_select_like_numpy(name):
    import torch

    from conftest import make_signals

    S, y = make_signals(seed=3)
    as_tensors = Signals(**{k: torch.from_numpy(np.asarray(v)) for k, v in S.items()})
    ref = make_selector(name, fraction=0.3, random_state=0).fit(S, y)
    got = make_selector(name, fraction=0.3, random_state=0).fit(as_tensors, y)
    np.testing.assert_array_equal(got.sample_indices_, ref.sample_indices_)
