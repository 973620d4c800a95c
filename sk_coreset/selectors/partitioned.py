"""Two-round partitioned selection (GreeDi) for pools too large for one kernel.

GreeDi (Mirzasoleiman, Karbasi, Sarkar & Krause, NeurIPS 2013; with random parts it is
RandGreeDi, Barbosa et al., ICML 2015) splits a pool into parts, lets the wrapped
selector pick rows in every part on its own (round 1, one kernel per part, the parts in
parallel with joblib), and then runs one greedy pass over the union of those local
picks with the objective of the *whole* pool (round 2). Only the union's similarities
to the pool are ever needed, and they are computed in row blocks of bounded memory.

Round 2 per method:

- facility location: ``f(S) = sum over every pool row i of max_(j in S) s_ij`` with the
  wrapped selector's similarity (``0.5 + 0.5 cos`` of its signal). The candidates'
  ``u x n`` similarities are kept when they fit ``max_memory``; otherwise every pool row
  keeps a short list of its most similar candidates, a row's share of a gain is read
  from those lists once the selection covers it better than any unlisted candidate
  could, and only the other rows are recomputed from the signal. Exact either way.
- graph cut: ``lam * sum_(i in pool, j in S) s_ij - sum_(i, j in S) s_ij``: the row sums
  over the whole pool come from the factorised signal in O(n·d), the penalty needs the
  candidates' kernel only (``u x u``, or rows on demand). Round 1 is graph cut
  restricted to the part with the same pool row sums (the pool objective restricted to
  the part, GreeDi's local problem): a part's own row sums would rank its rows by how
  central they are in the part, which k-means parts make very different from the pool.
- k-center greedy: farthest-first traversal of the union, the next centre being the
  candidate farthest from the current centres (Malkomes et al., NeurIPS 2015: with
  Gonzalez's farthest-first in both rounds the covering radius of the pool is within 4
  times the optimum). Measuring distances to every pool row instead would cost as much
  as k-center greedy on the whole pool, which already runs in O(n) memory.
"""

from __future__ import annotations

import math
import numbers

import numpy as np
import torch
from joblib import Parallel, delayed, effective_n_jobs
from sklearn.base import clone
from sklearn.cluster import KMeans
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from tqdm.auto import tqdm

from ..base import BaseSelector, PoolSelection, Signals, _aligned, _rows, signal_bytes
from ..kernels import (
    CHUNK_BYTES,
    cosine_self_similarity,
    terms_gram,
    terms_normalize,
    terms_rows,
)
from ._registry import register_selector
from .geometry import KCenterGreedy
from .submodular import FacilityLocation, GraphCut, greedy_maximize, kernel_rows

__all__ = ["GreeDi", "partition_rows"]

_SUPPORTED = (FacilityLocation, GraphCut, KCenterGreedy)

#: k-means partitions of larger pools are fitted on this many rows drawn at random
KMEANS_FIT_ROWS = 50_000


# ------------------------------------------------------------------ partitions
def partition_rows(X, n_partitions: int, *, method: str = "random", random_state=None,
                   max_fit_rows: int = KMEANS_FIT_ROWS) -> np.ndarray:
    """Assign every row to one of ``n_partitions`` parts.

    Parameters
    ----------
    X : array-like of shape (n_samples, ...) or int
        The rows (flattened after the first axis) that k-means clusters; for
        ``method="random"`` only their number is used, so an int is enough.
    n_partitions : int
        Number of parts, in [1, n_samples].
    method : {"random", "kmeans"}, default="random"
        ``"random"``: a permutation drawn from ``random_state`` cut into consecutive
        pieces whose sizes differ by at most one (:func:`numpy.array_split`).
        ``"kmeans"``: the labels of ``KMeans(n_partitions, n_init=1,
        random_state=random_state)`` fitted on the rows; with more than
        ``max_fit_rows`` rows it is fitted on that many rows drawn from
        ``random_state`` and every row goes to its nearest centre. k-means parts can
        be uneven, and a part may be empty.
    random_state : int, RandomState instance or None, default=None
        Seed of the permutation, the subsample and the k-means initialisation.
    max_fit_rows : int, default=50,000
        Largest number of rows k-means is fitted on.

    Returns
    -------
    ndarray of int64 of shape (n_samples,)
        The part of every row.

    Examples
    --------
    >>> from sk_coreset.selectors.partitioned import partition_rows
    >>> labels = partition_rows(10, 3, random_state=0)
    >>> sorted(labels.tolist())
    [0, 0, 0, 0, 1, 1, 1, 2, 2, 2]
    """
    n = int(X) if isinstance(X, numbers.Integral) else len(X)
    if not isinstance(n_partitions, numbers.Integral) or not 1 <= n_partitions <= max(n, 1):
        raise ValueError(
            f"n_partitions={n_partitions!r} must be an int in [1, {n}] (the number of rows)."
        )
    if method == "random":
        labels = np.empty(n, dtype=np.int64)
        rng = check_random_state(random_state)
        for part, rows in enumerate(np.array_split(rng.permutation(n), n_partitions)):
            labels[rows] = part
        return labels
    if method != "kmeans":
        raise ValueError(f"method must be 'random' or 'kmeans', got {method!r}.")
    if isinstance(X, numbers.Integral):
        raise ValueError("method='kmeans' needs the rows to cluster, not only their number.")
    X = _numpy(X).reshape(n, -1)
    if n <= max_fit_rows:
        model = KMeans(n_partitions, n_init=1, random_state=random_state)
        return model.fit(X).labels_.astype(np.int64)
    rng = check_random_state(random_state)
    sample = np.sort(rng.choice(n, max_fit_rows, replace=False))
    model = KMeans(n_partitions, n_init=1, random_state=rng).fit(X[sample])
    return model.predict(X).astype(np.int64)


