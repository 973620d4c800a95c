"""Forgetting, GraNd, EL2N and AUM against hand-worked examples and direct formulas.

Oracles: a hand-counted correctness history (Forgetting), autograd gradients of a real
``nn.Linear`` last layer (GraNd), numpy norms of ``p - onehot(y)`` (EL2N) and plain
means of the recorded margins (AUM).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sk_coreset import Signals
from sk_coreset.selectors import make_selector
from sk_coreset.selectors.dynamics import AUM, EL2N, Forgetting, GraNd

# ------------------------------------------------------------------ Forgetting
# rows: correctness over 5 epochs; events counted by hand (1 -> 0 transitions)
HISTORY = np.array(
    [
        [1, 0, 1, 0, 1],  # 2 events, accuracy 3/5
        [0, 0, 0, 0, 0],  # never learned
        [1, 1, 1, 1, 1],  # 0 events
        [0, 1, 1, 0, 0],  # 1 event
        [0, 1, 0, 1, 0],  # 2 events, accuracy 2/5
        [1, 1, 0, 0, 1],  # 1 event
    ],
    dtype=bool,
)
EVENTS = np.array([2, 0, 0, 1, 2, 1], dtype=float)


def test_forgetting_counts_and_never_learned_is_maximal():
    sel = Forgetting(fraction=1, balance=False).fit(HISTORY)
    np.testing.assert_array_equal(sel.scores_, [2, 5, 0, 1, 2, 1])
    assert sel.sample_indices_.tolist() == [1]


def test_forgetting_never_learned_zero_is_the_reference_behaviour():
    sel = Forgetting(fraction=1, balance=False, never_learned="zero").fit(HISTORY)
    np.testing.assert_array_equal(sel.scores_, EVENTS)


def test_forgetting_ties_break_randomly_but_reproducibly():
    # budget 2: the never-learned row, then one of the two rows with 2 events
    seen = set()
    for seed in range(10):
        idx = Forgetting(fraction=2, balance=False, random_state=seed).fit(HISTORY)
        assert idx.sample_indices_[0] == 1 and idx.sample_indices_[1] in (0, 4)
        seen.add(int(idx.sample_indices_[1]))
    assert seen == {0, 4}
    a = Forgetting(fraction=3, balance=False, random_state=7).fit(HISTORY).sample_indices_
    b = Forgetting(fraction=3, balance=False, random_state=7).fit(HISTORY).sample_indices_
    np.testing.assert_array_equal(a, b)


def test_forgetting_accuracy_tie_break_prefers_less_often_correct_rows():
    sel = Forgetting(fraction=3, balance=False, tie_break="accuracy").fit(HISTORY)
    accuracy = HISTORY.mean(axis=1)
    np.testing.assert_allclose(sel.scores_, [2, 5, 0, 1, 2, 1] + 0.5 * (1 - accuracy))
    assert sel.sample_indices_.tolist() == [1, 4, 0]


def test_forgetting_averages_initialisations_and_balances_classes():
    other = HISTORY[::-1].copy()
    correct = np.stack([HISTORY, other], axis=1)  # (n, n_init, E)
    expected = (np.array([2, 5, 0, 1, 2, 1]) + np.array([1, 2, 1, 0, 5, 2])) / 2
    sel = Forgetting(fraction=2, random_state=0).fit(Signals(correct=correct), [0, 0, 0, 1, 1, 1])
    np.testing.assert_allclose(sel.scores_, expected)
    assert sorted(sel.sample_indices_.tolist()) == [1, 4]


# ------------------------------------------------------------------ GraNd
def autograd_last_layer_norms(emb, y, seed):
    """Per-sample norm of d CE / d (W, b) of a random nn.Linear, and its softmax."""
    torch.manual_seed(seed)
    layer = torch.nn.Linear(emb.shape[1], 4).double()
    norms, probas = [], []
    for h, label in zip(torch.from_numpy(emb), y):
        layer.zero_grad()
        logits = layer(h[None])
        torch.nn.functional.cross_entropy(logits, torch.tensor([label])).backward()
        grads = torch.cat([layer.weight.grad.flatten(), layer.bias.grad])
        norms.append(float(grads.norm()))
        probas.append(torch.softmax(logits, 1)[0].detach().numpy())
    return np.array(norms), np.array(probas)


def test_grand_equals_mean_autograd_gradient_norm_over_inits():
    rng = np.random.RandomState(0)
    n, d = 40, 7
    y = rng.randint(4, size=n)
    embs = [rng.normal(size=(n, d)) for _ in range(3)]
    oracle = [autograd_last_layer_norms(e, y, seed) for seed, e in enumerate(embs)]
    S = Signals(
        embedding=np.stack(embs, axis=1),
        proba=np.stack([p for _, p in oracle], axis=1),
    )
    sel = GraNd(fraction=0.25, random_state=0).fit(S, y)
    expected = np.mean([norms for norms, _ in oracle], axis=0)
    np.testing.assert_allclose(sel.scores_, expected, rtol=1e-10)
    for c, budget in enumerate(sel.budgets_):
        pool = np.flatnonzero(y == c)
        top = pool[np.argsort(-expected[pool])[:budget]]
        assert set(sel.sample_indices_[y[sel.sample_indices_] == c]) == set(top)


def test_grand_single_init_and_string_labels_follow_sorted_classes():
    rng = np.random.RandomState(1)
    y = rng.randint(4, size=30)
    emb = rng.normal(size=(30, 5))
    norms, proba = autograd_last_layer_norms(emb, y, seed=3)
    names = np.array(["ant", "bee", "cat", "dog"])[y]
    sel = GraNd(fraction=0.2).fit(Signals(embedding=emb, proba=proba), names)
    np.testing.assert_allclose(sel.scores_, norms, rtol=1e-10)


def test_label_columns_when_some_classes_are_missing():
    P = np.random.RandomState(2).dirichlet(np.ones(4), size=20)
    y = np.array([0, 2, 3, 2] * 5)  # class 1 absent: integer labels index the columns
    sel = EL2N(fraction=0.5).fit(P, y)
    np.testing.assert_allclose(sel.scores_, np.linalg.norm(P - np.eye(4)[y], axis=1))
    with pytest.raises(ValueError, match="columns"):
        EL2N(fraction=0.5).fit(P, np.array(["a", "b", "c", "b"] * 5))


def test_grand_explicit_gradients_use_their_norms_without_labels():
    rng = np.random.RandomState(6)
    G = rng.normal(size=(30, 2, 12))  # (n, n_init, D): e.g. full-network gradients
    expected = np.linalg.norm(G, axis=2).mean(axis=1)
    sel = GraNd(fraction=6, balance=False).fit(Signals(gradient=G))
    np.testing.assert_allclose(sel.scores_, expected, rtol=1e-12)
    assert set(sel.sample_indices_) == set(np.argsort(-expected)[:6])
    plain = GraNd(fraction=6, balance=False).fit(G[:, 0])
    np.testing.assert_allclose(plain.scores_, np.linalg.norm(G[:, 0], axis=1), rtol=1e-12)


def test_grand_needs_labels():
    S = Signals(embedding=np.ones((6, 2)), proba=np.full((6, 2), 0.5))
    with pytest.raises(ValueError, match="labels"):
        GraNd(fraction=0.5, balance=False).fit(S)


# ------------------------------------------------------------------ EL2N
def test_el2n_equals_mean_error_norm_over_inits():
    rng = np.random.RandomState(3)
    P = rng.dirichlet(np.ones(3), size=(50, 2))  # (n, n_init, C)
    y = rng.randint(3, size=50)
    expected = np.linalg.norm(P - np.eye(3)[y][:, None, :], axis=2).mean(axis=1)
    sel = EL2N(fraction=10, balance=False).fit(Signals(proba=P), y)
    np.testing.assert_allclose(sel.scores_, expected, rtol=1e-12)
    assert set(sel.sample_indices_) == set(np.argsort(-expected)[:10])


# ------------------------------------------------------------------ AUM
def test_aum_equals_mean_margin_and_keeps_the_lowest():
    rng = np.random.RandomState(4)
    margins = rng.normal(size=(60, 2, 8))  # (n, n_init, epochs)
    y = rng.randint(3, size=60)
    sel = AUM(fraction=0.2, random_state=0).fit(Signals(margin=margins), y)
    expected = margins.mean(axis=(1, 2))
    np.testing.assert_allclose(sel.scores_, expected, rtol=1e-12)
    for c, budget in enumerate(sel.budgets_):
        pool = np.flatnonzero(y == c)
        low = pool[np.argsort(expected[pool])[:budget]]
        assert set(sel.sample_indices_[y[sel.sample_indices_] == c]) == set(low)
    high = AUM(fraction=12, balance=False, keep="highest").fit(margins[:, 0])
    assert set(high.sample_indices_) == set(np.argsort(-margins[:, 0].mean(1))[:12])


def test_aum_probability_margins():
    rng = np.random.RandomState(5)
    history = rng.dirichlet(np.ones(4), size=(25, 6))  # (n, epochs, C)
    y = rng.randint(4, size=25)
    expected = np.zeros(25)
    for i in range(25):
        for t in range(6):
            others = np.delete(history[i, t], y[i])
            expected[i] += (history[i, t, y[i]] - others.max()) / 6
    sel = AUM(fraction=5, balance=False, margin="probability").fit(
        Signals(proba_history=history), y
    )
    np.testing.assert_allclose(sel.scores_, expected, rtol=1e-12)
    with pytest.raises(ValueError, match="proba_history"):
        AUM(fraction=5, margin="probability").fit(Signals(margin=history[..., 0]), y)
    with pytest.raises(ValueError, match="labels"):
        AUM(fraction=5, balance=False, margin="probability").fit(Signals(proba_history=history))


def test_registered_names():
    for name, cls in (("Forgetting", Forgetting), ("GraNd", GraNd), ("EL2N", EL2N),
                      ("AUM", AUM)):
        assert isinstance(make_selector(name), cls)
