"""Gradient-matching selectors: Craig, GradMatch and Glister.

All three read the proxy's last-layer gradients through their closed-form factorisation
(``<g_i, g_j> = <e_i, e_j> (1 + <h_i, h_j>)``, see :mod:`sk_coreset.kernels`), so no
``C * (d + 1)``-wide vector is ever built; any feature matrix may be given instead.

- :class:`Craig` (Mirzasoleiman et al. 2020): facility location on negated gradient
  distances, weighted by cluster sizes.
- :class:`GradMatch` (Killamsetty et al. 2021a): orthogonal matching pursuit toward the
  pool's mean gradient with an incremental Cholesky factor, then non-negative weights.
- :class:`Glister` (Killamsetty et al. 2021b): greedy on the first-order reduction of a
  validation loss, with a one-step Taylor update of the validation logits after each pick.
"""

from __future__ import annotations

import math
import numbers

import numpy as np
import scipy.linalg
import scipy.optimize
import torch
from sklearn.utils._param_validation import Interval, StrOptions
from tqdm.auto import tqdm

from ..base import PoolSelection, Signals, _check_finite, _is_mapping, _rows, signal_bytes
from ..kernels import (
    CHUNK_BYTES,
    as_tensor,
    knn_kernel,
    one_thread,
    pairwise_kernel,
    terms_gram,
    terms_rows,
    terms_sq_norms,
)
from ._registry import register_selector
from .submodular import (
    _COMMON_DOC,
    _DEVICE_DOC,
    _GREEDY_DOC,
    _MEMORY_DOC,
    FacilityLocationFunction,
    _ByInstance,
    _DenseOrSparse,
    _KernelSelector,
    _knn_matrix,
    _row_access,
    greedy_maximize,
    kernel_rows,
)

__all__ = ["Craig", "GradMatch", "Glister", "grad_match"]

# Shift that keeps Craig's similarity positive: s_ij = max_dist - d_ij + 1e-3.
_CRAIG_SHIFT = 1e-3


