"""Distances, similarity kernels and the closed-form last-layer gradient algebra.

Everything here works on numpy arrays or torch tensors and returns the same kind it was
given (torch functions keep the input's device, so GPU signals stay on the GPU).

Last-layer gradients of the cross-entropy loss, for a sample with penultimate embedding
``h``, softmax ``p`` and label ``y``, with error ``e = p - onehot(y)``: the bias gradient
is ``e`` and the weight gradient is ``e ⊗ h``. Hence, without ever forming the
``C * (d + 1)``-wide vectors,

    <g_i, g_j> = <e_i, e_j> * (1 + <h_i, h_j>),     ||g_i|| = ||e_i|| * sqrt(1 + ||h_i||^2).

The gradients are unscaled (no ``1 / batch_size`` factor).
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import torch
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

__all__ = [
    "as_tensor",
    "grad_errors",
    "grad_explicit",
    "grad_gram",
    "grad_norms",
    "one_thread",
    "resolve_device",
    "sq_distances",
    "symmetric_kl",
]


def resolve_device(device="auto") -> torch.device:
    """``"auto"`` means CUDA when available, else CPU."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


@contextmanager
def one_thread():
    """Run torch's CPU operations on one thread inside the block.

    A greedy step is a handful of small, memory-bound operations; splitting them over
    threads costs more in synchronisation than it saves, and much more on a loaded
    machine (a 5,000-element ``log`` measured 16 ms on two busy cores, 0.06 ms on one).
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(limits=1):
            yield
    finally:
        torch.set_num_threads(before)


def as_tensor(x, device=None, dtype=torch.float32) -> torch.Tensor:
    """A float tensor view of ``x`` (no copy when it already is one on ``device``)."""
    if isinstance(x, torch.Tensor):
        t = x
    else:
        t = torch.from_numpy(np.ascontiguousarray(x))
    return t.to(device=device if device is not None else t.device, dtype=dtype)


def grad_errors(proba, y):
    """Error vectors ``e = p - onehot(y)`` of shape (n, C); ``y`` holds codes 0..C-1."""
    if isinstance(proba, torch.Tensor):
        e = proba.clone()
        rows = torch.arange(len(e), device=e.device)
        e[rows, torch.as_tensor(y, device=e.device, dtype=torch.long)] -= 1
        return e
    e = np.array(proba, dtype=np.float64 if np.asarray(proba).dtype == np.float64 else np.float32)
    e[np.arange(len(e)), np.asarray(y, dtype=np.int64)] -= 1
    return e


def grad_norms(embedding, proba, y):
    """Per-sample norm of the last-layer gradient, ``||e|| * sqrt(1 + ||h||^2)``."""
    e = grad_errors(proba, y)
    if isinstance(e, torch.Tensor):
        h = as_tensor(embedding, e.device, e.dtype)
        return e.norm(dim=1) * torch.sqrt(1 + (h * h).sum(dim=1))
    h = np.asarray(embedding, dtype=e.dtype)
    return np.linalg.norm(e, axis=1) * np.sqrt(1 + np.einsum("ij,ij->i", h, h))


def grad_gram(emb_a, err_a, emb_b=None, err_b=None):
    """Gram block ``<g_i, g_j>`` for rows of (emb_a, err_a) against rows of (emb_b, err_b).

    ``err`` are error vectors from :func:`grad_errors`. Defaults to the block of ``a``
    with itself.
    """
    if emb_b is None:
        emb_b, err_b = emb_a, err_a
    if isinstance(err_a, torch.Tensor):
        return (err_a @ err_b.T) * (1 + emb_a @ emb_b.T)
    return (np.asarray(err_a) @ np.asarray(err_b).T) * (1 + np.asarray(emb_a) @ np.asarray(emb_b).T)


def grad_explicit(embedding, proba, y):
    """The explicit last-layer gradients, (n, C * (d + 1)): bias part, then weight rows.

    Column layout: ``[e_1..e_C, e_1*h_1..e_1*h_d, ..., e_C*h_1..e_C*h_d]``, matching
    ``torch.cat([bias.grad, weight.grad.flatten()])`` of an ``nn.Linear(d, C)``. Only for
    small inputs and tests: it is ``C * (d + 1)`` floats per sample.
    """
    e = grad_errors(proba, y)
    if isinstance(e, torch.Tensor):
        h = as_tensor(embedding, e.device, e.dtype)
        return torch.cat([e, (e[:, :, None] * h[:, None, :]).flatten(1)], dim=1)
    h = np.asarray(embedding, dtype=e.dtype)
    return np.concatenate([e, (e[:, :, None] * h[:, None, :]).reshape(len(e), -1)], axis=1)


def sq_distances(a: torch.Tensor, b: torch.Tensor, a_sq=None, b_sq=None) -> torch.Tensor:
    """Squared Euclidean distances between rows of ``a`` and ``b`` (clamped at 0).

    Pass precomputed squared row norms to avoid recomputing them in chunked loops.
    """
    a_sq = (a * a).sum(1) if a_sq is None else a_sq
    b_sq = (b * b).sum(1) if b_sq is None else b_sq
    d = a_sq[:, None] + b_sq[None, :] - 2.0 * (a @ b.T)
    return d.clamp_min_(0)


def symmetric_kl(p: torch.Tensor, q: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Pairwise symmetric KL, ``0.5 KL(p||q) + 0.5 KL(q||p)``, between rows of p and q.

    Probabilities are clamped at ``eps`` before the logarithm, so zeros give finite values.
    Uses ``0.5 * sum_c (p_c - q_c)(log p_c - log q_c)``, which is two matrix products.
    """
    lp, lq = p.clamp_min(eps).log(), q.clamp_min(eps).log()
    self_p = (p * lp).sum(1)
    self_q = (q * lq).sum(1)
    return 0.5 * (self_p[:, None] + self_q[None, :] - p @ lq.T - lp @ q.T)