def _numpy(x) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _unit_rows(X: np.ndarray) -> np.ndarray:
    """Rows scaled to unit norm (zero rows stay zero), the geometry of a cosine kernel."""
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    return X / np.where(norms > 0, norms, 1)


# ------------------------------------------------------------------ round 2 objectives
#: most candidates a pool row lists in round 2 of facility location
MAX_LISTED = 128


class _PoolFacilityLocation:
    """Facility location of candidate rows over a whole pool, exact, without ``u x n``.

    ``f(S) = sum over every pool row i of max_(c in S) s_ic`` with ``s = 0.5 + 0.5 cos``
    of a factor map (exact diagonal, clamped at 0 against rounding), as in
    :class:`~sk_coreset.selectors.FacilityLocation`. One pass over the pool, in blocks
    of rows, computes every candidate's initial gain (its row sum) and keeps for each
    pool row ``i`` its ``r`` most similar candidates and ``tau_i``, the ``r``-th largest
    similarity. Once row ``i``'s current maximum reaches ``tau_i`` no candidate outside
    its list can raise it, so its share of any gain is read from the lists (sparse, by
    candidate). The other, *open* rows are evaluated from the signal in blocks; they
    only ever close, and the open set is compacted as it shrinks. When the whole
    ``u x n`` block fits ``max_memory`` it is kept instead (no lists, every row open,
    gains read from it); otherwise ``r`` is the largest value up to
    :data:`MAX_LISTED` whose lists fit (``r = 0``: every row is always open).

    Memory: the block, or about ``32 n r`` bytes while the lists are built and
    ``12 n r`` after; two copies of the factor map; blocks of ``CHUNK_BYTES``.
    """

    def __init__(self, terms: list, candidates: np.ndarray, max_memory: float,
                 verbose: bool = False):
        self.T = terms_normalize(terms)
        ref = self.T[0][0]
        n, u = ref.shape[0], len(candidates)
        self.n, self.device, self.itemsize = u, ref.device, ref.element_size()
        self.diag = cosine_self_similarity(self.T)
        self.cand = torch.as_tensor(candidates, dtype=torch.long, device=self.device)
        self.C = terms_rows(self.T, self.cand)
        width = sum(f.shape[1] for term in self.T for f in term)
        spare = max_memory - 3 * CHUNK_BYTES - 2 * n * width * self.itemsize
        self.cache = None
        if u * n * self.itemsize <= spare:  # the whole u x n block: no lists needed
            self.cache = torch.empty(u, n, dtype=ref.dtype, device=self.device)
        r = 0 if self.cache is not None else int(min(MAX_LISTED, max(0, spare // (32 * n))))
        self.listed = r
        sums, values, where = self._scan(n, u, r, verbose)
        self.sums = sums.cpu().numpy()
        # r < u: with room for u lists per row the whole block would have been kept
        self.tau = values[:, -1].clone() if r else torch.full(
            (n,), np.inf, dtype=ref.dtype, device=self.device)  # no lists: always open
        # the lists inverted: for each candidate, the rows that list it
        order = torch.argsort(where.reshape(-1), stable=True)
        self.list_rows = order // max(r, 1)
        self.list_values = values.reshape(-1)[order]
        counts = torch.bincount(where.reshape(-1), minlength=u)
        self.ptr = torch.cat([counts.new_zeros(1), counts.cumsum(0)])
        del values, where, order
        self.cur = torch.zeros(n, dtype=ref.dtype, device=self.device)
        self.empty = True
        self._compact(self.cur < self.tau)

    def _scan(self, n, u, r, verbose):
        """Row sums of the candidates and each pool row's ``r`` most similar candidates."""
        sums = torch.zeros(u, dtype=torch.float64, device=self.device)
        values = torch.empty(n, r, dtype=self.C[0][0].dtype, device=self.device)
        where = torch.empty(n, r, dtype=torch.long, device=self.device)
        step = max(1, CHUNK_BYTES // (3 * u * self.itemsize))
        rows = torch.arange(n, device=self.device)
        for start in tqdm(range(0, n, step), disable=not verbose, desc="GreeDi scan",
                          leave=False):
            block = self._similarity(rows[start : start + step], self.C, self.cand)
            sums += block.sum(0, dtype=torch.float64)
            if self.cache is not None:
                self.cache[:, start : start + step] = block.T
            if r:
                values[start : start + step], where[start : start + step] = block.topk(r, 1)
        return sums, values, where

    def _similarity(self, rows: torch.Tensor, columns: list, column_rows: torch.Tensor):
        """``s`` between pool rows ``rows`` and the factor map ``columns`` of pool rows
        ``column_rows``, with the exact diagonal where a row meets itself."""
        block = terms_gram(terms_rows(self.T, rows), columns).mul_(0.5).add_(0.5)
        same = (rows[:, None] == column_rows[None, :]).nonzero()
        block[same[:, 0], same[:, 1]] = self.diag.index_select(0, rows.index_select(0, same[:, 0]))
        return block.clamp_min_(0)

    def _compact(self, still_open: torch.Tensor) -> None:
        """Evaluate exactly these rows densely from now on (a superset of the open rows)."""
        self.in_open = still_open
        self.open = still_open.nonzero().reshape(-1)
        everything = len(self.open) == len(still_open)
        self.open_terms = self.T if everything else terms_rows(self.T, self.open)
        self._cur_open()

    def _cur_open(self) -> None:
        self.cur_open = self.cur.index_select(0, self.open)
        self.cur_open_sum = float(self.cur_open.sum(dtype=torch.float64))

    def gains(self, idx) -> np.ndarray:
        idx = np.asarray(idx, dtype=np.int64)
        if self.empty:  # sum_i max(s_ic, 0): the row sums
            return self.sums[idx]
        pos = torch.as_tensor(idx, device=self.device)
        out = self._listed_gains(pos)
        if len(self.open):  # sum over open rows of max(s_ic, cur_i) - cur_i
            step = max(1, CHUNK_BYTES // (3 * len(self.open) * self.itemsize))
            for start in range(0, len(pos), step):
                block = self._open_block(pos[start : start + step])
                torch.maximum(block, self.cur_open, out=block)
                out[start : start + len(block)] += (block.sum(1, dtype=torch.float64)
                                                    - self.cur_open_sum)
        return out.cpu().numpy()

    def _open_block(self, pos: torch.Tensor) -> torch.Tensor:
        """``s`` between the candidates at positions ``pos`` and the open rows."""
        if self.cache is not None:  # every row is open
            return self.cache.index_select(0, pos)
        return self._similarity(self.cand.index_select(0, pos), self.open_terms, self.open)

    def _listed_gains(self, pos: torch.Tensor) -> torch.Tensor:
        """The closed rows' share of the gains, from the lists of the candidates."""
        starts, stops = self.ptr.index_select(0, pos), self.ptr.index_select(0, pos + 1)
        lengths = stops - starts
        segment = torch.repeat_interleave(torch.arange(len(pos), device=self.device), lengths)
        offsets = torch.repeat_interleave(starts - lengths.cumsum(0) + lengths, lengths)
        entries = offsets + torch.arange(len(segment), device=self.device)
        rows = self.list_rows.index_select(0, entries)
        share = (self.list_values.index_select(0, entries) - self.cur.index_select(0, rows))
        share = share.clamp_min_(0).masked_fill_(self.in_open.index_select(0, rows), 0)
        out = torch.zeros(len(pos), dtype=torch.float64, device=self.device)
        return out.index_add_(0, segment, share.double())

    def add(self, j: int) -> None:
        if self.cache is not None:
            row = self.cache[j]
        else:
            everything = torch.arange(len(self.cur), device=self.device)
            row = self._similarity(self.cand[j : j + 1], self.T, everything)[0]
        torch.maximum(self.cur, row, out=self.cur)
        self.empty = False
        still_open = self.in_open & (self.cur < self.tau)
        if int(still_open.sum()) <= 0.75 * len(self.open):
            self._compact(still_open)
        else:
            self._cur_open()


def _pool_row_sums(terms: list) -> torch.Tensor:
    """``sum_i (0.5 + 0.5 <g_c, g_i>)`` over every row ``i`` of a factor map, for every
    row ``c``: the cosine kernel's row sums in O(n·d), in row blocks with float64
    accumulators (the ``n x n`` kernel is never built)."""
    terms = terms_normalize(terms)
    n = terms[0][0].shape[0]
    dot = torch.zeros(n, dtype=torch.float64, device=terms[0][0].device)
    for term in terms:
        if len(term) > 2:
            raise ValueError("graph cut row sums support factor maps of one or two factors.")
        block = max(1, CHUNK_BYTES // (8 * sum(f.shape[1] for f in term)))
        blocks = range(0, n, block)
        if len(term) == 1:  # sum_i x_i
            total = sum(term[0][s : s + block].sum(0, dtype=torch.float64) for s in blocks)
            for s in blocks:
                dot[s : s + block] += term[0][s : s + block].double() @ total
        else:  # M = sum_i a_i b_i^T, so that sum_i <a_c, a_i><b_c, b_i> = a_c^T M b_c
            A, B = term
            total = sum(A[s : s + block].double().T @ B[s : s + block].double() for s in blocks)
            for s in blocks:
                dot[s : s + block] += ((A[s : s + block].double() @ total)
                                       * B[s : s + block].double()).sum(1)
    return 0.5 * n + 0.5 * dot


class _PoolGraphCut:
    """Graph cut over candidates whose coverage term sums over a whole pool.

    The gain of ``c`` is ``lam * row_sums[c] - s_cc - 2 sum_(j in S) s_cj``
    (:class:`~sk_coreset.selectors.submodular.GraphCutFunction`'s convention), where
    ``row_sums`` are the candidates' kernel row sums over the pool
    (:func:`_pool_row_sums`) and ``s`` is the cosine kernel of the candidates' own
    factor map ``terms``: graph cut restricted to the candidates.
    """

    cheap_gains = True

    def __init__(self, terms: list, row_sums, lam: float, budget: int, max_memory: float,
                 verbose: bool = False):
        self.similarity = kernel_rows(terms, budget, "cosine", max_memory, verbose)
        self.n = self.similarity.n
        sums = torch.as_tensor(row_sums, dtype=torch.float64, device=self.similarity.device)
        self.g = lam * sums - self.similarity.diag().double()

    def gains(self, idx) -> np.ndarray:
        return self.g.index_select(0, _tensor(idx, self.g.device)).cpu().numpy()

    def add(self, j: int) -> None:
        row = self.similarity.rows(_tensor([j], self.similarity.device))[0]
        self.g.sub_(row.double(), alpha=2.0)


def _tensor(idx, device) -> torch.Tensor:
    return torch.as_tensor(np.asarray(idx, dtype=np.int64), device=device)


# ------------------------------------------------------------------ round 1
class _PartitionedSelection(PoolSelection):
    """A pool's selection plus what GreeDi records about it (pool-local indices)."""

    __slots__ = ("candidates", "labels", "n_parts")

    def __init__(self, indices, scores, labels, n_parts, candidates):
        super().__init__(indices, scores=scores)
        self.labels, self.n_parts, self.candidates = labels, n_parts, candidates


def _select_part(selector: BaseSelector, signals: Signals, y, budget: int, seed,
                 row_sums=None) -> np.ndarray:
    """Round 1 in one part: the wrapped selector's own pool selection, or for graph cut
    (``row_sums`` given) graph cut restricted to the part (see :class:`GreeDi`)."""
    rng = np.random.RandomState(seed)
    signals = _aligned(signals)  # unpickled on a Dask worker, it may start at any byte
    if row_sums is None:
        picked = selector._select_pool(signals, y, budget, rng)
        selector._check_pool_result(picked, signals.shape[0], budget)
        return picked.indices
    function = _PoolGraphCut(selector._pool_terms(signals, y), row_sums, selector.lam, budget,
                             selector._pool_limit())
    return greedy_maximize(function, budget, optimizer=selector.optimizer,
                           epsilon=selector.epsilon, random_state=rng)[0]


class _FromWrapped:
    """A class attribute read from an instance's wrapped selector (FacilityLocation's
    on the class and for an unsupported selector, which ``fit`` refuses)."""

    def __init__(self, name: str):
        self.name = name

    def __get__(self, obj, objtype=None):
        wrapped = getattr(obj, "selector", None)
        if not isinstance(wrapped, _SUPPORTED):
            wrapped = FacilityLocation()
        return getattr(wrapped, self.name)


# ------------------------------------------------------------------ the selector
@register_selector("GreeDi")
class GreeDi(BaseSelector):
    """Two-round partitioned selection (GreeDi) for pools too large for one kernel.

    Each pool (a class with ``balance=True``, else the whole set) is split into
    ``n_partitions`` parts, at random or by k-means. Round 1: in every part, a copy of
    ``selector`` picks ``ceil(oversample * budget)`` rows (at most the whole part) with a
    kernel of that part only; the parts run through :class:`joblib.Parallel`, so they
    fan out over processes with ``n_jobs`` or over a Dask cluster under
    ``joblib.parallel_backend("dask")``. Round 2: one greedy pass over the union of the
    local picks with the objective of the whole pool (Mirzasoleiman et al., NeurIPS
    2013; RandGreeDi with random parts, Barbosa et al., ICML 2015):

    - FacilityLocation: ``sum_i max_(j in S) s_ij`` over every row ``i`` of the pool, with
      the wrapped selector's similarity; the ``u x n`` similarities of the ``u``
      candidates are kept when they fit its ``max_memory``, else per pool row a list of
      its most similar candidates (the rows not yet covered are recomputed from the
      signal, O(n·d) per gain evaluation early on). Exact either way.
    - GraphCut: its objective with the coverage term summed over the whole pool (O(n·d)
      from the factorised signal) and the penalty over the candidates. In round 1 each
      part maximises the same objective restricted to the part (pool row sums), not
      graph cut of the part alone.
    - KCenterGreedy: farthest-first over the union (the next centre is the candidate
      farthest from the current centres); a 4-approximation of the optimal covering
      radius (Malkomes et al., NeurIPS 2015).

    Memory: the limit is the wrapped selector's ``max_memory``, else the library setting
    (:func:`sk_coreset.set_config`). ``fit`` estimates its peak up front (the partition,
    one part's rows and kernel per running job, each part planning its kernel with its
    share of the limit, then round 2) and raises a ``ValueError`` before selecting when
    it does not fit. With ``n_partitions=1`` the result is the wrapped selector's own.

    Parameters
    ----------
    selector : FacilityLocation, GraphCut or KCenterGreedy, default=None
        The method and its parameters (signal, optimizer, ``max_memory``, device...);
        ``None`` means ``FacilityLocation()``. Its own ``fraction``, ``balance`` and
        ``random_state`` are ignored (GreeDi's apply). Precomputed kernels
        (``signal="precomputed"``) and ``already_selected`` are not supported.
    fraction : float in (0, 1] or int, default=0.1
        Proportion (or count) of rows to keep.
    n_partitions : int, default=8
        Parts per pool, at most the number of samples. A pool with fewer rows gets one
        part per row; a pool with one part (or a budget of 0) is selected by the
        wrapped selector directly.
    partition : {"random", "kmeans"}, default="random"
        ``"random"``: an even split of a seeded permutation (RandGreeDi). ``"kmeans"``:
        k-means clusters (:func:`partition_rows`, seeded by the pool) of the wrapped
        selector's feature signal (``embedding`` for last-layer gradients), rows scaled
        to unit norm for the cosine kernels of FacilityLocation and GraphCut; fitted on
        at most 50,000 rows. Clusters keep neighbourhoods together but can be uneven.
    oversample : float >= 1, default=1.0
        Each part proposes ``ceil(oversample * budget)`` rows (GreeDi's ``kappa >= k``):
        more candidates for round 2, at a higher cost.
    balance : bool, default=True
        Select every class independently (two rounds per class).
    random_state : int, RandomState instance or None, default=None
        Seeds the partitions, the local selections and round 2 of every pool.
    n_jobs : int or None, default=None
        Parts selected in parallel with :class:`joblib.Parallel`; ``None`` means 1
        unless in a :func:`joblib.parallel_backend` context, ``-1`` all processors.
        Pools run one after another. The selection does not depend on ``n_jobs``.
    verbose : bool, default=False
        Progress bars over the parts and for round 2.

    Attributes
    ----------
    sample_indices_, sample_weight_, classes_, budgets_, class_rankings_, n_samples_fit_
        As in :class:`~sk_coreset.base.BaseSelector`; weights are ones.
    scores_ : ndarray of shape (n_samples,) or None
        Round-2 marginal gain of each selected row (pool objective), NaN for the
        others; ``None`` for KCenterGreedy.
    selector_ : BaseSelector
        The validated copy of ``selector`` that selects in the parts.
    partition_labels_ : ndarray of int64 of shape (n_samples,)
        The part of every row within its pool.
    partition_sizes_ : list of ndarray
        Rows per part, one array per pool.
    local_indices_ : ndarray of int64
        Sorted row indices picked in round 1 over all pools: round 2's candidates.

    Examples
    --------
    >>> import numpy as np
    >>> from sk_coreset.selectors import FacilityLocation, GreeDi
    >>> X = np.random.RandomState(0).normal(size=(400, 8)).astype(np.float32)
    >>> sel = GreeDi(FacilityLocation(), 20, n_partitions=4, balance=False,
    ...              random_state=0).fit(X)
    >>> sel.sample_indices_.shape, sel.partition_sizes_[0].tolist(), len(sel.local_indices_)
    ((20,), [100, 100, 100, 100], 80)
    """

    _nested = False  # the local budgets depend on the budget
    _required_signals = _FromWrapped("_required_signals")
    _requires_y = _FromWrapped("_requires_y")

    _parameter_constraints: dict = {
        **BaseSelector._parameter_constraints,
        "selector": [None, BaseSelector],
        "n_partitions": [Interval(numbers.Integral, 1, None, closed="left")],
        "partition": [StrOptions({"random", "kmeans"})],
        "oversample": [Interval(numbers.Real, 1, None, closed="left")],
        "verbose": ["verbose"],
    }

    def __init__(self, selector=None, fraction=0.1, *, n_partitions=8, partition="random",
                 oversample=1.0, balance=True, random_state=None, n_jobs=None, verbose=False):
        super().__init__(fraction, balance=balance, random_state=random_state, n_jobs=n_jobs)
        self.selector = selector
        self.n_partitions = n_partitions
        self.partition = partition
        self.oversample = oversample
        self.verbose = verbose

    # -------------------------------------------------------------- validation
    def _wrapped(self) -> BaseSelector:
        """A validated copy of ``selector`` that selects one whole pool (``balance=False``)."""
        selector = FacilityLocation() if self.selector is None else self.selector
        if type(selector) not in _SUPPORTED:
            raise ValueError(
                f"GreeDi supports {', '.join(c.__name__ for c in _SUPPORTED)}; got "
                f"{type(selector).__name__}. Pass one of them as selector, e.g. "
                "GreeDi(FacilityLocation(signal='embedding'))."
            )
        params = selector.get_params(deep=False)
        if params.get("signal") == "precomputed":
            raise ValueError(
                "GreeDi cannot partition a precomputed (n, n) kernel: it already is the whole "
                "pool's kernel. Pass the features (e.g. signal='embedding') or use "
                f"{type(selector).__name__} directly."
            )
        if params.get("already_selected") is not None:
            raise ValueError(
                "GreeDi does not support KCenterGreedy(already_selected=...): the first "
                "centres would have to be shared by every part. Pass already_selected=None."
            )
        wrapped = clone(selector).set_params(balance=False)
        wrapped._validate_params()
        return wrapped

    def _validate_signals(self, X, y) -> Signals:
        self.selector_ = self._wrapped()
        X = self._check_plain_array(X, reset=True)  # GreeDi's own n_features_in_
        signals = self.selector_._validate_signals(X, y)
        n = signals.shape[0]
        if self.n_partitions > n:
            raise ValueError(
                f"n_partitions={self.n_partitions} exceeds the {n} sample(s) to split; every "
                "part needs at least one sample. Lower n_partitions."
            )
        return signals

    def _check_part_memory(self, part_size: int, budget: int):
        plan = getattr(self.selector_, "_plan", None)
        if plan is not None:
            plan(part_size, min(part_size, self._local_budget(budget)))

    def _local_budget(self, budget: int) -> int:
        return math.ceil(self.oversample * budget)

    # ------------------------------------------------------------------ memory
    def _memory_limit(self) -> float:
        return self.selector_._memory_limit()  # its max_memory, else the library setting

    def _memory_limit_source(self) -> str:
        source = self.selector_._memory_limit_source()
        return f"{source} of the wrapped {type(self.selector_).__name__}"

    def _memory_workers(self, n_tasks: int) -> int:
        return 1  # pools run one after another; their parts in parallel

    def _pool_memory(self, n_rows, budget, signals) -> int:
        """The partition, the pool's row sums (graph cut), round 1 (the wrapped selector on
        a part of an even split, with the part's rows, per running job) and round 2 over
        the candidates. Each running part plans its kernel with its share of the limit."""
        wrapped = self.selector_
        parts = min(self.n_partitions, n_rows)
        if parts == 1 or budget == 0:
            wrapped._pool_memory_limit = self._pool_limit()
            return wrapped._pool_memory(n_rows, budget, signals)
        size = math.ceil(n_rows / parts)
        local = min(size, self._local_budget(budget))
        workers = min(parts, effective_n_jobs(self.n_jobs))
        rows = signal_bytes(signals, self._signals_needed(signals), size)
        wrapped._pool_memory_limit = self._pool_limit() / workers - 2 * rows
        first = workers * (wrapped._pool_memory(size, local, signals) + 2 * rows)
        second = self._merge_memory(n_rows, min(n_rows, parts * local), budget, signals)
        sums = self._row_sums_memory(n_rows, signals) if isinstance(wrapped, GraphCut) else 0
        return max(self._partition_memory(n_rows, signals), sums, first, second) + 24 * n_rows

    def _partition_memory(self, n: int, signals) -> int:
        """Random parts: a permutation. k-means parts: the rows scaled to unit norm (and
        their squares), k-means' own copy, the labels."""
        if self.partition == "random":
            return 16 * n
        name = self.selector_._signals_needed(signals)[0]
        return 4 * signal_bytes(signals, (name,), n) + 64 * n

    def _row_sums_memory(self, n: int, signals) -> int:
        """:func:`_pool_row_sums`: the pool's factors, rescaled, and float64 row blocks."""
        terms = self.selector_._terms_memory(n, signals)
        full = max(terms.owned, terms.widest)
        return terms.owned + terms.first + 3 * min(2 * full, CHUNK_BYTES) + 24 * n

    def _merge_memory(self, n: int, u: int, budget: int, signals) -> int:
        """Round 2 over ``u`` candidates (see :class:`_PoolFacilityLocation`)."""
        wrapped = self.selector_
        if not isinstance(wrapped, FacilityLocation):  # the method on the candidates' rows
            rows = signal_bytes(signals, self._signals_needed(signals), u)
            return rows + wrapped._pool_memory(u, budget, signals)
        terms = wrapped._terms_memory(n, signals)
        full = max(terms.owned, terms.widest)
        spare = wrapped._memory_limit() - 3 * CHUNK_BYTES - 2 * full  # round 2 runs alone
        if u * n * 4 <= spare:
            held = u * n * 4  # the candidates' rows of the kernel
        else:  # per pool row, a list of its most similar candidates
            held = 32 * n * int(min(MAX_LISTED, max(0, spare // (32 * n))))
        blocks = min(CHUNK_BYTES, 3 * 4 * n * u)
        return terms.owned + terms.first + full * u // n + held + blocks + 168 * u + 40 * n

    def _memory_fixes(self, plan, signals) -> list:
        more = f"more partitions (n_partitions={2 * self.n_partitions})"
        return [more, *super()._memory_fixes(plan, signals)]

    def _encode_labels(self, y, n):
        codes = super()._encode_labels(y, n)
        self.selector_.classes_ = self.classes_  # the gradient signal maps labels to columns
        return codes

    def _signals_needed(self, signals) -> tuple[str, ...]:
        return self.selector_._signals_needed(signals)

    # ----------------------------------------------------------------- fitting
    def _map_pools(self, func, signals, y, blocks, extra) -> list:
        # the parts of each pool are the parallel tasks; pools run one after another
        return [func(self._pool_signals(signals, rows), None if y is None else y[rows], *args)
                for rows, args in zip(blocks, extra)]

    def _run_pools(self, signals, y_codes, pools):
        try:
            return super()._run_pools(signals, y_codes, pools)
        finally:  # the share of the limit that the last pool's parts were given
            self.selector_.__dict__.pop("_pool_memory_limit", None)

    def _pick(self, signals, y_codes, pools, seeds, scores) -> list:
        picks = super()._pick(signals, y_codes, pools, seeds, scores)
        labels = np.zeros(len(signals), dtype=np.int64)
        sizes, local = [], []
        for pool, picked in zip(pools, picks):
            labels[pool] = picked.labels
            sizes.append(np.bincount(picked.labels, minlength=picked.n_parts))
            local.append(pool[picked.candidates])
        self.partition_labels_, self.partition_sizes_ = labels, sizes
        self.local_indices_ = np.sort(np.concatenate(local)).astype(np.int64)
        return picks

    def _select_pool(self, signals, y, budget, random_state):
        n = signals.shape[0]
        n_parts = min(self.n_partitions, n)
        if n_parts == 1 or budget == 0:
            picked = self.selector_._select_pool(signals, y, budget, random_state)
            return _PartitionedSelection(picked.indices, picked.scores, np.zeros(n, np.int64),
                                         1, picked.indices)
        self._pool_memory(n, budget, signals)  # gives this pool's parts their share
        seeds = random_state.randint(0, 2**31 - 1, size=n_parts + 2)
        labels = self._partition(signals, n_parts, int(seeds[0]))
        parts = [p for p in (np.flatnonzero(labels == k) for k in range(n_parts)) if len(p)]
        self._check_part_memory(max(len(p) for p in parts), budget)
        row_sums = None
        if isinstance(self.selector_, GraphCut):  # the coverage term of the whole pool
            row_sums = _pool_row_sums(self.selector_._pool_terms(signals, y)).cpu().numpy()
        candidates = self._local_round(signals, y, parts, budget, seeds[1:-1], row_sums)
        order, gains = self._merge_round(signals, y, candidates, budget, row_sums,
                                         np.random.RandomState(seeds[-1]))
        scores = None
        if gains is not None:
            scores = np.full(n, np.nan)
            scores[candidates[order]] = gains
        return _PartitionedSelection(candidates[order], scores, labels, n_parts, candidates)

    def _partition(self, signals, n_parts: int, seed: int) -> np.ndarray:
        if self.partition == "random":
            return partition_rows(signals.shape[0], n_parts, random_state=seed)
        name = self.selector_._signals_needed(signals)[0]  # embedding for gradients
        X = _numpy(signals[name]).reshape(signals.shape[0], -1)
        if not isinstance(self.selector_, KCenterGreedy):
            X = _unit_rows(X)
        return partition_rows(X, n_parts, method="kmeans", random_state=seed)

    def _local_round(self, signals, y, parts, budget, seeds, row_sums) -> np.ndarray:
        """Round 1: the sorted pool-local rows picked in the parts."""
        tasks = (
            delayed(_select_part)(self.selector_, _rows(signals, part),
                                  None if y is None else y[part],
                                  min(len(part), self._local_budget(budget)), int(seed),
                                  None if row_sums is None else row_sums[part])
            for part, seed in zip(parts, seeds)
        )
        picks = Parallel(n_jobs=self.n_jobs, max_nbytes=None, return_as="generator")(tasks)
        picks = tqdm(picks, total=len(parts), disable=not self.verbose, desc="GreeDi parts")
        return np.sort(np.concatenate([part[idx] for part, idx in zip(parts, picks)]))

    def _merge_round(self, signals, y, candidates, budget, row_sums, rng):
        """Round 2: order (positions in ``candidates``) and gains, or None for k-center."""
        wrapped = self.selector_
        if isinstance(wrapped, KCenterGreedy):
            picked = wrapped._select_pool(_rows(signals, candidates), None, budget, rng)
            return picked.indices, None
        if isinstance(wrapped, GraphCut):
            terms = wrapped._pool_terms(_rows(signals, candidates),
                                        None if y is None else y[candidates])
            function = _PoolGraphCut(terms, row_sums[candidates], wrapped.lam, budget,
                                     wrapped._memory_limit(), self.verbose)
        else:
            function = _PoolFacilityLocation(wrapped._pool_terms(signals, y), candidates,
                                             wrapped._memory_limit(), self.verbose)
        return greedy_maximize(function, budget, optimizer=wrapped.optimizer,
                               epsilon=wrapped.epsilon, random_state=rng, verbose=self.verbose)
