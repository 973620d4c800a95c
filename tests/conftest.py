"""Shared fixtures: synthetic but internally consistent signals for every selector."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from sk_coreset import Signals

DATA_DIR = Path(os.environ.get("SK_CORESET_DATA", Path(__file__).resolve().parents[1] / ".." / "shared" / "data"))


def make_signals(class_sizes=(30, 20, 10), dim=16, epochs=6, seed=0):
    """Signals with every well-known name, plus integer labels.

    Embeddings are Gaussian blobs per class; logits depend on them, so probabilities,
    dynamics and DeepFool distances are consistent with the labels.
    """
    rng = np.random.RandomState(seed)
    n_classes = len(class_sizes)
    y = np.repeat(np.arange(n_classes), class_sizes)
    rng.shuffle(y)
    centres = rng.normal(scale=3.0, size=(n_classes, dim))
    embedding = (centres[y] + rng.normal(size=(len(y), dim))).astype(np.float32)
    weights = rng.normal(size=(dim, n_classes)) * 0.3 + centres.T * 0.1
    logits = (embedding @ weights).astype(np.float32)
    history_logits = logits[:, None, :] * np.linspace(0.2, 1.0, epochs)[None, :, None]
    history_logits = history_logits + rng.normal(scale=0.5, size=history_logits.shape)
    proba_history = _softmax(history_logits)
    rows = np.arange(len(y))
    true_logit = history_logits[rows, :, y]
    others = history_logits.copy()
    others[rows, :, y] = -np.inf
    signals = Signals(
        embedding=embedding,
        logits=logits,
        proba=_softmax(logits).astype(np.float32),
        correct=history_logits.argmax(-1) == y[:, None],
        true_proba=proba_history[rows, :, y].astype(np.float32),
        margin=(true_logit - others.max(-1)).astype(np.float32),
        loss=-np.log(proba_history[rows, :, y]).astype(np.float32),
        proba_history=proba_history.astype(np.float32),
        deepfool=rng.gamma(2.0, size=len(y)).astype(np.float32),
    )
    return signals, y


def _softmax(z):
    z = z - z.max(-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)


@pytest.fixture
def signals_and_labels():
    return make_signals()