# --------------------------------------------------------------------------------------
# Factorised feature maps and the similarity kernels built from them.
#
# A *factor map* is a list of terms, each term a tuple of (n, d_f) tensors, that stands
# for implicit row vectors g_i whose inner products are
#
#     <g_i, g_j> = sum over terms of  prod over factors  <F_i, F_j>.
#
# A plain feature matrix X is ``[(X,)]``; last-layer gradients are ``[(E, H1)]`` with
# ``H1 = [1, h]`` (one term per proxy initialisation), since
# ``<g_i, g_j> = <e_i, e_j> * <h1_i, h1_j>``. Nothing of width C * (d + 1) is built.
# --------------------------------------------------------------------------------------

__all__ += [
    "cosine_self_similarity",
    "feature_terms",
    "gradient_terms",
    "knn_kernel",
    "pairwise_kernel",
    "terms_gram",
    "terms_mean_dot",
    "terms_normalize",
    "terms_rows",
    "terms_sq_norms",
]

#: bytes of one temporary block of a chunked kernel computation
CHUNK_BYTES = 128 * 2**20


def feature_terms(x, device=None, dtype=torch.float32) -> list:
    """The factor map of a plain feature matrix: ``[(X,)]`` with X of shape (n, d).

    Arrays with more than two dimensions are flattened after the first (rows) axis.
    """
    X = as_tensor(x, device, dtype)
    return [(X.reshape(X.shape[0], -1),)]


def gradient_terms(embedding, proba, y, device=None, dtype=torch.float32) -> list:
    """The factor map of last-layer gradients: one term ``(E, [1, h])`` per initialisation.

    ``embedding`` is (n, d) or (n, n_init, d), ``proba`` (n, C) or (n, n_init, C), ``y``
    integer codes 0..C-1. Several initialisations stand for the concatenation of their
    gradients (inner products add up over initialisations).
    """
    h = as_tensor(embedding, device, dtype)
    p = as_tensor(proba, h.device, dtype)
    h = h[:, None] if h.ndim == 2 else h
    p = p[:, None] if p.ndim == 2 else p
    if h.shape[1] != p.shape[1]:
        raise ValueError(
            f"embedding holds {h.shape[1]} proxy initialisation(s) but proba holds "
            f"{p.shape[1]}; compute both signals from the same proxies."
        )
    codes = torch.as_tensor(np.asarray(y), dtype=torch.long, device=h.device)
    if len(codes) and (codes.min() < 0 or codes.max() >= p.shape[2]):
        raise ValueError(
            f"labels must be class codes in [0, {p.shape[2]}) to match proba's "
            f"{p.shape[2]} columns; got codes up to {int(codes.max())}."
        )
    ones = torch.ones(h.shape[0], 1, device=h.device, dtype=dtype)
    return [
        (grad_errors(p[:, r], codes), torch.cat([ones, h[:, r]], dim=1))
        for r in range(h.shape[1])
    ]


