"""Data-pruning rules published after DeepCore: CCS, Moderate, D2 pruning and prototypes.

``CCS`` and ``D2Pruning`` turn the scores of any score-based selector (AUM by default) or
precomputed scores into a selection that also covers the data: stratified sampling over
the score range, or message passing on a kNN graph of the embedding. ``Moderate`` keeps
the examples of median difficulty in embedding space; ``Prototypes`` scores examples by
their distance to k-means centroids and needs no labels.
"""

from __future__ import annotations

import heapq
import numbers

import numpy as np
import torch
from sklearn.base import clone
from sklearn.cluster import KMeans, MiniBatchKMeans
from sklearn.utils._param_validation import Interval, StrOptions
from tqdm.auto import tqdm

from ..base import BaseSelector, PoolSelection, ScoreSelector, Signals, _dtype, row_elements
from ..kernels import as_tensor, resolve_device, sq_distances
from ._registry import make_selector, register_selector

__all__ = ["CCS", "D2Pruning", "Moderate", "Prototypes", "stratified_budgets"]

#: Pruning rates and hard-cutoff rates published for CCS (Zheng et al. 2023): beta = 0.3 at
#: 90 % pruning (CIFAR-10 and ImageNet), 0.2 at 80 % (ImageNet), 0 at low pruning rates.
_CCS_RATES = (0.5, 0.8, 0.9)
_CCS_BETAS = (0.0, 0.2, 0.3)

# Above this many rows per pool, Prototypes uses mini-batch k-means with minibatch="auto".
_MINIBATCH_ROWS = 50_000


