"""Craig, GradMatch and Glister against brute-force oracles on explicit gradients.

Every oracle here builds the last-layer gradients ``[e, e (x) h]`` in full with numpy
and runs a plain loop: a naive facility-location greedy with a brute-force cluster
assignment (Craig), least squares on random subsets and a naive ridge OMP (GradMatch),
and a naive Glister with explicit Taylor updates of the validation logits.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.optimize

from sk_coreset import Signals
from sk_coreset.selectors.gradient import Craig, Glister, GradMatch


def explicit_gradients(embedding, proba, y):
    e = proba.astype(np.float64).copy()
    e[np.arange(len(y)), y] -= 1
    weight = e[:, :, None] * embedding.astype(np.float64)[:, None, :]
    return np.concatenate([e, weight.reshape(len(y), -1)], axis=1)


def softmax(z):
    z = z - z.max(1, keepdims=True)
    return np.exp(z) / np.exp(z).sum(1, keepdims=True)


def random_signals(n=90, d=6, C=3, seed=0):
    rng = np.random.RandomState(seed)
    y = rng.randint(0, C, n)
    emb = (rng.normal(size=(n, d)) + y[:, None]).astype(np.float32)
    p = softmax(rng.normal(size=(n, C)) * 2).astype(np.float32)
    return Signals(embedding=emb, proba=p), y


# ------------------------------------------------------------------ Craig
def craig_oracle(G, k):
    """Naive greedy facility location on max_dist - dist + 1e-3; cluster sizes by argmax."""
    D = np.sqrt(((G[:, None, :] - G[None, :, :]) ** 2).sum(-1))
    S = D.max() - D + 1e-3
    cur, picks = np.zeros(len(G)), []
    for _ in range(k):
        gains = np.maximum(S - cur[None, :], 0).sum(1)
        gains[picks] = -np.inf
        picks.append(int(np.argmax(gains)))
        cur = np.maximum(cur, S[picks[-1]])
    owner = np.argmax(S[:, picks], axis=1)
    return picks, np.bincount(owner, minlength=k)


@pytest.mark.parametrize("optimizer", ["naive", "lazy"])
def test_craig_picks_and_weights_match_brute_force(optimizer):
    S, y = random_signals()
    G = explicit_gradients(S["embedding"], S["proba"], y)
    sel = Craig(fraction=0.2, optimizer=optimizer).fit(S, y)
    for c, (ranking, weights) in enumerate(zip(sel.class_rankings_, sel.class_weights_)):
        pool = np.flatnonzero(y == c)
        picks, sizes = craig_oracle(G[pool], len(ranking))
        np.testing.assert_array_equal(ranking, pool[picks])
        np.testing.assert_array_equal(weights, sizes)
        assert weights.sum() == len(pool)


def test_craig_knn_kernel_keeps_exact_cluster_weights():
    S, y = random_signals(n=120, seed=1)
    G = explicit_gradients(S["embedding"], S["proba"], y)
    sel = Craig(fraction=0.1, balance=False, kernel="knn", n_neighbors=5).fit(S, y)
    idx = sel.sample_indices_
    D = np.sqrt(((G[:, None, :] - G[None, idx, :]) ** 2).sum(-1))
    sizes = np.bincount(D.argmin(1), minlength=len(idx))
    np.testing.assert_array_equal(sel.sample_weight_, sizes)
    assert sel.sample_weight_.sum() == len(y)


# ------------------------------------------------------------------ GradMatch
def residual(G, idx, w):
    """||sum_j w_j g_j / n - mean g||: GradMatch weights are scaled by the pool size."""
    return np.linalg.norm(w @ G[idx] / len(G) - G.mean(0))


def test_gradmatch_residual_falls_with_k_and_beats_random_least_squares():
    S, y = random_signals(n=300, d=16, C=4, seed=2)
    G = explicit_gradients(S["embedding"], S["proba"], y)  # 68 columns
    rng = np.random.RandomState(0)
    previous = np.inf
    for k in (3, 6, 12, 24):
        sel = GradMatch(fraction=k, balance=False).fit(S, y)
        assert len(sel.sample_indices_) == k and np.all(sel.sample_weight_ >= 0)
        ours = residual(G, sel.sample_indices_, sel.sample_weight_)
        assert ours < previous
        previous = ours
        for _ in range(10):
            idx = rng.choice(len(y), k, replace=False)
            w = np.linalg.lstsq(G[idx].T, G.mean(0), rcond=None)[0] * len(y)
            assert ours < residual(G, idx, w)


def test_gradmatch_pursuit_matches_a_naive_ridge_omp():
    S, y = random_signals(n=80, d=10, C=3, seed=3)
    G = explicit_gradients(S["embedding"], S["proba"], y)
    k, lam = 5, 1.0
    ridge = lam * np.mean(np.sum(G**2, axis=1))  # relative to the mean squared norm
    target, picks = G.mean(0), []
    for _ in range(k):
        A = G[picks]
        x = np.linalg.solve(A @ A.T + ridge * np.eye(len(picks)), A @ target) if picks else []
        corr = G @ (target - (x @ A if picks else 0))
        corr[picks] = -np.inf
        picks.append(int(np.argmax(corr)))
    sel = GradMatch(fraction=k, balance=False, lam=lam).fit(S, y)
    assert np.all(sel.sample_weight_ > 0)  # no pick was dropped by the non-negative fit
    np.testing.assert_array_equal(sel.sample_indices_, picks)
    A = G[sel.sample_indices_]
    w = sel.sample_weight_ / len(y)
    # KKT of min ||A^T w - t||^2 + lam ||w||^2, w >= 0: zero gradient where w > 0
    grad = A @ (A.T @ w - target) + ridge * w
    np.testing.assert_allclose(grad[w > 0], 0, atol=1e-4 * np.abs(A @ target).max())
    assert np.all(grad[w == 0] >= -1e-4 * np.abs(A @ target).max())


def naive_omp_nnls(G, k, lam=0.01):
    """Ridge OMP toward the mean, then NNLS of the ridge objective on its k picks.

    The ridge is ``lam`` times the mean squared norm of the rows of ``G``.
    """
    lam = lam * np.mean(np.sum(G**2, axis=1))
    target, picks = G.mean(0), []
    for _ in range(k):
        A = G[picks]
        x = np.linalg.solve(A @ A.T + lam * np.eye(len(picks)), A @ target) if picks else []
        corr = G @ (target - (x @ A if picks else 0))
        corr[picks] = -np.inf
        picks.append(int(np.argmax(corr)))
    M = np.vstack([G[picks].T, np.sqrt(lam) * np.eye(k)])
    return picks, scipy.optimize.nnls(M, np.concatenate([target, np.zeros(k)]))[0]


def test_gradmatch_replaces_picks_that_nnls_zeroes():
    X = 10 * np.random.RandomState(3).normal(size=(60, 4))
    picks, w = naive_omp_nnls(X, 12)
    dropped = {picks[i] for i in np.flatnonzero(w == 0)}
    assert dropped  # the reference would return fewer than 12 rows here
    sel = GradMatch(fraction=12, balance=False).fit(X)
    assert len(np.unique(sel.sample_indices_)) == 12 and np.all(sel.sample_weight_ > 0)
    assert not dropped & set(sel.sample_indices_.tolist())


def test_gradmatch_fills_the_budget_with_zero_weights_once_the_pool_is_used_up():
    X = 10 * np.random.RandomState(0).normal(size=(40, 2))
    sel = GradMatch(fraction=38, balance=False).fit(X)
    w = sel.sample_weight_
    assert len(np.unique(sel.sample_indices_)) == 38 and np.all(w >= 0)
    assert (w == 0).any() and np.all(np.diff((w > 0).astype(int)) <= 0)  # positives first


def test_gradmatch_gives_uniform_weights_when_there_is_nothing_to_match():
    # a proxy that fits every row exactly: all gradients are zero
    y = np.repeat([0, 1], [30, 20])
    proba = np.eye(2, dtype=np.float32)[y]
    S = Signals(embedding=np.random.RandomState(5).normal(size=(50, 4)).astype(np.float32),
                proba=proba)
    sel = GradMatch(fraction=0.2).fit(S, y)
    np.testing.assert_array_equal(sel.class_weights_[0], np.full(6, 30 / 6))
    np.testing.assert_array_equal(sel.class_weights_[1], np.full(4, 20 / 4))


# ------------------------------------------------------------------ Glister
def glister_oracle(G, Hv, Pv, yv, k, eta):
    """Naive Glister with explicit gradients and explicit last-layer steps.

    ``G`` training gradients (n, C*(d+1)), validation embeddings ``Hv`` and softmax
    ``Pv``. After picks S the layer moves by -eta * mean_S g_s, i.e. the logits of a
    validation row v by -eta * mean_S (e_s h1_s^T) h1_v.
    """
    C, m = Pv.shape[1], len(yv)
    H1v = np.hstack([np.ones((m, 1)), Hv])
    Zv = np.log(Pv)
    picks = []
    for _ in range(k):
        if picks:
            step = G[picks].mean(0)
            W = np.hstack([step[:C, None], step[C:].reshape(C, -1)])  # [bias | weight]
            P = softmax(Zv - eta * H1v @ W.T)
        else:
            P = Pv
        val_grad = explicit_gradients(Hv, P, yv).mean(0)
        gains = G @ val_grad
        gains[picks] = -np.inf
        picks.append(int(np.argmax(gains)))
    return picks


def test_glister_static_is_top_k_of_the_validation_alignment():
    S, y = random_signals(seed=5)
    G = explicit_gradients(S["embedding"], S["proba"], y)
    sel = Glister(fraction=0.2, static=True).fit(S, y)
    for c, ranking in enumerate(sel.class_rankings_):
        pool = np.flatnonzero(y == c)
        alignment = G[pool] @ G[pool].mean(0)
        np.testing.assert_array_equal(ranking, pool[np.argsort(-alignment)[: len(ranking)]])


@pytest.mark.parametrize("eta", [0.02, 0.1])
def test_glister_with_updates_matches_a_naive_implementation(eta):
    S, y = random_signals(seed=6)
    G = explicit_gradients(S["embedding"], S["proba"], y)
    sel = Glister(fraction=0.2, eta=eta, optimizer="naive").fit(S, y)
    for c, ranking in enumerate(sel.class_rankings_):
        pool = np.flatnonzero(y == c)
        picks = glister_oracle(G[pool], S["embedding"][pool].astype(np.float64),
                               S["proba"][pool].astype(np.float64), y[pool], len(ranking), eta)
        np.testing.assert_array_equal(ranking, pool[picks])


def test_glister_with_a_validation_set_and_every_candidate_sampled():
    # epsilon = e^-20 makes the stochastic sample the whole pool: exact naive greedy,
    # scored through the cross Gram path (wide embeddings, few rows)
    S, y = random_signals(n=40, d=40, C=2, seed=7)
    V, y_val = random_signals(n=30, d=40, C=2, seed=8)
    G = explicit_gradients(S["embedding"], S["proba"], y)
    sel = Glister(fraction=0.25, eta=0.01, epsilon=np.exp(-20.0), random_state=0)
    sel.fit(S, y, X_val=V, y_val=y_val)
    for c, ranking in enumerate(sel.class_rankings_):
        pool, val = np.flatnonzero(y == c), np.flatnonzero(y_val == c)
        picks = glister_oracle(G[pool], V["embedding"][val].astype(np.float64),
                               V["proba"][val].astype(np.float64), y_val[val],
                               len(ranking), 0.01)
        np.testing.assert_array_equal(ranking, pool[picks])


def test_glister_nestedness_and_validation_errors():
    S, y = random_signals(seed=9)
    assert Glister(optimizer="naive")._nested and not Glister()._nested
    with pytest.raises(ValueError, match="y_val"):
        Glister().fit(S, y, X_val=S, y_val=np.full(len(y), 7))
    with pytest.raises(ValueError, match="same kind"):
        Glister().fit(S, y, X_val=S["embedding"], y_val=y)
