"""Decision-boundary selectors: Cal (contrastive active learning) and DeepFool."""

from __future__ import annotations

import numbers

import numpy as np
import torch
from sklearn.utils._param_validation import Interval

from ..base import ScoreSelector, _dtype
from ._registry import register_selector
from .geometry import _working_memory, _working_tensor
from .uncertainty import _check_proba

__all__ = ["Cal", "DeepFool"]

# Largest (queries x pool) block of distances kept at once, in bytes.
_BLOCK_BYTES = 64 * 2**20


@register_selector("Cal", "CAL", "ContrastiveActiveLearning")
class Cal(ScoreSelector):
    """Contrastive active learning (Margatina et al., 2021): keeps the most contrastive rows.

    Each row's ``n_neighbors`` nearest neighbours are found in embedding space (within
    its class when ``balance=True``, else in the whole set); its score is the mean
    symmetric KL divergence ``0.5 KL(p||q) + 0.5 KL(q||p)`` between its softmax ``p``
    and theirs. High scores mark rows that the proxy predicts differently from their
    neighbours. The DeepCore reference keeps the lowest scores, against the paper; here
    ``keep="highest"`` is the default and ``keep`` is exposed. The kNN search is
    chunked on torch (GPU when the signals are there): O(n²·d) time per pool, memory
    bounded by blocks of queries.

    Parameters
    ----------
    fraction : float in (0, 1] or int, default=0.1
        Proportion (or count) of rows to keep.
    balance : bool, default=True
        Select every class independently; neighbours are searched within the class.
    random_state : int, RandomState instance or None, default=None
        Seed of the random order that breaks ties.
    n_jobs : int or None, default=None
        Pools (classes with ``balance=True``) scored in parallel with joblib, also on
        a Dask cluster under ``joblib.parallel_backend("dask")``; ``None`` means 1
        unless in a joblib backend context, ``-1`` all processors. The result does not
        depend on it.
    keep : {"highest", "lowest"}, default="highest"
        ``"highest"`` keeps the rows that disagree most with their neighbours.
    n_neighbors : int, default=10
        Neighbours per row (fewer in a pool of at most ``n_neighbors`` rows; a pool of
        one row scores 0). The row itself is never its own neighbour.
    eps : float, default=1e-8
        Clamp of the probabilities inside the logarithm.
    device : str, torch.device or None, default=None
        Where to compute; ``None`` follows the signals.

    Attributes
    ----------
    scores_ : ndarray of shape (n_samples,)
        Mean divergence of every row from its neighbours.
    sample_indices_, sample_weight_, classes_, budgets_, class_rankings_
        As in :class:`~sk_coreset.base.BaseSelector`.

    Examples
    --------
    >>> import numpy as np
    >>> from sk_coreset import Signals
    >>> from sk_coreset.selectors.boundary import Cal
    >>> emb = np.array([[0.0], [0.1], [0.2], [5.0], [5.1]])
    >>> proba = np.array([[0.9, 0.1], [0.9, 0.1], [0.2, 0.8], [0.5, 0.5], [0.5, 0.5]])
    >>> sel = Cal(fraction=1, balance=False, n_neighbors=1)
    >>> sel.fit(Signals(embedding=emb, proba=proba)).sample_indices_.tolist()
    [2]
    """

    _required_signals = ("embedding", "proba")
    _parameter_constraints: dict = {
        **ScoreSelector._parameter_constraints,
        "n_neighbors": [Interval(numbers.Integral, 1, None, closed="left")],
        "eps": [Interval(numbers.Real, 0, 1, closed="neither")],
        "device": [None, str, torch.device],
    }

    def __init__(self, fraction=0.1, *, balance=True, random_state=None, n_jobs=None,
                 keep="highest", n_neighbors=10, eps=1e-8, device=None):
        super().__init__(fraction, balance=balance, random_state=random_state, n_jobs=n_jobs,
                         keep=keep)
        self.n_neighbors = n_neighbors
        self.eps = eps
        self.device = device

    def _fit_scores(self, signals, y, pools, random_state):
        if "scores" in signals:
            return super()._fit_scores(signals, y, pools, random_state)
        # neighbours are searched within a pool, so each pool is scored on its own
        return self._scores_by_block(signals, y, pools, random_state)

    def _memory_tasks(self, signals, pools, budgets) -> list:
        return [] if "scores" in signals else [(pool, 0) for pool in pools]

    def _pool_memory(self, n_rows, budget, signals) -> int:
        """Squared norms and logarithms; per block of queries, their embeddings, a block
        of distances of at most ``_BLOCK_BYTES``, the neighbours and five temporaries of
        the (query, neighbour, class) divergences."""
        item, dim, emb_copy = _working_memory(signals["embedding"], n_rows)
        classes = signals["proba"].shape[-1]
        proba_copy = 0 if _dtype(signals["proba"]).itemsize == item else n_rows * classes * item
        k = max(0, min(self.n_neighbors, n_rows - 1))
        rows = min(n_rows, max(1, _BLOCK_BYTES // (n_rows * item)))
        block = rows * (dim + n_rows + k * (1 + 5 * classes)) * item + 8 * rows * k
        return emb_copy + proba_copy + n_rows * (classes + 1) * item + block + 48 * n_rows

    def _score(self, signals, y, random_state):
        """Scores of one pool: every row's neighbours are searched among these rows."""
        E = _working_tensor(signals["embedding"], self.device)
        P = _working_tensor(_check_proba(signals["proba"]), E.device).to(E.dtype)
        if E.ndim != 2 or P.ndim != 2:
            raise ValueError(
                f"Cal needs one proxy's embedding (n, d) and proba (n, C); got shapes "
                f"{tuple(E.shape)} and {tuple(P.shape)}. Pass a single initialisation."
            )
        if len(E) < 2:
            return np.zeros(len(E))
        return self._pool_scores(E, P)

    def _pool_scores(self, E: torch.Tensor, P: torch.Tensor) -> np.ndarray:
        n = len(E)
        k = min(self.n_neighbors, n - 1)
        sq = torch.linalg.vector_norm(E, dim=1).square()
        logs = P.clamp_min(self.eps).log()
        chunk = max(1, _BLOCK_BYTES // (n * E.element_size()))
        out = []
        for start in range(0, n, chunk):
            rows = torch.arange(start, min(start + chunk, n), device=E.device)
            # ||e_j||^2 - 2 <e_i, e_j> ranks the neighbours of row i like ||e_i - e_j||^2
            d = torch.addmm(sq[None, :], E[rows], E.T, alpha=-2.0)
            d[rows - start, rows] = float("inf")  # a row is not its own neighbour
            nbr = d.topk(k, dim=1, largest=False).indices
            # symmetric KL of each (row, neighbour) pair: 0.5 sum_c (p - q)(log p - log q)
            diff = (P[rows, None, :] - P[nbr]) * (logs[rows, None, :] - logs[nbr])
            out.append(0.5 * diff.sum(dim=2).mean(dim=1))
        return torch.cat(out).cpu().numpy()


@register_selector("DeepFool")
class DeepFool(ScoreSelector):
    """DeepFool margin (Ducoffe & Precioso, 2018): keeps the rows closest to the boundary.

    Reads the signal ``deepfool`` (n,) or (n, n_init): the squared L2 norm of the
    smallest input perturbation that DeepFool finds to flip the proxy's prediction
    (computed by :class:`~sk_coreset.featurizers.NetFeaturizer` with
    ``signals(X, y, deepfool=True)``); several initialisations are averaged. Small
    distances mean rows near the decision boundary.

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
        ``"lowest"`` keeps the rows with the smallest perturbations.

    Attributes
    ----------
    scores_ : ndarray of shape (n_samples,)
        The (mean) squared DeepFool distance of every row.
    sample_indices_, sample_weight_, classes_, budgets_, class_rankings_
        As in :class:`~sk_coreset.base.BaseSelector`.

    Examples
    --------
    >>> import numpy as np
    >>> from sk_coreset.selectors.boundary import DeepFool
    >>> distances = np.array([0.5, 3.0, 0.1, 2.0])
    >>> DeepFool(fraction=2, balance=False).fit(distances).sample_indices_.tolist()
    [2, 0]
    """

    _required_signals = ("deepfool",)
    _rowwise_scores = True

    def __init__(self, fraction=0.1, *, balance=True, random_state=None, n_jobs=None,
                 keep="lowest"):
        super().__init__(fraction, balance=balance, random_state=random_state, n_jobs=n_jobs,
                         keep=keep)

    def _score(self, signals, y, random_state):
        distances = signals.per_init("deepfool")
        distances = distances.detach().cpu().numpy() if hasattr(distances, "detach") else distances
        return np.asarray(distances, dtype=np.float64).reshape(len(distances), -1).mean(axis=1)