# ------------------------------------------------------------------ Craig
@register_selector("Craig", "CRAIG")
class Craig(_DenseOrSparse):
    __doc__ = f"""CRAIG: facility location on gradient distances, weighted by cluster size.

    Maximises ``sum_i max_(j in S) s_ij`` with ``s_ij = max_dist - ||g_i - g_j|| + 1e-3``
    inside each pool (``max_dist`` the pool's largest distance). Every row is then
    assigned to its most similar selected row (the earliest pick on ties) and a selected
    row's weight is the size of its cluster, itself included, so the weights of a pool
    sum to its size (the DeepCore reference adds 1 to each). A pool too large for a
    dense kernel (see ``max_memory``) gets a kNN-sparse one; the weights always come
    from the exact assignment, computed in chunks.

    Parameters
    ----------{_COMMON_DOC}{_GREEDY_DOC}
    kernel : {{"auto", "dense", "knn"}}, default="auto"
        ``"auto"`` is dense when the estimate fits the memory limit and the kernel takes
        at most 4 GiB, else kNN-sparse.
    n_neighbors : int, default=32
        Neighbours per row of the kNN-sparse kernel.{_MEMORY_DOC}{_DEVICE_DOC}

    Attributes
    ----------
    sample_indices_, classes_, budgets_, class_rankings_
        As in :class:`~sk_coreset.base.BaseSelector`.
    sample_weight_ : ndarray of float64
        Cluster size of each selected row.
    scores_ : ndarray of shape (n_samples,)
        Marginal gain of each selected row when it was picked; NaN for the others.

    Examples
    --------
    >>> import numpy as np
    >>> from sk_coreset.selectors import make_selector
    >>> X = np.random.RandomState(0).normal(size=(60, 5))
    >>> sel = make_selector("Craig", fraction=0.1, balance=False).fit(X)
    >>> float(sel.sample_weight_.sum())
    60.0
    """

    _returns_weights = True
    _nested = False  # the ranking is nested, but the weights depend on the budget

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
        if self.signal == "precomputed":
            K = self._pool_kernel(signals)
            order, gains = self._greedy(FacilityLocationFunction(K), budget, random_state)
            sizes = _dense_cluster_sizes(K, order)
        else:
            terms = self._pool_terms(signals, y)
            if self._kernel_choice(n, budget, signals) == "dense":
                K = pairwise_kernel(terms, "euclidean", verbose=self.verbose)
                max_dist = float(K.max())
                K.neg_().add_(max_dist + _CRAIG_SHIFT)
                order, gains = self._greedy(FacilityLocationFunction(K), budget, random_state)
                sizes = _dense_cluster_sizes(K, order)
            else:
                idx, dist, max_dist = knn_kernel(terms, self.n_neighbors, "euclidean",
                                                 verbose=self.verbose)
                sim = _knn_matrix(idx, (max_dist + _CRAIG_SHIFT) - dist, n)
                order, gains = self._greedy(FacilityLocationFunction(sim), budget, random_state)
                sizes = _nearest_cluster_sizes(terms, order)
        return PoolSelection(order, weights=sizes, scores=self._scores(n, order, gains))

    def _kernel_memory(self, n, budget, signals, kind):
        # the factors live until the cluster sizes are known
        if kind == "precomputed":
            kernel, item = self._precomputed_memory(n, signals)
            return kernel + max(self._dense_greedy_memory(n, item),
                                _cluster_memory(n, budget, item))
        owned = self._terms_memory(n, signals).owned
        if kind == "dense":
            after = max(self._dense_greedy_memory(n), _cluster_memory(n, budget, 4))
            return max(self._dense_memory(n, signals, "euclidean"), owned + 4 * n * n + after)
        m = min(self.n_neighbors, n)
        # nearest centres: the centres' factors and blocks of (rows x budget) products
        nearest = owned * budget // max(n, 1) + min(8 * n * budget, CHUNK_BYTES) + 8 * n
        return max(self._knn_memory(n, signals, "euclidean") + 4 * n * m,
                   owned + max(self._sparse_greedy_memory(n, m), nearest))


def _cluster_memory(n: int, budget: int, itemsize: int) -> int:
    """Memory of :func:`_dense_cluster_sizes`: blocks of the picks' kernel rows."""
    return min(budget * n * itemsize, CHUNK_BYTES) + 16 * n


