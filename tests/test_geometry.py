"""k-center greedy, Contextual Diversity and Herding against naive implementations.

The oracles below are written from the definitions in METHODS.md, in float64 numpy,
with direct distances (no norm expansion, no running minimum, no running sum).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sk_coreset import Signals
from sk_coreset.selectors import make_selector
from sk_coreset.selectors.geometry import (
    ContextualDiversity,
    Herding,
    KCenterGreedy,
    k_center_greedy,
)


# ------------------------------------------------------------------ oracles
def euclidean(A, B):
    return np.sqrt(((A[:, None, :] - B[None, :, :]) ** 2).sum(-1))


def sym_kl(P, Q, eps=1e-8):
    """0.5 KL(p||q) + 0.5 KL(q||p) for every pair, straight from the definition."""
    p, q = np.clip(P, eps, None)[:, None, :], np.clip(Q, eps, None)[None, :, :]
    P_, Q_ = P[:, None, :], Q[None, :, :]
    return 0.5 * (P_ * np.log(p / q)).sum(-1) + 0.5 * (Q_ * np.log(q / p)).sum(-1)


def naive_farthest_first(X, budget, first, dist=euclidean):
    """Recompute every distance to every centre at each step; argmax, first index on ties."""
    chosen = list(first)
    while len(chosen) < budget:
        nearest = dist(X, X[chosen]).min(axis=1)
        nearest[chosen] = -np.inf
        chosen.append(int(np.argmax(nearest)))
    return chosen


def naive_herding(X, budget):
    """At step t pick the unselected x minimising ||t * mu - sum(selected) - x||."""
    mu = X.mean(axis=0)
    chosen = []
    for t in range(1, budget + 1):
        target = t * mu - X[chosen].sum(axis=0)
        d = np.linalg.norm(target[None, :] - X, axis=1)
        d[chosen] = np.inf
        chosen.append(int(np.argmin(d)))
    return chosen


def blobs(n=240, d=6, classes=3, seed=0):
    rng = np.random.RandomState(seed)
    y = rng.randint(classes, size=n)
    X = rng.normal(size=(n, d)) + 2.0 * rng.normal(size=(classes, d))[y]
    return X, y


# ------------------------------------------------------------------ k-center
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_kcenter_unbalanced_equals_naive_farthest_first(seed):
    X, y = blobs(seed=seed)
    sel = KCenterGreedy(fraction=40, balance=False, random_state=seed).fit(X, y)
    first = sel.sample_indices_[0]
    assert sel.sample_indices_.tolist() == naive_farthest_first(X, 40, [first])
    assert sel.scores_ is None and np.all(sel.sample_weight_ == 1)


def test_kcenter_balanced_runs_farthest_first_inside_each_class():
    X, y = blobs(n=300, seed=3)
    sel = KCenterGreedy(fraction=0.2, random_state=0).fit(X, y)
    for c, ranking in enumerate(sel.class_rankings_):
        pool = np.flatnonzero(y == c)
        local = np.searchsorted(pool, ranking)
        expected = naive_farthest_first(X[pool], len(ranking), [local[0]])
        assert local.tolist() == expected


def test_kcenter_float32_and_torch_inputs_match_float64_oracle():
    X, y = blobs(seed=4)
    first = 17
    expected = naive_farthest_first(X, 30, [first])
    for data in (X.astype(np.float32), torch.from_numpy(X), torch.from_numpy(X).float()):
        sel = KCenterGreedy(fraction=30, balance=False, already_selected=[first]).fit(data)
        assert sel.sample_indices_.tolist() == expected


def test_kcenter_first_centre_is_seeded():
    X, _ = blobs(seed=5)
    firsts = {KCenterGreedy(fraction=5, balance=False, random_state=s).fit(X).sample_indices_[0]
              for s in range(8)}
    assert len(firsts) > 1
    a = KCenterGreedy(fraction=5, balance=False, random_state=3).fit(X).sample_indices_
    b = KCenterGreedy(fraction=5, balance=False, random_state=3).fit(X).sample_indices_
    np.testing.assert_array_equal(a, b)


def test_kcenter_already_selected_come_first_and_count_toward_budget():
    X, y = blobs(seed=6)
    start = [5, 80, 11]
    sel = KCenterGreedy(fraction=20, balance=False, already_selected=start).fit(X, y)
    assert len(sel.sample_indices_) == 20
    assert sel.sample_indices_.tolist() == naive_farthest_first(X, 20, start)


def test_kcenter_already_selected_with_balance_seeds_each_class():
    X, y = blobs(n=200, seed=7)
    start = [int(np.flatnonzero(y == 0)[3]), int(np.flatnonzero(y == 2)[0])]
    sel = KCenterGreedy(fraction=0.1, already_selected=start, random_state=0).fit(X, y)
    for c, ranking in enumerate(sel.class_rankings_):
        pool = np.flatnonzero(y == c)
        local = np.searchsorted(pool, ranking)
        seeds = [int(np.searchsorted(pool, s)) for s in start if y[s] == c] or [local[0]]
        assert local.tolist() == naive_farthest_first(X[pool], len(ranking), seeds)


def test_kcenter_many_initial_centres_use_blocks(monkeypatch):
    import sk_coreset.selectors.geometry as geometry

    monkeypatch.setattr(geometry, "_BLOCK_BYTES", 64)  # a block of one or two centres
    X, _ = blobs(seed=8)
    start = list(range(0, 60, 3))
    got = k_center_greedy(X, 35, initial=start)
    assert got.tolist() == naive_farthest_first(X, 35, start)


@pytest.mark.parametrize("fold_every, candidates", [(1, 1), (3, 1), (7, 2), (32, 16)])
def test_kcenter_lazy_refresh_equals_naive_with_exact_ties(monkeypatch, fold_every,
                                                           candidates):
    """Integer lattice points have many exactly tied distances: the lazy traversal must
    still pick the lowest row index among them, whatever the fold and candidate sizes."""
    import sk_coreset.selectors.geometry as geometry

    monkeypatch.setattr(geometry, "_FOLD_EVERY", fold_every)
    monkeypatch.setattr(geometry, "_CANDIDATES", candidates)
    rng = np.random.RandomState(fold_every)
    X = rng.randint(0, 4, size=(150, 3)).astype(np.float64)
    got = k_center_greedy(X, 60, initial=[5])
    assert got.tolist() == naive_farthest_first(X, 60, [5])


@pytest.mark.parametrize("fold_every", [1, 4])
def test_contextual_diversity_lazy_refresh_equals_naive(monkeypatch, fold_every):
    import sk_coreset.selectors.geometry as geometry

    monkeypatch.setattr(geometry, "_FOLD_EVERY", fold_every)
    monkeypatch.setattr(geometry, "_CANDIDATES", 1)
    P = np.random.RandomState(3).dirichlet(np.ones(4) * 0.5, size=120)
    sel = ContextualDiversity(fraction=50, balance=False, random_state=0).fit(P)
    expected = naive_farthest_first(P, 50, [sel.sample_indices_[0]], dist=sym_kl)
    assert sel.sample_indices_.tolist() == expected


@pytest.mark.parametrize("bad", [[0, 0], [-1], [240], [0.5]])
def test_kcenter_invalid_already_selected_raises(bad):
    X, _ = blobs()
    with pytest.raises(ValueError, match="already_selected"):
        KCenterGreedy(fraction=10, balance=False, already_selected=bad).fit(X)


def test_kcenter_too_many_already_selected_raises():
    X, _ = blobs()
    with pytest.raises(ValueError, match="budget"):
        KCenterGreedy(fraction=2, balance=False, already_selected=[1, 2, 3]).fit(X)


def test_kcenter_duplicate_points_still_give_distinct_rows():
    X = np.zeros((12, 3))
    sel = KCenterGreedy(fraction=12, balance=False, random_state=0).fit(X)
    assert sorted(sel.sample_indices_.tolist()) == list(range(12))


def test_kcenter_budget_zero_and_one_and_bad_device():
    X, _ = blobs()
    assert k_center_greedy(X, 0).size == 0
    assert k_center_greedy(X, 1, initial=[7]).tolist() == [7]
    with pytest.raises(ValueError, match="budget"):
        k_center_greedy(X, 241)
    with pytest.raises(ValueError, match="distinct"):
        k_center_greedy(X, 5, initial=[3, 3])
    with pytest.raises(ValueError, match="device"):
        KCenterGreedy(fraction=3, balance=False, device="not-a-device").fit(X)


def test_kcenter_registered_under_paper_names():
    for name in ("kCenterGreedy", "KCenter", "k_center_greedy"):
        assert isinstance(make_selector(name), KCenterGreedy)
    assert isinstance(make_selector("ContextualDiversity"), ContextualDiversity)
    assert isinstance(make_selector("herding"), Herding)


# ------------------------------------------------------- contextual diversity
def dirichlet(n=150, classes=4, seed=0):
    rng = np.random.RandomState(seed)
    return rng.dirichlet(np.full(classes, 0.7), size=n), rng.randint(classes, size=n)


@pytest.mark.parametrize("seed", [0, 1])
def test_contextual_diversity_equals_naive_farthest_first_under_symmetric_kl(seed):
    P, y = dirichlet(seed=seed)
    sel = ContextualDiversity(fraction=25, balance=False, random_state=seed).fit(P, y)
    expected = naive_farthest_first(P, 25, [sel.sample_indices_[0]], dist=sym_kl)
    assert sel.sample_indices_.tolist() == expected


def test_contextual_diversity_balanced_and_zero_probabilities():
    P, y = dirichlet(n=120, seed=2)
    P[::7] = np.eye(4)[y[::7]]  # one-hot rows: log(0) must be clamped, not NaN
    sel = ContextualDiversity(fraction=0.25, random_state=1).fit(Signals(proba=P), y)
    for c, ranking in enumerate(sel.class_rankings_):
        pool = np.flatnonzero(y == c)
        local = np.searchsorted(pool, ranking)
        assert local.tolist() == naive_farthest_first(P[pool], len(ranking), [local[0]],
                                                      dist=sym_kl)


# ------------------------------------------------------------------ herding
@pytest.mark.parametrize("seed", [0, 1])
def test_herding_unbalanced_equals_argmin_rule(seed):
    X, y = blobs(seed=seed)
    sel = Herding(fraction=50, balance=False).fit(X, y)
    assert sel.sample_indices_.tolist() == naive_herding(X, 50)


def test_herding_balanced_float32_equals_argmin_rule_per_class():
    X, y = blobs(n=300, seed=9)
    sel = Herding(fraction=0.3).fit(X.astype(np.float32), y)
    for c, ranking in enumerate(sel.class_rankings_):
        pool = np.flatnonzero(y == c)
        local = np.searchsorted(pool, ranking)
        assert local.tolist() == naive_herding(X[pool], len(ranking))


def test_herding_whole_pool_and_mean_tracks_target():
    X, _ = blobs(n=60, seed=10)
    sel = Herding(fraction=1.0, balance=False).fit(X)
    assert sorted(sel.sample_indices_.tolist()) == list(range(60))
    # the running mean of the first picks approaches the pool mean faster than random
    prefix = X[sel.sample_indices_[:10]].mean(0)
    rand = X[np.random.RandomState(0).permutation(60)[:10]].mean(0)
    assert np.linalg.norm(prefix - X.mean(0)) < np.linalg.norm(rand - X.mean(0))
