"""Budgets, Signals and the ScoreSelector base, against hand-worked and brute-force oracles."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sk_coreset import RandomSelector, Signals, allocate_budgets
from sk_coreset.base import ScoreSelector, resolve_budget


class _Precomputed(ScoreSelector):
    """A minimal score-based selector: the score is the embedding's first column."""

    _required_signals = ("embedding",)

    def _score(self, signals, y, random_state):
        return np.asarray(signals["embedding"])[:, 0]


class_sizes = st.lists(st.integers(min_value=1, max_value=60), min_size=1, max_size=12)


@settings(max_examples=300, deadline=None)
@given(sizes=class_sizes, fraction=st.floats(min_value=0.0, max_value=1.0, exclude_min=True))
def test_budgets_total_and_shares(sizes, fraction):
    n = sum(sizes)
    total = math.floor(fraction * n + 0.5 + 1e-9)
    if total == 0:
        with pytest.raises(ValueError, match="selects no sample"):
            resolve_budget(fraction, n)
        return
    assert resolve_budget(fraction, n) == total
    budgets = allocate_budgets(sizes, total)
    assert budgets.sum() == total
    for size, budget in zip(sizes, budgets):
        share = total * size / n
        assert budget in (math.floor(share), math.ceil(share))
        assert 0 <= budget <= size


@settings(max_examples=200, deadline=None)
@given(sizes=class_sizes, data=st.data())
def test_budgets_for_an_int_count(sizes, data):
    n = sum(sizes)
    count = data.draw(st.integers(min_value=1, max_value=n))
    assert resolve_budget(count, n) == count
    budgets = allocate_budgets(sizes, count)
    assert budgets.sum() == count and np.all(budgets <= np.array(sizes))


def test_budgets_hand_worked():
    # shares 2.5, 1.5, 1.0 -> floors 2, 1, 1; the one left goes to the first tied class
    assert allocate_budgets([5, 3, 2], 5).tolist() == [3, 1, 1]
    # shares 0.3, 0.9, 2.7, 9.1 (total 13): floors 0,0,2,9 = 11; remainders .9 and .7 win
    assert allocate_budgets([1, 3, 9, 30 + 0], 13).tolist() == [0, 1, 3, 9]
    assert allocate_budgets([1, 1, 1], 1).tolist() == [1, 0, 0]
    assert resolve_budget(0.5, 5) == 3  # half-up, not banker's rounding
    assert resolve_budget(1.0, 7) == 7


def test_selection_with_zero_and_one_budget_classes():
    y = np.array([0] * 1 + [1] * 3 + [2] * 12 + [3] * 40)
    sel = RandomSelector(fraction=0.25, random_state=0).fit(np.zeros((len(y), 2)), y)
    assert sel.budgets_.tolist() == [0, 1, 3, 10]
    assert np.bincount(y[sel.sample_indices_], minlength=4).tolist() == [0, 1, 3, 10]


def test_balanced_ranking_is_interleaved_by_class():
    y = np.array([0] * 50 + [1] * 50)
    sel = RandomSelector(fraction=0.2, random_state=0).fit(np.zeros((100, 1)), y)
    first_half = y[sel.sample_indices_[:10]]
    assert np.bincount(first_half).tolist() == [5, 5]


def test_signals_contract():
    S = Signals(embedding=np.zeros((5, 3)), proba=np.ones((5, 2)) / 2)
    assert len(S) == 5 and S.shape == (5,)
    sub = S[np.array([0, 2])]
    assert isinstance(sub, Signals) and sub["proba"].shape == (2, 2)
    assert S.per_init("proba").shape == (5, 1, 2)
    assert Signals(proba=np.ones((5, 3, 2))).per_init("proba").shape == (5, 3, 2)
    with pytest.raises(ValueError, match="same number of rows"):
        Signals(embedding=np.zeros((5, 3)), proba=np.zeros((4, 2)))
    with pytest.raises(ValueError, match="at least one"):
        Signals()
    with pytest.raises(ValueError, match="one row per sample"):
        Signals(embedding=3.0)


def test_score_selector_keeps_the_documented_end_and_breaks_ties_randomly():
    scores = np.array([5.0, 1.0, 3.0, 3.0, 3.0, 0.0, 9.0, 3.0])
    X = np.c_[scores, np.zeros(8)]
    high = _Precomputed(fraction=2, balance=False).fit(X)
    assert high.sample_indices_.tolist() == [6, 0]
    low = _Precomputed(fraction=2, balance=False, keep="lowest").fit(X)
    assert low.sample_indices_.tolist() == [5, 1]
    np.testing.assert_array_equal(low.scores_, scores)
    # four rows tie at 3.0 for the last two places: the seed decides, not the position
    picks = {
        tuple(_Precomputed(fraction=4, balance=False, random_state=s).fit(X).sample_indices_[2:])
        for s in range(20)
    }
    assert len(picks) > 1 and all(set(p) <= {2, 3, 4, 7} for p in picks)


def test_score_selector_accepts_precomputed_scores():
    scores = np.array([0.1, 0.9, 0.5, 0.7])
    sel = _Precomputed(fraction=0.5, balance=False).fit(scores)
    assert sel.sample_indices_.tolist() == [1, 3]
    y = np.array(["a", "a", "b", "b"])
    assert _Precomputed(fraction=0.5).fit(scores, y).sample_indices_.tolist() == [1, 3]


def test_fit_transform_and_transform_of_other_data():
    X = np.arange(40.0).reshape(20, 2)
    sel = RandomSelector(fraction=0.25, balance=False, random_state=1)
    out = sel.fit_transform(X)
    np.testing.assert_array_equal(out, X[sel.sample_indices_])
    with pytest.raises(ValueError, match="differs"):
        sel.transform(X + 1)


def test_random_selector_accepts_lists_and_label_free_use():
    rows = [f"doc{i}" for i in range(10)]
    sel = RandomSelector(fraction=3, random_state=0)
    kept = sel.fit(rows).transform(rows)
    assert len(kept) == 3 and set(kept) <= set(rows)


def test_random_selector_is_uniform():
    # each of 10 rows is kept with probability 0.3; 2000 seeds, binomial tolerance
    hits = np.zeros(10)
    for seed in range(2000):
        hits[RandomSelector(fraction=3, balance=False, random_state=seed).fit(np.zeros((10, 1))).sample_indices_] += 1
    assert np.all(np.abs(hits / 2000 - 0.3) < 0.05)


def test_random_selector_in_imblearn_pipeline():
    from imblearn.pipeline import Pipeline
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression

    X, y = load_digits(return_X_y=True)
    seen = {}

    class Spy(LogisticRegression):
        def fit(self, X, y, sample_weight=None):
            seen["n"], seen["counts"] = len(y), np.bincount(y, minlength=10)
            return super().fit(X, y)

    pipe = Pipeline([("select", RandomSelector(fraction=0.5, random_state=0).as_sampler()),
                     ("clf", Spy(max_iter=2000))])
    pipe.fit(X, y)
    expected = allocate_budgets(np.bincount(y), resolve_budget(0.5, len(y)))
    assert seen["n"] == expected.sum()
    np.testing.assert_array_equal(seen["counts"], expected)
    assert pipe.score(X, y) > 0.9  # predict sees all rows: samplers only act in fit
