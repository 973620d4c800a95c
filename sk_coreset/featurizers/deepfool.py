"""DeepFool: the smallest linearised perturbation that changes a network's prediction."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

__all__ = ["DeepFoolResult", "deepfool"]


class DeepFoolResult(NamedTuple):
    """Per-sample outcome of :func:`deepfool`.

    ``sq_norm`` is ``||r||^2`` of the accumulated linearised steps ``r`` (the distance
    estimate DeepCore scores with); ``perturbation`` is ``(1 + overshoot) * r``, the
    change of the input that was checked to flip the prediction; ``flipped`` says
    whether it did within ``max_iter`` steps; ``n_iter`` counts the steps taken.
    """

    sq_norm: torch.Tensor
    perturbation: torch.Tensor
    flipped: torch.Tensor
    n_iter: torch.Tensor


def deepfool(
    module: nn.Module,
    x: torch.Tensor,
    *,
    max_iter: int = 50,
    overshoot: float = 0.02,
    n_candidates: int = 10,
) -> DeepFoolResult:
    """Run multi-class DeepFool (Moosavi-Dezfooli et al., 2016) on a batch.

    At each step, for the still-unflipped samples with original prediction ``k0``, the
    logit differences ``f_k - f_k0`` toward the candidate classes are linearised; the
    class with the smallest ``|f_k - f_k0| / ||grad(f_k - f_k0)||`` is chosen and the step
    ``|f_k - f_k0| / ||w||^2 * w`` (``w`` its gradient) is added to ``r``. The prediction
    is checked at ``x + (1 + overshoot) * r``. On a linear model the first step lands on
    the nearest decision boundary, so ``sq_norm`` is the exact squared distance to it.

    Parameters
    ----------
    module : nn.Module
        The network, already in the mode to attack (normally ``eval()``); its parameters
        are not modified and get no gradients.
    x : torch.Tensor
        A batch of inputs (N, ...), on the module's device, in the space the module reads
        (i.e. already normalised).
    max_iter : int, default=50
        Maximum number of linearised steps.
    overshoot : float, default=0.02
        Relative overshoot used to cross the boundary (canonical DeepFool: 0.02; the
        DeepCore reference: 0).
    n_candidates : int, default=10
        Classes considered: the ``n_candidates`` largest logits at ``x`` (the prediction
        included). All classes when the model has fewer.

    Returns
    -------
    DeepFoolResult

    Examples
    --------
    >>> import torch
    >>> from sk_coreset.featurizers import deepfool
    >>> lin = torch.nn.Linear(4, 3).eval()
    >>> res = deepfool(lin, torch.randn(5, 4))
    >>> res.sq_norm.shape, bool(res.flipped.all())
    (torch.Size([5]), True)
    """
    if max_iter < 0 or overshoot < 0 or n_candidates < 2:
        raise ValueError(
            "deepfool needs max_iter >= 0, overshoot >= 0 and n_candidates >= 2; got "
            f"{max_iter}, {overshoot}, {n_candidates}."
        )
    x0 = x.detach()
    n = len(x0)
    with torch.no_grad():
        f0 = module(x0)
    m = min(n_candidates, f0.shape[1])
    # candidates[:, 0] is the original prediction
    candidates = torch.argsort(f0, dim=1, descending=True, stable=True)[:, :m]
    start = candidates[:, 0]
    r = torch.zeros_like(x0)
    flipped = torch.zeros(n, dtype=torch.bool, device=x0.device)
    n_iter = torch.zeros(n, dtype=torch.long, device=x0.device)
    for step in range(max_iter + 1):
        active = (~flipped).nonzero().squeeze(1)
        if len(active) == 0:
            break
        xa = (x0[active] + (1 + overshoot) * r[active]).requires_grad_(True)
        with torch.enable_grad():
            logits = module(xa)
            now_flipped = logits.argmax(dim=1) != start[active]
            flipped[active[now_flipped]] = True
            if step == max_iter or bool(now_flipped.all()):
                break
            keep = ~now_flipped
            picked = logits.gather(1, candidates[active])
            diffs = picked[:, 1:] - picked[:, :1]
            grads = _candidate_grads(diffs, keep, xa)
        active, diffs, grads = active[keep], diffs[keep].detach(), grads[keep]
        norms = grads.flatten(2).norm(dim=2)
        dist = diffs.abs() / norms
        dist = torch.where(norms > 0, dist, torch.full_like(dist, float("inf")))
        best = dist.argmin(dim=1)
        rows = torch.arange(len(active), device=x0.device)
        w, gap, wn = grads[rows, best], diffs[rows, best].abs(), norms[rows, best]
        scale = torch.where(wn > 0, gap / (wn * wn), torch.zeros_like(gap))
        r[active] += scale.view(-1, *([1] * (w.ndim - 1))) * w
        n_iter[active] += 1
    sq_norm = r.flatten(1).pow(2).sum(dim=1)
    return DeepFoolResult(sq_norm, (1 + overshoot) * r, flipped, n_iter)


def _candidate_grads(diffs: torch.Tensor, keep: torch.Tensor, xa: torch.Tensor) -> torch.Tensor:
    """Gradients of each candidate's logit difference w.r.t. the input: (N, m - 1, ...)."""
    grads = []
    for j in range(diffs.shape[1]):
        (g,) = torch.autograd.grad(
            diffs[:, j][keep].sum(), xa, retain_graph=j + 1 < diffs.shape[1]
        )
        grads.append(g)
    return torch.stack(grads, dim=1)