def stratified_budgets(sizes, budget: int) -> np.ndarray:
    """CCS budget allocation over strata: smallest stratum first, each takes its fair share.

    Strata are visited from the smallest to the largest (ties in index order); each gets
    ``min(size, remaining // strata_left)``, so a stratum smaller than its share is taken
    whole and its leftover flows to the larger strata. The result sums to ``budget``.

    Parameters
    ----------
    sizes : array-like of int
        Number of rows in each stratum.
    budget : int
        Total rows to draw, at most ``sum(sizes)``.

    Returns
    -------
    ndarray of int64
        Rows to draw from each stratum, in the order of ``sizes``.

    Examples
    --------
    >>> stratified_budgets([1, 6, 2, 3], 8).tolist()
    [1, 3, 2, 2]
    """
    sizes = np.asarray(sizes, dtype=np.int64)
    if not 0 <= budget <= sizes.sum():
        raise ValueError(f"budget {budget} must lie in [0, {int(sizes.sum())}].")
    out = np.zeros(len(sizes), dtype=np.int64)
    remaining = int(budget)
    order = np.argsort(sizes, kind="stable")
    for visited, s in enumerate(order):
        out[s] = min(sizes[s], remaining // (len(sizes) - visited))
        remaining -= out[s]
    return out


class _PerInstance:
    """A class attribute computed from the instance's parameters (``default`` on the class)."""

    def __init__(self, func, default):
        self.func = func
        self.default = default

    def __get__(self, obj, objtype=None):
        return self.default() if obj is None else self.func(obj)


def _default_base():
    return make_selector("AUM")


class _WrappedScores(BaseSelector):
    """Base of selectors that read a wrapped score-based selector's scores.

    The scores come from ``base_selector`` (AUM when ``None``) or from a precomputed
    ``scores`` signal (or a 1-D array); either way ``base_selector.keep`` says which end
    is hard. The wrapped selector scores each pool's rows (one class with
    ``balance=True``). Subclasses list the other signals they need in ``_extra_signals``.
    """

    _extra_signals: tuple[str, ...] = ()

    def _base(self) -> ScoreSelector:
        return _default_base() if self.base_selector is None else clone(self.base_selector)

    _required_signals = _PerInstance(
        lambda self: self._extra_signals + self._base()._required_signals,
        lambda: _default_base()._required_signals,
    )
    _requires_y = _PerInstance(
        lambda self: self._base()._requires_y, lambda: _default_base()._requires_y
    )

    def _as_signals(self, X):
        if hasattr(X, "ndim") and X.ndim == 1:
            return Signals(scores=X)
        return super()._as_signals(X)

    def _signals_needed(self, signals):
        return self._extra_signals + self._base()._signals_needed(signals)

    def _hardness(self, signals, y, rng):
        """Raw scores of one pool and their hardness (higher = the end the base keeps)."""
        base = self._base()
        if "scores" in signals:
            raw = signals["scores"]
        else:
            base._validate_params()
            raw = base._score(signals, y, rng)
        raw = _numpy(raw).astype(np.float64).reshape(-1)
        return raw, (raw if base.keep == "highest" else -raw)

    def _pool_memory(self, n_rows, budget, signals) -> int:
        """The wrapped selector's scoring of the pool and a few arrays per row."""
        scoring = 0 if "scores" in signals else self._base()._pool_memory(n_rows, 0, signals)
        return scoring + 128 * n_rows


def _numpy(x) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _drop_hardest(hardness, budget, beta, rng) -> np.ndarray:
    """Pool-local rows left after removing the ``floor(beta * n)`` hardest (sorted).

    The cutoff never removes so many rows that fewer than ``budget`` remain.
    """
    n = len(hardness)
    n_cut = min(int(beta * n + 1e-9), n - budget)
    hardest_first = np.lexsort((rng.permutation(n), -hardness))
    return np.sort(hardest_first[n_cut:])


def _strata(values, n_strata) -> np.ndarray:
    """Equal-width strata over ``[min, max]``; the maximum joins the last stratum."""
    low, high = values.min(), values.max()
    if high == low:
        return np.zeros(len(values), dtype=np.int64)
    width = (high - low) / n_strata
    return np.minimum(((values - low) / width).astype(np.int64), n_strata - 1)


@register_selector("CCS", "CoverageCentric")
class CCS(_WrappedScores):
    """Coverage-centric coreset selection (Zheng et al., ICLR 2023).

    Removes the ``beta`` fraction of hardest rows, splits the remaining score range into
    ``n_strata`` equal-width strata, allocates the budget from the smallest stratum up
    (:func:`stratified_budgets`) and samples uniformly inside each stratum. Per class with
    ``balance=True``. Scores come from ``base_selector`` (any score-based selector; AUM by
    default), or pass precomputed scores as a 1-D ``X`` or ``Signals(scores=...)``; the
    end that ``base_selector`` keeps (``keep``) is the hard end.

    Parameters
    ----------
    fraction : float in (0, 1] or int, default=0.1
        Proportion (or count) of rows to keep.
    balance : bool, default=True
        Select every class independently with largest-remainder budgets.
    random_state : int, RandomState instance or None, default=None
        Seeds the sampling inside strata and tie breaks.
    n_jobs : int or None, default=None
        Pools (classes with ``balance=True``) selected in parallel with joblib, also
        on a Dask cluster under ``joblib.parallel_backend("dask")``; ``None`` means 1
        unless in a joblib backend context, ``-1`` all processors. The result does not
        depend on it.
        ``base_selector``'s own ``n_jobs`` is not used: it scores the rows inside
        each pool's task.
    base_selector : ScoreSelector or None, default=None
        Source of the difficulty scores; ``None`` means ``AUM()`` (lowest AUM = hardest).
    beta : float in [0, 1) or "auto", default="auto"
        Hard-cutoff rate: the ``floor(beta * n)`` hardest rows of each pool are never
        selected (fewer when the budget needs them). ``"auto"`` follows the published
        settings as a function of the pool's pruning rate ``r = 1 - budget / n``:
        0 for ``r <= 0.5``, 0.2 at ``r = 0.8``, 0.3 for ``r >= 0.9``, linear in between.
    n_strata : int, default=50
        Number of equal-width strata over the remaining scores.

    Attributes
    ----------
    sample_indices_, sample_weight_, classes_, budgets_, class_rankings_, n_samples_fit_
        As in :class:`~sk_coreset.base.BaseSelector`. Selected rows come hardest first.
    scores_ : ndarray of shape (n_samples,)
        The wrapped selector's scores.

    Examples
    --------
    >>> import numpy as np
    >>> from sk_coreset.selectors import make_selector
    >>> aum = np.linspace(-1.0, 3.0, 20)     # precomputed AUM scores, lowest = hardest
    >>> sel = make_selector("CCS", fraction=0.25, beta=0.2, random_state=0).fit(aum)
    >>> len(sel.sample_indices_), int(sel.sample_indices_.min()) >= 4
    (5, True)
    """

    _nested = False
    _parameter_constraints: dict = {
        **BaseSelector._parameter_constraints,
        "base_selector": [ScoreSelector, None],
        "beta": [Interval(numbers.Real, 0, 1, closed="left"), StrOptions({"auto"})],
        "n_strata": [Interval(numbers.Integral, 1, None, closed="left")],
    }

    def __init__(
        self,
        fraction=0.1,
        *,
        balance=True,
        random_state=None,
        n_jobs=None,
        base_selector=None,
        beta="auto",
        n_strata=50,
    ):
        super().__init__(fraction, balance=balance, random_state=random_state, n_jobs=n_jobs)
        self.base_selector = base_selector
        self.beta = beta
        self.n_strata = n_strata

    def _beta(self, budget, n):
        if self.beta != "auto":
            return float(self.beta)
        return float(np.interp(1.0 - budget / n, _CCS_RATES, _CCS_BETAS))

    def _select_pool(self, signals, y, budget, random_state):
        raw, hardness = self._hardness(signals, y, random_state)
        rest = _drop_hardest(hardness, budget, self._beta(budget, len(raw)), random_state)
        strata = _strata(hardness[rest], self.n_strata)
        quotas = stratified_budgets(np.bincount(strata, minlength=self.n_strata), budget)
        picked = np.concatenate(
            [
                random_state.permutation(rest[strata == s])[:q]
                for s, q in enumerate(quotas)
                if q
            ]
            or [np.empty(0, dtype=np.int64)]
        )
        tie_break = random_state.permutation(len(picked))
        return PoolSelection(picked[np.lexsort((tie_break, -hardness[picked]))], scores=raw)


@register_selector("Moderate", "ModerateDS")
class Moderate(BaseSelector):
    """Moderate coreset (Xia et al., ICLR 2023): keep the rows of median difficulty.

    The difficulty of a row is the Euclidean distance of its embedding to the
    coordinate-wise median embedding of its class (of the pool when there are no labels).
    Rows are ranked by that distance and the band of ``budget`` consecutive ranks centred
    on the median rank is kept: with ``n`` rows, ranks ``[(n - budget) // 2,
    (n - budget) // 2 + budget)``. With ``balance=False`` each row still uses its own
    class median and the ranking is over the whole set, as in the paper. O(n·d).

    The selection order grows the band outwards from the median rank, so every prefix is
    itself the centred band of that size.

    Parameters
    ----------
    fraction : float in (0, 1] or int, default=0.1
        Proportion (or count) of rows to keep.
    balance : bool, default=True
        Select every class independently with largest-remainder budgets.
    random_state : int, RandomState instance or None, default=None
        Breaks ties between equal distances.
    n_jobs : int or None, default=None
        Pools (classes with ``balance=True``) selected in parallel with joblib, also
        on a Dask cluster under ``joblib.parallel_backend("dask")``; ``None`` means 1
        unless in a joblib backend context, ``-1`` all processors. The result does not
        depend on it.

    Attributes
    ----------
    scores_ : ndarray of shape (n_samples,)
        Distance of each row to its class median.
    sample_indices_, sample_weight_, classes_, budgets_, class_rankings_, n_samples_fit_
        As in :class:`~sk_coreset.base.BaseSelector`.

    Examples
    --------
    >>> import numpy as np
    >>> from sk_coreset.selectors.pruning import Moderate
    >>> X = np.array([[0.0], [2.0], [3.0], [7.0], [8.0]])  # distances to the median: 3 1 0 4 5
    >>> sel = Moderate(fraction=3, balance=False, random_state=0).fit(X)
    >>> sorted(sel.sample_indices_.tolist())                # the distances ranked 2nd to 4th
    [0, 1, 3]
    """

    _required_signals = ("embedding",)

    def _select_pool(self, signals, y, budget, random_state):
        emb = _numpy(signals["embedding"]).astype(np.float64).reshape(signals.shape[0], -1)
        dist = _median_distances(emb, y)
        n = len(dist)
        by_distance = np.lexsort((random_state.permutation(n), dist))
        ranks = np.arange(n)
        centred = np.lexsort((ranks, np.abs(2 * ranks - (n - 1))))
        return PoolSelection(by_distance[centred[:budget]], scores=dist)

    def _pool_memory(self, n_rows, budget, signals) -> int:
        """A float64 copy of the embedding; per class, three float64 copies of its rows
        while its median and distances are computed (bounded by the pool's)."""
        return 4 * 8 * n_rows * row_elements(signals["embedding"]) + 96 * n_rows


def _median_distances(emb, y) -> np.ndarray:
    groups = np.zeros(len(emb), dtype=np.int64) if y is None else np.asarray(y)
    dist = np.empty(len(emb))
    for g in np.unique(groups):
        rows = groups == g
        dist[rows] = np.linalg.norm(emb[rows] - np.median(emb[rows], axis=0), axis=1)
    return dist


@register_selector("D2Pruning", "D2")
class D2Pruning(_WrappedScores):
    """D2 pruning (Maharana et al., ICLR 2024): difficulty and diversity on a kNN graph.

    Per pool: optionally drop the ``floor(beta * n)`` hardest rows (CCS's hard cutoff);
    turn the wrapped scores into a non-negative difficulty ``s`` (oriented so that the
    end ``base_selector`` keeps is high, then shifted so that the pool minimum is 0);
    build the graph of each row's ``n_neighbors`` nearest other rows in Euclidean
    embedding distance ``d``. Forward message passing sets
    ``s_i <- s_i + sum_{j in kNN(i)} exp(-d_ij) * s_j`` (no gamma, as the reference code).
    Reverse message passing then repeatedly selects the unselected row with the largest
    current score and lowers each of its kNN ``j`` by ``exp(-gamma * d_ij) * s_selected``.
    Ties break by a random order drawn from ``random_state``.

    Scores come from ``base_selector`` (AUM when ``None``, as in CCS; the paper used
    forgetting or AUM) or from a precomputed ``scores`` signal next to the embedding.

    Parameters
    ----------
    fraction : float in (0, 1] or int, default=0.1
        Proportion (or count) of rows to keep.
    balance : bool, default=True
        Select every class independently with largest-remainder budgets.
    random_state : int, RandomState instance or None, default=None
        Seeds tie breaks.
    n_jobs : int or None, default=None
        Pools (classes with ``balance=True``) selected in parallel with joblib, also
        on a Dask cluster under ``joblib.parallel_backend("dask")``; ``None`` means 1
        unless in a joblib backend context, ``-1`` all processors. The result does not
        depend on it.
        ``base_selector``'s own ``n_jobs`` is not used: it scores the rows inside
        each pool's task.
    base_selector : ScoreSelector or None, default=None
        Source of the difficulty scores; ``None`` means ``AUM()``.
    n_neighbors : int, default=5
        Neighbours per row in the kNN graph (fewer in pools that have fewer other rows).
    gamma : float, default=0.1
        Decay of the reverse message passing (0.1 on CIFAR in the paper).
    beta : float in [0, 1), default=0.0
        Hard-cutoff rate applied before the graph is built (the reference's ``mis-ratio``).
    device : str or torch.device, default="auto"
        Where the kNN search runs; ``"auto"`` uses CUDA when available.
    verbose : bool, default=False
        Show progress bars for the kNN search and the selection.

    Attributes
    ----------
    scores_ : ndarray of shape (n_samples,)
        The wrapped selector's scores (before message passing).
    sample_indices_, sample_weight_, classes_, budgets_, class_rankings_, n_samples_fit_
        As in :class:`~sk_coreset.base.BaseSelector`; rows in selection order.

    Examples
    --------
    >>> import numpy as np
    >>> from sk_coreset import Signals
    >>> from sk_coreset.selectors import make_selector
    >>> rng = np.random.RandomState(0)
    >>> S = Signals(embedding=rng.normal(size=(30, 4)), scores=rng.normal(size=30))
    >>> sel = make_selector("D2", fraction=0.2, balance=False, random_state=0).fit(S)
    >>> len(sel.sample_indices_)
    6
    """

    _extra_signals = ("embedding",)
    _nested = _PerInstance(lambda self: self.beta == 0, lambda: True)
    _parameter_constraints: dict = {
        **BaseSelector._parameter_constraints,
        "base_selector": [ScoreSelector, None],
        "n_neighbors": [Interval(numbers.Integral, 1, None, closed="left")],
        "gamma": [Interval(numbers.Real, 0, None, closed="left")],
        "beta": [Interval(numbers.Real, 0, 1, closed="left")],
        "device": [str, torch.device],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        fraction=0.1,
        *,
        balance=True,
        random_state=None,
        n_jobs=None,
        base_selector=None,
        n_neighbors=5,
        gamma=0.1,
        beta=0.0,
        device="auto",
        verbose=False,
    ):
        super().__init__(fraction, balance=balance, random_state=random_state, n_jobs=n_jobs)
        self.base_selector = base_selector
        self.n_neighbors = n_neighbors
        self.gamma = gamma
        self.beta = beta
        self.device = device
        self.verbose = verbose

    def _select_pool(self, signals, y, budget, random_state):
        raw, hardness = self._hardness(signals, y, random_state)
        rest = _drop_hardest(hardness, budget, self.beta, random_state)
        if budget == 0:
            return PoolSelection(np.empty(0, dtype=np.int64), scores=raw)
        difficulty = hardness[rest] - hardness[rest].min()
        emb = signals["embedding"][rest]
        dist, nbrs = _knn_graph(emb, self.n_neighbors, self.device, self.verbose)
        density = difficulty + (np.exp(-dist) * difficulty[nbrs]).sum(axis=1)
        picked = _reverse_message_passing(
            density, np.exp(-self.gamma * dist), nbrs, budget, random_state, self.verbose
        )
        return PoolSelection(rest[picked], scores=raw)

    def _pool_memory(self, n_rows, budget, signals) -> int:
        """The scoring, then the kNN graph (see :func:`_knn_graph_memory`) and the heap of
        the reverse message passing."""
        k = max(0, min(self.n_neighbors, n_rows - 1))
        graph = _knn_graph_memory(signals["embedding"], n_rows, k)
        heap = _HEAP_ENTRY_BYTES * (n_rows + budget * k)
        return max(super()._pool_memory(n_rows, budget, signals), graph + heap + 64 * n_rows * k)


#: bytes of one entry of a heap of Python tuples (a float, an int, an index)
_HEAP_ENTRY_BYTES = 200


def _knn_graph_memory(embedding, n: int, k: int) -> int:
    """Memory of :func:`_knn_graph` on ``n`` rows: the rows (indexed copy, float64 and
    float32 copies), three (chunk x n) float32 blocks of squared distances, and the
    float64 differences of each chunk's rows to their ``k`` neighbours."""
    dim = row_elements(embedding)
    rows = min(n, max(1, 2**25 // max(n, 1)))
    copies = n * dim * (_dtype(embedding).itemsize + 8 + 4)
    return copies + 3 * 4 * rows * n + 2 * 8 * rows * k * dim + 4 * n


def _knn_graph(embedding, n_neighbors: int, device="auto", verbose: bool = False):
    """Euclidean k nearest neighbours of every row among the other rows, chunked in torch.

    Returns ``(distances, indices)``, both ``(n, k)`` with ``k = min(n_neighbors, n - 1)``;
    float64/int64 numpy arrays. The search runs in float32 (O(chunk · n) memory, never
    n × n); the distances of the neighbours found are then recomputed in float64.
    """
    dev = resolve_device(device)
    x = as_tensor(embedding, dev, torch.float64).reshape(len(embedding), -1)
    x32 = x.float()
    n, k = x.shape[0], min(n_neighbors, x.shape[0] - 1)
    sq = (x32 * x32).sum(1)
    chunk = max(1, 2**25 // max(n, 1))
    dists, idx = [], []
    for start in tqdm(range(0, n, chunk), disable=not verbose, desc="kNN graph"):
        stop = min(start + chunk, n)
        block = sq_distances(x32[start:stop], x32, sq[start:stop], sq)
        rows = torch.arange(stop - start, device=dev)
        block[rows, rows + start] = float("inf")
        j = torch.topk(block, k, dim=1, largest=False).indices
        dists.append((x[start:stop, None, :] - x[j]).norm(dim=-1))
        idx.append(j)
    return torch.cat(dists).cpu().numpy(), torch.cat(idx).cpu().numpy().astype(np.int64)


def _reverse_message_passing(density, decay, nbrs, budget, rng, verbose) -> np.ndarray:
    """Greedy max-score selection that lowers each pick's kNN by ``decay * score``.

    A heap holds one entry per score update; stale entries are skipped when popped.
    """
    density = density.copy()
    priority = rng.permutation(len(density))
    heap = [(-density[i], priority[i], i) for i in range(len(density))]
    heapq.heapify(heap)
    taken = np.zeros(len(density), dtype=bool)
    picked = []
    with tqdm(total=budget, disable=not verbose, desc="D2 selection") as bar:
        while len(picked) < budget:
            neg, _, i = heapq.heappop(heap)
            if taken[i] or -neg != density[i]:
                continue
            taken[i] = True
            picked.append(i)
            bar.update()
            density[nbrs[i]] -= decay[i] * density[i]
            for j in nbrs[i]:
                if not taken[j]:
                    heapq.heappush(heap, (-density[j], priority[j], j))
    return np.asarray(picked, dtype=np.int64)


@register_selector("Prototypes", "SSLPrototypes", "Prototypicality")
class Prototypes(BaseSelector):
    """Prototypicality pruning (Sorscher et al., NeurIPS 2022), label-free.

    Rows are L2-normalised and clustered with k-means (per class with ``balance=True``);
    the score of a row is its cosine distance ``1 - cos(x_i, c)`` to the centroid ``c``
    of the cluster k-means assigned it to. Far rows are hard, near ones prototypical.
    k-means runs with ``random_state`` itself when it is an int (otherwise with a seed
    drawn from it). Works with ``y=None``.

    Parameters
    ----------
    fraction : float in (0, 1] or int, default=0.1
        Proportion (or count) of rows to keep.
    balance : bool, default=True
        Cluster and select every class independently (needs labels; without labels the
        whole set is one pool).
    random_state : int, RandomState instance or None, default=None
        Seeds k-means and tie breaks.
    n_jobs : int or None, default=None
        Pools (classes with ``balance=True``) selected in parallel with joblib, also
        on a Dask cluster under ``joblib.parallel_backend("dask")``; ``None`` means 1
        unless in a joblib backend context, ``-1`` all processors. The result does not
        depend on it.
    n_clusters : int, default=10
        Clusters per pool (fewer when the pool has fewer distinct rows).
    keep : {"auto", "hard", "easy"}, default="auto"
        Keep the farthest (``"hard"``) or the nearest (``"easy"``) rows. ``"auto"`` keeps
        hard rows when a pool keeps at least half its rows and easy ones otherwise, the
        paper's advice (hard when data is plentiful, easy when little can be kept).
    minibatch : bool or "auto", default="auto"
        Use :class:`~sklearn.cluster.MiniBatchKMeans` instead of
        :class:`~sklearn.cluster.KMeans`; ``"auto"`` does so above 50,000 rows per pool.

    Attributes
    ----------
    scores_ : ndarray of shape (n_samples,)
        Cosine distance of each row to its centroid.
    sample_indices_, sample_weight_, classes_, budgets_, class_rankings_, n_samples_fit_
        As in :class:`~sk_coreset.base.BaseSelector`.

    Examples
    --------
    >>> import numpy as np
    >>> from sk_coreset.selectors.pruning import Prototypes
    >>> X = np.random.RandomState(0).normal(size=(40, 8))
    >>> sel = Prototypes(fraction=0.25, n_clusters=3, keep="easy", random_state=0).fit(X)
    >>> len(sel.sample_indices_), sel.scores_.shape
    (10, (40,))
    """

    _required_signals = ("embedding",)
    _nested = _PerInstance(lambda self: self.keep != "auto", lambda: False)
    _parameter_constraints: dict = {
        **BaseSelector._parameter_constraints,
        "n_clusters": [Interval(numbers.Integral, 1, None, closed="left")],
        "keep": [StrOptions({"auto", "hard", "easy"})],
        "minibatch": ["boolean", StrOptions({"auto"})],
    }

    def __init__(
        self,
        fraction=0.1,
        *,
        balance=True,
        random_state=None,
        n_jobs=None,
        n_clusters=10,
        keep="auto",
        minibatch="auto",
    ):
        super().__init__(fraction, balance=balance, random_state=random_state, n_jobs=n_jobs)
        self.n_clusters = n_clusters
        self.keep = keep
        self.minibatch = minibatch

    def _select_pool(self, signals, y, budget, random_state):
        n = signals.shape[0]
        emb = _unit_rows(_numpy(signals["embedding"]).astype(np.float64).reshape(n, -1))
        k = min(self.n_clusters, len(np.unique(emb, axis=0)))
        seed = (
            self.random_state
            if isinstance(self.random_state, numbers.Integral)
            else random_state.randint(np.iinfo(np.int32).max)
        )
        minibatch = n > _MINIBATCH_ROWS if self.minibatch == "auto" else self.minibatch
        km = (MiniBatchKMeans if minibatch else KMeans)(n_clusters=k, random_state=seed)
        labels = km.fit_predict(emb)
        centroids = _unit_rows(km.cluster_centers_)[labels]
        scores = 1.0 - np.einsum("ij,ij->i", emb, centroids)
        hard = self.keep == "hard" or (self.keep == "auto" and 2 * budget >= n)
        order = np.lexsort((random_state.permutation(n), -scores if hard else scores))
        return PoolSelection(order[:budget], scores=scores)

    def _pool_memory(self, n_rows, budget, signals) -> int:
        """Three float64 copies of the embedding at once (normalising it; then the
        normalised rows with the two copies of ``np.unique``, k-means' own copy, or the
        centroid of every row) and k-means' per-row arrays."""
        return 3 * 8 * n_rows * row_elements(signals["embedding"]) + 256 * n_rows


def _unit_rows(x) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