def terms_rows(terms: list, idx) -> list:
    """The factor map of the rows ``idx`` (an index array, tensor or slice)."""
    if not isinstance(idx, slice):
        idx = torch.as_tensor(idx, dtype=torch.long, device=terms[0][0].device)
        return [tuple(f.index_select(0, idx) for f in term) for term in terms]
    return [tuple(f[idx] for f in term) for term in terms]


def terms_gram(a: list, b: list | None = None) -> torch.Tensor:
    """Inner products ``<g_i, g_j>`` between the rows of ``a`` and of ``b`` (default ``a``)."""
    b = a if b is None else b
    out = None
    for term_a, term_b in zip(a, b):
        block = term_a[0] @ term_b[0].T
        for fa, fb in zip(term_a[1:], term_b[1:]):
            block.mul_(fa @ fb.T)
        out = block if out is None else out.add_(block)
    return out


def terms_sq_norms(terms: list) -> torch.Tensor:
    """Squared norms ``||g_i||^2`` (n,)."""
    out = 0
    for term in terms:
        prod = 1
        for f in term:
            prod = prod * (f * f).sum(1)
        out = out + prod
    return out


def terms_normalize(terms: list) -> list:
    """Rows scaled to unit norm (zero rows stay zero): cosines become inner products."""
    norms = terms_sq_norms(terms).sqrt()
    inv = torch.where(norms > 0, 1.0 / norms.clamp_min(torch.finfo(norms.dtype).tiny), 0.0)
    return [(term[0] * inv[:, None], *term[1:]) for term in terms]


def terms_mean_dot(terms: list) -> torch.Tensor:
    """``<g_i, mean_j g_j>`` for every row, in O(n·d1·d2) without the Gram matrix."""
    n = terms[0][0].shape[0]
    out = 0
    for term in terms:
        if len(term) == 1:
            out = out + term[0] @ (term[0].sum(0) / n)
        elif len(term) == 2:
            A, B = term
            M = A.T @ B / n  # sum_j a_j b_j^T / n
            out = out + ((A @ M) * B).sum(1)
        else:
            raise ValueError("terms_mean_dot supports terms of one or two factors.")
    return out


def cosine_self_similarity(terms: list) -> torch.Tensor:
    """Diagonal of the ``0.5 + 0.5 cos`` kernel: exactly 1, or 0.5 for a zero row."""
    return 0.5 + 0.5 * (terms_sq_norms(terms) > 0).to(terms[0][0].dtype)


