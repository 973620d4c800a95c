"""scikit-learn's estimator checks over every registered selector.

Selectors are row samplers, not transformers or predictors, so a few generic checks
cannot apply; each expected failure is listed with the reason.
"""

from __future__ import annotations

from sklearn.utils.estimator_checks import parametrize_with_checks

from sk_coreset.selectors import available_selectors, make_selector

from sk_coreset.base import ScoreSelector
from sk_coreset.selectors import CCS, RandomSelector

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
# Score-based selectors (and CCS, which wraps one) take a 1-D array as precomputed scores.
SCORE_CHECKS = {"check_fit1d": "a 1-D array is a vector of precomputed scores"}

# Selectors that need several signals (Cal: embedding + proba; D2Pruning: embedding +
# scores) or a 3-D one (TDDS: a (n, epochs, C) history) cannot be fitted from the checks'
# plain 2-D arrays: they raise a ValueError naming the missing signal. Every check that
# fits on such an array is therefore expected to fail for them.
PLAIN_ARRAY_FITS = [
    "check_fit_score_takes_y", "check_estimators_overwrite_params",
    "check_dont_overwrite_parameters", "check_estimators_fit_returns_self",
    "check_readonly_memmap_input", "check_n_features_in_after_fitting",
    "check_positive_only_tag_during_fit", "check_estimators_dtypes", "check_dtype_object",
    "check_pipeline_consistency", "check_estimators_nan_inf", "check_estimators_pickle",
    "check_estimators_pickle(readonly_memmap=True)", "check_f_contiguous_array_estimator",
    "check_transformer_preserve_dtypes", "check_fit2d_1sample", "check_fit2d_1feature",
    "check_dict_unchanged", "check_fit_check_is_fitted", "check_n_features_in",
    "check_fit2d_predict1d",
]
NOT_ONE_SIGNAL = "needs several signals or a 3-D history; a plain 2-D array cannot stand for them"

# Selectors that read proba[:, y] need one column per class; several checks fit on
# arrays with fewer columns than classes, which is refused with a ValueError.
PROBA_BY_LABEL = {"EL2N"}
PROBA_COLUMN_CHECKS = [
    "check_estimators_overwrite_params", "check_estimators_fit_returns_self",
    "check_readonly_memmap_input", "check_dtype_object", "check_estimators_nan_inf",
    "check_fit2d_1feature",
]
TOO_FEW_COLUMNS = "the checks' X has fewer columns than classes, so it is no valid proba"


NEEDS_SIGNALS = {"Cal", "D2Pruning", "TDDS"}


def expected_failed_checks(selector):
    expected = dict(TRANSFORM_CHECKS)
    if isinstance(selector, RandomSelector):
        expected.update(RANDOM_CHECKS)
    if isinstance(selector, (ScoreSelector, CCS)):
        expected.update(SCORE_CHECKS)
    if type(selector).__name__ in NEEDS_SIGNALS:
        expected.update(dict.fromkeys(PLAIN_ARRAY_FITS, NOT_ONE_SIGNAL))
    if type(selector).__name__ in PROBA_BY_LABEL:
        expected.update(dict.fromkeys(PROBA_COLUMN_CHECKS, TOO_FEW_COLUMNS))
    return expected


SELECTORS = [make_selector(name, fraction=0.5, random_state=0) for name in available_selectors()]


@parametrize_with_checks(SELECTORS, expected_failed_checks=expected_failed_checks)
def test_sklearn_compatible_selector(estimator, check):
    check(estimator)
