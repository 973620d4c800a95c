"""The selector contract, checked for every registered selector.

New selectors join automatically through ``available_selectors()``. The oracles are the
contract itself: budgets from an independent largest-remainder computation written here,
identity of rows returned by ``fit_resample``, and byte-equality of inputs before/after.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from sklearn.base import clone

from sk_coreset import Signals
from sk_coreset.selectors import available_selectors, make_selector

from conftest import make_signals

SELECTORS = available_selectors()


def build(name, **params):
    return make_selector(name, random_state=0, **params)


def expected_budgets(class_sizes, fraction):
    """Independent oracle: exact rational shares, floor, then largest remainders."""
    n = sum(class_sizes)
    total = int(Fraction(fraction) * n + Fraction(1, 2)) if isinstance(fraction, float) else fraction
    shares = [Fraction(total * c, n) for c in class_sizes]
    budgets = [int(s) for s in shares]
    rest = sorted(range(len(shares)), key=lambda i: (-(shares[i] - budgets[i]), i))
    for i in rest[: total - sum(budgets)]:
        budgets[i] += 1
    return budgets


def required(name):
    return type(make_selector(name))._required_signals


@pytest.fixture(scope="module")
def data():
    return make_signals(class_sizes=(40, 25, 15), seed=1)


@pytest.mark.parametrize("name", SELECTORS)
def test_clone_and_params_round_trip(name):
    sel = build(name, fraction=0.2, balance=False)
    params = sel.get_params()
    twin = clone(sel)
    assert twin.get_params() == params
    twin.set_params(fraction=0.3)
    assert twin.get_params()["fraction"] == 0.3 and sel.fraction == 0.2


@pytest.mark.parametrize("name", SELECTORS)
def test_same_seed_same_indices(name, data):
    S, y = data
    a = build(name, fraction=0.25).fit(S, y)
    b = build(name, fraction=0.25).fit(S, y)
    np.testing.assert_array_equal(a.sample_indices_, b.sample_indices_)
    np.testing.assert_array_equal(a.sample_weight_, b.sample_weight_)


@pytest.mark.parametrize("name", SELECTORS)
def test_inputs_not_modified(name, data):
    S, y = data
    before = {k: v.copy() for k, v in S.items()}
    y_before = y.copy()
    build(name, fraction=0.25).fit(S, y)
    for k, v in S.items():
        np.testing.assert_array_equal(v, before[k], err_msg=k)
    np.testing.assert_array_equal(y, y_before)


@pytest.mark.parametrize("balance", [True, False])
@pytest.mark.parametrize("fraction", [0.1, 0.37, 1.0, 7])
@pytest.mark.parametrize("name", SELECTORS)
def test_indices_unique_in_range_and_exact_budget(name, fraction, balance, data):
    S, y = data
    sel = build(name, fraction=fraction, balance=balance).fit(S, y)
    idx = sel.sample_indices_
    budget = expected_budgets([len(y)], fraction)[0]
    assert idx.dtype == np.int64
    assert len(idx) == budget == len(np.unique(idx))
    assert idx.min() >= 0 and idx.max() < len(y)
    assert sel.sample_weight_.dtype == np.float64 and len(sel.sample_weight_) == budget
    assert np.all(np.isfinite(sel.sample_weight_)) and np.all(sel.sample_weight_ >= 0)
    mask = sel.get_support()
    assert mask.sum() == budget and set(np.flatnonzero(mask)) == set(idx)
    if sel.scores_ is not None:
        assert sel.scores_.shape == (len(y),)


@pytest.mark.parametrize("fraction", [0.1, 0.25, 0.5])
@pytest.mark.parametrize("name", SELECTORS)
def test_balanced_per_class_budgets(name, fraction, data):
    S, y = data
    sel = build(name, fraction=fraction).fit(S, y)
    counts = np.bincount(y[sel.sample_indices_], minlength=3).tolist()
    assert counts == expected_budgets(np.bincount(y).tolist(), fraction)


@pytest.mark.parametrize("name", SELECTORS)
def test_tiny_pools_with_budgets_zero_and_one(name):
    # classes of 1, 3, 12 and 40 rows at fraction 0.25: budgets 0, 1, 3, 10
    S, y = make_signals(class_sizes=(1, 3, 12, 40), seed=2)
    sel = build(name, fraction=0.25).fit(S, y)
    assert np.bincount(y[sel.sample_indices_], minlength=4).tolist() == [0, 1, 3, 10]


@pytest.mark.parametrize("name", SELECTORS)
def test_string_labels_select_like_integer_codes(name, data):
    S, y = data
    names = np.array(["cat", "dog", "emu"])[y]  # sorted like the codes
    by_code = build(name, fraction=0.3).fit(S, y)
    by_name = build(name, fraction=0.3).fit(S, names)
    np.testing.assert_array_equal(by_code.sample_indices_, by_name.sample_indices_)
    assert list(by_name.classes_) == ["cat", "dog", "emu"]


@pytest.mark.parametrize("name", SELECTORS)
def test_fit_resample_returns_the_selected_rows(name, data):
    S, y = data
    sel = build(name, fraction=0.2)
    S_res, y_res = sel.fit_resample(S, y)
    idx = sel.sample_indices_
    assert isinstance(S_res, Signals)
    for k in S:
        np.testing.assert_array_equal(S_res[k], S[k][idx])
    np.testing.assert_array_equal(y_res, y[idx])
    out = sel.transform(S)
    np.testing.assert_array_equal(out["embedding"], S["embedding"][idx])


@pytest.mark.parametrize("fraction", [0.0, -0.1, 1.5, "half", 0, 81, np.nan])
@pytest.mark.parametrize("name", SELECTORS)
def test_invalid_fraction_raises(name, fraction, data):
    S, y = data
    with pytest.raises(ValueError, match="fraction"):
        build(name, fraction=fraction).fit(S, y)


@pytest.mark.parametrize("name", SELECTORS)
def test_nan_or_inf_in_a_used_signal_raises(name, data):
    S, y = data
    for signal in required(name):
        for bad in (np.nan, np.inf):
            arrays = dict(S)
            broken = arrays[signal].astype(np.float64, copy=True)
            broken.reshape(len(y), -1)[3, 0] = bad
            arrays[signal] = broken
            with pytest.raises(ValueError, match=signal):
                build(name, fraction=0.2).fit(Signals(**arrays), y)


@pytest.mark.parametrize("name", SELECTORS)
def test_mismatched_lengths_raise(name, data):
    S, y = data
    with pytest.raises(ValueError, match="labels"):
        build(name, fraction=0.2).fit(S, y[:-1])
    arrays = dict(S)
    arrays["embedding"] = arrays["embedding"][:-1]
    with pytest.raises(ValueError, match="same number of rows"):
        Signals(**arrays)


@pytest.mark.parametrize("name", SELECTORS)
def test_missing_signal_raises(name, data):
    S, y = data
    for signal in required(name):
        rest = {k: v for k, v in S.items() if k != signal}
        with pytest.raises(ValueError, match=signal):
            build(name, fraction=0.2).fit(Signals(**rest), y)


@pytest.mark.parametrize("name", SELECTORS)
def test_transform_refuses_other_data(name, data):
    S, y = data
    sel = build(name, fraction=0.2).fit(S, y)
    other = Signals(**{k: v[::-1].copy() for k, v in S.items()})
    with pytest.raises(ValueError, match="fit"):
        sel.transform(other)
