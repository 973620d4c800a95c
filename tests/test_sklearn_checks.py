"""scikit-learn's estimator checks over every registered selector.

Selectors are row samplers, not transformers or predictors, so a few generic checks
cannot apply; each expected failure is listed with the reason.
"""

from __future__ import annotations

from sklearn.utils.estimator_checks import parametrize_with_checks

from sk_coreset.selectors import available_selectors, make_selector

from sk_coreset.base import ScoreSelector
from sk_coreset.selectors import RandomSelector

# transform(X) returns the selected rows of the fitted data (apricot's convention), so it
# has fewer rows than X; these checks assume one output row per input row.
ROW_SUBSET = "transform returns the selected rows, fewer than the input rows, by design"
TRANSFORM_CHECKS = {
    "check_transformer_general": ROW_SUBSET,
    "check_transformer_general(readonly_memmap=True)": ROW_SUBSET,
    "check_transformer_data_not_an_array": ROW_SUBSET,
}
# These call transform on data other than the fitted data, which is refused by design
# (mapping selected indices onto other rows would silently return the wrong rows).
OTHER_DATA = "transform refuses data other than the fitted data, by design"
TRANSFORM_CHECKS.update(
    {
        "check_fit_idempotent": OTHER_DATA,
        "check_methods_sample_order_invariance": OTHER_DATA,
        "check_methods_subset_invariance": OTHER_DATA,
    }
)
# RandomSelector reads no signal: rows may be arbitrary items (1-D lists, strings).
RANDOM_CHECKS = {
    "check_fit1d": "any row-indexable data is accepted, 1-D included",
    "check_fit2d_predict1d": "any row-indexable data is accepted, 1-D included",
    "check_dtype_object": "rows are never read, so object rows are accepted",
}
# Score-based selectors take a 1-D array as precomputed scores.
SCORE_CHECKS = {"check_fit1d": "a 1-D array is a vector of precomputed scores"}


def expected_failed_checks(selector):
    expected = dict(TRANSFORM_CHECKS)
    if isinstance(selector, RandomSelector):
        expected.update(RANDOM_CHECKS)
    if isinstance(selector, ScoreSelector):
        expected.update(SCORE_CHECKS)
    return expected


SELECTORS = [make_selector(name, fraction=0.5, random_state=0) for name in available_selectors()]


@parametrize_with_checks(SELECTORS, expected_failed_checks=expected_failed_checks)
def test_sklearn_compatible_selector(estimator, check):
    check(estimator)
