"""Training-dynamics scores: Forgetting, GraNd, EL2N and AUM.

Each reads what the proxy recorded while it trained (correctness and margins per epoch)
or its final outputs, and scores every row; signals holding several proxy
initialisations (axis 1, see :meth:`~sk_coreset.base.Signals.per_init`) are averaged
over them.

Scores that use labels (GraNd, EL2N, probability margins in AUM) read the column of
``proba`` of each row's class: the columns follow the sorted classes of ``y``
(``np.unique(y)``), or, when ``proba`` has more columns than ``y`` has classes and the
labels are integers, the label itself is the column (a network trained on classes
0..C-1, fitted on data missing some of them).
"""

from __future__ import annotations

import numpy as np
from sklearn.utils._param_validation import StrOptions

from ..base import ScoreSelector, _dtype, _is_mapping, as_signals, row_elements, signal_bytes
from ..kernels import grad_errors, grad_norms
from ._registry import register_selector
from .uncertainty import _as_numpy, _check_proba

__all__ = ["AUM", "EL2N", "Forgetting", "GraNd"]


def _label_columns(selector, y_codes: np.ndarray, n_columns: int) -> np.ndarray:
    """The column of the class of every row (see the module docstring)."""
    classes = selector.classes_
    if n_columns == len(classes):
        return y_codes
    if classes.dtype.kind in "iu" and classes.min() >= 0 and classes.max() < n_columns:
        return classes[y_codes].astype(np.int64)
    raise ValueError(
        f"proba has {n_columns} columns but y has {len(classes)} classes "
        f"({classes[:5].tolist()}...). The columns must follow the sorted classes of y "
        "(np.unique(y)), or the labels must be integer column indices in "
        f"[0, {n_columns}); pass the labels the proxy was trained with."
    )


def _inits(*arrays):
    """Split (n, n_init, ...) arrays into per-initialisation slices (n_init 1 broadcasts)."""
    counts = {a.shape[1] for a in arrays} - {1}
    if len(counts) > 1:
        raise ValueError(
            f"Signals hold different numbers of proxy initialisations {sorted(counts)} on "
            "axis 1; compute them from the same proxies."
        )
    n_init = counts.pop() if counts else 1
    return [[a[:, min(r, a.shape[1] - 1)] for a in arrays] for r in range(n_init)]


@register_selector("Forgetting")
class Forgetting(ScoreSelector):
    """Forgetting events (Toneva et al., 2019): keeps the most often forgotten rows.

    A forgetting event is a transition from correctly to incorrectly classified between
    consecutive recorded epochs of the proxy (a row starts as "not yet learned", so the
    first epoch never counts). The score of a row is its number of events, averaged
    over proxy initialisations.

    Parameters
    ----------
    fraction : float in (0, 1] or int, default=0.1
        Proportion (or count) of rows to keep.
    balance : bool, default=True
        Select every class independently.
    random_state : int, RandomState instance or None, default=None
        Seed of the random order that breaks the remaining ties.
    n_jobs : int or None, default=None
        Blocks of rows (a class, or 65,536 of its rows) scored in parallel with joblib,
        also on a Dask cluster under ``joblib.parallel_backend("dask")``; ``None``
        means 1 unless in a joblib backend context, ``-1`` all processors. The result
        does not depend on it.
    keep : {"highest", "lowest"}, default="highest"
        ``"highest"`` keeps the most forgotten rows.
    never_learned : {"max", "zero"}, default="max"
        Score of a row never classified correctly: ``"max"`` gives it ``E`` (the number
        of epochs), more than any learned row can reach, as Toneva et al. treat such
        rows as maximally forgettable; ``"zero"`` gives it 0 events (the DeepCore
        reference).
    tie_break : {"random", "accuracy"}, default="random"
        With few epochs most counts tie. ``"random"`` orders tied rows randomly;
        ``"accuracy"`` adds ``0.5 * (1 - mean correctness)`` to every score, so that
        among equal counts the less often correct rows come first (remaining ties are
        random).

    Attributes
    ----------
    scores_ : ndarray of shape (n_samples,)
        Forgetting counts (plus the accuracy term with ``tie_break="accuracy"``).
    sample_indices_, sample_weight_, classes_, budgets_, class_rankings_
        As in :class:`~sk_coreset.base.BaseSelector`.

    Examples
    --------
    >>> import numpy as np
    >>> from sk_coreset.selectors.dynamics import Forgetting
    >>> correct = np.array([[1, 0, 1, 0], [1, 1, 1, 1], [0, 0, 0, 0], [0, 1, 0, 1]])
    >>> Forgetting(fraction=2, balance=False).fit(correct).scores_.tolist()
    [2.0, 0.0, 4.0, 1.0]
    """

    _required_signals = ("correct",)
    _rowwise_scores = True
    _parameter_constraints: dict = {
        **ScoreSelector._parameter_constraints,
        "never_learned": [StrOptions({"max", "zero"})],
        "tie_break": [StrOptions({"random", "accuracy"})],
    }

    def __init__(self, fraction=0.1, *, balance=True, random_state=None, n_jobs=None,
                 keep="highest", never_learned="max", tie_break="random"):
        super().__init__(fraction, balance=balance, random_state=random_state, n_jobs=n_jobs,
                         keep=keep)
        self.never_learned = never_learned
        self.tie_break = tie_break

    def _score(self, signals, y, random_state):
        correct = _as_numpy(signals.per_init("correct")) > 0.5
        previous = np.zeros_like(correct)
        previous[..., 1:] = correct[..., :-1]
        events = (previous & ~correct).sum(axis=-1).astype(np.float64)
        if self.never_learned == "max":
            events[~correct.any(axis=-1)] = correct.shape[-1]
        scores = events.mean(axis=1)
        if self.tie_break == "accuracy":
            scores += 0.5 * (1.0 - correct.mean(axis=(1, 2)))
        return scores

    def _pool_memory(self, n_rows, budget, signals) -> int:
        """Four boolean arrays of the signal's size (learned, previous, their negation, the
        events) and a few floats per row."""
        return 4 * n_rows * row_elements(signals["correct"]) + 48 * n_rows


