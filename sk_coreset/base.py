"""The selector contract: :class:`BaseSelector`, :class:`Signals` and budget allocation.

A selector picks rows of a training set from per-sample *signals* (embeddings,
probabilities, training dynamics, ...). Every selector in :mod:`sk_coreset.selectors`
derives from :class:`BaseSelector` and only implements how one *pool* (one class when
``balance=True``, the whole set otherwise) is ranked; the base class owns parameter
validation, label handling, budgets, the per-class loop and the fitted attributes.
"""

from __future__ import annotations

import hashlib
import math
import numbers
import threading
from collections.abc import Mapping
from contextlib import contextmanager
from typing import NamedTuple

import numpy as np
import scipy.sparse as sp
import torch
from joblib import Parallel, delayed, effective_n_jobs
from sklearn.base import BaseEstimator, clone
from sklearn.utils import TransformerTags, check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import (
    _check_n_features,
    _num_samples,
    check_is_fitted,
    validate_data,
)
from skorch.helper import SliceDict

from ._config import format_bytes, get_config, memory_limit

__all__ = [
    "BaseSelector",
    "PoolSelection",
    "ScoreSelector",
    "SelectorSampler",
    "Signals",
    "allocate_budgets",
    "resolve_budget",
]

# Number of dimensions of each well-known signal for ONE proxy initialisation. A signal
# with one more dimension holds several initialisations on axis 1: (n, n_init, ...).
SIGNAL_NDIM = {
    "embedding": 2,
    "proba": 2,
    "logits": 2,
    "correct": 2,
    "true_proba": 2,
    "margin": 2,
    "loss": 2,
    "proba_history": 3,
    "deepfool": 1,
    "scores": 1,
}


class Signals(SliceDict):
    """Named per-sample arrays that share their first (row) dimension.

    ``Signals`` is what a featurizer produces and a selector consumes. It is a
    :class:`skorch.helper.SliceDict`, so scikit-learn can index and split it by rows
    (``signals[idx]`` returns a ``Signals`` of those rows). Note that, as for every
    ``SliceDict``, ``len(signals)`` is the number of rows, not the number of names.

    Arrays that hold several proxy initialisations keep rows first and put the
    initialisations on axis 1, e.g. ``proba`` of shape ``(n, n_init, C)``; see
    :meth:`per_init`.

    Parameters
    ----------
    **arrays : array-like
        Named arrays (numpy, memory-mapped or torch tensors), all with the same first
        dimension.

    Examples
    --------
    >>> import numpy as np
    >>> from sk_coreset import Signals
    >>> S = Signals(embedding=np.zeros((4, 8)), proba=np.full((4, 2), 0.5))
    >>> len(S), sorted(S.keys())
    (4, ['embedding', 'proba'])
    >>> S[:2]["embedding"].shape
    (2, 8)
    """

    def __init__(self, **arrays):
        if not arrays:
            raise ValueError(
                "Signals needs at least one named array, e.g. Signals(embedding=E)."
            )
        for name, value in arrays.items():
            if not hasattr(value, "shape") or len(value.shape) == 0:
                raise ValueError(
                    f"Signal {name!r} must be an array with one row per sample; got "
                    f"{type(value).__name__}. Pass a numpy array or torch tensor."
                )
        lengths = {name: value.shape[0] for name, value in arrays.items()}
        if len(set(lengths.values())) > 1:
            raise ValueError(
                f"All signals must have the same number of rows; got {lengths}. "
                "Compute every signal on the same samples, in the same order."
            )
        super().__init__(**arrays)

    def __repr__(self):
        shapes = ", ".join(f"{k}={tuple(v.shape)}" for k, v in self.items())
        return f"Signals({shapes})"

    def per_init(self, name: str) -> np.ndarray:
        """Return signal ``name`` with an explicit initialisation axis: ``(n, n_init, ...)``.

        A signal recorded from one initialisation gets ``n_init = 1``.
        """
        value = self[name]
        base = SIGNAL_NDIM.get(name)
        if base is None or value.ndim == base + 1:
            return value
        if value.ndim == base:
            return value[:, None]
        raise ValueError(
            f"Signal {name!r} has shape {tuple(value.shape)}; expected {base} dimensions "
            f"(one initialisation) or {base + 1} (several, on axis 1)."
        )


def as_signals(X, own_signal: str) -> Signals:
    """Wrap ``X`` as :class:`Signals`; a plain array becomes the signal ``own_signal``."""
    if isinstance(X, Signals):
        return X
    if _is_mapping(X):
        return Signals(**X)
    if not hasattr(X, "shape"):
        X = np.asarray(X)
    if X.dtype == object:
        raise ValueError(
            f"Cannot use an object array as the {own_signal!r} signal; pass a numeric "
            "array or a Signals mapping."
        )
    return Signals(**{own_signal: X})


def resolve_budget(fraction, n_samples: int) -> int:
    """Total number of rows to keep: ``round(fraction * n)`` for a float, the count for an int.

    Rounding is half-up. Raises ``ValueError`` for a fraction outside (0, 1], a count
    outside [1, n_samples] or a budget that rounds to zero.
    """
    if isinstance(fraction, (bool, np.bool_)):
        raise ValueError(f"fraction must be a float in (0, 1] or an int count, not {fraction!r}.")
    if isinstance(fraction, numbers.Integral):
        if not 1 <= fraction <= n_samples:
            raise ValueError(
                f"fraction={fraction} is a count of samples and must lie in "
                f"[1, {n_samples}] (the number of samples); pass a float in (0, 1] "
                "for a proportion."
            )
        return int(fraction)
    if not isinstance(fraction, numbers.Real) or not 0.0 < fraction <= 1.0:
        raise ValueError(
            f"fraction={fraction!r} is invalid: pass a float in (0, 1] (the proportion "
            "of samples to keep) or an int count."
        )
    budget = int(np.floor(fraction * n_samples + 0.5 + 1e-9))
    if budget == 0:
        raise ValueError(
            f"fraction={fraction} of {n_samples} samples selects no sample (1 sample "
            f"needs fraction >= {0.5 / n_samples:.3g}); raise fraction or pass an int count."
        )
    return min(budget, n_samples)


