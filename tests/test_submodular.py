"""FacilityLocation, GraphCut, LogDeterminant and the greedy optimizers.

Oracles: apricot-select (precomputed kernels, naive and lazy optimizers), brute-force
greedy loops written here in numpy (facility location, log-determinant with
``numpy.linalg.slogdet``), explicit gradient vectors built here, and hand-worked kernels.
"""

from __future__ import annotations

import numpy as np
import pytest

from sk_coreset import Signals
from sk_coreset.selectors import make_selector
from sk_coreset.selectors.submodular import (
    FacilityLocation,
    FacilityLocationFunction,
    GraphCut,
    LogDeterminant,
    greedy_maximize,
)


# ------------------------------------------------------------------ oracles
def explicit_gradients(embedding, proba, y):
    """Last-layer gradients [e, e (x) h] of cross-entropy, written out in full."""
    e = proba.astype(np.float64).copy()
    e[np.arange(len(y)), y] -= 1
    weight = e[:, :, None] * embedding.astype(np.float64)[:, None, :]
    return np.concatenate([e, weight.reshape(len(y), -1)], axis=1)


def cosine_similarity(X):
    X = np.asarray(X, dtype=np.float64)
    U = X / np.linalg.norm(X, axis=1, keepdims=True)
    K = 0.5 + 0.5 * U @ U.T
    np.fill_diagonal(K, 1.0)
    return K


def fl_value(K, S):
    return K[:, S].max(1).sum() if len(S) else 0.0


def brute_greedy(value, n, k):
    """Naive greedy on an arbitrary set function; ties to the lowest index."""
    S = []
    for _ in range(k):
        base = value(S)
        gains = [value(S + [j]) - base if j not in S else -np.inf for j in range(n)]
        S.append(int(np.argmax(gains)))
    return S


def random_signals(n=90, d=6, C=3, seed=0):
    rng = np.random.RandomState(seed)
    y = rng.randint(0, C, n)
    emb = (rng.normal(size=(n, d)) + y[:, None]).astype(np.float32)
    logits = rng.normal(size=(n, C))
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return Signals(embedding=emb, proba=p.astype(np.float32)), y


@pytest.fixture(scope="module")
def symmetric_kernel():
    rng = np.random.RandomState(0)
    A = rng.rand(160, 160)
    return (A + A.T) / 2


# ------------------------------------------------------------------ apricot parity
@pytest.fixture(scope="module")
def apricot_fits(symmetric_kernel):
    """apricot's rankings and gains, fitted once per function and optimizer (~1 s each)."""
    import apricot

    classes = {"FacilityLocation": apricot.FacilityLocationSelection,
               "GraphCut": apricot.GraphCutSelection}
    fits = {}
    for name, cls in classes.items():
        for optimizer in ("naive", "lazy"):
            ref = cls(40, metric="precomputed", optimizer=optimizer).fit(symmetric_kernel)
            fits[name, optimizer] = (np.asarray(ref.ranking), np.asarray(ref.gains))
    return fits


@pytest.mark.parametrize("apricot_optimizer", ["naive", "lazy"])
@pytest.mark.parametrize("ours", ["naive", "lazy"])
@pytest.mark.parametrize("name", ["FacilityLocation", "GraphCut"])
def test_same_ranking_and_gains_as_apricot(name, ours, apricot_optimizer, symmetric_kernel,
                                           apricot_fits):
    ranking, gains = apricot_fits[name, apricot_optimizer]
    assert len(set(ranking.tolist())) == 40  # apricot's lazy may repeat indices (issue #19)
    sel = make_selector(name, fraction=40, balance=False, signal="precomputed",
                        optimizer=ours).fit(symmetric_kernel)
    np.testing.assert_array_equal(sel.sample_indices_, ranking)
    np.testing.assert_allclose(sel.scores_[sel.sample_indices_], gains, rtol=1e-9)


def test_saturating_kernel_gives_no_duplicates_and_lazy_equals_naive():
    # apricot's issue #19 setting: a 0/1 kernel whose gains saturate to 0
    rng = np.random.RandomState(1)
    A = (rng.rand(120, 120) < 0.05).astype(float)
    K = np.maximum(A, A.T)
    np.fill_diagonal(K, 1)
    naive = greedy_maximize(FacilityLocationFunction(K), 100, optimizer="naive")[0]
    lazy = greedy_maximize(FacilityLocationFunction(K), 100, optimizer="lazy")[0]
    assert len(set(lazy.tolist())) == 100
    np.testing.assert_array_equal(lazy, naive)
    assert naive.tolist() == brute_greedy(lambda S: fl_value(K, S), 120, 100)