class _LabelScore(ScoreSelector):
    _requires_y = True
    _rowwise_scores = True

    def __init__(self, fraction=0.1, *, balance=True, random_state=None, n_jobs=None,
                 keep="highest"):
        super().__init__(fraction, balance=balance, random_state=random_state, n_jobs=n_jobs,
                         keep=keep)


@register_selector("GraNd")
class GraNd(ScoreSelector):
    """GraNd (Paul et al., 2021): norm of the loss gradient; keeps the highest.

    By default the gradient is that of the cross-entropy with respect to the proxy's
    final linear layer, whose norm is ``||p - onehot(y)|| * sqrt(1 + ||h||^2)``
    (embedding ``h``, softmax ``p``; unscaled, in closed form by
    :func:`sk_coreset.kernels.grad_norms`), averaged over proxy initialisations
    (``embedding`` and ``proba`` of shapes (n, n_init, d) and (n, n_init, C)).
    ``proba``'s columns follow the sorted classes, and labels are required.

    Explicit per-sample gradients (e.g. of all parameters, as in the paper), passed as
    a plain 2-D array or as the signal ``gradient`` of shape (n, D) or (n, n_init, D),
    are used instead when given: the score is the mean of their norms, and no labels
    are needed.

    Parameters
    ----------
    fraction : float in (0, 1] or int, default=0.1
        Proportion (or count) of rows to keep.
    balance : bool, default=True
        Select every class independently.
    random_state : int, RandomState instance or None, default=None
        Seed of the random order that breaks ties.
    n_jobs : int or None, default=None
        Blocks of rows (a class, or 65,536 of its rows) scored in parallel with joblib,
        also on a Dask cluster under ``joblib.parallel_backend("dask")``; ``None``
        means 1 unless in a joblib backend context, ``-1`` all processors. The result
        does not depend on it.
    keep : {"highest", "lowest"}, default="highest"
        ``"highest"`` keeps the rows with the largest gradients (the hardest).

    Attributes
    ----------
    scores_ : ndarray of shape (n_samples,)
        Mean gradient norm of every row.
    sample_indices_, sample_weight_, classes_, budgets_, class_rankings_
        As in :class:`~sk_coreset.base.BaseSelector`.

    Examples
    --------
    >>> import numpy as np
    >>> from sk_coreset import Signals
    >>> from sk_coreset.selectors.dynamics import GraNd
    >>> S = Signals(embedding=np.zeros((3, 2)), proba=np.array([[1.0, 0], [0.5, 0.5], [0, 1]]))
    >>> GraNd(fraction=1, balance=False).fit(S, [0, 0, 0]).scores_.round(3).tolist()
    [0.0, 0.707, 1.414]
    >>> GraNd(fraction=1, balance=False).fit(np.array([[3.0, 4.0], [1.0, 0.0]])).scores_.tolist()
    [5.0, 1.0]
    """

    _required_signals = ("embedding", "proba")
    _rowwise_scores = True

    def __init__(self, fraction=0.1, *, balance=True, random_state=None, n_jobs=None,
                 keep="highest"):
        super().__init__(fraction, balance=balance, random_state=random_state, n_jobs=n_jobs,
                         keep=keep)

    def _as_signals(self, X):
        if _is_mapping(X) or getattr(X, "ndim", None) == 1:
            return super()._as_signals(X)
        return as_signals(self._check_plain_array(X, reset=True), "gradient")

    def _signals_needed(self, signals):
        if "scores" not in signals and "gradient" in signals:
            return ("gradient",)
        return super()._signals_needed(signals)

    def _score(self, signals, y, random_state):
        if "gradient" in signals:
            gradient = _as_numpy(signals["gradient"]).astype(np.float64)
            return np.linalg.norm(gradient, axis=-1).reshape(len(gradient), -1).mean(axis=1)
        if y is None:
            raise ValueError(
                "GraNd needs labels for last-layer gradients: call fit(X, y), or pass "
                "explicit gradients as Signals(gradient=...)."
            )
        embedding = signals.per_init("embedding")
        proba = _check_proba(signals.per_init("proba"))
        columns = _label_columns(self, y, proba.shape[-1])
        norms = [_as_numpy(grad_norms(h, p, columns)) for h, p in _inits(embedding, proba)]
        return np.mean(norms, axis=0, dtype=np.float64)

    def _pool_memory(self, n_rows, budget, signals) -> int:
        """Explicit gradients: a float64 copy and its squares. Last-layer gradients, one
        proxy initialisation at a time: the error vectors (n, C) and, when the embedding's
        dtype differs from theirs, a converted copy of the embedding; one norm per row."""
        if "gradient" in signals and "scores" not in signals:
            return 2 * signal_bytes(signals, ("gradient",), n_rows, 8) + 32 * n_rows
        emb, proba = signals["embedding"], signals["proba"]
        inits = max(emb.shape[1] if emb.ndim == 3 else 1, proba.shape[1] if proba.ndim == 3 else 1)
        item = 8 if _dtype(proba) == np.float64 else 4
        converted = emb.shape[-1] * item if _dtype(emb).itemsize != item else 0
        return n_rows * (proba.shape[-1] * item + converted + 8 * inits) + 32 * n_rows


