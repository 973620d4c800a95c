"""Closed-form last-layer gradients against torch.autograd's per-sample gradients."""

import numpy as np
import pytest
import torch

from sk_coreset.kernels import grad_errors, grad_explicit, grad_gram, grad_norms

N, D, C = 13, 6, 5


def _autograd_last_layer(h: torch.Tensor, y: torch.Tensor, seed: int = 0):
    """Per-sample gradients of the unreduced cross-entropy w.r.t. an nn.Linear(d, C).

    Returns the softmax outputs and the (n, C * (d + 1)) matrix of
    ``cat([bias.grad, weight.grad.flatten()])``, one backward pass per sample.
    """
    torch.manual_seed(seed)
    layer = torch.nn.Linear(h.shape[1], C).double()
    logits = layer(h)
    losses = torch.nn.functional.cross_entropy(logits, y, reduction="none")
    rows = []
    for i in range(len(h)):
        gb, gw = torch.autograd.grad(losses[i], [layer.bias, layer.weight], retain_graph=True)
        rows.append(torch.cat([gb, gw.flatten()]))
    return logits.softmax(1).detach(), torch.stack(rows)


@pytest.fixture
def sample():
    gen = torch.Generator().manual_seed(1)
    h = torch.randn(N, D, generator=gen, dtype=torch.float64)
    y = torch.randint(0, C, (N,), generator=gen)
    proba, grads = _autograd_last_layer(h, y)
    return h, y, proba, grads


def test_explicit_gradient_equals_autograd_torch_and_numpy(sample):
    h, y, proba, grads = sample
    torch.testing.assert_close(grad_explicit(h, proba, y), grads, atol=1e-5, rtol=0)
    np.testing.assert_allclose(
        grad_explicit(h.numpy(), proba.numpy(), y.numpy()), grads.numpy(), atol=1e-5, rtol=0
    )


def test_explicit_gradient_float32_inputs_within_1e5(sample):
    h, y, proba, grads = sample
    got = grad_explicit(h.float().numpy(), proba.float().numpy(), y.numpy())
    np.testing.assert_allclose(got, grads.numpy(), atol=1e-5, rtol=0)


def test_gradient_norms_equal_autograd_norms(sample):
    h, y, proba, grads = sample
    expected = grads.norm(dim=1)
    torch.testing.assert_close(grad_norms(h, proba, y), expected, atol=1e-5, rtol=0)
    np.testing.assert_allclose(
        grad_norms(h.numpy(), proba.numpy(), y.numpy()), expected.numpy(), atol=1e-5, rtol=0
    )


def test_factorised_gram_equals_explicit_gram(sample):
    h, y, proba, grads = sample
    err = grad_errors(proba, y)
    torch.testing.assert_close(grad_gram(h, err), grads @ grads.T, atol=1e-5, rtol=0)
    # an off-diagonal block between two disjoint sets of rows
    a, b = slice(0, 5), slice(5, None)
    block = grad_gram(h[a].numpy(), err[a].numpy(), h[b].numpy(), err[b].numpy())
    np.testing.assert_allclose(block, (grads[a] @ grads[b].T).numpy(), atol=1e-5, rtol=0)


def test_factorised_gram_equals_grad_explicit_products(sample):
    h, y, proba, _ = sample
    G = grad_explicit(h.numpy(), proba.numpy(), y.numpy())
    err = grad_errors(proba.numpy(), y.numpy())
    np.testing.assert_allclose(grad_gram(h.numpy(), err), G @ G.T, atol=1e-10)


def test_errors_are_proba_minus_onehot(sample):
    _, y, proba, _ = sample
    onehot = np.eye(C)[y.numpy()]
    np.testing.assert_allclose(grad_errors(proba.numpy(), y.numpy()), proba.numpy() - onehot)
    # the input is not modified
    assert torch.all(proba >= 0)
