"""Scores from the history of a proxy's predictions: dynamic uncertainty and TDDS.

Both read a per-epoch record of the proxy's outputs on the training rows (the
featurizer's ``true_proba`` dynamics, and ``proba_history`` when it is created with
``record_proba_history=True``). Several proxy initialisations sit on axis 1; each is
scored on its own and the scores are averaged. Computations run in torch on the device
the signal lives on, in row chunks.
"""

from __future__ import annotations

import numbers

import numpy as np
import torch
from sklearn.utils._param_validation import Interval

from ..base import ScoreSelector, row_elements
from ..kernels import as_tensor
from ._registry import register_selector

__all__ = ["DynamicUncertainty", "TDDS"]

# Elements of history processed at once (rows are chunked to stay near this).
_CHUNK_ELEMENTS = 2**24
# Added to probabilities before the logarithm in TDDS, as the reference code does.
_TDDS_EPS = 1e-8


def _tensor(x) -> torch.Tensor:
    on_cpu = not isinstance(x, torch.Tensor) or x.device.type == "cpu"
    wide = on_cpu or x.dtype == torch.float64
    return as_tensor(x, dtype=torch.float64 if wide else torch.float32)


def _chunk_rows(n: int, per_row: int) -> int:
    """Rows of a chunk of :func:`_chunked`."""
    return min(n, max(1, _CHUNK_ELEMENTS // max(per_row, 1)))


def _windows(epochs: int, window: int) -> tuple[int, int]:
    """``(W, J)``: the number of windows of ``J = min(window, epochs)`` epochs."""
    length = min(window, epochs)
    return epochs - length + 1, length


def _chunked(history, row_score) -> np.ndarray:
    """Apply ``row_score`` to row chunks of ``history`` and gather a float64 array."""
    per_row = int(np.prod(history.shape[1:])) or 1
    step = max(1, _CHUNK_ELEMENTS // per_row)
    out = [row_score(_tensor(history[i : i + step])) for i in range(0, len(history), step)]
    return torch.cat(out).cpu().numpy().astype(np.float64)


def _dynamic_uncertainty(history, window: int) -> torch.Tensor:
    """Mean over sliding windows of the std of the true-class probability; (n, I, E) -> (n,)."""
    length = min(window, history.shape[-1])
    if length < 2:
        return torch.zeros(history.shape[0], dtype=history.dtype, device=history.device)
    windows = history.unfold(-1, length, 1)  # (n, I, E - J + 1, J)
    return windows.std(dim=-1, correction=1).mean(dim=-1).mean(dim=-1)


@register_selector("DynamicUncertainty", "DynUnc")
class DynamicUncertainty(ScoreSelector):
    """Dynamic uncertainty (He et al., "Large-scale dataset pruning with dynamic uncertainty").

    From the true-class probability ``P_t`` of every epoch ``t = 0..T-1`` (signal
    ``true_proba``, ``(n, T)`` or ``(n, n_init, T)``), with window ``J = min(window, T)``:

    ``U = 1 / (T - J + 1) * sum_{k=0}^{T-J} std(P_k, ..., P_{k+J-1})``,

    the mean over every full window of ``J`` consecutive epochs of the sample standard
    deviation (ddof=1) inside it. With fewer than ``window`` epochs the single window
    covers all of them; with one epoch every score is 0 (ties broken at random). The
    reference code also scales by 10 (irrelevant to the ranking) and leaves out the
    window that ends at the last epoch; here every full window counts. Several
    initialisations: the mean of their scores. Keeps the highest (most uncertain).

    Parameters
    ----------
    fraction : float in (0, 1] or int, default=0.1
        Proportion (or count) of rows to keep.
    balance : bool, default=True
        Select every class independently with largest-remainder budgets.
    random_state : int, RandomState instance or None, default=None
        Seeds tie breaks.
    n_jobs : int or None, default=None
        Blocks of rows (a class, or 65,536 of its rows) scored in parallel with joblib,
        also on a Dask cluster under ``joblib.parallel_backend("dask")``; ``None``
        means 1 unless in a joblib backend context, ``-1`` all processors. The result
        does not depend on it.
    keep : {"highest", "lowest"}, default="highest"
        Which end of the score ranking is kept.
    window : int, default=10
        Epochs per window (``J``; 10 in the paper).

    Attributes
    ----------
    scores_ : ndarray of shape (n_samples,)
        The dynamic uncertainty of each row.
    sample_indices_, sample_weight_, classes_, budgets_, class_rankings_, n_samples_fit_
        As in :class:`~sk_coreset.base.BaseSelector`.

    Examples
    --------
    >>> import numpy as np
    >>> from sk_coreset.selectors.temporal import DynamicUncertainty
    >>> history = np.array([[0.9, 0.9, 0.9], [0.2, 0.8, 0.3], [0.5, 0.6, 0.5]])
    >>> DynamicUncertainty(fraction=1, balance=False).fit(history).sample_indices_.tolist()
    [1]
    """

    _required_signals = ("true_proba",)
    _rowwise_scores = True
    _parameter_constraints: dict = {
        **ScoreSelector._parameter_constraints,
        "window": [Interval(numbers.Integral, 2, None, closed="left")],
    }

    def __init__(
        self, fraction=0.1, *, balance=True, random_state=None, n_jobs=None, keep="highest",
        window=10,
    ):
        super().__init__(fraction, balance=balance, random_state=random_state, n_jobs=n_jobs,
                         keep=keep)
        self.window = window

    def _score(self, signals, y, random_state):
        history = signals.per_init("true_proba")
        return _chunked(history, lambda h: _dynamic_uncertainty(h, self.window))

    def _pool_memory(self, n_rows, budget, signals) -> int:
        """Per chunk: a float64 copy of the history and its sliding windows, copied
        twice by the standard deviation."""
        per_row = row_elements(signals["true_proba"])  # n_init * epochs
        epochs = signals["true_proba"].shape[-1]
        windows, length = _windows(epochs, self.window)
        spread = 2 * per_row // epochs * windows * length if length >= 2 else 0
        return 8 * _chunk_rows(n_rows, per_row) * (per_row + spread) + 32 * n_rows


def _tdds(proba, window: int, decay: float) -> torch.Tensor:
    """TDDS of every row of ``proba`` (n, I, T, C) -> (n,); see :class:`TDDS`."""
    n_epochs = proba.shape[2]
    length = min(window, n_epochs)
    if length < 2:
        return torch.zeros(proba.shape[0], dtype=proba.dtype, device=proba.device)
    log = (proba + _TDDS_EPS).log()
    steps = (proba[:, :, 1:] * (log[:, :, 1:] - log[:, :, :-1])).abs().sum(dim=-1)
    windows = steps.unfold(-1, length - 1, 1)  # (n, I, W, J - 1)
    spread = (windows - windows.mean(dim=-1, keepdim=True)).norm(dim=-1)  # (n, I, W)
    age = torch.arange(spread.shape[-1] - 1, -1, -1, device=proba.device, dtype=proba.dtype)
    weights = decay * (1.0 - decay) ** age
    return (spread * weights).sum(dim=-1).mean(dim=-1)


@register_selector("TDDS", "TemporalDualDepth")
class TDDS(ScoreSelector):
    """Temporal dual-depth scoring (Zhang et al., CVPR 2024).

    From the softmax outputs ``p_t`` of every epoch ``t = 0..T-1`` (signal
    ``proba_history``, ``(n, T, C)`` or ``(n, n_init, T, C)``; the featurizer records it
    with ``record_proba_history=True``), with window ``K = min(window, T)`` and decay
    ``b``:

    1. per step ``t = 0..T-2``: ``d_t = sum_c |p_{t+1,c} * (log(p_{t+1,c} + eps) -
       log(p_{t,c} + eps))|`` with ``eps = 1e-8``;
    2. per window ``w = 0..W-1`` (``W = T - K + 1``) of ``K`` epochs, i.e. the ``K - 1``
       steps ``d_w .. d_{w+K-2}`` with mean ``m_w``:
       ``R_w = sqrt(sum_t (d_t - m_w)^2)`` (the L2 norm of the deviations);
    3. ``TDDS = sum_w b * (1 - b)^(W - 1 - w) * R_w``: the last window has weight ``b``,
       each earlier one ``(1 - b)`` times less.

    This is the formula of the authors' code (window 10, decay 0.9 by default). With
    fewer epochs than ``window`` the single window covers all of them; with fewer than 3
    epochs every score is 0. Several initialisations: the mean of their scores. Keeps
    the highest.

    Parameters
    ----------
    fraction : float in (0, 1] or int, default=0.1
        Proportion (or count) of rows to keep.
    balance : bool, default=True
        Select every class independently with largest-remainder budgets.
    random_state : int, RandomState instance or None, default=None
        Seeds tie breaks.
    n_jobs : int or None, default=None
        Blocks of rows (a class, or 65,536 of its rows) scored in parallel with joblib,
        also on a Dask cluster under ``joblib.parallel_backend("dask")``; ``None``
        means 1 unless in a joblib backend context, ``-1`` all processors. The result
        does not depend on it.
    keep : {"highest", "lowest"}, default="highest"
        Which end of the score ranking is kept.
    window : int >= 3, default=10
        Epochs per window (``K``); a window of 2 epochs holds one step, whose deviation
        from its own mean is always 0.
    decay : float in (0, 1], default=0.9
        Weight ``b`` of the most recent window.

    Attributes
    ----------
    scores_ : ndarray of shape (n_samples,)
        The TDDS score of each row.
    sample_indices_, sample_weight_, classes_, budgets_, class_rankings_, n_samples_fit_
        As in :class:`~sk_coreset.base.BaseSelector`.

    Examples
    --------
    >>> import numpy as np
    >>> from sk_coreset import Signals
    >>> from sk_coreset.selectors.temporal import TDDS
    >>> p = np.random.RandomState(0).dirichlet(np.ones(3), size=(20, 6))  # (n, T, C)
    >>> sel = TDDS(fraction=0.25, balance=False, random_state=0).fit(Signals(proba_history=p))
    >>> len(sel.sample_indices_)
    5
    """

    _required_signals = ("proba_history",)
    _rowwise_scores = True
    _parameter_constraints: dict = {
        **ScoreSelector._parameter_constraints,
        "window": [Interval(numbers.Integral, 3, None, closed="left")],
        "decay": [Interval(numbers.Real, 0, 1, closed="right")],
    }

    def __init__(
        self,
        fraction=0.1,
        *,
        balance=True,
        random_state=None,
        n_jobs=None,
        keep="highest",
        window=10,
        decay=0.9,
    ):
        super().__init__(fraction, balance=balance, random_state=random_state, n_jobs=n_jobs,
                         keep=keep)
        self.window = window
        self.decay = decay

    def _score(self, signals, y, random_state):
        proba = signals["proba_history"]
        if proba.ndim not in (3, 4):
            raise ValueError(
                f"Signal 'proba_history' has shape {tuple(proba.shape)}; expected "
                "(n, epochs, classes) or (n, n_init, epochs, classes)."
            )
        if proba.min() < 0:
            raise ValueError(
                "Signal 'proba_history' holds negative values: it must hold softmax "
                "probabilities, not logits."
            )
        proba = proba[:, None] if proba.ndim == 3 else proba
        return _chunked(proba, lambda p: _tdds(p, self.window, self.decay))

    def _pool_memory(self, n_rows, budget, signals) -> int:
        """Per chunk: a float64 copy of the history, its logarithms and three temporaries
        of the per-step divergences; the windows of steps, copied twice."""
        history = signals["proba_history"]
        per_row = row_elements(history)  # n_init * epochs * classes
        epochs = history.shape[-2]
        windows, length = _windows(epochs, self.window)
        steps = per_row // (epochs * history.shape[-1]) * windows * (length - 1)
        return 8 * _chunk_rows(n_rows, per_row) * (5 * per_row + 2 * steps) + 32 * n_rows