@register_selector("EL2N")
class EL2N(_LabelScore):
    """EL2N (Paul et al., 2021): L2 norm of the error ``p - onehot(y)``; keeps the highest.

    The score is the mean over proxy initialisations (``proba`` of shape
    (n, n_init, C)); the paper computes it early in training (about epoch 20 on
    CIFAR-10) over about 10 initialisations. ``proba``'s columns follow the sorted
    classes.

    Parameters
    ----------
    fraction : float in (0, 1] or int, default=0.1
        Proportion (or count) of rows to keep.
    balance : bool, default=True
        Select every class independently.
    random_state : int, RandomState instance or None, default=None
        Seed of the random order that breaks ties.
    n_jobs : int or None, default=None
        Blocks of rows (a class, or 65,536 of its rows) scored in parallel with joblib,
        also on a Dask cluster under ``joblib.parallel_backend("dask")``; ``None``
        means 1 unless in a joblib backend context, ``-1`` all processors. The result
        does not depend on it.
    keep : {"highest", "lowest"}, default="highest"
        ``"highest"`` keeps the rows with the largest errors (the hardest).

    Attributes
    ----------
    scores_ : ndarray of shape (n_samples,)
        Mean error norm of every row.
    sample_indices_, sample_weight_, classes_, budgets_, class_rankings_
        As in :class:`~sk_coreset.base.BaseSelector`.

    Examples
    --------
    >>> import numpy as np
    >>> from sk_coreset.selectors.dynamics import EL2N
    >>> P = np.array([[0.9, 0.1], [0.2, 0.8], [0.5, 0.5]])
    >>> EL2N(fraction=1, balance=False).fit(P, [0, 0, 1]).sample_indices_.tolist()
    [1]
    """

    _required_signals = ("proba",)

    def _score(self, signals, y, random_state):
        proba = _check_proba(signals.per_init("proba"))
        columns = _label_columns(self, y, proba.shape[-1])
        norms = []
        for (p,) in _inits(proba):
            e = _as_numpy(grad_errors(p, columns)).astype(np.float64)
            norms.append(np.linalg.norm(e, axis=1))
        return np.mean(norms, axis=0)

    def _pool_memory(self, n_rows, budget, signals) -> int:
        """One initialisation at a time: the errors, their float64 copy and squares."""
        proba = signals["proba"]
        inits = proba.shape[1] if proba.ndim == 3 else 1
        return n_rows * (24 * proba.shape[-1] + 8 * inits) + 32 * n_rows