def allocate_budgets(class_sizes, total: int) -> np.ndarray:
    """Split ``total`` over classes in proportion to their sizes (largest remainder).

    Each class gets the floor or the ceiling of its share ``total * n_c / n`` and never
    more than it has; the budgets sum to exactly ``total``. Ties in the remainder go to
    the class that comes first.

    Examples
    --------
    >>> allocate_budgets([5, 3, 2], 5).tolist()
    [3, 1, 1]
    """
    sizes = np.asarray(class_sizes, dtype=np.int64)
    n = int(sizes.sum())
    if not 0 <= total <= n:
        raise ValueError(f"total budget {total} must lie in [0, {n}].")
    scaled = sizes * int(total)
    budgets = scaled // n
    remainders = scaled % n
    missing = int(total - budgets.sum())
    order = np.lexsort((np.arange(len(sizes)), -remainders))
    budgets[order[:missing]] += 1
    return budgets


class _MemoryPlan(NamedTuple):
    """What ``BaseSelector._plan_memory`` found: the fit's peak and its largest task."""

    total: int  # peak bytes of the fit
    limit: float  # the limit it is checked against
    workers: int  # tasks that run at once
    rows: int  # rows of the most demanding task
    budget: int  # its budget
    pool: int  # its bytes


_READING = threading.local()


@contextmanager
def _shapes_only():
    """Validation inside reads shapes and dtypes only (no NaN/inf scan)."""
    _READING.shapes_only = True
    try:
        yield
    finally:
        _READING.shapes_only = False


def _dtype(value) -> np.dtype:
    if isinstance(value, torch.Tensor):
        return np.dtype(f"f{value.element_size()}") if value.is_floating_point() else np.dtype(
            f"i{value.element_size()}")
    return np.dtype(value.dtype)


def row_elements(value) -> int:
    """Elements in one row of a signal (``prod(shape[1:])``)."""
    return int(np.prod(value.shape[1:], dtype=np.int64))


def row_bytes(value) -> int:
    """Bytes of one row of a signal, in its own dtype."""
    return row_elements(value) * _dtype(value).itemsize


def signal_bytes(signals, names, n_rows: int, itemsize: int | None = None) -> int:
    """Bytes of ``n_rows`` rows of the named signals (absent names count 0), in their
    own dtypes or, with ``itemsize``, converted to elements of that size."""
    return sum(
        int(n_rows) * row_elements(signals[name]) * (itemsize or _dtype(signals[name]).itemsize)
        for name in set(names) if name in signals
    )


def _round_up_gib(nbytes: float) -> str:
    """A round size above ``nbytes`` in GiB, for messages."""
    gib = nbytes / 2**30 * 1.25
    return f"{math.ceil(gib)}" if gib >= 1 else f"{math.ceil(gib * 10) / 10:.1f}"


class PoolSelection:
    """What a selector's ``_select_pool`` returns for one pool (pool-local indices).

    ``indices`` are in selection order (most important first); ``weights`` aligned with
    them or ``None`` for all ones; ``scores`` one per pool row or ``None``.
    """

    __slots__ = ("indices", "weights", "scores")

    def __init__(self, indices, weights=None, scores=None):
        self.indices = np.asarray(indices, dtype=np.int64)
        self.weights = None if weights is None else np.asarray(weights, dtype=np.float64)
        self.scores = None if scores is None else np.asarray(scores, dtype=np.float64)


