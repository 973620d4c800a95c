"""CCS, Moderate, D2 pruning and prototypes against hand-worked examples and brute force."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.cluster import KMeans, MiniBatchKMeans

from sk_coreset import Signals
from sk_coreset.base import ScoreSelector
from sk_coreset.selectors import make_selector
from sk_coreset.selectors.pruning import CCS, D2Pruning, Moderate, Prototypes, stratified_budgets

from conftest import make_signals


class MeanMargin(ScoreSelector):
    """A stand-in score selector (not registered): the mean of the margin history."""

    _required_signals = ("margin",)

    def __init__(self, fraction=0.1, *, balance=True, random_state=None, keep="lowest"):
        super().__init__(fraction, balance=balance, random_state=random_state, keep=keep)

    def _score(self, signals, y, random_state):
        return np.asarray(signals["margin"], dtype=np.float64).mean(axis=1)


# ---------------------------------------------------------------------------------- CCS
def test_stratified_budgets_hand_worked():
    # visit sizes 1, 2, 3, 6: 8//4=2 -> 1 (small), 7//3=2 -> 2, 5//2=2 -> 2, 3//1 -> 3
    assert stratified_budgets([1, 6, 2, 3], 8).tolist() == [1, 3, 2, 2]
    # two strata smaller than their share of 5 pass 3 + 3 rows on to the big one
    assert stratified_budgets([2, 2, 20], 15).tolist() == [2, 2, 11]
    # empty strata take nothing; ties in size go in index order
    assert stratified_budgets([0, 10, 4, 10], 12).tolist() == [0, 4, 4, 4]
    assert stratified_budgets([3, 3, 3], 3).tolist() == [1, 1, 1]
    assert stratified_budgets([5, 1], 0).tolist() == [0, 0]
    with pytest.raises(ValueError, match="budget"):
        stratified_budgets([1, 2], 4)


# Four equal-width strata over [0, 4] holding 1, 6, 2 and 3 rows; no value on an inner edge.
GROUPS = [[0.0], [1.1, 1.2, 1.3, 1.4, 1.5, 1.6], [2.2, 2.7], [3.1, 3.5, 4.0]]
STRATIFIED = np.array([v for g in GROUPS for v in g])
GROUP_OF = np.repeat(np.arange(4), [len(g) for g in GROUPS])


@pytest.mark.parametrize("keep", ["lowest", "highest"])
@pytest.mark.parametrize("seed", range(5))
def test_ccs_draws_the_hand_worked_allocation_from_each_stratum(keep, seed):
    sel = CCS(fraction=8, balance=False, beta=0.0, n_strata=4, random_state=seed,
              base_selector=MeanMargin(keep=keep)).fit(STRATIFIED)
    counts = np.bincount(GROUP_OF[sel.sample_indices_], minlength=4)
    assert counts.tolist() == [1, 3, 2, 2]
    np.testing.assert_array_equal(sel.scores_, STRATIFIED)


def test_ccs_samples_uniformly_inside_a_stratum():
    # 6 rows of stratum 1 share 3 places: each row is drawn in about half the seeds
    hits = np.zeros(len(STRATIFIED))
    for seed in range(400):
        sel = CCS(fraction=8, balance=False, beta=0.0, n_strata=4, random_state=seed,
                  base_selector=MeanMargin()).fit(STRATIFIED)
        hits[sel.sample_indices_] += 1
    assert np.all(np.abs(hits[GROUP_OF == 1] / 400 - 0.5) < 0.1)


@pytest.mark.parametrize("keep", ["lowest", "highest"])
def test_ccs_hard_cutoff_removes_the_hardest(keep):
    scores = np.random.RandomState(0).permutation(40).astype(float)
    hardest_first = np.argsort(scores) if keep == "lowest" else np.argsort(-scores)
    base = MeanMargin(keep=keep)
    for seed in range(10):
        sel = CCS(fraction=10, balance=False, beta=0.25, random_state=seed,
                  base_selector=base).fit(scores)
        assert not set(sel.sample_indices_) & set(hardest_first[:10])
    # the budget of 30 needs every row left after dropping floor(0.25 * 40) = 10
    sel = CCS(fraction=30, balance=False, beta=0.25, base_selector=base).fit(scores)
    assert set(sel.sample_indices_) == set(hardest_first[10:])
    # a cutoff that would leave fewer rows than the budget shrinks to n - budget
    sel = CCS(fraction=35, balance=False, beta=0.5, base_selector=base).fit(scores)
    assert set(sel.sample_indices_) == set(hardest_first[5:])


def test_ccs_auto_beta_follows_the_pruning_rate():
    scores = np.arange(100.0)  # AUM-like: lowest is hardest
    at_90 = [CCS(fraction=0.1, balance=False, random_state=s, base_selector=MeanMargin())
             .fit(scores).sample_indices_.min() for s in range(10)]
    assert min(at_90) >= 30  # beta 0.3 at 90 % pruning
    # at 50 % pruning beta is 0: 50 strata of about 2 rows, one drawn from each
    at_50 = CCS(fraction=0.5, balance=False, random_state=0, base_selector=MeanMargin())
    assert at_50.fit(scores).sample_indices_.min() <= 1


def test_ccs_reads_the_wrapped_selector_and_balances_classes():
    S, y = make_signals(class_sizes=(30, 20, 10), seed=3)
    sel = CCS(fraction=0.3, base_selector=MeanMargin(), random_state=0).fit(S, y)
    expected = S["margin"].astype(np.float64).mean(axis=1)
    np.testing.assert_allclose(sel.scores_, expected)
    assert np.bincount(y[sel.sample_indices_]).tolist() == [9, 6, 3]
    precomputed = CCS(fraction=0.3, base_selector=MeanMargin(), random_state=0).fit(expected, y)
    np.testing.assert_array_equal(precomputed.sample_indices_, sel.sample_indices_)


def test_ccs_and_d2_default_to_aum():
    S, y = make_signals(seed=4)
    aum = make_selector("AUM")
    for name, extra in (("CCS", ()), ("D2Pruning", ("embedding",))):
        default = make_selector(name, fraction=0.2, random_state=0)
        explicit = make_selector(name, fraction=0.2, random_state=0, base_selector=aum)
        assert default._required_signals == extra + aum._required_signals
        np.testing.assert_array_equal(default.fit(S, y).sample_indices_,
                                      explicit.fit(S, y).sample_indices_)


def test_wrappers_refuse_a_selector_that_is_not_score_based():
    with pytest.raises(ValueError, match="base_selector"):
        CCS(base_selector=Moderate()).fit(STRATIFIED)
    with pytest.raises(ValueError, match="embedding"):
        D2Pruning(base_selector=MeanMargin()).fit(STRATIFIED)


# ----------------------------------------------------------------------------- Moderate
def _band(dist, budget):
    start = (len(dist) - budget) // 2
    return set(np.argsort(dist)[start:start + budget])


def test_moderate_keeps_the_band_around_the_median_distance_per_class():
    S, y = make_signals(class_sizes=(31, 20, 9), seed=5)
    sel = Moderate(fraction=0.3, random_state=0).fit(S, y)
    emb = S["embedding"].astype(np.float64)
    dist = np.empty(len(y))
    for c in range(3):
        rows = np.flatnonzero(y == c)
        dist[rows] = np.sqrt(((emb[rows] - np.median(emb[rows], axis=0)) ** 2).sum(1))
        kept = rows[list(_band(dist[rows], sel.budgets_[c]))]
        assert set(sel.class_rankings_[c]) == set(kept)
    np.testing.assert_allclose(sel.scores_, dist)


def test_moderate_unbalanced_ranks_class_median_distances_globally():
    S, y = make_signals(class_sizes=(31, 20, 9), seed=6)
    emb = S["embedding"].astype(np.float64)
    dist = np.empty(len(y))
    for c in range(3):
        dist[y == c] = np.linalg.norm(emb[y == c] - np.median(emb[y == c], axis=0), axis=1)
    sel = Moderate(fraction=0.25, balance=False).fit(S, y)
    assert set(sel.sample_indices_) == _band(dist, 15)
    pooled = np.linalg.norm(emb - np.median(emb, axis=0), axis=1)
    sel = Moderate(fraction=0.25, balance=False).fit(S)
    assert set(sel.sample_indices_) == _band(pooled, 15)


def test_moderate_ranking_is_nested():
    S, y = make_signals(class_sizes=(40,), seed=7)
    full = Moderate(fraction=1.0).fit(S, y).sample_indices_
    for k in (1, 2, 7, 20, 33):
        assert set(Moderate(fraction=k).fit(S, y).sample_indices_) == set(full[:k])


# ------------------------------------------------------------------------------ D2
def _brute_force_d2(emb, importance, k, gamma, budget):
    n = len(emb)
    dist = np.array([[np.sqrt(((emb[i] - emb[j]) ** 2).sum()) for j in range(n)]
                     for i in range(n)])
    knn = [sorted((j for j in range(n) if j != i), key=lambda j: dist[i, j])[:k]
           for i in range(n)]
    s = importance - importance.min()
    density = [s[i] + sum(np.exp(-dist[i, j]) * s[j] for j in knn[i]) for i in range(n)]
    selected = []
    for _ in range(budget):
        best = max((i for i in range(n) if i not in selected), key=lambda i: density[i])
        selected.append(best)
        for j in knn[best]:
            density[j] -= np.exp(-gamma * dist[best, j]) * density[best]
    return selected


@pytest.mark.parametrize("keep", ["highest", "lowest"])
def test_d2_message_passing_equals_brute_force(keep):
    rng = np.random.RandomState(8)
    emb, scores = rng.normal(size=(25, 3)), rng.uniform(0.5, 3.0, size=25)
    sel = D2Pruning(fraction=9, balance=False, n_neighbors=3, gamma=0.5, device="cpu",
                    base_selector=MeanMargin(keep=keep), random_state=0)
    sel.fit(Signals(embedding=emb, scores=scores))
    importance = scores if keep == "highest" else -scores
    expected = _brute_force_d2(emb, importance, 3, 0.5, 9)
    assert sel.sample_indices_.tolist() == expected


def test_d2_hard_cutoff_then_message_passing_on_the_rest():
    rng = np.random.RandomState(9)
    emb, scores = rng.normal(size=(30, 4)), rng.uniform(0.0, 1.0, size=30)
    sel = D2Pruning(fraction=8, balance=False, beta=0.2, device="cpu",
                    base_selector=MeanMargin(keep="highest"), random_state=0)
    sel.fit(Signals(embedding=emb, scores=scores))
    rest = np.sort(np.argsort(-scores)[6:])  # floor(0.2 * 30) = 6 hardest dropped
    expected = rest[_brute_force_d2(emb[rest], scores[rest], 5, 0.1, 8)]
    assert sel.sample_indices_.tolist() == expected.tolist()


def test_d2_reads_the_wrapped_selector_per_class_and_survives_tiny_pools():
    S, y = make_signals(class_sizes=(1, 3, 12, 40), seed=10)
    sel = D2Pruning(fraction=0.25, base_selector=MeanMargin(), random_state=0).fit(S, y)
    assert np.bincount(y[sel.sample_indices_], minlength=4).tolist() == [0, 1, 3, 10]
    scores = S["margin"].astype(np.float64).mean(axis=1)
    np.testing.assert_allclose(sel.scores_, scores)
    twin = D2Pruning(fraction=0.25, base_selector=MeanMargin(), random_state=0)
    twin.fit(Signals(embedding=S["embedding"], scores=scores), y)
    np.testing.assert_array_equal(twin.sample_indices_, sel.sample_indices_)


# --------------------------------------------------------------------------- Prototypes
def _prototype_scores(X, n_clusters, random_state, estimator=KMeans):
    unit = X / np.linalg.norm(X, axis=1, keepdims=True)
    km = estimator(n_clusters=n_clusters, random_state=random_state).fit(unit)
    centre = km.cluster_centers_[km.labels_]
    return 1 - (unit * centre).sum(1) / np.linalg.norm(centre, axis=1)


@pytest.mark.parametrize("keep", ["easy", "hard"])
def test_prototypes_scores_are_cosine_distances_to_kmeans_centroids(keep):
    X = np.random.RandomState(11).normal(size=(60, 5))
    sel = Prototypes(fraction=12, n_clusters=4, keep=keep, random_state=3).fit(X)
    scores = _prototype_scores(X, 4, 3)
    np.testing.assert_allclose(sel.scores_, scores, atol=1e-10)
    order = np.argsort(scores if keep == "easy" else -scores)
    assert set(sel.sample_indices_) == set(order[:12])


def test_prototypes_auto_keeps_easy_when_keeping_little_and_hard_when_keeping_much():
    X = np.random.RandomState(12).normal(size=(50, 6))
    scores = _prototype_scores(X, 10, 0)
    little = Prototypes(fraction=0.2, random_state=0).fit(X).sample_indices_
    much = Prototypes(fraction=0.6, random_state=0).fit(X).sample_indices_
    assert set(little) == set(np.argsort(scores)[:10])
    assert set(much) == set(np.argsort(-scores)[:30])


def test_prototypes_minibatch_and_small_or_duplicated_pools():
    X = np.random.RandomState(13).normal(size=(40, 3))
    sel = Prototypes(fraction=0.5, n_clusters=3, minibatch=True, random_state=1).fit(X)
    np.testing.assert_allclose(sel.scores_, _prototype_scores(X, 3, 1, MiniBatchKMeans),
                               atol=1e-10)
    dup = np.repeat(X[:2], 4, axis=0)  # 8 rows, 2 distinct, 10 clusters asked for
    sel = Prototypes(fraction=0.5, random_state=0).fit(dup)
    np.testing.assert_allclose(sel.scores_, 0.0, atol=1e-12)
    assert len(sel.sample_indices_) == 4


def test_registered_names():
    assert isinstance(make_selector("ccs"), CCS)
    assert isinstance(make_selector("D2"), D2Pruning)
    assert isinstance(make_selector("d2-pruning"), D2Pruning)
    assert isinstance(make_selector("moderate"), Moderate)
    assert isinstance(make_selector("prototypes"), Prototypes)
