"""Dynamic uncertainty and TDDS against direct numpy formulas on recorded histories."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sk_coreset import Signals
from sk_coreset.selectors import make_selector
from sk_coreset.selectors.temporal import TDDS, DynamicUncertainty

from conftest import make_signals


def dyn_unc_oracle(history, window):
    """history (n, T): mean over the full windows of J epochs of the sample std."""
    n, T = history.shape
    J = min(window, T)
    out = np.zeros(n)
    for i in range(n):
        stds = [np.std(history[i, k:k + J], ddof=1) for k in range(T - J + 1)]
        out[i] = np.mean(stds) if J > 1 else 0.0
    return out


def tdds_oracle(proba, window, decay, eps=1e-8):
    """proba (n, T, C): decayed sum over windows of the norm of step deviations."""
    n, T, _ = proba.shape
    K = min(window, T)
    out = np.zeros(n)
    if K < 2:
        return out
    W = T - K + 1
    for i in range(n):
        p = proba[i].astype(np.float64)
        steps = [np.abs(p[t + 1] * (np.log(p[t + 1] + eps) - np.log(p[t] + eps))).sum()
                 for t in range(T - 1)]
        for w in range(W):
            seg = np.array(steps[w:w + K - 1])
            out[i] += decay * (1 - decay) ** (W - 1 - w) * np.sqrt(((seg - seg.mean()) ** 2).sum())
    return out


# -------------------------------------------------------------------- dynamic uncertainty
@pytest.mark.parametrize("window,epochs", [(4, 13), (10, 12), (10, 5), (2, 2)])
def test_dynamic_uncertainty_equals_the_windowed_std(window, epochs):
    history = np.random.RandomState(0).uniform(size=(15, epochs))
    sel = DynamicUncertainty(fraction=4, balance=False, window=window).fit(history)
    expected = dyn_unc_oracle(history, window)
    np.testing.assert_allclose(sel.scores_, expected, rtol=1e-12)
    assert set(sel.sample_indices_) == set(np.argsort(-expected)[:4])


def test_dynamic_uncertainty_on_a_recorded_history_per_class():
    S, y = make_signals(class_sizes=(20, 12, 8), epochs=7, seed=1)
    sel = DynamicUncertainty(fraction=0.25, window=3, random_state=0).fit(S, y)
    expected = dyn_unc_oracle(S["true_proba"].astype(np.float64), 3)
    np.testing.assert_allclose(sel.scores_, expected, rtol=1e-6)
    for c, ranking in enumerate(sel.class_rankings_):
        rows = np.flatnonzero(y == c)
        assert set(ranking) == set(rows[np.argsort(-expected[rows])[:len(ranking)]])


def test_dynamic_uncertainty_averages_initialisations_and_keeps_lowest_on_request():
    history = np.random.RandomState(2).uniform(size=(10, 3, 8))  # (n, n_init, T)
    expected = np.mean([dyn_unc_oracle(history[:, r], 5) for r in range(3)], axis=0)
    sel = DynamicUncertainty(fraction=3, balance=False, window=5, keep="lowest")
    sel.fit(Signals(true_proba=history))
    np.testing.assert_allclose(sel.scores_, expected, rtol=1e-12)
    assert set(sel.sample_indices_) == set(np.argsort(expected)[:3])
    as_torch = DynamicUncertainty(fraction=3, balance=False, window=5)
    as_torch.fit(Signals(true_proba=torch.from_numpy(history)))
    np.testing.assert_allclose(as_torch.scores_, expected, rtol=1e-12)


def test_dynamic_uncertainty_with_one_epoch_scores_zero():
    sel = DynamicUncertainty(fraction=2, balance=False, random_state=0).fit(np.ones((5, 1)))
    np.testing.assert_array_equal(sel.scores_, 0.0)
    assert len(sel.sample_indices_) == 2


# ------------------------------------------------------------------------------ TDDS
def test_tdds_hand_worked_example():
    # one window of 3 epochs: steps d0 = 0 and d1; deviations +-d1/2; score 0.9 * d1 / sqrt 2
    still = [[0.5, 0.5]] * 3
    moving = [[0.5, 0.5], [0.5, 0.5], [0.25, 0.75]]
    proba = np.array([still, moving])
    d1 = 0.25 * np.log(2) + 0.75 * np.log(1.5)
    sel = TDDS(fraction=1, balance=False, window=3).fit(Signals(proba_history=proba))
    np.testing.assert_allclose(sel.scores_, [0.0, 0.9 * d1 / np.sqrt(2)], rtol=1e-6)
    assert sel.sample_indices_.tolist() == [1]


@pytest.mark.parametrize("window,decay", [(10, 0.9), (3, 0.9), (4, 0.5), (5, 1.0)])
def test_tdds_equals_the_formula_on_a_recorded_history(window, decay):
    S, y = make_signals(class_sizes=(20, 12, 8), epochs=7, seed=3)
    sel = TDDS(fraction=0.3, window=window, decay=decay, random_state=0).fit(S, y)
    expected = tdds_oracle(S["proba_history"], window, decay)
    np.testing.assert_allclose(sel.scores_, expected, rtol=1e-5, atol=1e-12)
    for c, ranking in enumerate(sel.class_rankings_):
        rows = np.flatnonzero(y == c)
        assert set(ranking) == set(rows[np.argsort(-expected[rows])[:len(ranking)]])


def test_tdds_many_windows_and_initialisations():
    proba = np.random.RandomState(4).dirichlet(np.ones(5), size=(12, 2, 15))  # (n, I, T, C)
    expected = np.mean([tdds_oracle(proba[:, r], 10, 0.9) for r in range(2)], axis=0)
    sel = TDDS(fraction=5, balance=False).fit(Signals(proba_history=proba))
    np.testing.assert_allclose(sel.scores_, expected, rtol=1e-10)
    assert set(sel.sample_indices_) == set(np.argsort(-expected)[:5])


def test_tdds_short_histories_and_bad_input():
    proba = np.random.RandomState(5).dirichlet(np.ones(3), size=(6, 2))
    sel = TDDS(fraction=2, balance=False, random_state=0).fit(Signals(proba_history=proba))
    np.testing.assert_array_equal(sel.scores_, 0.0)
    with pytest.raises(ValueError, match="logits"):
        TDDS(fraction=2, balance=False).fit(Signals(proba_history=proba - 1.0))
    with pytest.raises(ValueError, match="proba_history"):
        TDDS(fraction=2, balance=False).fit(Signals(proba_history=proba[:, 0]))
    with pytest.raises(ValueError, match="window"):
        TDDS(fraction=2, window=2).fit(Signals(proba_history=proba))


def test_registered_names():
    assert isinstance(make_selector("DynUnc"), DynamicUncertainty)
    assert isinstance(make_selector("dynamic_uncertainty"), DynamicUncertainty)
    assert isinstance(make_selector("tdds"), TDDS)
