"""Submodular selection: facility location, graph cut and log-determinant, greedily.

The greedy optimizers (:func:`greedy_maximize`: ``"naive"``, ``"lazy"`` with a heap,
``"stochastic"``) are shared by every greedy selector of the package (the submodular
ones here, and Craig and Glister in :mod:`sk_coreset.selectors.gradient`). They work on
any *set function* object with

- ``n`` : the number of candidates;
- ``gains(idx) -> ndarray`` : marginal gains (float64) of the candidates ``idx`` with
  respect to the current selection;
- ``add(j)`` : add candidate ``j`` to the selection;
- optionally ``cheap_gains = True`` when ``gains`` is a lookup of values kept current
  by ``add`` (lazy greedy then runs as naive greedy: same result, less overhead).

All ties break toward the lowest index, so lazy and naive greedy give the same ranking,
and a ranking of ``k`` rows holds the ranking of every smaller budget as its prefix.

Similarities are computed on torch (on the GPU when the signals live there or
``device`` says so) from a *factor map* (see :mod:`sk_coreset.kernels`): by default the
last-layer gradients of the proxy, ``<g_i, g_j> = <e_i, e_j> (1 + <h_i, h_j>)``, never
materialised; or any feature matrix. The kernels are built per pool (per class with
``balance=True``), in row chunks, with each candidate's similarities contiguous.
Facility location keeps a dense ``n x n`` kernel per pool when it fits the memory limit
and otherwise a kNN-sparse one; graph cut and log-determinant only read the rows of
their picks, so they build the dense kernel only when that is cheaper and fits, and
otherwise compute those rows one by one. Every choice compares the selector's memory
estimate (:meth:`~sk_coreset.base.BaseSelector.estimate_memory`) with the limit: the
``max_memory`` parameter, or the library setting of :func:`sk_coreset.set_config`.
"""

from __future__ import annotations

import heapq
import math
import numbers
from typing import NamedTuple

import numpy as np
import scipy.sparse as sp
import torch
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from tqdm.auto import tqdm

from .._config import format_bytes, memory_limit
from ..base import (
    BaseSelector,
    PoolSelection,
    Signals,
    _dtype,
    _is_mapping,
    as_signals,
    row_elements,
)
from ..kernels import (
    CHUNK_BYTES,
    cosine_self_similarity,
    feature_terms,
    gradient_terms,
    knn_kernel,
    one_thread,
    pairwise_kernel,
    resolve_device,
    terms_gram,
    terms_mean_dot,
    terms_normalize,
    terms_rows,
    terms_sq_norms,
)
from ._registry import register_selector

__all__ = [
    "FacilityLocation",
    "FacilityLocationFunction",
    "GraphCut",
    "GraphCutFunction",
    "LogDeterminant",
    "LogDeterminantFunction",
    "greedy_maximize",
    "kernel_rows",
]

# Key of the hidden per-row signal that carries row numbers into the pools, so that a
# precomputed (n, n) kernel can be cut to a pool's columns.
_ROW_KEY = "_row"
# Key under which a plain feature array passed to fit is stored.
_PLAIN_KEY = "X"


# ------------------------------------------------------------------ greedy optimizers
def greedy_maximize(function, budget: int, *, optimizer: str = "lazy", epsilon: float = 0.01,
                    random_state=None, verbose: bool = False):
    """Greedily pick ``budget`` candidates of a set function.

    Parameters
    ----------
    function : object
        A set function with ``n``, ``gains(idx)`` and ``add(j)`` (see the module
        docstring); it holds the selection state and is modified.
    budget : int
        Number of picks, in [0, n].
    optimizer : {"lazy", "naive", "stochastic"}, default="lazy"
        ``"naive"`` evaluates every remaining candidate at every step. ``"lazy"``
        (Minoux) keeps stale gains in a heap as upper bounds and re-evaluates only the
        top ones (in growing batches); it returns exactly the naive ranking when the
        gains never grow (submodular functions). ``"stochastic"`` (Mirzasoleiman et
        al. 2015) evaluates ``ceil(n / budget * ln(1 / epsilon))`` remaining candidates
        drawn at random at every step; its ranking depends on ``budget``.
    epsilon : float in (0, 1), default=0.01
        Accuracy of the stochastic greedy (expected (1 - 1/e - epsilon)-approximation).
    random_state : int, RandomState instance or None, default=None
        Seed of the stochastic samples.
    verbose : bool, default=False
        Show a progress bar.

    Returns
    -------
    order : ndarray of int64 of shape (budget,)
        Picked candidates in selection order.
    gains : ndarray of float64 of shape (budget,)
        Marginal gain of each pick when it was made.

    Examples
    --------
    >>> import numpy as np
    >>> from sk_coreset.selectors.submodular import FacilityLocationFunction, greedy_maximize
    >>> S = np.array([[1.0, 0.9, 0.0], [0.9, 1.0, 0.1], [0.0, 0.1, 1.0]])
    >>> order, gains = greedy_maximize(FacilityLocationFunction(S), 2)
    >>> order.tolist(), gains.round(2).tolist()
    ([1, 2], [2.0, 0.9])
    """
    n = int(function.n)
    if not 0 <= budget <= n:
        raise ValueError(f"budget={budget} must lie in [0, {n}] (the number of candidates).")
    if optimizer not in _OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {sorted(_OPTIMIZERS)}, got {optimizer!r}.")
    if optimizer == "lazy" and getattr(function, "cheap_gains", False):
        optimizer = "naive"  # gains are kept current: lazy bounds would save nothing
    order = np.empty(budget, dtype=np.int64)
    gains = np.empty(budget, dtype=np.float64)
    if budget:
        steps = tqdm(total=budget, disable=not verbose, desc=f"{optimizer} greedy", leave=False)
        with one_thread():
            _OPTIMIZERS[optimizer](function, budget, order, gains, epsilon,
                                   check_random_state(random_state), steps)
        steps.close()
    return order, gains