def _chunk_rows(n_cols: int, itemsize: int, n_temps: int = 3) -> int:
    return max(1, CHUNK_BYTES // max(1, n_cols * itemsize * n_temps))


def _distances(gram: torch.Tensor, sq_rows: torch.Tensor, sq_cols: torch.Tensor) -> torch.Tensor:
    """Euclidean distances from a Gram block and squared norms, in place on ``gram``."""
    return gram.mul_(-2).add_(sq_rows[:, None]).add_(sq_cols[None, :]).clamp_min_(0).sqrt_()


def pairwise_kernel(terms: list, metric: str = "cosine", *, verbose: bool = False) -> torch.Tensor:
    """Dense (n, n) kernel of a factor map, built in row chunks.

    ``metric="cosine"`` gives the similarity ``0.5 + 0.5 * cos`` in [0, 1] (zero rows
    have cosine 0 with everything; the diagonal is exactly 1, or 0.5 for a zero row);
    ``"euclidean"`` gives distances with an exact zero
    diagonal; ``"inner"`` the Gram matrix ``<g_i, g_j>``. Each chunk of rows is one
    matrix product written straight into the result (a full product costs less than
    the upper triangle plus a strided transposed copy). Row ``j`` is contiguous, the
    layout the greedy optimizers read.
    """
    if metric not in ("cosine", "euclidean", "inner"):
        raise ValueError(f"metric must be 'cosine', 'euclidean' or 'inner', got {metric!r}.")
    ref = terms[0][0]
    n = ref.shape[0]
    if metric == "cosine":
        terms = terms_normalize(terms)
        self_similarity = cosine_self_similarity(terms)
    elif metric == "euclidean":
        sq = terms_sq_norms(terms)
    K = torch.empty(n, n, dtype=ref.dtype, device=ref.device)
    step = _chunk_rows(n, ref.element_size(), n_temps=2)
    for i0 in tqdm(range(0, n, step), disable=not verbose, desc=f"{metric} kernel", leave=False):
        i1 = min(n, i0 + step)
        block = K[i0:i1]
        _gram_into(terms_rows(terms, slice(i0, i1)), terms, block)
        if metric == "cosine":
            block.mul_(0.5).add_(0.5)
            block[:, i0:i1].diagonal().copy_(self_similarity[i0:i1])
        elif metric == "euclidean":
            _distances(block, sq[i0:i1], sq)
            block[:, i0:i1].fill_diagonal_(0)
    return K


def _gram_into(a: list, b: list, out: torch.Tensor) -> torch.Tensor:
    """``terms_gram(a, b)`` written into ``out`` (the first term needs no temporary)."""
    torch.mm(a[0][0], b[0][0].T, out=out)
    for fa, fb in zip(a[0][1:], b[0][1:]):
        out.mul_(fa @ fb.T)
    if len(a) > 1:
        out.add_(terms_gram(a[1:], b[1:]))
    return out


def knn_kernel(terms: list, n_neighbors: int, metric: str = "cosine", *,
               verbose: bool = False):
    """The ``n_neighbors`` nearest rows of every row (itself included), in row chunks.

    Returns ``(indices, values, max_distance)``: (n, m) neighbour indices and their
    similarities (``metric="cosine"``, 0.5 + 0.5 * cos, most similar first) or distances
    (``metric="euclidean"``, nearest first), and for the Euclidean metric the largest
    distance between any two rows (``None`` for cosine). Memory: O(n·m) plus one chunk.
    """
    if metric not in ("cosine", "euclidean"):
        raise ValueError(f"metric must be 'cosine' or 'euclidean', got {metric!r}.")
    ref = terms[0][0]
    n = ref.shape[0]
    m = min(int(n_neighbors), n)
    if metric == "cosine":
        terms = terms_normalize(terms)
    else:
        sq = terms_sq_norms(terms)
    indices = torch.empty(n, m, dtype=torch.long, device=ref.device)
    values = torch.empty(n, m, dtype=ref.dtype, device=ref.device)
    max_distance = torch.zeros((), dtype=ref.dtype, device=ref.device)
    step = _chunk_rows(n, ref.element_size())
    for i0 in tqdm(range(0, n, step), disable=not verbose, desc="kNN kernel", leave=False):
        i1 = min(n, i0 + step)
        block = terms_gram(terms_rows(terms, slice(i0, i1)), terms)
        rows = torch.arange(i1 - i0, device=ref.device)
        if metric == "cosine":
            block.mul_(0.5).add_(0.5)
            block[rows, rows + i0] = float("inf")  # itself first
            vals, idx = torch.topk(block, m, dim=1)
            vals[:, 0] = cosine_self_similarity(terms_rows(terms, slice(i0, i1)))
        else:
            _distances(block, sq[i0:i1], sq)
            block[rows, rows + i0] = 0
            max_distance = torch.maximum(max_distance, block.max())
            block[rows, rows + i0] = -1  # itself first
            vals, idx = torch.topk(block, m, dim=1, largest=False)
            vals[:, 0] = 0
        indices[i0:i1], values[i0:i1] = idx, vals
    return indices, values, (max_distance.item() if metric == "euclidean" else None)