def test_ties_go_to_the_lowest_index():
    K = np.ones((5, 5))
    for opt in ("naive", "lazy"):
        assert greedy_maximize(FacilityLocationFunction(K), 3, optimizer=opt)[0].tolist() == [0, 1, 2]


# ------------------------------------------------------------------ facility location
@pytest.mark.parametrize("optimizer", ["naive", "lazy"])
def test_facility_location_on_gradients_matches_brute_force(optimizer):
    S, y = random_signals()
    sel = FacilityLocation(fraction=0.2, optimizer=optimizer).fit(S, y)
    G = explicit_gradients(S["embedding"], S["proba"], y)
    for c, ranking in zip(range(3), sel.class_rankings_):
        pool = np.flatnonzero(y == c)
        K = cosine_similarity(G[pool])
        expected = brute_greedy(lambda T: fl_value(K, T), len(pool), len(ranking))
        np.testing.assert_array_equal(ranking, pool[expected])


def test_feature_signal_and_plain_array_select_alike():
    S, y = random_signals()
    by_name = FacilityLocation(fraction=0.2, balance=False, signal="embedding").fit(S, y)
    plain = FacilityLocation(fraction=0.2, balance=False).fit(S["embedding"])
    np.testing.assert_array_equal(by_name.sample_indices_, plain.sample_indices_)
    K = cosine_similarity(S["embedding"])
    expected = brute_greedy(lambda T: fl_value(K, T), len(y), len(plain.sample_indices_))
    np.testing.assert_array_equal(plain.sample_indices_, expected)


def test_precomputed_kernel_is_cut_into_class_blocks(symmetric_kernel):
    y = np.arange(160) % 3
    sel = FacilityLocation(fraction=0.25, signal="precomputed", optimizer="naive")
    sel.fit(symmetric_kernel, y)
    for c, ranking in enumerate(sel.class_rankings_):
        pool = np.flatnonzero(y == c)
        K = symmetric_kernel[np.ix_(pool, pool)]
        expected = brute_greedy(lambda T: fl_value(K, T), len(pool), len(ranking))
        np.testing.assert_array_equal(ranking, pool[expected])


def test_stochastic_reaches_99_percent_of_naive_on_5000_points():
    rng = np.random.RandomState(0)
    X = rng.normal(size=(5000, 8)).astype(np.float32)
    K = cosine_similarity(X)
    k = 50
    naive = FacilityLocation(fraction=k, balance=False, optimizer="naive").fit(X)
    stoch = FacilityLocation(fraction=k, balance=False, optimizer="stochastic",
                             random_state=0).fit(X)
    assert fl_value(K, stoch.sample_indices_) >= 0.99 * fl_value(K, naive.sample_indices_)
    assert naive._nested and not stoch._nested


def test_knn_kernel_matches_brute_force_on_the_sparse_kernel():
    rng = np.random.RandomState(2)
    X = rng.normal(size=(120, 5))
    m = 6
    K = cosine_similarity(X)
    sparse = np.zeros_like(K)
    for i in range(len(X)):
        nearest = np.argsort(-K[i], kind="stable")[:m]
        sparse[i, nearest] = K[i, nearest]
    sparse = np.maximum(sparse, sparse.T)
    sel = FacilityLocation(fraction=15, balance=False, kernel="knn", n_neighbors=m).fit(X)
    expected = brute_greedy(lambda T: fl_value(sparse, T), len(X), 15)
    np.testing.assert_array_equal(sel.sample_indices_, expected)


def test_memory_budget_refuses_or_switches_to_knn():
    X = np.random.RandomState(0).normal(size=(400, 4))
    with pytest.raises(ValueError, match="max_memory"):
        FacilityLocation(fraction=0.1, balance=False, kernel="dense", max_memory=1e5).fit(X)
    with pytest.raises(ValueError, match="max_memory"):
        FacilityLocation(fraction=0.1, balance=False, max_memory=1e3).fit(X)
    # the dense kernel (400^2 floats) does not fit but 4 neighbours per row do
    knn = FacilityLocation(fraction=0.1, balance=False, n_neighbors=4, kernel="knn")
    budget = knn.estimate_memory(X)
    assert FacilityLocation(fraction=0.1, balance=False, kernel="dense").estimate_memory(X) > budget
    auto = FacilityLocation(fraction=0.1, balance=False, n_neighbors=4, max_memory=budget)
    np.testing.assert_array_equal(auto.fit(X).sample_indices_, knn.fit(X).sample_indices_)


