"""LeastConfidence, Entropy and Margin against numpy/scipy formulas.

The oracles compute each score with scipy/numpy directly and pick the most uncertain
rows by a plain sort, per class (balance=True) or overall (balance=False).
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import entropy as scipy_entropy

from sk_coreset import Signals
from sk_coreset.selectors import make_selector
from sk_coreset.selectors.uncertainty import Entropy, LeastConfidence, Margin


def least_confidence(P):
    return 1.0 - P.max(axis=1)


def entropy(P):
    return scipy_entropy(P, axis=1)


def margin(P):
    top = np.sort(P, axis=1)
    return 1.0 - (top[:, -1] - top[:, -2])


ORACLES = {LeastConfidence: least_confidence, Entropy: entropy, Margin: margin}


def data(n=150, classes=5, seed=0):
    rng = np.random.RandomState(seed)
    P = rng.dirichlet(np.full(classes, 0.5), size=n)
    return P, rng.randint(classes, size=n)


def top_rows(scores, k):
    return set(np.argsort(-scores, kind="stable")[:k].tolist())


@pytest.mark.parametrize("cls", list(ORACLES))
def test_scores_equal_formula(cls):
    P, y = data()
    sel = cls(fraction=0.2).fit(P, y)
    np.testing.assert_allclose(sel.scores_, ORACLES[cls](P), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("cls", list(ORACLES))
def test_unbalanced_keeps_the_most_uncertain_rows(cls):
    P, y = data(seed=1)
    sel = cls(fraction=0.2, balance=False, random_state=0).fit(P, y)
    expected = top_rows(ORACLES[cls](P), 30)
    assert set(sel.sample_indices_.tolist()) == expected
    # the ranking itself is in decreasing uncertainty
    assert np.all(np.diff(ORACLES[cls](P)[sel.sample_indices_]) <= 0)


@pytest.mark.parametrize("cls", list(ORACLES))
def test_balanced_keeps_the_most_uncertain_rows_of_each_class(cls):
    P, y = data(seed=2)
    sel = cls(fraction=0.2, random_state=0).fit(P, y)
    scores = ORACLES[cls](P)
    for c, budget in enumerate(sel.budgets_):
        pool = np.flatnonzero(y == c)
        expected = set(pool[list(top_rows(scores[pool], budget))].tolist())
        assert set(sel.sample_indices_[y[sel.sample_indices_] == c].tolist()) == expected


@pytest.mark.parametrize("cls", list(ORACLES))
def test_keep_lowest_keeps_the_most_confident_rows(cls):
    P, y = data(seed=3)
    sel = cls(fraction=0.1, balance=False, keep="lowest").fit(P, y)
    assert set(sel.sample_indices_.tolist()) == top_rows(-ORACLES[cls](P), 15)


@pytest.mark.parametrize("cls", list(ORACLES))
def test_several_initialisations_average_the_scores(cls):
    rng = np.random.RandomState(4)
    P = rng.dirichlet(np.ones(3), size=(40, 4))  # (n, n_init, C)
    sel = cls(fraction=0.25, balance=False).fit(Signals(proba=P))
    expected = np.mean([ORACLES[cls](P[:, r]) for r in range(4)], axis=0)
    np.testing.assert_allclose(sel.scores_, expected, rtol=1e-12)


def test_zero_probabilities_and_one_class():
    P = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.0], [0.2, 0.3, 0.5]])
    np.testing.assert_allclose(Entropy(fraction=1).fit(P, [0, 1, 2]).scores_, entropy(P))
    one = np.ones((4, 1))
    np.testing.assert_allclose(Margin(fraction=1, balance=False).fit(one).scores_, 0.0)


@pytest.mark.parametrize("cls", list(ORACLES))
def test_ties_break_by_seeded_random_order(cls):
    P = np.full((30, 3), 1 / 3)
    picks = {tuple(cls(fraction=5, balance=False, random_state=s).fit(P).sample_indices_)
             for s in range(6)}
    assert len(picks) > 1
    a = cls(fraction=5, balance=False, random_state=2).fit(P).sample_indices_
    b = cls(fraction=5, balance=False, random_state=2).fit(P).sample_indices_
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("cls", list(ORACLES))
def test_precomputed_scores_are_accepted(cls):
    P, y = data(seed=5)
    scores = ORACLES[cls](P)
    from_scores = cls(fraction=0.2, random_state=0).fit(scores, y)
    from_proba = cls(fraction=0.2, random_state=0).fit(P, y)
    assert set(from_scores.sample_indices_) == set(from_proba.sample_indices_)


def test_registered_names():
    for name, cls in (("LeastConfidence", LeastConfidence), ("entropy", Entropy),
                      ("Margin", Margin)):
        assert isinstance(make_selector(name), cls)


@pytest.mark.parametrize("name", ["LeastConfidence", "Entropy", "Margin", "EL2N", "GraNd",
                                  "ContextualDiversity", "Cal"])
def test_logits_passed_as_proba_warn(name):
    rng = np.random.RandomState(6)
    S = Signals(embedding=rng.normal(size=(20, 3)), proba=rng.normal(size=(20, 4)))
    with pytest.warns(UserWarning, match="softmax"):
        make_selector(name, fraction=0.5).fit(S, rng.randint(4, size=20))
