"""The uniform random baseline."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
from sklearn.utils.validation import _num_samples, validate_data

from ..base import BaseSelector, PoolSelection, Signals, _is_lazy, _is_mapping
from ._registry import register_selector


@register_selector("Uniform", "Random")
class RandomSelector(BaseSelector):
    """Uniform sampling without replacement (per class when ``balance=True``).

    The paper's "Uniform" baseline, and the one every other method must beat. It reads
    no signal: ``X`` may be any row-indexable data (arrays, lists, torch Datasets), so it
    also works as an imbalanced-learn sampler on raw features.

    Parameters
    ----------
    fraction : float in (0, 1] or int, default=0.1
        Proportion (or count) of rows to keep.
    balance : bool, default=True
        Sample every class independently with largest-remainder budgets.
    random_state : int, RandomState instance or None, default=None
        Seed of the sampling.
    n_jobs : int or None, default=None
        Pools (classes with ``balance=True``) selected in parallel with joblib, also
        on a Dask cluster under ``joblib.parallel_backend("dask")``; ``None`` means 1
        unless in a joblib backend context, ``-1`` all processors. The result does not
        depend on it.

    Examples
    --------
    >>> import numpy as np
    >>> from sk_coreset.selectors import RandomSelector
    >>> X, y = np.arange(20.0).reshape(10, 2), np.array([0] * 5 + [1] * 5)
    >>> sel = RandomSelector(fraction=0.4, random_state=0).fit(X, y)
    >>> np.bincount(y[sel.sample_indices_]).tolist()
    [2, 2]
    """

    def _as_signals(self, X):
        X = self._check_plain_array(X, reset=True)
        return Signals(rows=np.empty((_num_samples(X), 0)))

    def _check_plain_array(self, X, reset):
        if _is_mapping(X) or isinstance(X, torch.Tensor) or _is_lazy(X):
            return X  # rows are never read, so dask arrays are not computed
        if not (hasattr(X, "__array__") or sp.issparse(X)):
            return X  # lists, torch Datasets: rows are never read
        two_d = sp.issparse(X) or np.ndim(X) >= 2  # rows may be 1-D items too
        return validate_data(self, X, reset=reset, accept_sparse=True, allow_nd=True,
                             dtype=None, ensure_2d=two_d, ensure_all_finite=False)

    def _select_pool(self, signals, y, budget, random_state):
        return PoolSelection(random_state.permutation(signals.shape[0])[:budget])

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        tags.input_tags.sparse = True
        return tags