# ------------------------------------------------------------------ graph cut
def test_graph_cut_rows_on_demand_match_brute_force():
    # 4 picks of 90 rows: each pick's kernel row is computed alone (no dense kernel)
    S, y = random_signals(seed=7)
    G = explicit_gradients(S["embedding"], S["proba"], y)
    K = cosine_similarity(G)
    sel = GraphCut(fraction=4, balance=False).fit(S, y)
    value = lambda T: K[:, T].sum() - K[np.ix_(T, T)].sum()  # noqa: E731
    np.testing.assert_array_equal(sel.sample_indices_, brute_greedy(value, len(y), 4))


def test_graph_cut_on_gradients_matches_brute_force():
    S, y = random_signals(seed=3)
    G = explicit_gradients(S["embedding"], S["proba"], y)
    sel = GraphCut(fraction=0.2, lam=2.0).fit(S, y)
    for c, ranking in enumerate(sel.class_rankings_):
        pool = np.flatnonzero(y == c)
        K = cosine_similarity(G[pool])
        value = lambda T: 2.0 * K[:, T].sum() - K[np.ix_(T, T)].sum()  # noqa: E731
        expected = brute_greedy(value, len(pool), len(ranking))
        np.testing.assert_array_equal(ranking, pool[expected])


# ------------------------------------------------------------------ log-determinant
def logdet_value(K, ridge):
    def value(S):
        if not S:
            return 0.0
        sign, logdet = np.linalg.slogdet(K[np.ix_(S, S)] + ridge * np.eye(len(S)))
        assert sign > 0
        return logdet
    return value


@pytest.mark.parametrize("optimizer", ["naive", "lazy"])
def test_log_determinant_matches_slogdet_greedy_on_a_precomputed_kernel(optimizer):
    rng = np.random.RandomState(4)
    F = rng.normal(size=(30, 12))
    K = F @ F.T / 12
    sel = LogDeterminant(fraction=10, balance=False, signal="precomputed", ridge=0.01,
                         optimizer=optimizer).fit(K)
    expected = brute_greedy(logdet_value(K, 0.01), 30, 10)
    np.testing.assert_array_equal(sel.sample_indices_, expected)
    gains = np.diff([logdet_value(K, 0.01)(expected[:t]) for t in range(11)])
    np.testing.assert_allclose(sel.scores_[sel.sample_indices_], gains, rtol=1e-6)


def test_log_determinant_on_gradients_matches_slogdet_greedy():
    S, y = random_signals(n=60, seed=5)
    G = explicit_gradients(S["embedding"], S["proba"], y)
    sel = LogDeterminant(fraction=0.2).fit(S, y)
    for c, ranking in enumerate(sel.class_rankings_):
        pool = np.flatnonzero(y == c)
        K = cosine_similarity(G[pool])
        expected = brute_greedy(logdet_value(K, 1e-3), len(pool), len(ranking))
        np.testing.assert_array_equal(ranking, pool[expected])


def test_log_determinant_rows_on_demand_match_slogdet_greedy():
    S, y = random_signals(seed=8)
    K = cosine_similarity(explicit_gradients(S["embedding"], S["proba"], y))
    sel = LogDeterminant(fraction=4, balance=False).fit(S, y)
    np.testing.assert_array_equal(sel.sample_indices_, brute_greedy(logdet_value(K, 1e-3), 90, 4))


# ------------------------------------------------------------------ shared behaviour
@pytest.mark.parametrize("name", ["FacilityLocation", "GraphCut", "LogDeterminant"])
def test_rankings_are_nested(name):
    S, y = random_signals(seed=6)
    small = make_selector(name, fraction=0.1).fit(S, y)
    large = make_selector(name, fraction=0.3).fit(S, y)
    for a, b in zip(small.class_rankings_, large.class_rankings_):
        np.testing.assert_array_equal(a, b[: len(a)])


def test_bad_parameters_raise_value_errors():
    S, y = random_signals()
    with pytest.raises(ValueError, match="signal"):
        FacilityLocation(signal="nope").fit(S, y)
    with pytest.raises(ValueError, match="square"):
        GraphCut(signal="precomputed", balance=False).fit(np.ones((4, 3)))
    with pytest.raises(ValueError, match="device"):
        GraphCut(device="not-a-device").fit(S, y)
    with pytest.raises(ValueError, match="labels"):
        LogDeterminant(balance=False).fit(S)
    with pytest.raises(ValueError, match="budget"):
        greedy_maximize(FacilityLocationFunction(np.eye(3)), 4)
    with pytest.raises(ValueError, match="optimizer"):
        greedy_maximize(FacilityLocationFunction(np.eye(3)), 2, optimizer="fast")