class BaseSelector(BaseEstimator):
    """Base class of every coreset selector.

    Subclasses declare the signals they read in ``_required_signals`` (the first one is
    the signal a plain array stands for), whether they need labels in ``_requires_y``,
    and implement ``_select_pool(signals, y, budget, random_state)``, which ranks the
    rows of one pool and returns a :class:`PoolSelection`. Score-based selectors may
    instead implement ``_score(signals, y, random_state)`` over all rows and let the base
    class keep the best ``budget`` rows of each pool.

    Before any heavy work, ``fit`` estimates its peak memory from shapes, dtypes, pool
    sizes and budgets (:meth:`estimate_memory`; a subclass gives the bytes of one pool
    in ``_pool_memory(n_rows, budget, signals)``) and raises a ``ValueError`` that lists
    fixes when it exceeds the memory limit (:func:`sk_coreset.set_config`).

    Parameters
    ----------
    fraction : float in (0, 1] or int, default=0.1
        Proportion of the samples to keep (rounded half-up), or a count of samples, as
        ``train_size`` in :func:`sklearn.model_selection.train_test_split`.
    balance : bool, default=True
        Select every class independently, with largest-remainder per-class budgets
        (the DeepCore protocol). With ``False`` the whole set is one pool.
    random_state : int, RandomState instance or None, default=None
        Seeds every random choice (first centres, tie breaks, sampling).
    n_jobs : int or None, default=None
        Pools processed in parallel with :class:`joblib.Parallel` (``_select_pool``
        per pool; row-wise scores per block of at most 65,536 rows of a pool).
        ``None`` means 1 unless in a :func:`joblib.parallel_backend` context, ``-1``
        means all processors; under ``joblib.parallel_backend("dask")`` the pools run
        on a Dask cluster. Seeds are drawn per pool up front, so the selection does not
        depend on ``n_jobs``. Each task receives only its pool's rows. Parallelise on
        CPU: keep signals that live on a GPU with ``n_jobs=None``.

    Attributes
    ----------
    sample_indices_ : ndarray of int64
        Selected row indices into the fitted data, most important first.
    sample_weight_ : ndarray of float64
        One weight per selected row; ones for methods without weights.
    scores_ : ndarray of float64 of shape (n_samples,) or None
        Per-row scores of score-based selectors, else ``None``.
    classes_ : ndarray
        The labels seen in ``fit`` (``[None]``-free: a single pool without labels gives
        an empty array).
    budgets_ : ndarray of int64
        Rows kept per pool (per class with ``balance=True``).
    class_rankings_ : list of ndarray
        Per pool, the global row indices in selection order (length = that pool's budget).
    n_samples_fit_ : int
        Number of rows seen in ``fit``.
    n_features_in_ : int
        Width of ``X`` when it was a plain 2-D array.

    Examples
    --------
    A selector that keeps, per class, the rows with the largest embedding norm first:

    >>> import numpy as np
    >>> from sk_coreset.base import BaseSelector, PoolSelection
    >>> class LargestNorm(BaseSelector):
    ...     _required_signals = ("embedding",)
    ...     def _select_pool(self, signals, y, budget, random_state):
    ...         norms = np.linalg.norm(signals["embedding"], axis=1)
    ...         return PoolSelection(np.argsort(-norms)[:budget])
    >>> X = np.array([[1.0], [3.0], [2.0], [0.5], [4.0], [0.1]])
    >>> LargestNorm(fraction=2, balance=False).fit(X).sample_indices_.tolist()
    [4, 1]
    """

    _required_signals: tuple[str, ...] = ()
    _requires_y: bool = False
    #: a ranking fitted at one budget holds the ranking of every smaller budget as a prefix
    _nested: bool = True
    _returns_weights: bool = False
    #: signals a fit reads when present, besides ``_signals_needed``; a pool carries
    #: only these two sets, so unread signals of a bundle are never copied or read
    _optional_signals: tuple[str, ...] = ()
    #: a row's score depends on that row's signals only, so scores may be computed per
    #: class block (bounded memory); False computes them over all rows at once
    _rowwise_scores: bool = False

    _parameter_constraints: dict = {
        "fraction": [
            Interval(numbers.Real, 0, 1, closed="right"),
            Interval(numbers.Integral, 1, None, closed="left"),
        ],
        "balance": ["boolean"],
        "random_state": ["random_state"],
        "n_jobs": [
            None,
            Interval(numbers.Integral, None, -1, closed="right"),
            Interval(numbers.Integral, 1, None, closed="left"),
        ],
    }

    def __init__(self, fraction=0.1, *, balance=True, random_state=None, n_jobs=None):
        self.fraction = fraction
        self.balance = balance
        self.random_state = random_state
        self.n_jobs = n_jobs

    # ------------------------------------------------------------------ fitting
    def fit(self, X, y=None):
        """Select rows of ``X``.

        Parameters
        ----------
        X : Signals, mapping of arrays, or array-like of shape (n_samples, ...)
            The per-sample signals. A plain array is taken as this selector's own
            signal (the first of ``_required_signals``).
        y : array-like of shape (n_samples,), default=None
            Labels, any hashable values. Needed with ``balance=True`` and by selectors
            that use labels.

        Returns
        -------
        self
        """
        self._check_fraction()
        before = dict(self.__dict__)
        try:
            signals = self._validate_signals(X, y)
            n = signals.shape[0]
            y_codes = self._encode_labels(y, n)
            pools = self._pools(y_codes, n)
            self.budgets_ = allocate_budgets([len(p) for p in pools],
                                             resolve_budget(self.fraction, n))
            self._refuse_over_limit(self._plan_memory(signals, pools, self.budgets_), signals)
        except ValueError:  # nothing half-fitted
            self.__dict__.clear()
            self.__dict__.update(before)
            raise
        try:
            picks, scores = self._run_pools(signals, y_codes, pools)
        finally:
            del self._pool_memory_limit
        rankings, weights = [], []
        pool_scores = np.full(n, np.nan) if scores is None else None
        for pool, budget, picked in zip(pools, self.budgets_, picks):
            if scores is None:
                self._check_pool_result(picked, len(pool), int(budget))
                if picked.scores is not None:
                    pool_scores[pool] = picked.scores
            rankings.append(pool[picked.indices])
            weights.append(
                np.ones(len(picked.indices)) if picked.weights is None else picked.weights
            )

        self.class_rankings_ = rankings
        self.class_weights_ = weights
        self.sample_indices_, self.sample_weight_ = self._merge(rankings, weights)
        if scores is not None:
            self.scores_ = np.asarray(scores, dtype=np.float64)
        elif pool_scores is not None and not np.all(np.isnan(pool_scores)):
            self.scores_ = pool_scores
        else:
            self.scores_ = None
        self.n_samples_fit_ = n
        # only the signals the fit read (sampling the others could read gigabytes); all
        # of them for a selector that reads none, such as the random baseline
        read = {*self._signals_needed(signals), *self._optional_signals} & set(signals.keys())
        self._fit_fingerprint = (read or None, _fingerprint(X, read or None))
        return self

    def _run_pools(self, signals, y_codes, pools):
        """The per-pool selections, and the scores of every row for score-based selectors."""
        # one seed per pool, drawn up front, so pools are independent of each other
        seeds = check_random_state(self.random_state).randint(0, 2**31 - 1, size=len(pools) + 1)
        scores = None
        if self._is_score_based():
            scores = self._fit_scores(signals, y_codes, pools, np.random.RandomState(seeds[-1]))
        return self._pick(signals, y_codes, pools, seeds, scores), scores

    def _pick(self, signals, y_codes, pools, seeds, scores) -> list:
        """One :class:`PoolSelection` per pool: the best scores, or ``_select_pool``."""
        rngs = [np.random.RandomState(seed) for seed in seeds[: len(pools)]]
        if scores is not None:
            return [
                PoolSelection(self._rank_scores(scores[pool], budget, rng))
                for pool, budget, rng in zip(pools, self.budgets_, rngs)
            ]
        extra = [(int(budget), rng) for budget, rng in zip(self.budgets_, rngs)]
        return self._map_pools(self._select_pool, signals, y_codes, pools, extra)

    def _map_pools(self, func, signals, y, blocks, extra) -> list:
        """``func(signals[rows], y[rows], *args)`` for each block of ``rows``, in order.

        Each call receives only its block's rows, read here one block at a time
        (memory-mapped and dask arrays included), so memory stays per block. The calls
        go through :class:`joblib.Parallel` (other processes, or a Dask cluster under
        ``joblib.parallel_backend("dask")``) when ``n_jobs`` or the active joblib
        backend asks for more than one worker; otherwise a plain loop pickles nothing.
        """
        calls = (
            (self._pool_signals(signals, rows), None if y is None else y[rows], *args)
            for rows, args in zip(blocks, extra)
        )
        if len(blocks) < 2 or effective_n_jobs(self.n_jobs) == 1:
            return [func(*call) for call in calls]
        # every block is sent once, so memory-mapping the arguments would only add disk writes
        parallel = Parallel(n_jobs=self.n_jobs, max_nbytes=None)
        return parallel(delayed(_call_aligned)(func, *call) for call in calls)

    def _signals_needed(self, signals) -> tuple[str, ...]:
        """The signals this fit reads (all of ``_required_signals`` by default)."""
        return self._required_signals

    def _pool_signals(self, signals, rows) -> Signals:
        """The rows of the signals a fit reads; a selector that reads none gets a
        zero-width placeholder that still carries the pool's size."""
        names = {*self._signals_needed(signals), *self._optional_signals}
        read = {k: v for k, v in signals.items() if k in names}
        return _rows(Signals(**(read or {"rows": np.empty((signals.shape[0], 0))})), rows)

    def _is_score_based(self) -> bool:
        return type(self)._score is not BaseSelector._score

    def _score(self, signals, y, random_state):  # pragma: no cover - overridden
        raise NotImplementedError

    def _fit_scores(self, signals, y, pools, random_state):
        """Scores of every row: per pool for row-wise scores, so memory stays per class."""
        if not self._rowwise_scores:
            return np.asarray(self._score(signals, y, random_state), dtype=np.float64)
        return self._scores_by_block(signals, y, list(_chunks(pools)), random_state)

    def _scores_by_block(self, signals, y, blocks, random_state) -> np.ndarray:
        """``_score`` of each block of rows on its own (in parallel with ``n_jobs``).

        Every block gets the same ``random_state`` (a copy of it in another process), so
        scores computed this way must not draw from it.
        """
        parts = self._map_pools(self._score, signals, y, blocks, [(random_state,)] * len(blocks))
        scores = np.empty(signals.shape[0])
        for rows, part in zip(blocks, parts):
            scores[rows] = part
        return scores

    def _select_pool(self, signals, y, budget, random_state):  # pragma: no cover
        raise NotImplementedError(f"{type(self).__name__} must implement _select_pool or _score")

    def _rank_scores(self, scores, budget, rng) -> np.ndarray:
        """Pool-local indices of the ``budget`` rows with the highest score.

        Ties break by a random order drawn from ``rng`` (never by array position).
        """
        tie_break = rng.permutation(len(scores))
        order = np.lexsort((tie_break, -np.asarray(scores, dtype=np.float64)))
        return order[:budget]

    # ------------------------------------------------------------------ memory
    def estimate_memory(self, X, y=None) -> int:
        """Peak extra memory, in bytes, that ``fit(X, y)`` will allocate beyond its inputs.

        Computed from the shapes and dtypes of the signals, the labels (pool sizes) and
        the budgets only: no signal value is read, so memory-mapped and dask arrays stay
        where they are. ``fit`` makes the same estimate before any heavy work: selectors
        that can choose between a dense, a blocked or a kNN-sparse kernel pick the
        fastest one that fits the memory limit, and ``fit`` refuses with a
        ``ValueError`` when even the leanest plan does not fit. The limit is the
        selector's ``max_memory`` parameter where it has one (and it is not ``None``),
        else the library setting of :func:`sk_coreset.set_config` (by default 80% of
        the physical memory).

        Pools run one after another with ``n_jobs=1``, so the most demanding pool
        counts; with several workers the most demanding pools that run at once add up.
        Per-row outputs (labels, pools, scores, rankings) come on top. The estimate
        follows what the code allocates, rounded up; the allocator may keep less
        resident (pages never touched, memory reused).

        Parameters
        ----------
        X : Signals, mapping of arrays, or array-like of shape (n_samples, ...)
            As in :meth:`fit`.
        y : array-like of shape (n_samples,), default=None
            As in :meth:`fit`.

        Returns
        -------
        int
            Bytes.

        Examples
        --------
        >>> import numpy as np
        >>> from sk_coreset.selectors import FacilityLocation, KCenterGreedy
        >>> X = np.zeros((2000, 16), dtype=np.float32)
        >>> dense = FacilityLocation(balance=False).estimate_memory(X)
        >>> dense > 2000 * 2000 * 4   # the (n, n) float32 kernel, and more
        True
        >>> KCenterGreedy(balance=False).estimate_memory(X) < 2000 * 2000 * 4
        True
        """
        self._check_fraction()
        before = dict(self.__dict__)
        try:
            with _shapes_only():
                signals = self._validate_signals(X, y)
            n = signals.shape[0]
            pools = self._pools(self._encode_labels(y, n), n)
            budgets = allocate_budgets([len(p) for p in pools], resolve_budget(self.fraction, n))
            return self._plan_memory(signals, pools, budgets).total
        finally:  # an estimate leaves no trace
            self.__dict__.clear()
            self.__dict__.update(before)

    def _pool_memory(self, n_rows: int, budget: int, signals) -> int:
        """Peak bytes that selecting from one pool of ``n_rows`` rows allocates, beyond
        the pool's rows themselves (which :meth:`estimate_memory` counts).

        Every selector overrides it with a formula of ``n_rows``, ``budget`` and the
        shapes and dtypes of ``signals`` (the whole bundle; read ``shape[1:]`` and
        ``dtype`` only, never values). The default is one float64 copy of the signals
        the selector reads and a few floats per row.
        """
        return signal_bytes(signals, self._signals_needed(signals), n_rows, 8) + 32 * n_rows

    def _memory_limit(self) -> float:
        """Bytes ``fit`` may allocate: the ``max_memory`` parameter, else the library setting."""
        return memory_limit(getattr(self, "max_memory", None))

    def _pool_limit(self) -> float:
        """Bytes one pool may use: its share of the limit, fixed by ``_plan_memory``."""
        share = self.__dict__.get("_pool_memory_limit")
        return self._memory_limit() if share is None else share

    def _plan_memory(self, signals, pools, budgets) -> _MemoryPlan:
        """Estimate the fit's peak; set ``_pool_memory_limit``, one pool's share of the limit.

        Kernel choices inside ``_pool_memory`` and ``_select_pool`` compare their
        estimates with that share, so that the pools that run at once fit together.
        """
        n = signals.shape[0]
        tasks = self._memory_tasks(signals, pools, budgets)
        workers = self._memory_workers(len(tasks))
        copies = [self._copy_memory(signals, rows) for rows, _ in tasks]
        fixed = 64 * n  # labels, pools, per-row scores, rankings
        if workers == 1 and len(tasks) > 1:
            fixed += max(copies)  # the next pool's rows are read while the last's are held
        # rows sent to a worker are held twice: pickled here and unpickled there
        held = min(workers, 2)
        limit = self._memory_limit()
        self._pool_memory_limit = (limit - fixed) / workers - held * max(copies, default=0)
        costs = [self._pool_memory(len(rows), int(budget), signals) + held * copy
                 for (rows, budget), copy in zip(tasks, copies)]
        worst = int(np.argmax(costs)) if costs else None
        running = sum(sorted(costs)[-workers:])
        total = max(self._validation_memory(signals), fixed + running)
        return _MemoryPlan(
            total=int(total), limit=limit, workers=workers,
            rows=0 if worst is None else len(tasks[worst][0]),
            budget=0 if worst is None else int(tasks[worst][1]),
            pool=0 if worst is None else int(costs[worst]),
        )

    def _memory_workers(self, n_tasks: int) -> int:
        """How many of ``n_tasks`` tasks run at once (see :meth:`_map_pools`)."""
        return min(n_tasks, effective_n_jobs(self.n_jobs)) if n_tasks > 1 else 1

    def _memory_tasks(self, signals, pools, budgets) -> list:
        """``(rows, budget)`` of every task ``fit`` runs: a pool for ``_select_pool``; for
        ``_score`` a block of at most 65,536 rows of a pool, or all rows at once."""
        if not self._is_score_based():
            return list(zip(pools, budgets))
        if not self._rowwise_scores:
            return [(np.arange(signals.shape[0]), 0)]
        return [(rows, 0) for rows in _chunks(pools)]

    def _copy_memory(self, signals, rows) -> int:
        """Bytes of a task's rows as :meth:`_pool_signals` reads them into memory."""
        n = signals.shape[0]
        everything = len(rows) == n and np.array_equal(rows, np.arange(n))
        names = {*self._signals_needed(signals), *self._optional_signals}
        return sum(
            len(rows) * row_bytes(signals[name]) for name in names & set(signals.keys())
            if not (everything and not _is_lazy(signals[name]))
        )

    def _validation_memory(self, signals) -> int:
        """Peak of the NaN/inf check: a block of booleans (and of values, when read lazily)."""
        block = min(signals.shape[0], 1 << 16)
        peak = 0
        for name in self._signals_needed(signals):
            value = signals[name]
            if name in signals and _dtype(value).kind in "fc":
                read = row_bytes(value) if _is_lazy(value) else 0
                peak = max(peak, block * (row_elements(value) + read))
        return peak

    def _refuse_over_limit(self, plan: _MemoryPlan, signals) -> None:
        if plan.total <= plan.limit:
            return
        source = self._memory_limit_source()
        fixes = self._memory_fixes(plan, signals)
        if plan.workers > 1:
            fixes.append(f"n_jobs=1 (now {plan.workers} pools run at once, each in memory)")
        if source.startswith("max_memory="):  # it overrides the library limit
            _, wrapped, owner = source.partition(" of the wrapped ")
            fixes.append(f"a larger max_memory{wrapped}{owner}")
        else:
            fixes.append(
                "a higher library limit, e.g. `with sk_coreset.config_context(max_memory="
                f"'{_round_up_gib(plan.total)}GiB'): ...`"
            )
        raise ValueError(
            f"{type(self).__name__} would need about {format_bytes(plan.total)} to fit, over "
            f"the memory limit of {format_bytes(plan.limit)} ({source}). Its most demanding "
            f"pool has {plan.rows} rows (budget {plan.budget}) and needs about "
            f"{format_bytes(plan.pool)}. Fixes: " + "; ".join(fixes) + "."
        )

    def _memory_limit_source(self) -> str:
        """Where the limit comes from, for messages."""
        own = getattr(self, "max_memory", None)
        if own is not None:
            return f"max_memory={own!r}"
        if get_config()["max_memory"] is not None:
            return "set by sk_coreset.set_config"
        return "the default, 80% of the physical memory"

    def _memory_fixes(self, plan: _MemoryPlan, signals) -> list:
        """Changes of parameters that lower the estimate (beside the limit itself)."""
        fixes = []
        if not self.balance and len(getattr(self, "classes_", ())) > 1:
            fixes.append("balance=True (one pool per class)")
        if plan.budget > 1 and self._pool_memory(plan.rows, plan.budget // 2, signals) < plan.pool:
            fixes.append("a smaller fraction")
        return fixes

    def _partition_fix(self, plan: _MemoryPlan, signals) -> list:
        """GreeDi's partitions, for the selectors it wraps: the fewest parts that fit."""
        for parts in (2**k for k in range(1, 11)):
            size = math.ceil(plan.rows / parts)
            need = self._pool_memory(size, min(size, plan.budget), signals)
            if need <= self._pool_limit():
                return [(
                    f"two-round partitioned selection, GreeDi({type(self).__name__}(...), "
                    f"n_partitions={parts}) (a part of {size} rows needs about "
                    f"{format_bytes(need)})"
                )]
        return []


    # -------------------------------------------------------------- validation
    def _check_fraction(self):
        self._validate_params()
        if isinstance(self.fraction, (bool, np.bool_)):
            raise ValueError("fraction must be a float in (0, 1] or an int count, not a bool.")

    def _as_signals(self, X) -> Signals:
        own = self._required_signals[0] if self._required_signals else "X"
        return as_signals(self._check_plain_array(X, reset=True), own)

    def _check_plain_array(self, X, reset):
        """scikit-learn's checks and messages (sparse, complex, 1-D, empty) for plain arrays."""
        if _is_mapping(X) or isinstance(X, torch.Tensor):
            return X
        if _is_lazy(X):
            return self._check_lazy_array(X, reset)
        X = validate_data(
            self, X, reset=reset, allow_nd=True, dtype="numeric", ensure_all_finite=False
        )
        if not reset and self._required_signals:
            _check_finite(self._required_signals[0], X)
        return X

    def _check_lazy_array(self, X, reset):
        """The checks of ``validate_data`` that read no data, for a dask array.

        ``validate_data`` would compute the whole array; rows are read per pool instead.
        """
        if X.ndim < 2:
            raise ValueError(
                f"Expected a 2-D dask array, got {X.ndim}-D of shape {X.shape}; reshape "
                "it, e.g. X.reshape(-1, 1) for a single feature."
            )
        if np.dtype(X.dtype).kind not in "biuf":
            raise ValueError(
                f"The dask array has dtype {X.dtype}; pass a real numeric array "
                "(e.g. X.astype('float32'))."
            )
        _check_n_features(self, X, reset=reset)
        if not reset and self._required_signals:
            _check_finite(self._required_signals[0], X)
        return X

    def _validate_signals(self, X, y) -> Signals:
        signals = self._as_signals(X)
        n = signals.shape[0]
        if n == 0:
            raise ValueError("Cannot select from 0 samples: X is empty.")
        if y is not None and len(y) != n:
            raise ValueError(
                f"X has {n} samples but y has {len(y)} labels; pass one label per row "
                "of the signals."
            )
        needed = self._signals_needed(signals)
        missing = [s for s in needed if s not in signals]
        if missing:
            raise ValueError(
                f"{type(self).__name__} needs the signal(s) {missing} but got "
                f"{sorted(signals.keys())}. Compute them with NetFeaturizer.signals(X, y) "
                "or pass Signals(" + ", ".join(f"{m}=..." for m in missing) + ")."
            )
        for name in needed:
            _check_finite(name, signals[name])
        if self._requires_y and y is None and "scores" not in needed:
            raise ValueError(f"{type(self).__name__} needs labels: call fit(X, y).")
        return signals

    def _encode_labels(self, y, n):
        if y is None:
            self.classes_ = np.array([])
            return None
        y = np.asarray(y)
        if y.ndim != 1:
            raise ValueError(
                f"y must be 1-D with one label per sample; got shape {y.shape}."
            )
        if y.dtype.kind == "f" and not np.all(np.isfinite(y)):
            raise ValueError("y contains NaN or inf; remove those rows or fix the labels.")
        self.classes_, codes = np.unique(y, return_inverse=True)
        return codes.astype(np.int64)

    def _pools(self, y_codes, n):
        if not self.balance or y_codes is None:
            return [np.arange(n)]
        order = np.argsort(y_codes, kind="stable")
        bounds = np.searchsorted(y_codes[order], np.arange(1, len(self.classes_)))
        return np.split(order, bounds)

    @staticmethod
    def _check_pool_result(picked: PoolSelection, pool_size: int, budget: int):
        idx = picked.indices
        if len(idx) != budget or len(np.unique(idx)) != budget or (
            budget and (idx.min() < 0 or idx.max() >= pool_size)
        ):
            raise RuntimeError(
                f"internal error: a pool of {pool_size} rows returned {len(idx)} indices "
                f"for a budget of {budget}; please report this."
            )

    @staticmethod
    def _merge(rankings, weights):
        """Interleave per-pool rankings so that every prefix is roughly class-balanced."""
        if len(rankings) == 1:
            return rankings[0].astype(np.int64), weights[0].astype(np.float64)
        keys = np.concatenate(
            [(np.arange(len(r)) + 0.5) / max(len(r), 1) for r in rankings]
        )
        order = np.argsort(keys, kind="stable")
        return (
            np.concatenate(rankings).astype(np.int64)[order],
            np.concatenate(weights).astype(np.float64)[order],
        )

    # --------------------------------------------------------------- outputs
    def get_support(self, indices: bool = False):
        """Boolean mask over the fitted rows (or the selected indices with ``indices=True``)."""
        check_is_fitted(self, "sample_indices_")
        if indices:
            return self.sample_indices_.copy()
        mask = np.zeros(self.n_samples_fit_, dtype=bool)
        mask[self.sample_indices_] = True
        return mask

    def fit_resample(self, X, y):
        """Fit and return ``(X[idx], y[idx])``: imbalanced-learn's sampler protocol.

        ``X`` may be the signals or any row-indexable data aligned with them when the
        selector needs no signal (e.g. :class:`RandomSelector`). Inside
        imbalanced-learn's ``Pipeline`` use :meth:`as_sampler`.
        """
        self.fit(X, y)
        return _take(X, self.sample_indices_), _take(y, self.sample_indices_)

    def fit_transform(self, X, y=None):
        """Fit and return the selected rows of ``X`` (apricot's convention)."""
        return self.fit(X, y).transform(X)

    def as_sampler(self) -> "SelectorSampler":
        """This selector as an imbalanced-learn sampler (``fit_resample`` only).

        imbalanced-learn's ``Pipeline`` refuses a step that has both ``fit_resample`` and
        ``transform``, and selectors keep apricot's ``transform``; the wrapper drops it.
        """
        return SelectorSampler(self)

    def transform(self, X):
        """Return the selected rows of the data passed to ``fit``; other data is refused."""
        check_is_fitted(self, "sample_indices_")
        self._check_plain_array(X, reset=False)
        read, expected = self._fit_fingerprint
        if _fingerprint(X, read) != expected:
            raise ValueError(
                "transform(X) only returns the selected rows of the data passed to fit; "
                "X differs from it. Call fit(X, y) on this data first, or index it with "
                "get_support()."
            )
        return _take(X, self.sample_indices_)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = False
        # transform returns selected rows of the fitted data, not one row per input row
        tags.transformer_tags = TransformerTags(preserves_dtype=["float64", "float32"])
        return tags


def _rows(signals: Signals, rows) -> Signals:
    """The given rows of every signal, read into memory (memory-mapped and dask arrays).

    When ``rows`` is every row in order, in-memory arrays are passed through uncopied.
    """
    everything = len(rows) == signals.shape[0] and np.array_equal(rows, np.arange(len(rows)))
    out = {}
    for name, value in signals.items():
        part = value if everything else value[rows]
        if _is_lazy(part):
            part = part.compute()
        elif isinstance(part, np.memmap):
            part = np.asarray(part)
        out[name] = part
    return Signals(**out)


def _aligned(signals: Signals) -> Signals:
    """``signals`` with every numpy array aligned to its dtype (copied where it is not).

    An array unpickled on a Dask worker may start at any byte. Vectorised kernels take
    another path on misaligned data and round differently, so near ties would break
    otherwise than in the local run."""
    return Signals(**{k: np.require(v, requirements="A") if isinstance(v, np.ndarray) else v
                      for k, v in signals.items()})


def _call_aligned(func, signals, y, *args):
    """``func`` on a pool received from another process: signals and labels aligned."""
    return func(_aligned(signals), None if y is None else np.require(y, requirements="A"), *args)


def _is_lazy(X) -> bool:
    """Whether ``X`` is a lazy (dask) array, read only by ``compute()``."""
    return hasattr(X, "compute") and hasattr(X, "shape")


def _chunks(pools, size=1 << 16):
    """Split pools of row indices into blocks of at most ``size`` rows."""
    for pool in pools:
        for start in range(0, len(pool), size):
            yield pool[start : start + size]


def _is_mapping(X) -> bool:
    return isinstance(X, Mapping) and not sp.issparse(X)  # dok sparse matrices are dicts


def _check_finite(name, value, block=1 << 16):
    """Raise if ``value`` holds NaN/inf; reads memory-mapped and dask arrays in row blocks."""
    dtype = np.dtype(str(value.dtype).replace("torch.", "")) if hasattr(value, "dtype") else None
    if dtype is None or dtype.kind not in "fciub":
        raise ValueError(f"Signal {name!r} must be numeric; got dtype {dtype}.")
    if dtype.kind not in "fc" or getattr(_READING, "shapes_only", False):
        return
    bad = 0
    for start in range(0, value.shape[0], block):
        part = value[start : start + block]
        if isinstance(part, torch.Tensor):
            part = part.detach().cpu().numpy()
        elif _is_lazy(part):
            part = part.compute()
        ok = np.isfinite(np.asarray(part)).reshape(len(part), -1).all(axis=1)
        bad += int(len(ok) - ok.sum())
    if bad:
        raise ValueError(
            f"Signal {name!r} contains NaN or inf in {bad} row(s). Remove or repair those "
            "rows (e.g. the proxy diverged: lower its learning rate) before selecting."
        )


def _take(X, indices):
    if isinstance(X, (list, tuple)):
        return [X[i] for i in indices]
    if hasattr(X, "iloc"):
        return X.iloc[indices]
    return X[indices]


def _fingerprint(X, names=None):
    """A cheap identity check for ``transform``: shape plus a hash of a few rows (of
    the signals ``names``, default all, when ``X`` is a mapping; the others by name only)."""
    if _is_mapping(X):
        return tuple(sorted((k, _fingerprint(v) if names is None or k in names else None)
                            for k, v in X.items()))
    if sp.issparse(X):
        arr = X.tocsr().data
    elif isinstance(X, torch.Tensor) or _is_lazy(X):
        arr = X  # sampled below, so that only the sampled rows are copied or computed
    elif hasattr(X, "__array__"):
        arr = np.asarray(X)
    else:
        return (_num_samples(X), id(X))
    rows = arr[:: max(1, len(arr) // 64)] if arr.ndim else arr
    if isinstance(rows, torch.Tensor):
        rows = rows.detach().cpu().numpy()
    elif _is_lazy(rows):
        rows = np.asarray(rows.compute())
    return (_num_samples(X), hashlib.sha1(np.ascontiguousarray(rows).tobytes()).hexdigest())


class SelectorSampler(BaseEstimator):
    """A selector as an imbalanced-learn sampler: ``fit_resample`` and nothing else.

    Parameters
    ----------
    selector : BaseSelector
        The selector to fit on each call of ``fit_resample``; it is cloned, so the same
        instance can appear in several pipelines.

    Attributes
    ----------
    selector_ : BaseSelector
        The fitted clone.

    Examples
    --------
    >>> from imblearn.pipeline import Pipeline
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sk_coreset import RandomSelector
    >>> pipe = Pipeline([("select", RandomSelector(fraction=0.5).as_sampler()),
    ...                  ("clf", LogisticRegression())])
    """

    def __init__(self, selector):
        self.selector = selector

    def fit_resample(self, X, y):
        """Fit a clone of ``selector`` and return ``(X[idx], y[idx])``."""
        self.selector_ = clone(self.selector)
        return self.selector_.fit_resample(X, y)

    def fit(self, X, y):
        """Fit a clone of ``selector`` (``fit_resample`` without the output)."""
        self.fit_resample(X, y)
        return self


class ScoreSelector(BaseSelector):
    """Base of score-based selectors: score every row, keep the best ``budget`` per pool.

    Subclasses implement ``_score(signals, y, random_state) -> ndarray (n,)`` and give
    ``keep`` a documented default in their ``__init__``. Any score-based selector also
    accepts a 1-D array of precomputed scores (or ``Signals(scores=...)``) instead of
    its signals. Ties break by a random order drawn from ``random_state``.

    Parameters
    ----------
    fraction, balance, random_state, n_jobs
        As in :class:`BaseSelector`; ``n_jobs`` parallelises row-wise scores
        (``_rowwise_scores = True``) over blocks of rows and is unused otherwise.
    keep : {"highest", "lowest"}
        Which end of the score ranking is selected.

    Examples
    --------
    >>> import numpy as np
    >>> from sk_coreset.base import ScoreSelector
    >>> class FirstColumn(ScoreSelector):
    ...     _required_signals = ("embedding",)
    ...     def _score(self, signals, y, random_state):
    ...         return np.asarray(signals["embedding"])[:, 0]
    >>> X = np.array([[0.2, 0.0], [0.9, 0.0], [0.5, 0.0], [0.1, 0.0]])
    >>> FirstColumn(fraction=2, balance=False, keep="lowest").fit(X).sample_indices_.tolist()
    [3, 0]
    >>> FirstColumn(fraction=2, balance=False).fit(np.array([5.0, 1.0, 7.0])).sample_indices_.tolist()
    [2, 0]
    """

    _parameter_constraints: dict = {
        **BaseSelector._parameter_constraints,
        "keep": [StrOptions({"highest", "lowest"})],
    }

    def __init__(self, fraction=0.1, *, balance=True, random_state=None, n_jobs=None,
                 keep="highest"):
        super().__init__(fraction, balance=balance, random_state=random_state, n_jobs=n_jobs)
        self.keep = keep

    def _as_signals(self, X):
        if hasattr(X, "ndim") and X.ndim == 1:
            return Signals(scores=X)
        return super()._as_signals(X)

    def _signals_needed(self, signals):
        return ("scores",) if "scores" in signals else self._required_signals

    def _memory_tasks(self, signals, pools, budgets) -> list:
        return [] if "scores" in signals else super()._memory_tasks(signals, pools, budgets)

    def _pool_memory(self, n_rows, budget, signals) -> int:
        """Scoring a block of rows: by default three float64 copies of what it reads."""
        return 3 * signal_bytes(signals, self._signals_needed(signals), n_rows, 8) + 32 * n_rows

    def _fit_scores(self, signals, y, pools, random_state):
        if "scores" in signals:
            scores = signals["scores"]
            return np.asarray(scores.compute() if _is_lazy(scores) else scores, dtype=np.float64)
        return super()._fit_scores(signals, y, pools, random_state)

    def _rank_scores(self, scores, budget, rng):
        signed = scores if self.keep == "highest" else -np.asarray(scores, dtype=np.float64)
        return super()._rank_scores(signed, budget, rng)