def _dense_cluster_sizes(K: torch.Tensor, order: np.ndarray) -> np.ndarray:
    """Cluster sizes when every row joins its most similar selected row (first on ties)."""
    if len(order) == 0:
        return np.zeros(0)
    picked = torch.as_tensor(order, device=K.device)
    n = K.shape[1]
    owner = torch.empty(n, dtype=torch.long, device=K.device)
    step = max(1, CHUNK_BYTES // (len(order) * K.element_size()))
    for c0 in range(0, n, step):
        owner[c0 : c0 + step] = K[:, c0 : c0 + step].index_select(0, picked).argmax(0)
    return np.bincount(owner.cpu().numpy(), minlength=len(order)).astype(np.float64)


def _nearest_cluster_sizes(terms: list, order: np.ndarray) -> np.ndarray:
    """Cluster sizes under the exact nearest selected row (Euclidean), in row chunks."""
    if len(order) == 0:
        return np.zeros(0)
    centres = terms_rows(terms, order)
    sq_centres = terms_sq_norms(centres)
    n = terms[0][0].shape[0]
    owner = np.empty(n, dtype=np.int64)
    step = max(1, CHUNK_BYTES // (len(order) * 4 * 2))
    for i0 in range(0, n, step):
        rows = terms_rows(terms, slice(i0, i0 + step))
        # ||g_i - c||^2 - ||g_i||^2 = ||c||^2 - 2 <g_i, c>: same argmin over centres
        d = terms_gram(rows, centres).mul_(-2).add_(sq_centres[None, :])
        owner[i0 : i0 + step] = d.argmin(1).cpu().numpy()
    return np.bincount(owner, minlength=len(order)).astype(np.float64)


# ------------------------------------------------------------------ GradMatch
class _Pursuit:
    """Orthogonal matching pursuit on a Gram matrix accessed by rows, with ridge ``lam``.

    Targets the mean vector: ``c_i = <g_i, mean g>``. For the selected set S the ridge
    weights solve ``(G_SS + lam I) x = c_S`` through a Cholesky factor grown by one row
    per pick; the residual's correlations are ``c - G_:S x``.
    """

    def __init__(self, gram, budget: int, lam: float):
        # the ridge is relative to the mean squared norm, so weights do not depend on the
        # gradients' overall scale (well-fit pools have tiny gradients)
        scale = float(gram.diag().double().mean())
        self.gram, self.lam = gram, lam * scale if scale > 0 else lam
        n = gram.n
        self.c_np = gram.row_sums().cpu().numpy() / n
        self.c = torch.as_tensor(self.c_np, dtype=gram.dtype, device=gram.device)
        self.rows = torch.empty(budget, n, dtype=gram.dtype, device=gram.device)  # G_S:
        self.L = np.zeros((budget, budget))
        self.selected: list[int] = []
        self.available = torch.ones(n, dtype=torch.bool, device=gram.device)
        self.corr = self.c.clone()

    def pick(self) -> bool:
        """Add the available row most correlated with the residual; False if none is left."""
        if not bool(self.available.any()):
            return False
        j = int(torch.argmax(self.corr.masked_fill(~self.available, -np.inf)))
        t = len(self.selected)
        row = self.gram.rows(torch.tensor([j], device=self.c.device))[0]
        self.rows[t] = row
        g = self.rows[:t, j].double().cpu().numpy()
        l = _lower_solve(self.L[:t, :t], g) if t else g
        self.L[t, :t] = l
        self.L[t, t] = np.sqrt(max(float(row[j]) + self.lam - l @ l, self.lam))
        self.selected.append(j)
        self.available[j] = False
        self._update_residual()
        return True

    def _update_residual(self):
        t = len(self.selected)
        x = scipy.linalg.cho_solve((self.L[:t, :t], True), self.c_np[self.selected],
                                   check_finite=False)
        x = torch.as_tensor(x, dtype=self.c.dtype, device=self.c.device)
        self.corr = torch.addmv(self.c, self.rows[:t].T, x, alpha=-1.0)

    def can_improve(self) -> bool:
        """Whether a remaining row is positively correlated with the residual."""
        return bool((self.corr[self.available] > 0).any())

    def best_available(self, count: int) -> list[int]:
        """Up to ``count`` remaining rows, most correlated with the residual first."""
        rows = torch.nonzero(self.available).flatten().cpu().numpy()
        corr = self.corr[self.available].double().cpu().numpy()
        return rows[np.lexsort((rows, -corr))][: max(count, 0)].tolist()

    def nonnegative_weights(self) -> np.ndarray:
        """argmin_{w >= 0} ||sum_S w_j g_j - mean g||^2 + lam ||w||^2, via the Cholesky factor."""
        t = len(self.selected)
        L = self.L[:t, :t]
        z = _lower_solve(L, self.c_np[self.selected])
        return scipy.optimize.nnls(L.T, z)[0]

    def drop(self, keep: np.ndarray):
        """Keep only the picks at positions ``keep``; dropped rows never come back."""
        self.selected = [self.selected[i] for i in keep]
        t = len(keep)
        self.rows[:t] = self.rows[torch.as_tensor(keep, dtype=torch.long, device=self.rows.device)]
        G = self.rows[:t][:, torch.as_tensor(self.selected, dtype=torch.long, device=self.rows.device)]
        G = G.double().cpu().numpy()
        self.L[:] = 0
        if t:
            self.L[:t, :t] = np.linalg.cholesky(0.5 * (G + G.T) + self.lam * np.eye(t))
            self._update_residual()
        else:
            self.corr = self.c.clone()


def _lower_solve(L: np.ndarray, b: np.ndarray) -> np.ndarray:
    return scipy.linalg.solve_triangular(L, b, lower=True, check_finite=False)


def grad_match(gram, budget: int, lam: float = 0.01, verbose: bool = False):
    """GradMatch on one pool: ``(order, weights)``.

    ``gram`` is a (n, n) Gram matrix (array or tensor), a factor map, or a row accessor
    from :func:`~sk_coreset.selectors.submodular.kernel_rows` with ``metric="inner"``.
    Orthogonal matching pursuit toward the mean vector (``c_i = <g_i, mean g>``) for
    ``budget`` picks, then non-negative ridge weights; the ridge is ``lam`` times the
    pool's mean squared norm ``mean_i <g_i, g_i>``, so the weights do not depend on the
    overall scale of the gradients. Picks that get a zero weight are
    dropped (never picked again) and the pursuit goes on while some remaining row is
    positively correlated with the residual (only such a row can earn a positive
    weight). If the budget is still not full, the dropped picks and then the remaining
    rows most correlated with the residual fill it with weight 0, at the end of the
    order. Weights are scaled by the pool size, so that ``sum_j w_j g_j`` approximates
    the pool's gradient *sum*; a pool where no row earns a positive weight (e.g. all
    its gradients are zero) gets the uniform weight ``n / budget`` instead.
    """
    gram = kernel_rows(gram, 0, "inner") if not hasattr(gram, "rows") else gram
    n = gram.n
    pursuit = _Pursuit(gram, budget, lam)
    dropped: list[int] = []
    steps = tqdm(total=budget, disable=not verbose, desc="GradMatch", leave=False)
    while len(pursuit.selected) < budget and pursuit.pick():
        steps.n = len(pursuit.selected)
        steps.refresh()
        if len(pursuit.selected) < budget:
            continue
        weights = pursuit.nonnegative_weights()
        if np.all(weights > 0):
            break
        dropped += [pursuit.selected[i] for i in np.flatnonzero(weights <= 0)]
        pursuit.drop(np.flatnonzero(weights > 0))
        if not pursuit.can_improve():
            break
    steps.close()
    weights = pursuit.nonnegative_weights() if pursuit.selected else np.zeros(0)
    keep = weights > 0
    order = [j for j, k in zip(pursuit.selected, keep) if k]
    order += [j for j, k in zip(pursuit.selected, keep) if not k] + dropped
    order += pursuit.best_available(budget - len(order))
    if not keep.any():
        return np.asarray(order[:budget], dtype=np.int64), np.full(budget, n / max(budget, 1))
    weights = np.concatenate([weights[keep], np.zeros(len(order) - int(keep.sum()))])
    return np.asarray(order[:budget], dtype=np.int64), n * weights[:budget]


@register_selector("GradMatch", "GRAD-MATCH")
class GradMatch(_KernelSelector):
    __doc__ = f"""GradMatch: a weighted subset whose gradient sum matches the pool's.

    Orthogonal matching pursuit toward the pool's mean gradient, with ridge ``lam``:
    each step adds the row most correlated with the residual (signed, as in the
    reference) and refits the ridge weights through an incremental Cholesky factor
    (O(k^2) per step, not a fresh k x k solve). Final weights are the non-negative ridge
    least squares solution. Picks that NNLS zeroes are dropped and the pursuit goes on,
    so the budget is filled with positively weighted rows whenever the pool allows
    (the reference returns fewer rows than asked); otherwise rows with weight 0 fill
    the budget (see :func:`grad_match`). Weights are scaled by the pool size
    (``sum_j w_j g_j`` approximates the pool's gradient sum, so weights are comparable
    across classes); a pool whose gradients leave nothing to match (all zero) gets
    uniform weights.
    Memory: the Gram rows of the selected rows, ``budget x n`` floats per pool.

    Parameters
    ----------{_COMMON_DOC}
        With ``"precomputed"``, ``X`` is the Gram matrix of the vectors to match.
    lam : float, default=0.01
        Ridge regularisation of the weights, relative to the pool's mean squared
        gradient norm, so that it means the same for well-fit pools (tiny gradients) and
        badly fit ones (the reference accepts an absolute lambda but ignores it).{_MEMORY_DOC}
        The Gram rows of the picks (``budget x n`` floats) are always kept; the dense
        Gram matrix too when it fits and the budget is at least 5% of the pool (else
        each pick's row is computed on its own).{_DEVICE_DOC}

    Attributes
    ----------
    sample_indices_, classes_, budgets_, class_rankings_
        As in :class:`~sk_coreset.base.BaseSelector`; ``scores_`` is ``None``.
    sample_weight_ : ndarray of float64
        Non-negative weight of each selected row.

    Examples
    --------
    >>> import numpy as np
    >>> from sk_coreset.selectors import make_selector
    >>> X = np.random.RandomState(0).normal(size=(60, 5))
    >>> sel = make_selector("GradMatch", fraction=0.1, balance=False).fit(X)
    >>> sel.sample_indices_.shape, bool((sel.sample_weight_ >= 0).all())
    ((6,), True)
    """

    _returns_weights = True
    _nested = False
    _parameter_constraints: dict = {
        **_KernelSelector._parameter_constraints,
        "lam": [Interval(numbers.Real, 0, None, closed="neither")],
        "max_memory": [None, Interval(numbers.Real, 0, None, closed="neither"), str],
    }

    def __init__(self, fraction=0.1, *, balance=True, random_state=None, n_jobs=None,
                 signal="gradient", lam=0.01, max_memory=None, device=None,
                 verbose=False):
        super().__init__(fraction, balance=balance, random_state=random_state, n_jobs=n_jobs)
        self.signal = signal
        self.lam = lam
        self.max_memory = max_memory
        self.device = device
        self.verbose = verbose

    def _select_pool(self, signals, y, budget, random_state):
        dense = self._kernel_choice(signals.shape[0], budget, signals) == "dense"
        gram = _row_access(self._pool_similarity(signals, y), dense, "inner", self.verbose)
        with one_thread():
            order, weights = grad_match(gram, budget, self.lam, self.verbose)
        return PoolSelection(order, weights=weights)

    def _kernel_memory(self, n, budget, signals, kind):
        if kind == "precomputed":
            kernel, item = self._precomputed_memory(n, signals)
            return kernel + _pursuit_memory(n, budget, item)
        if kind == "dense":
            return max(self._dense_memory(n, signals, "inner"),
                       4 * n * n + _pursuit_memory(n, budget, 4))
        return self._rows_memory(n, signals, "inner") + _pursuit_memory(n, budget, 4)


def _pursuit_memory(n: int, budget: int, itemsize: int) -> int:
    """Memory of :func:`grad_match`: the picks' Gram rows (and a reordered copy when
    picks are dropped), the Cholesky factor and the dense temporaries of NNLS and of
    refactoring after a drop (``budget x budget`` float64)."""
    return 2 * budget * n * itemsize + 7 * 8 * budget * budget + 64 * n


# ------------------------------------------------------------------ Glister
class _GlisterFunction:
    """Glister's greedy gains ``<g_i, mean validation gradient>`` with Taylor updates.

    For each proxy initialisation: training factors ``(E, H1)``, validation errors and
    logits. After the picks S the last layer moves by ``-eta * mean_(s in S) g_s``, so
    the validation logits move by ``-eta * (1/|S|) sum_s (e_s h1_s^T) h1_v``; the
    validation errors are recomputed from the new logits.

    Gains of all rows go through the mean validation gradient ``V = (1/m) sum_v e_v
    h1_v^T`` (a C x (d+1) matrix: two passes over the embeddings per step). With the
    cross Gram matrix ``G = H1 H1_val^T`` (``cross``, n x m) the gains of a few rows cost
    ``(1/m) sum_v <e_i, e_v> G_iv`` instead, and the logit update reads a row of ``G``:
    the stochastic greedy then never passes over the embeddings. With ``eta=0`` (or a
    feature signal, which has no logits) the gains are static.
    """

    def __init__(self, train_terms: list, val_terms: list, val_proba: list | None, eta: float,
                 cross: list | None = None):
        self.train, self.val, self.eta, self.cross = train_terms, list(val_terms), eta, cross
        self.n, self.m = train_terms[0][0].shape[0], val_terms[0][0].shape[0]
        self.logits = None
        if val_proba is not None:
            self.logits = [p.clamp_min(1e-12).log() for p in val_proba]
            self.onehot = [(p - e).round() for p, (e, _) in zip(val_proba, val_terms)]
            self.shift = [torch.zeros_like(p) for p in val_proba]
            self.errors = [torch.empty_like(p) for p in val_proba]
        self.count = 0
        self._all = None  # gains of every row, for the current state

    def all_gains(self) -> torch.Tensor:
        if self._all is None:
            out = 0
            for train, val in zip(self.train, self.val):
                if len(train) == 1:  # a feature signal: <x_i, mean x_val>
                    out = out + train[0] @ (val[0].sum(0) / self.m)
                else:
                    (E, H), (Ev, Hv) = train, val
                    V = Ev.T @ Hv / self.m  # the mean validation gradient, C x (d+1)
                    out = out + ((H @ V.T) * E).sum(1)
            self._all = out
        return self._all

    def gains(self, idx) -> np.ndarray:
        idx = np.asarray(idx, dtype=np.int64)
        width = self.train[0][-1].shape[1]
        if self.cross is None or len(idx) * self.m >= (self.n + self.m) * width:
            return self.all_gains().double().cpu().numpy()[idx]
        rows = torch.as_tensor(idx, device=self.cross[0].device)
        out = 0
        for (E, _), (Ev, _), G in zip(self.train, self.val, self.cross):
            out = out + ((E.index_select(0, rows) @ Ev.T) * G.index_select(0, rows)).sum(1)
        return (out / self.m).double().cpu().numpy()

    def add(self, j: int) -> None:
        if self.logits is None or self.eta == 0:
            return
        self.count += 1
        for r, ((E, H), (_, Hv)) in enumerate(zip(self.train, self.val)):
            moved = self.cross[r][j] if self.cross is not None else Hv @ H[j]
            self.shift[r].addr_(moved, E[j])
            self.val[r] = (self._updated_errors(r), Hv)
        self._all = None

    def _updated_errors(self, r: int) -> torch.Tensor:
        """``softmax(logits - eta / |S| * shift) - onehot``, written in place into one
        buffer: a fresh m x C tensor per step costs a page fault per 4 KiB on Dask
        workers, whose malloc settings hand large blocks back to the system at once."""
        out = torch.add(self.logits[r], self.shift[r], alpha=-self.eta / self.count,
                        out=self.errors[r])
        out.sub_(out.amax(1, keepdim=True)).exp_()
        return out.div_(out.sum(1, keepdim=True)).sub_(self.onehot[r])


@register_selector("Glister", "GLISTER")
class Glister(_KernelSelector):
    __doc__ = f"""GLISTER: greedy on the first-order drop of a validation loss, with updates.

    The gain of a row is ``<g_i, mean validation gradient>`` (a step on ``g_i`` lowers
    the validation loss by about ``eta`` times it). After each pick the last layer is
    moved by a step of size ``eta`` along the mean gradient of the selection, the
    validation logits are updated in closed form (one-step Taylor), and the validation
    gradients and gains are recomputed. The DeepCore reference misspells the update's
    keyword, so its update never runs and it reduces to ``static=True``. Gains are not
    submodular after updates, hence naive or stochastic greedy (no lazy). The
    validation pool defaults to the training pool (of the same class with
    ``balance=True``); pass ``X_val, y_val`` to ``fit`` for another one.

    Parameters
    ----------{_COMMON_DOC}
        ``"precomputed"`` is not supported. With a feature signal there are no logits to
        update and the gains are static.
    eta : float, default=0.1
        Step size of the Taylor update (the reference uses the training learning rate).
    static : bool, default=False
        Plain top-k of the initial gains, no update.
    optimizer : {{"stochastic", "naive"}}, default="stochastic"
        Greedy optimizer with updates, see
        :func:`~sk_coreset.selectors.submodular.greedy_maximize`. Naive greedy
        re-scores every row after each update (two passes over the embeddings per
        step); stochastic greedy scores about ``n / k * ln(1 / epsilon)`` rows per step
        through the cross Gram matrix, several times faster.
    epsilon : float in (0, 1), default=0.01
        Accuracy of the stochastic optimizer.{_MEMORY_DOC}
        The cross Gram matrix of a pool's training and validation embeddings
        (``n x n_val`` floats), which makes each step cheap, is kept when it fits;
        without it every step passes over the embeddings twice.{_DEVICE_DOC}

    Attributes
    ----------
    sample_indices_, sample_weight_, classes_, budgets_, class_rankings_
        As in :class:`~sk_coreset.base.BaseSelector`; weights are ones.
    scores_ : ndarray of shape (n_samples,)
        With ``static=True`` the gain of every row; otherwise the gain of each selected
        row when it was picked and NaN for the others.

    Examples
    --------
    >>> import numpy as np
    >>> from sk_coreset.selectors import make_selector
    >>> X = np.random.RandomState(0).normal(size=(60, 5))
    >>> make_selector("Glister", fraction=0.1, balance=False).fit(X).sample_indices_.shape
    (6,)
    """

    _parameter_constraints: dict = {
        **_KernelSelector._parameter_constraints,
        "eta": [Interval(numbers.Real, 0, None, closed="left")],
        "static": ["boolean"],
        "optimizer": [StrOptions({"naive", "stochastic"})],
        "epsilon": [Interval(numbers.Real, 0, 1, closed="neither")],
        "max_memory": [None, Interval(numbers.Real, 0, None, closed="neither"), str],
    }

    def __init__(self, fraction=0.1, *, balance=True, random_state=None, n_jobs=None,
                 signal="gradient", eta=0.1, static=False, optimizer="stochastic",
                 epsilon=0.01, max_memory=None, device=None, verbose=False):
        super().__init__(fraction, balance=balance, random_state=random_state, n_jobs=n_jobs)
        self.signal = signal
        self.eta = eta
        self.static = static
        self.optimizer = optimizer
        self.epsilon = epsilon
        self.max_memory = max_memory
        self.device = device
        self.verbose = verbose

    _nested = _ByInstance(lambda self: self.static or self.optimizer == "naive", False)

    def fit(self, X, y=None, X_val=None, y_val=None):
        """Select rows of ``X``.

        Parameters
        ----------
        X : Signals, mapping of arrays, or array-like of shape (n_samples, n_features)
            The training signals (``embedding`` and ``proba`` for the gradient signal),
            or a feature matrix.
        y : array-like of shape (n_samples,), default=None
            Labels.
        X_val : same kind as ``X``, default=None
            Validation signals; default: the training pool itself.
        y_val : array-like of shape (n_val,), default=None
            Validation labels, among those of ``y`` (needed with ``X_val`` whenever
            ``y`` is needed).

        Returns
        -------
        self
        """
        self._validation = (X_val, y_val)
        try:
            return super().fit(X, y)
        finally:
            del self._validation

    def estimate_memory(self, X, y=None, X_val=None, y_val=None) -> int:
        """Peak extra memory in bytes of ``fit(X, y, X_val, y_val)``; see
        :meth:`~sk_coreset.base.BaseSelector.estimate_memory`."""
        self._validation = (X_val, y_val)
        try:
            return super().estimate_memory(X, y)
        finally:
            del self._validation

    def _validate_signals(self, X, y) -> Signals:
        if self.signal == "precomputed":
            raise ValueError(
                "Glister needs the gradient signal (or a feature matrix) to update its "
                "validation gradients; signal='precomputed' is not supported."
            )
        signals = super()._validate_signals(X, y)
        X_val, y_val = self._validation
        self._val = None
        if X_val is None:
            return signals
        if _is_mapping(X_val) != _is_mapping(X):
            raise ValueError("X_val must be of the same kind as X (both Signals or both arrays).")
        val = self._as_signals(X_val)
        for name in self._signals_needed(val):
            if name not in val:
                raise ValueError(f"X_val lacks the signal {name!r} that X provides.")
            _check_finite(name, val[name])
        if y is not None:
            if y_val is None or len(y_val) != val.shape[0]:
                raise ValueError("Pass y_val with one label per row of X_val.")
            unknown = np.setdiff1d(np.asarray(y_val), np.asarray(y))
            if len(unknown):
                raise ValueError(f"y_val holds labels absent from y: {unknown[:5].tolist()}.")
        self._val = (val, None if y_val is None else np.asarray(y_val))
        return signals

    def _validation_pool(self, signals, y):
        """Validation signals and label codes for this pool (default: the pool itself)."""
        if self._val is None:
            return signals, y
        val, y_val = self._val
        if y_val is None or y is None:
            return _rows(val, np.arange(val.shape[0])), None
        codes = np.searchsorted(self.classes_, y_val)
        rows = np.flatnonzero(np.isin(codes, np.unique(y)))
        if len(rows) == 0:
            raise ValueError(
                f"X_val has no row of class {self.classes_[y[0]]!r}; with balance=True every "
                "class needs validation rows (or pass balance=False)."
            )
        return _rows(val, rows), codes[rows]

    def _select_pool(self, signals, y, budget, random_state):
        n = signals.shape[0]
        val, y_val = self._validation_pool(signals, y)
        train_terms = self._pool_terms(signals, y)
        val_terms = self._pool_terms(val, y_val)
        proba = None
        if self._source == "gradient" and not self.static:
            ref = val_terms[0][0]
            proba = as_tensor(val.per_init("proba"), ref.device, ref.dtype)
            proba = [proba[:, r] for r in range(proba.shape[1])]
        cross = None
        if proba is not None and self._kernel_choice(n, budget, signals) == "cross":
            cross = [H @ Hv.T for (_, H), (_, Hv) in zip(train_terms, val_terms)]
        function = _GlisterFunction(train_terms, val_terms, proba, self.eta, cross)
        if self.static or proba is None:
            gains = function.all_gains().double().cpu().numpy()
            order = np.lexsort((np.arange(n), -gains))[:budget]
            return PoolSelection(order, scores=gains)
        order, gains = greedy_maximize(function, budget, optimizer=self.optimizer,
                                       epsilon=self.epsilon, random_state=random_state,
                                       verbose=self.verbose)
        return PoolSelection(order, scores=self._scores(n, order, gains))

    def _kernel_options(self, n, budget):
        # the cross Gram matrix pays with Taylor updates (gradient signal, not static)
        return ("cross", "plain") if self._source == "gradient" and not self.static else (
            "plain",)

    def _kernel_memory(self, n, budget, signals, kind):
        # an upper bound of the pool's validation rows: all of X_val, or the pool itself
        val = None if getattr(self, "_val", None) is None else self._val[0]
        n_val = n if val is None else val.shape[0]
        own = self._terms_memory(n, signals)
        memory = own.owned + self._terms_memory(n_val, signals).owned + 48 * n
        if val is not None:
            memory += signal_bytes(val, self._signals_needed(val), n_val)
        if self._source == "gradient":
            # validation logits, labels, shifts and Taylor updates; all gains at once
            classes = own.first // max(4 * n, 1)
            memory += 32 * n_val * classes + 2 * own.first
        if kind == "cross":
            # and the gains of a sample of rows through it: three (rows x n_val) blocks,
            # for at most as many rows as make that cheaper than all gains at once
            width = own.widest // max(4 * n, 1)
            rows = min(n, math.ceil((n + n_val) * width / max(n_val, 1)))
            if self.optimizer == "stochastic":
                rows = min(rows, math.ceil(n / max(budget, 1) * math.log(1 / self.epsilon)))
            memory += 4 * n * n_val * own.inits + 3 * 4 * rows * n_val * own.inits
        return memory
