"""Uncertainty selectors: LeastConfidence, Entropy and Margin of the proxy's softmax.

Every score grows with uncertainty and the default ``keep="highest"`` selects the most
uncertain rows, with and without ``balance`` (the DeepCore reference inverts the
unbalanced path and scores LeastConfidence on raw logits; neither is reproduced).
With several proxy initialisations (``proba`` of shape (n, n_init, C)) the score is the
mean over initialisations of the per-initialisation score.
"""

from __future__ import annotations

import warnings

import numpy as np

from ..base import ScoreSelector, signal_bytes
from ._registry import register_selector

__all__ = ["Entropy", "LeastConfidence", "Margin"]


class _Uncertainty(ScoreSelector):
    _required_signals = ("proba",)
    _rowwise_scores = True

    def __init__(self, fraction=0.1, *, balance=True, random_state=None, n_jobs=None,
                 keep="highest"):
        super().__init__(fraction, balance=balance, random_state=random_state, n_jobs=n_jobs,
                         keep=keep)

    def _score(self, signals, y, random_state):
        proba = _check_proba(_as_numpy(signals.per_init("proba"))).astype(np.float64)
        return self._uncertainty(proba).mean(axis=1)

    def _pool_memory(self, n_rows, budget, signals) -> int:
        """A float64 copy of the probabilities and up to four temporaries of its size."""
        return 5 * signal_bytes(signals, ("proba",), n_rows, 8) + 32 * n_rows


def _as_numpy(x) -> np.ndarray:
    return x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)


def _check_proba(proba, name: str = "proba"):
    """Warn when a ``proba`` signal's rows are not probability vectors (e.g. logits)."""
    arr = _as_numpy(proba)
    if arr.size and (arr.min() < -1e-6 or np.abs(arr.sum(axis=-1) - 1).max() > 1e-3):
        warnings.warn(
            f"Signal {name!r} should hold probabilities (non-negative rows summing to 1) "
            "but does not; if these are logits, pass softmax outputs instead, e.g. "
            "scipy.special.softmax(logits, axis=-1).",
            UserWarning,
            stacklevel=4,
        )
    return proba


# Parameters and attributes of the three selectors below.
_SHARED_DOC = """
    Parameters
    ----------
    fraction : float in (0, 1] or int, default=0.1
        Proportion (or count) of rows to keep.
    balance : bool, default=True
        Select every class independently.
    random_state : int, RandomState instance or None, default=None
        Seed of the random order that breaks ties between equal scores.
    n_jobs : int or None, default=None
        Blocks of rows (a class, or 65,536 of its rows) scored in parallel with joblib,
        also on a Dask cluster under ``joblib.parallel_backend("dask")``; ``None``
        means 1 unless in a joblib backend context, ``-1`` all processors. The result
        does not depend on it.
    keep : {"highest", "lowest"}, default="highest"
        ``"highest"`` keeps the most uncertain rows.

    Attributes
    ----------
    scores_ : ndarray of shape (n_samples,)
        The uncertainty of every row (mean over proxy initialisations).
    sample_indices_, sample_weight_, classes_, budgets_, class_rankings_
        As in :class:`~sk_coreset.base.BaseSelector`.
"""

@register_selector("LeastConfidence")
class LeastConfidence(_Uncertainty):
    __doc__ = f"""Least confidence: score ``1 - max_c p_c``; keeps the least confident rows.
{_SHARED_DOC}
    Examples
    --------
    >>> import numpy as np
    >>> from sk_coreset.selectors.uncertainty import LeastConfidence
    >>> P = np.array([[0.9, 0.1], [0.6, 0.4], [0.5, 0.5], [0.99, 0.01]])
    >>> LeastConfidence(fraction=2, balance=False).fit(P).sample_indices_.tolist()
    [2, 1]
    """

    @staticmethod
    def _uncertainty(proba):
        return 1.0 - proba.max(axis=-1)


@register_selector("Entropy")
class Entropy(_Uncertainty):
    __doc__ = f"""Predictive entropy: score ``-sum_c p_c log p_c`` (``0 log 0 = 0``).
{_SHARED_DOC}
    Examples
    --------
    >>> import numpy as np
    >>> from sk_coreset.selectors.uncertainty import Entropy
    >>> P = np.array([[0.9, 0.1], [0.6, 0.4], [0.5, 0.5], [1.0, 0.0]])
    >>> Entropy(fraction=2, balance=False).fit(P).sample_indices_.tolist()
    [2, 1]
    """

    @staticmethod
    def _uncertainty(proba):
        logs = np.log(np.where(proba > 0, proba, 1.0))
        return -(proba * logs).sum(axis=-1)


@register_selector("Margin")
class Margin(_Uncertainty):
    __doc__ = f"""Margin: score ``1 - (p_(1) - p_(2))``, one minus the gap between the
    two largest probabilities (with a single class, ``p_(2) = 0``).
{_SHARED_DOC}
    Examples
    --------
    >>> import numpy as np
    >>> from sk_coreset.selectors.uncertainty import Margin
    >>> P = np.array([[0.9, 0.1, 0.0], [0.5, 0.1, 0.4], [0.4, 0.35, 0.25], [1.0, 0.0, 0.0]])
    >>> Margin(fraction=2, balance=False).fit(P).sample_indices_.tolist()
    [2, 1]
    """

    @staticmethod
    def _uncertainty(proba):
        if proba.shape[-1] < 2:
            return 1.0 - proba[..., 0]
        top2 = -np.partition(-proba, 1, axis=-1)[..., :2]
        return 1.0 - (top2[..., 0] - top2[..., 1])