def _best(candidates: np.ndarray, gains: np.ndarray) -> int:
    """Position of the largest gain; ties go to the lowest candidate index."""
    top = np.flatnonzero(gains == gains.max())
    return int(top[np.argmin(candidates[top])]) if len(top) > 1 else int(top[0])


def _naive(function, budget, order, gains, epsilon, rng, steps):
    available = np.ones(function.n, dtype=bool)
    for t in range(budget):
        candidates = np.flatnonzero(available)
        g = function.gains(candidates)
        b = _best(candidates, g)
        order[t], gains[t] = candidates[b], g[b]
        available[candidates[b]] = False
        function.add(int(candidates[b]))
        steps.update()


def _lazy(function, budget, order, gains, epsilon, rng, steps):
    n = function.n
    g0 = function.gains(np.arange(n))
    heap = list(zip((-g0).tolist(), range(n)))
    heapq.heapify(heap)
    fresh_at = np.zeros(n, dtype=np.int64)  # step at which each bound was computed
    for t in range(budget):
        batch = 4
        while fresh_at[heap[0][1]] != t:
            popped = [heapq.heappop(heap) for _ in range(min(batch, len(heap)))]
            stale = np.array([j for _, j in popped if fresh_at[j] != t], dtype=np.int64)
            new = dict(zip(stale.tolist(), function.gains(stale).tolist()))
            fresh_at[stale] = t
            for neg, j in popped:
                heapq.heappush(heap, (-new[j], j) if j in new else (neg, j))
            batch *= 2
        neg, j = heapq.heappop(heap)
        order[t], gains[t] = j, -neg
        function.add(j)
        steps.update()


def _stochastic(function, budget, order, gains, epsilon, rng, steps):
    n = function.n
    size = max(1, math.ceil(n / budget * math.log(1 / epsilon)))
    remaining = np.arange(n)
    position = np.arange(n)
    for t in range(budget):
        m = n - t
        sample = remaining[rng.choice(m, size=min(size, m), replace=False)]
        g = function.gains(sample)
        b = _best(sample, g)
        j = int(sample[b])
        order[t], gains[t] = j, g[b]
        # swap-remove j from the remaining candidates
        last = remaining[m - 1]
        remaining[position[j]], position[last] = last, position[j]
        function.add(j)
        steps.update()


_OPTIMIZERS = {"naive": _naive, "lazy": _lazy, "stochastic": _stochastic}


# ------------------------------------------------------------------ similarity access
class _DenseRows:
    """Rows of a dense kernel held in memory (row j = candidate j)."""

    def __init__(self, K: torch.Tensor):
        self.K = K
        self.n = K.shape[0]
        self.device, self.dtype = K.device, K.dtype

    def rows(self, idx: torch.Tensor) -> torch.Tensor:
        return self.K.index_select(0, idx)

    def diag(self) -> torch.Tensor:
        return self.K.diagonal().clone()

    def row_sums(self) -> torch.Tensor:
        return self.K.sum(1).double()  # pairwise summation: float32 is accurate enough


class _FactorRows:
    """Rows of the cosine similarity ``0.5 + 0.5 cos`` (``metric="cosine"``) or of the
    Gram matrix (``"inner"``) of a factor map, computed on demand."""

    def __init__(self, terms: list, metric: str = "cosine"):
        self.metric = metric
        self.terms = terms_normalize(terms) if metric == "cosine" else terms
        self.n = terms[0][0].shape[0]
        self.device, self.dtype = terms[0][0].device, terms[0][0].dtype
        self._diag = (cosine_self_similarity if metric == "cosine" else terms_sq_norms)(self.terms)

    def _map(self, x):
        return x.mul_(0.5).add_(0.5) if self.metric == "cosine" else x

    def rows(self, idx: torch.Tensor) -> torch.Tensor:
        out = self._map(terms_gram(terms_rows(self.terms, idx), self.terms))
        if self.metric == "cosine":  # the exact diagonal, as in the dense kernel
            out[torch.arange(len(idx), device=out.device), idx] = self._diag.index_select(0, idx)
        return out

    def diag(self) -> torch.Tensor:
        return self._diag.clone()

    def row_sums(self) -> torch.Tensor:
        return self._map(terms_mean_dot(self.terms).double()) * self.n


def kernel_rows(similarity, budget: int, metric: str = "cosine", max_memory=None,
                verbose: bool = False):
    """Row access to a pool's kernel: the dense matrix when that is cheaper and fits.

    ``similarity`` is a precomputed (n, n) matrix or a factor map. A greedy that reads
    the rows of ``budget`` picks either computes them one by one (``budget`` passes over
    the factors, memory-bound) or builds the whole kernel once (one matrix product,
    compute-bound, ``n^2`` floats). The second wins from about ``budget >= n / 20`` on
    a CPU; it is used then if the kernel and one block of temporaries fit
    ``max_memory`` (bytes or a size string; ``None`` means the library setting of
    :func:`sk_coreset.set_config`).
    """
    if not isinstance(similarity, list):
        return _row_access(similarity, True, metric, verbose)
    ref = similarity[0][0]
    n = ref.shape[0]
    fits = n * n * ref.element_size() + CHUNK_BYTES <= memory_limit(max_memory)
    return _row_access(similarity, _dense_pays(n, budget) and fits, metric, verbose)


def _dense_pays(n: int, budget: int) -> bool:
    """Whether building a dense kernel beats computing the rows of ``budget`` picks."""
    return budget * 20 >= n


def _row_access(similarity, dense: bool, metric: str, verbose: bool):
    """Rows of a precomputed matrix, of a dense kernel built now, or computed on demand."""
    if not isinstance(similarity, list):
        return _DenseRows(_as_kernel(similarity))
    if dense:
        return _DenseRows(pairwise_kernel(similarity, metric, verbose=verbose))
    return _FactorRows(similarity, metric)