@register_selector("AUM")
class AUM(ScoreSelector):
    """Area under the margin (Pleiss et al., 2020): keeps the lowest (hardest) by default.

    The margin of a row at an epoch is its assigned-class logit minus the largest other
    logit, as recorded during proxy training (signal ``margin``, shape (n, E) or
    (n, n_init, E)); AUM is its mean over epochs and initialisations. Low or negative
    AUM flags ambiguous or mislabelled rows.

    Parameters
    ----------
    fraction : float in (0, 1] or int, default=0.1
        Proportion (or count) of rows to keep.
    balance : bool, default=True
        Select every class independently.
    random_state : int, RandomState instance or None, default=None
        Seed of the random order that breaks ties.
    n_jobs : int or None, default=None
        Blocks of rows (a class, or 65,536 of its rows) scored in parallel with joblib,
        also on a Dask cluster under ``joblib.parallel_backend("dask")``; ``None``
        means 1 unless in a joblib backend context, ``-1`` all processors. The result
        does not depend on it.
    keep : {"highest", "lowest"}, default="lowest"
        ``"lowest"`` keeps the smallest margins (the hardest rows); ``"highest"`` the
        easiest.
    margin : {"logit", "probability"}, default="logit"
        ``"logit"`` reads the recorded logit margins (Pleiss et al.); ``"probability"``
        computes probability margins ``p_y - max_{c != y} p_c`` from the signal
        ``proba_history`` (n, E, C) and the labels (what some later works call AUM);
        ``proba_history``'s columns follow the sorted classes.

    Attributes
    ----------
    scores_ : ndarray of shape (n_samples,)
        Mean margin of every row.
    sample_indices_, sample_weight_, classes_, budgets_, class_rankings_
        As in :class:`~sk_coreset.base.BaseSelector`.

    Examples
    --------
    >>> import numpy as np
    >>> from sk_coreset.selectors.dynamics import AUM
    >>> margins = np.array([[2.0, 3.0], [-1.0, 0.5], [0.5, 0.5]])
    >>> AUM(fraction=1, balance=False).fit(margins).sample_indices_.tolist()
    [1]
    """

    _required_signals = ("margin",)
    _rowwise_scores = True
    _parameter_constraints: dict = {
        **ScoreSelector._parameter_constraints,
        "margin": [StrOptions({"logit", "probability"})],
    }

    def __init__(self, fraction=0.1, *, balance=True, random_state=None, n_jobs=None,
                 keep="lowest", margin="logit"):
        super().__init__(fraction, balance=balance, random_state=random_state, n_jobs=n_jobs,
                         keep=keep)
        self.margin = margin

    def _signals_needed(self, signals):
        if "scores" not in signals and self.margin == "probability":
            return ("proba_history",)
        return super()._signals_needed(signals)

    def _score(self, signals, y, random_state):
        if self.margin == "logit":
            margins = _as_numpy(signals.per_init("margin")).astype(np.float64)
            return margins.reshape(len(margins), -1).mean(axis=1)
        if y is None:
            raise ValueError("AUM(margin='probability') needs labels: call fit(X, y).")
        history = _check_proba(_as_numpy(signals["proba_history"]), "proba_history")
        history = history.astype(np.float64)
        if history.ndim == 3:
            history = history[:, None]
        if history.ndim != 4:
            raise ValueError(
                f"proba_history has shape {history.shape}; expected (n, epochs, C) or "
                "(n, n_init, epochs, C)."
            )
        columns = _label_columns(self, y, history.shape[-1])
        rows = np.arange(len(history))
        true = history[rows, ..., columns].copy()
        history[rows, ..., columns] = -np.inf
        return (true - history.max(axis=-1)).reshape(len(history), -1).mean(axis=1)

    def _pool_memory(self, n_rows, budget, signals) -> int:
        """A float64 copy of the margins (or of the probability history) and temporaries
        of at most its size."""
        return 2 * signal_bytes(signals, self._signals_needed(signals), n_rows, 8) + 32 * n_rows