def _as_rows(similarity):
    if isinstance(similarity, (_DenseRows, _FactorRows)):
        return similarity
    if isinstance(similarity, list):
        return _FactorRows(similarity)
    return _DenseRows(_as_kernel(similarity))


def _as_kernel(K) -> torch.Tensor:
    t = K if isinstance(K, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(K))
    dtype = torch.float64 if t.dtype == torch.float64 else torch.float32
    t = t.to(dtype=dtype)
    if t.ndim != 2 or t.shape[0] != t.shape[1]:
        raise ValueError(f"a similarity kernel must be a square matrix; got shape {tuple(t.shape)}.")
    return t.contiguous()


def _idx(idx, device) -> torch.Tensor:
    return torch.as_tensor(np.asarray(idx, dtype=np.int64), device=device)


# ------------------------------------------------------------------ set functions
class FacilityLocationFunction:
    """Facility location ``f(S) = sum_i max_{j in S} s_ij`` (current maxima start at 0).

    Parameters
    ----------
    similarity : (n, n) array or tensor, or scipy sparse matrix
        ``similarity[j, i]``: how well candidate ``j`` represents point ``i`` (row ``j``
        is read when ``j`` is evaluated; for a symmetric kernel rows and columns agree).
        A sparse matrix holds only the listed entries (missing ones count as 0).

    Examples
    --------
    >>> import numpy as np
    >>> f = FacilityLocationFunction(np.array([[1.0, 0.5], [0.5, 1.0]]))
    >>> f.gains(np.array([0, 1])).tolist()
    [1.5, 1.5]
    >>> f.add(0); f.gains(np.array([1])).tolist()
    [0.5]
    """

    def __init__(self, similarity):
        self.sparse = sp.issparse(similarity)
        if self.sparse:
            K = sp.csr_matrix(similarity, dtype=np.float64)
            K.sum_duplicates()
            self.indptr, self.indices, self.data = K.indptr, K.indices, K.data
            self.n = K.shape[0]
            self.cur = np.zeros(K.shape[1])
        else:
            # On the CPU the loop runs on numpy views: its many small, memory-bound steps
            # pay more for torch's thread synchronisation than they gain from it.
            K = _as_kernel(similarity)
            self.K = K.numpy() if K.device.type == "cpu" else K
            self.n = K.shape[0]
            self.cur = self.K[0] * 0
            self.cur_sum = 0.0

    def gains(self, idx) -> np.ndarray:
        idx = np.asarray(idx, dtype=np.int64)
        if self.sparse:
            return self._sparse_gains(idx)
        # sum_i max(0, s_ij - cur_i) = sum_i max(s_ij, cur_i) - sum_i cur_i
        out = np.empty(len(idx))
        step = max(1, CHUNK_BYTES // (self.n * 8))
        for s in range(0, len(idx), step):
            out[s : s + step] = self._dense_sums(idx[s : s + step]) - self.cur_sum
        return out

    def _dense_sums(self, idx):
        if isinstance(self.K, np.ndarray):
            rows = self.K[idx]
            np.maximum(rows, self.cur, out=rows)
            return rows.sum(1, dtype=np.float64)
        rows = self.K.index_select(0, _idx(idx, self.K.device))
        torch.maximum(rows, self.cur, out=rows)
        return rows.sum(1, dtype=torch.float64).cpu().numpy()

    def _sparse_gains(self, idx):
        starts, lengths = self.indptr[idx], np.diff(self.indptr)[idx]
        segment = np.repeat(np.arange(len(idx)), lengths)
        offsets = np.repeat(starts - np.cumsum(lengths) + lengths, lengths)
        pos = offsets + np.arange(len(segment))
        gain = np.maximum(self.data[pos] - self.cur[self.indices[pos]], 0)
        return np.bincount(segment, weights=gain, minlength=len(idx))

    def add(self, j: int) -> None:
        if self.sparse:
            span = slice(self.indptr[j], self.indptr[j + 1])
            cols = self.indices[span]
            self.cur[cols] = np.maximum(self.cur[cols], self.data[span])
        elif isinstance(self.K, np.ndarray):
            np.maximum(self.cur, self.K[j], out=self.cur)
            self.cur_sum = float(self.cur.sum(dtype=np.float64))
        else:
            torch.maximum(self.cur, self.K[j], out=self.cur)
            self.cur_sum = float(self.cur.sum(dtype=torch.float64))


class GraphCutFunction:
    """Graph cut ``f(S) = lam * sum_{i in V, j in S} s_ij - sum_{i, j in S} s_ij``.

    The second sum runs over ordered pairs including ``i = j``, so the gain of ``j`` is
    ``lam * rowsum_j - s_jj - 2 * sum_{i in S} s_ij`` (apricot's convention). Only the
    row of each picked candidate is ever computed: O(n) memory.

    Parameters
    ----------
    similarity : (n, n) symmetric array or tensor, or a factor map (list of terms)
        A factor map stands for the cosine similarity ``0.5 + 0.5 cos`` of its rows.
    lam : float, default=1.0
        Weight of the coverage term.

    Examples
    --------
    >>> import numpy as np
    >>> f = GraphCutFunction(np.array([[1.0, 0.5], [0.5, 1.0]]))
    >>> f.gains(np.array([0, 1])).tolist()  # 1.5 - 1.0
    [0.5, 0.5]
    """

    cheap_gains = True

    def __init__(self, similarity, lam: float = 1.0):
        self.similarity = _as_rows(similarity)
        self.n = self.similarity.n
        self.g = lam * self.similarity.row_sums() - self.similarity.diag().double()

    def gains(self, idx) -> np.ndarray:
        return self.g.index_select(0, _idx(idx, self.g.device)).cpu().numpy()

    def add(self, j: int) -> None:
        row = self.similarity.rows(_idx([j], self.similarity.device))[0]
        self.g.sub_(row.double(), alpha=2.0)


class LogDeterminantFunction:
    """Log-determinant ``f(S) = log det(s_SS + ridge * I)`` with an incremental Cholesky.

    The gain of ``j`` is the log of its Schur complement,
    ``log(s_jj + ridge - s_jS (s_SS + ridge I)^-1 s_Sj)``. After each pick one kernel
    row is computed and every candidate's Cholesky column grows by one entry: a pick
    costs O(n·|S|), memory is O(n·max_size).

    Parameters
    ----------
    similarity : (n, n) positive semi-definite array or tensor, or a factor map
        A factor map stands for the cosine similarity ``0.5 + 0.5 cos`` of its rows.
    ridge : float, default=1e-3
        Added to the diagonal; keeps the gains finite once the kernel's rank is used up.
    max_size : int, default=None
        Largest selection (default ``n``); sets the memory of the Cholesky factor.

    Examples
    --------
    >>> import numpy as np
    >>> f = LogDeterminantFunction(np.eye(2), ridge=0.0)
    >>> f.gains(np.array([0, 1])).tolist()
    [0.0, 0.0]
    """

    cheap_gains = True

    def __init__(self, similarity, ridge: float = 1e-3, max_size: int | None = None):
        self.similarity = _as_rows(similarity)
        self.n = self.similarity.n
        self.ridge = ridge
        self.d2 = self.similarity.diag().double() + ridge
        size = self.n if max_size is None else max_size
        self.V = torch.empty(size, self.n, dtype=self.similarity.dtype, device=self.similarity.device)
        self.t = 0

    def gains(self, idx) -> np.ndarray:
        d2 = self.d2.index_select(0, _idx(idx, self.d2.device))
        return d2.clamp_min(np.finfo(np.float64).tiny).log().cpu().numpy()

    def add(self, j: int) -> None:
        row = self.similarity.rows(_idx([j], self.similarity.device))[0]
        row[j] += self.ridge
        V = self.V[: self.t]
        if self.t:
            row.addmv_(V.T, V[:, j], alpha=-1.0)
        e = row / math.sqrt(max(float(self.d2[j]), np.finfo(np.float64).tiny))
        self.V[self.t] = e
        self.t += 1
        self.d2.sub_(e.double().square())
        self.d2[j] = 0.0


# ------------------------------------------------------------------ selector plumbing
class _FactorBytes(NamedTuple):
    """Bytes of a pool's float32 factor map, for memory estimates.

    ``owned``: what it allocates (float32 rows of a feature matrix are used in place);
    ``first``: its first factors, which cosine kernels rescale into copies; ``widest``:
    its widest factor, which squared norms copy once; ``factors``: factors per term;
    ``inits``: terms (proxy initialisations).
    """

    owned: int
    first: int
    widest: int
    factors: int
    inits: int


#: bytes per row of the lazy greedy's heap (Python tuples of a float and an int)
HEAP_BYTES = 160


class _ByInstance:
    """A class attribute computed from an instance's parameters (``default`` on the class)."""

    def __init__(self, func, default: bool):
        self.func, self.default = func, default

    def __get__(self, obj, objtype=None):
        return self.default if obj is None else self.func(obj)


class _KernelSelector(BaseSelector):
    """Signal handling shared by the similarity-based selectors of this package.

    The signal is the last-layer gradient (``signal="gradient"``, from ``embedding``,
    ``proba`` and the labels), another named signal used as a feature matrix, a
    precomputed ``(n, n)`` matrix (``signal="precomputed"``), or a plain array passed to
    ``fit``, which is taken as the feature matrix.
    """

    _required_signals = ("embedding", "proba")
    _optional_signals = (_ROW_KEY,)  # a precomputed kernel's rows: which columns to read
    _parameter_constraints: dict = {
        **BaseSelector._parameter_constraints,
        "signal": [str],
        "device": [None, str, torch.device],
        "verbose": ["verbose"],
    }

    # labels give the gradient's error vectors; a feature matrix needs none
    _requires_y = _ByInstance(lambda self: getattr(self, "_source", self.signal) == "gradient",
                              True)

    def _as_signals(self, X) -> Signals:
        if _is_mapping(X):
            signals = as_signals(X, _PLAIN_KEY)
        else:
            key = "precomputed" if self.signal == "precomputed" else _PLAIN_KEY
            signals = as_signals(self._check_plain_array(X, reset=True), key)
        if self.signal == "precomputed" and "precomputed" in signals:
            signals = Signals(**signals, **{_ROW_KEY: np.arange(signals.shape[0])})
        return signals

    def _signals_needed(self, signals) -> tuple[str, ...]:
        return {"gradient": self._required_signals, "plain": (_PLAIN_KEY,)}.get(
            self._source, (self._source,)
        )

    def _validate_signals(self, X, y) -> Signals:
        # where the pool features come from: "gradient", "precomputed", "plain" (an
        # array passed to fit) or the name of a feature signal
        plain = not _is_mapping(X) and self.signal != "precomputed"
        self._source = "plain" if plain else self.signal
        signals = super()._validate_signals(X, y)
        self._check_signal_shapes(signals)
        return signals

    def _check_signal_shapes(self, signals):
        for name in self._signals_needed(signals):
            if signals[name].dtype in (np.complex64, np.complex128, torch.complex64,
                                       torch.complex128):
                raise ValueError(
                    f"Complex data not supported in signal {name!r}; pass real values "
                    "(e.g. the magnitudes or the real and imaginary parts as features)."
                )
        if self.signal == "precomputed":
            K = signals["precomputed"]
            if K.ndim != 2 or K.shape[0] != K.shape[1]:
                raise ValueError(
                    "signal='precomputed' needs a square (n_samples, n_samples) similarity "
                    f"matrix; got shape {tuple(K.shape)}."
                )
        elif self._source == "plain" and signals[_PLAIN_KEY].ndim < 2:
            raise ValueError(
                "A plain array passed to fit is taken as the feature matrix and must be "
                f"2-D (n_samples, n_features); got shape {tuple(signals[_PLAIN_KEY].shape)}. "
                "Reshape it, e.g. X.reshape(-1, 1) for a single feature."
            )

    # -------------------------------------------------------------- memory
    def _kernel_options(self, n: int, budget: int) -> tuple[str, ...]:
        """The ways of processing a pool of ``n`` rows, fastest first."""
        if self.signal == "precomputed":
            return ("precomputed",)
        return ("dense", "rows") if _dense_pays(n, budget) else ("rows",)

    def _kernel_memory(self, n: int, budget: int, signals, kind: str) -> int:
        """Peak bytes of one pool processed the ``kind`` way (see ``_kernel_options``)."""
        raise NotImplementedError

    def _kernel_choice(self, n: int, budget: int, signals) -> str:
        """The fastest option whose estimate fits the pool's share of the memory limit,
        else the leanest (``fit`` then refuses, before selecting anything)."""
        options = self._kernel_options(n, budget)
        costs = [self._kernel_memory(n, budget, signals, kind) for kind in options]
        for kind, cost in zip(options, costs):
            if cost <= self._pool_limit():
                return kind
        return options[int(np.argmin(costs))]

    def _pool_memory(self, n_rows, budget, signals) -> int:
        return self._kernel_memory(n_rows, budget, signals,
                                   self._kernel_choice(n_rows, budget, signals))

    def _plan(self, n: int, budget: int, signals=None) -> str:
        """The way a pool of ``n`` rows is processed; raises when even the leanest one
        exceeds the pool's share of the memory limit (GreeDi checks its parts with it).
        Without ``signals`` only the kernel is counted, not the signal's factors."""
        kind = self._kernel_choice(n, budget, signals)
        need = self._kernel_memory(n, budget, signals, kind)
        if need > self._pool_limit():
            raise ValueError(
                f"{type(self).__name__} needs about {format_bytes(need)} for a pool of {n} "
                f"rows with budget {budget} ({kind} kernel), over the memory limit of "
                f"{format_bytes(self._pool_limit())}. Use smaller pools (balance=True, "
                "more partitions), a smaller fraction, or raise max_memory."
            )
        return kind

    def _terms_memory(self, n: int, signals) -> _FactorBytes:
        """Bytes of a pool's float32 factor map (see :class:`_FactorBytes`)."""
        if signals is None:  # the kernel alone
            return _FactorBytes(0, 0, 0, factors=2, inits=1)
        if self.signal == "precomputed":
            return _FactorBytes(0, 0, 0, factors=1, inits=1)
        if self._source == "gradient":
            emb, proba = signals["embedding"], signals["proba"]
            inits = proba.shape[1] if proba.ndim == 3 else 1
            d, c = emb.shape[-1], proba.shape[-1]
            # float32 copies of float64 signals while the factors are built; label codes
            convert = 4 * n * inits * (d * (_dtype(emb) != np.float32)
                                       + c * (_dtype(proba) != np.float32)) + 24 * n
            return _FactorBytes(4 * n * inits * (c + d + 1) + convert, 4 * n * inits * c,
                                4 * n * (d + 1), factors=2, inits=inits)
        value = signals[_PLAIN_KEY if self._source == "plain" else self._source]
        width = 4 * n * row_elements(value)
        # float32 rows are used in place; other dtypes are converted
        return _FactorBytes(0 if _dtype(value) == np.float32 else width, width, width,
                            factors=1, inits=1)

    def _dense_memory(self, n: int, signals, metric: str = "cosine") -> int:
        """Building a pool's dense kernel: factors, the (n, n) float32 kernel, temporaries."""
        t = self._terms_memory(n, signals)
        step = min(n, max(1, CHUNK_BYTES // (n * 4 * 2)))
        # each further factor (and each further proxy initialisation) multiplies in a block
        blocks = t.factors - 1 + (t.factors if t.inits > 1 else 0)
        rescaled = t.first if metric == "cosine" else 0
        return t.owned + 4 * n * n + 4 * step * n * blocks + rescaled + t.widest + 16 * n

    def _precomputed_memory(self, n: int, signals) -> tuple[int, int]:
        """A pool's block of a precomputed matrix: (bytes, itemsize)."""
        K = signals["precomputed"]
        item = 8 if _dtype(K) == np.float64 else 4
        convert = 0 if _dtype(K) in (np.float32, np.float64) else 4 * n * K.shape[1]
        return convert + item * n * n, item

    def _rows_memory(self, n: int, signals, metric: str = "cosine") -> int:
        """Kernel rows computed on demand: factors, rescaled first factors, row sums."""
        t = self._terms_memory(n, signals)
        rescaled = t.first if metric == "cosine" else 0
        return t.owned + rescaled + 2 * t.widest + 64 * n

    def _memory_fixes(self, plan, signals) -> list:
        fixes = super()._memory_fixes(plan, signals)
        if isinstance(self, (FacilityLocation, GraphCut)) and self.signal != "precomputed":
            fixes += self._partition_fix(plan, signals)
        return fixes

    def _device(self, signals):
        if self.device is None:
            value = signals[self._signals_needed(signals)[0]]
            return value.device if isinstance(value, torch.Tensor) else torch.device("cpu")
        try:
            return resolve_device(self.device)
        except RuntimeError as err:
            raise ValueError(
                f"device={self.device!r} is not a torch device; pass None, 'auto', 'cpu' or 'cuda'."
            ) from err

    def _label_columns(self, n_columns: int) -> np.ndarray:
        """Column of ``proba`` for each class code."""
        classes = self.classes_
        if len(classes) == n_columns:
            return np.arange(n_columns)
        if classes.dtype.kind in "iu" and classes.min() >= 0 and classes.max() < n_columns:
            return classes.astype(np.int64)
        raise ValueError(
            f"proba has {n_columns} columns but y holds {len(classes)} classes that are "
            "not integers in [0, n_columns); pass labels as the proxy's class indices."
        )

    def _pool_terms(self, signals, y) -> list:
        """The pool's factor map, on the working device."""
        device = self._device(signals)
        if self._source == "plain":
            return feature_terms(signals[_PLAIN_KEY], device)
        if self._source == "gradient":
            proba = signals.per_init("proba")
            codes = self._label_columns(proba.shape[-1])[y]
            return gradient_terms(signals.per_init("embedding"), proba, codes, device)
        return feature_terms(signals[self.signal], device)

    def _pool_kernel(self, signals) -> torch.Tensor:
        """The pool's block of a precomputed matrix."""
        rows = np.asarray(signals[_ROW_KEY])
        K = _as_kernel_rows(signals["precomputed"], self._device(signals))
        return K.index_select(1, torch.as_tensor(rows, device=K.device)).contiguous()

    def _pool_similarity(self, signals, y):
        """The pool's precomputed block, or its factor map."""
        if self.signal == "precomputed":
            return self._pool_kernel(signals)
        return self._pool_terms(signals, y)

    @staticmethod
    def _scores(n: int, order: np.ndarray, gains: np.ndarray) -> np.ndarray:
        scores = np.full(n, np.nan)
        scores[order] = gains
        return scores


def _as_kernel_rows(K, device) -> torch.Tensor:
    t = K if isinstance(K, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(K))
    dtype = torch.float64 if t.dtype == torch.float64 else torch.float32
    return t.to(device=device, dtype=dtype)


class _GreedySelector(_KernelSelector):
    """Parameters and memory planning of the selectors driven by :func:`greedy_maximize`."""

    _parameter_constraints: dict = {
        **_KernelSelector._parameter_constraints,
        "optimizer": [StrOptions({"lazy", "naive", "stochastic"})],
        "epsilon": [Interval(numbers.Real, 0, 1, closed="neither")],
        "max_memory": [None, Interval(numbers.Real, 0, None, closed="neither"), str],
    }

    _nested = _ByInstance(lambda self: self.optimizer != "stochastic", True)

    def _greedy(self, function, budget, random_state):
        return greedy_maximize(function, budget, optimizer=self.optimizer, epsilon=self.epsilon,
                               random_state=random_state, verbose=self.verbose)

    @staticmethod
    def _dense_greedy_memory(n: int, itemsize: int = 4) -> int:
        """Greedy on a dense kernel: a block of its rows per gain evaluation, the heap."""
        rows = min(n, max(1, CHUNK_BYTES // (n * 8)))
        return rows * n * itemsize + (HEAP_BYTES + 8) * n


# "auto" kernels are dense only up to this size (float32 n x n; about 32,700 rows).
_AUTO_DENSE_BYTES = 4 * 2**30


class _DenseOrSparse(_GreedySelector):
    """A selector that holds a dense ``n x n`` kernel per pool, or a kNN-sparse one."""

    _parameter_constraints: dict = {
        **_GreedySelector._parameter_constraints,
        "kernel": [StrOptions({"auto", "dense", "knn"})],
        "n_neighbors": [Interval(numbers.Integral, 1, None, closed="left")],
    }

    def _kernel_options(self, n, budget):
        if self.signal == "precomputed":
            return ("precomputed",)
        if self.kernel == "auto":
            # past _AUTO_DENSE_BYTES the kNN kernel is also the faster one (the dense
            # kernel's O(n^2 d) build dominates), whatever memory is free
            return ("dense", "knn") if 4 * n * n <= _AUTO_DENSE_BYTES else ("knn",)
        return (self.kernel,)

    def _knn_memory(self, n: int, signals, metric: str) -> int:
        """Building a pool's kNN-sparse kernel: the chunked search, then the CSR matrix.

        The search holds (n, m) indices and values and a block of rows of the kernel
        (with a temporary per further factor); the symmetric CSR matrix is built from
        COO arrays, its transpose and their maximum, about 108 bytes per listed pair.
        """
        t = self._terms_memory(n, signals)
        m = min(self.n_neighbors, n)
        step = min(n, max(1, CHUNK_BYTES // (n * 4 * 3)))
        blocks = t.factors + (t.factors if t.inits > 1 else 0)
        norms = t.first if metric == "cosine" else 4 * n
        search = norms + t.widest + 4 * step * n * blocks + 16 * n * m
        return t.owned + max(search, 124 * n * m)

    @staticmethod
    def _sparse_greedy_memory(n: int, m: int) -> int:
        """Greedy on a kNN-sparse kernel: its CSR copy (at most 2 n m pairs), the
        per-pair temporaries of a gain evaluation over every row, the heap."""
        return 152 * n * m + (HEAP_BYTES + 32) * n

    def _memory_fixes(self, plan, signals) -> list:
        fixes = super()._memory_fixes(plan, signals)
        if self.signal == "precomputed":
            return fixes
        if self.kernel != "knn":
            fixes.insert(0, "kernel='knn' (a kNN-sparse kernel, n_neighbors entries per row)")
        elif self.n_neighbors > 4:
            fixes.insert(0, f"a smaller n_neighbors (now {self.n_neighbors})")
        return fixes


def _knn_matrix(indices: torch.Tensor, values: torch.Tensor, n: int) -> sp.csr_matrix:
    """Symmetric sparse kernel from kNN lists: an entry if either row is in the other's list."""
    rows = np.repeat(np.arange(n), indices.shape[1])
    A = sp.csr_matrix(
        (values.double().cpu().numpy().ravel(), (rows, indices.cpu().numpy().ravel())),
        shape=(n, n),
    )
    return A.maximum(A.T).tocsr()


# ------------------------------------------------------------------ selectors
_COMMON_DOC = """
    fraction : float in (0, 1] or int, default=0.1
        Proportion (or count) of rows to keep.
    balance : bool, default=True
        Select every class independently (one kernel per class).
    random_state : int, RandomState instance or None, default=None
        Seed of the stochastic optimizer.
    n_jobs : int or None, default=None
        Pools (classes with ``balance=True``) selected in parallel with joblib, also
        on a Dask cluster under ``joblib.parallel_backend("dask")``; ``None`` means 1
        unless in a joblib backend context, ``-1`` all processors. The result does not
        depend on it.
    signal : str, default="gradient"
        ``"gradient"``: the proxy's last-layer gradients from ``embedding``, ``proba``
        and the labels (closed form, never materialised); ``"precomputed"``: ``X`` is an
        ``(n, n)`` similarity matrix; any other name: that signal, used as a feature
        matrix (e.g. ``"embedding"``). A plain array passed to ``fit`` is taken as the
        feature matrix (or as the matrix with ``"precomputed"``)."""

_GREEDY_DOC = """
    optimizer : {"lazy", "naive", "stochastic"}, default="lazy"
        Greedy optimizer, see :func:`greedy_maximize`. Lazy and naive give the same
        ranking; stochastic is faster on large pools and is not nested across budgets.
    epsilon : float in (0, 1), default=0.01
        Accuracy of the stochastic optimizer."""

_MEMORY_DOC = """
    max_memory : int, str or None, default=None
        Memory limit of ``fit`` in bytes (or a size such as ``"8GB"``); ``None`` uses
        the library setting (:func:`sk_coreset.set_config`, by default 80% of the
        physical memory). Kernels are chosen to fit it, and a fit that cannot fit
        raises a ``ValueError`` before anything is allocated (see
        :meth:`estimate_memory`)."""

_DEVICE_DOC = """
    device : str, torch.device or None, default=None
        Where to compute; ``None`` follows the signal (CUDA tensors stay on their GPU),
        ``"auto"`` picks CUDA when available.
    verbose : bool, default=False
        Show progress bars."""


@register_selector("FacilityLocation", "FL")
class FacilityLocation(_DenseOrSparse):
    __doc__ = f"""Facility location: maximise ``sum_i max_(j in S) s_ij`` over each pool.

    ``s = 0.5 + 0.5 cos`` of the chosen signal (by default the last-layer gradients), so
    the selection covers the pool: every row has a similar selected row. The kernel of a
    pool is dense (``n^2`` float32) when the estimate fits the memory limit and the pool
    has at most about 32,700 rows (4 GiB; beyond that the dense build is also slower),
    else kNN-sparse: each row then keeps its ``n_neighbors`` most similar rows (symmetrised),
    and rows outside every selected row's neighbourhood count as uncovered. Pools too
    large for either: :class:`~sk_coreset.selectors.GreeDi`.

    Parameters
    ----------{_COMMON_DOC}{_GREEDY_DOC}
    kernel : {{"auto", "dense", "knn"}}, default="auto"
        ``"auto"`` is dense when the estimate fits the memory limit and the kernel takes
        at most 4 GiB, else kNN-sparse.
    n_neighbors : int, default=32
        Neighbours per row of the kNN-sparse kernel.{_MEMORY_DOC}{_DEVICE_DOC}

    Attributes
    ----------
    sample_indices_, sample_weight_, classes_, budgets_, class_rankings_
        As in :class:`~sk_coreset.base.BaseSelector`; weights are ones.
    scores_ : ndarray of shape (n_samples,)
        Marginal gain of each selected row when it was picked; NaN for the others.

    Examples
    --------
    >>> import numpy as np
    >>> from sk_coreset.selectors import FacilityLocation
    >>> X = np.random.RandomState(0).normal(size=(60, 5))
    >>> FacilityLocation(fraction=0.1, balance=False).fit(X).sample_indices_.shape
    (6,)
    """

    def __init__(self, fraction=0.1, *, balance=True, random_state=None, n_jobs=None,
                 signal="gradient", optimizer="lazy", epsilon=0.01, kernel="auto",
                 n_neighbors=32, max_memory=None, device=None, verbose=False):
        super().__init__(fraction, balance=balance, random_state=random_state, n_jobs=n_jobs)
        self.signal = signal
        self.optimizer = optimizer
        self.epsilon = epsilon
        self.kernel = kernel
        self.n_neighbors = n_neighbors
        self.max_memory = max_memory
        self.device = device
        self.verbose = verbose

    def _select_pool(self, signals, y, budget, random_state):
        n = signals.shape[0]
        function = FacilityLocationFunction(self._similarity(signals, y, budget))
        order, gains = self._greedy(function, budget, random_state)
        return PoolSelection(order, scores=self._scores(n, order, gains))

    def _similarity(self, signals, y, budget):
        if self.signal == "precomputed":
            return self._pool_kernel(signals)
        terms = self._pool_terms(signals, y)
        if self._kernel_choice(signals.shape[0], budget, signals) == "dense":
            return pairwise_kernel(terms, "cosine", verbose=self.verbose)
        idx, vals, _ = knn_kernel(terms, self.n_neighbors, "cosine", verbose=self.verbose)
        return _knn_matrix(idx, vals, signals.shape[0])

    def _kernel_memory(self, n, budget, signals, kind):
        # the factors are freed once the kernel is built, before the greedy runs
        if kind == "precomputed":
            kernel, item = self._precomputed_memory(n, signals)
            return kernel + self._dense_greedy_memory(n, item)
        if kind == "dense":
            return max(self._dense_memory(n, signals, "cosine"),
                       4 * n * n + self._dense_greedy_memory(n))
        return max(self._knn_memory(n, signals, "cosine"),
                   self._sparse_greedy_memory(n, min(self.n_neighbors, n)))


@register_selector("GraphCut", "GC")
class GraphCut(_GreedySelector):
    __doc__ = f"""Graph cut: maximise ``lam * sum_(i in V, j in S) s_ij - sum_(i, j in S) s_ij``.

    Rewards rows similar to the whole pool and penalises similarity inside the
    selection; ``s = 0.5 + 0.5 cos`` of the chosen signal. Row sums come from the
    factorised kernel in O(n·d) and each pick computes one kernel row (O(n) memory,
    O(k·n·d) time per pool), unless the budget is at least 5% of the pool and the dense
    kernel fits the memory limit: it is then built once (faster).

    Parameters
    ----------{_COMMON_DOC}{_GREEDY_DOC}
    lam : float, default=1.0
        Weight of the coverage term (DeepCore's and apricot's default 1).{_MEMORY_DOC}{_DEVICE_DOC}

    Attributes
    ----------
    sample_indices_, sample_weight_, classes_, budgets_, class_rankings_
        As in :class:`~sk_coreset.base.BaseSelector`; weights are ones.
    scores_ : ndarray of shape (n_samples,)
        Marginal gain of each selected row when it was picked; NaN for the others.

    Examples
    --------
    >>> import numpy as np
    >>> from sk_coreset.selectors import GraphCut
    >>> X = np.random.RandomState(0).normal(size=(60, 5))
    >>> GraphCut(fraction=0.1, balance=False).fit(X).sample_indices_.shape
    (6,)
    """

    _parameter_constraints: dict = {
        **_GreedySelector._parameter_constraints,
        "lam": [Interval(numbers.Real, 0, None, closed="left")],
    }

    def __init__(self, fraction=0.1, *, balance=True, random_state=None, n_jobs=None,
                 signal="gradient", optimizer="lazy", epsilon=0.01, lam=1.0,
                 max_memory=None, device=None, verbose=False):
        super().__init__(fraction, balance=balance, random_state=random_state, n_jobs=n_jobs)
        self.signal = signal
        self.optimizer = optimizer
        self.epsilon = epsilon
        self.lam = lam
        self.max_memory = max_memory
        self.device = device
        self.verbose = verbose

    def _select_pool(self, signals, y, budget, random_state):
        dense = self._kernel_choice(signals.shape[0], budget, signals) == "dense"
        similarity = _row_access(self._pool_similarity(signals, y), dense, "cosine",
                                 self.verbose)
        order, gains = self._greedy(GraphCutFunction(similarity, self.lam), budget, random_state)
        return PoolSelection(order, scores=self._scores(signals.shape[0], order, gains))

    def _kernel_memory(self, n, budget, signals, kind):
        if kind == "precomputed":
            return self._precomputed_memory(n, signals)[0] + 64 * n
        if kind == "dense":
            return max(self._dense_memory(n, signals, "cosine"), 4 * n * n + 64 * n)
        return self._rows_memory(n, signals, "cosine")


@register_selector("LogDeterminant", "LogDet")
class LogDeterminant(_GreedySelector):
    __doc__ = f"""Log-determinant: maximise ``log det(s_SS + ridge * I)`` (a DPP MAP greedy).

    Picks rows whose similarity vectors span the most volume: diverse rows. The gain of
    a row is the log of its Schur complement given the selection, maintained with an
    incremental Cholesky factor; each pick computes one kernel row (O(n·k) memory, no
    ``n x n`` kernel). The DeepCore reference maximises the wrong quantity (the
    explained part of the Schur complement); this is the correct gain.

    Parameters
    ----------{_COMMON_DOC}{_GREEDY_DOC}
    ridge : float, default=1e-3
        Added to the kernel's diagonal.{_MEMORY_DOC}
        The Cholesky factor (``budget x n`` floats) is always kept; the dense kernel
        too when it fits and the budget is at least 5% of the pool (else the rows of
        the picks are computed one by one).{_DEVICE_DOC}

    Attributes
    ----------
    sample_indices_, sample_weight_, classes_, budgets_, class_rankings_
        As in :class:`~sk_coreset.base.BaseSelector`; weights are ones.
    scores_ : ndarray of shape (n_samples,)
        Marginal gain (log Schur complement) of each selected row when it was picked;
        NaN for the others.

    Examples
    --------
    >>> import numpy as np
    >>> from sk_coreset.selectors import LogDeterminant
    >>> X = np.random.RandomState(0).normal(size=(60, 5))
    >>> LogDeterminant(fraction=0.1, balance=False).fit(X).sample_indices_.shape
    (6,)
    """

    _parameter_constraints: dict = {
        **_GreedySelector._parameter_constraints,
        "ridge": [Interval(numbers.Real, 0, None, closed="left")],
    }

    def __init__(self, fraction=0.1, *, balance=True, random_state=None, n_jobs=None,
                 signal="gradient", optimizer="lazy", epsilon=0.01, ridge=1e-3,
                 max_memory=None, device=None, verbose=False):
        super().__init__(fraction, balance=balance, random_state=random_state, n_jobs=n_jobs)
        self.signal = signal
        self.optimizer = optimizer
        self.epsilon = epsilon
        self.ridge = ridge
        self.max_memory = max_memory
        self.device = device
        self.verbose = verbose

    def _select_pool(self, signals, y, budget, random_state):
        dense = self._kernel_choice(signals.shape[0], budget, signals) == "dense"
        similarity = _row_access(self._pool_similarity(signals, y), dense, "cosine",
                                 self.verbose)
        function = LogDeterminantFunction(similarity, self.ridge, max_size=budget)
        order, gains = self._greedy(function, budget, random_state)
        return PoolSelection(order, scores=self._scores(signals.shape[0], order, gains))

    def _kernel_memory(self, n, budget, signals, kind):
        # the Cholesky factor, budget x n in the kernel's dtype, comes after the kernel
        if kind == "precomputed":
            kernel, item = self._precomputed_memory(n, signals)
            return kernel + item * budget * n + 64 * n
        factor = 4 * budget * n + 64 * n
        if kind == "dense":
            return max(self._dense_memory(n, signals, "cosine"), 4 * n * n + factor)
        return self._rows_memory(n, signals, "cosine") + factor
