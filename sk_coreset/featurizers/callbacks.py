"""skorch callbacks that record per-sample training dynamics during proxy training."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from skorch.callbacks import Callback

__all__ = ["TrainingDynamics"]

DYNAMICS = ("correct", "true_proba", "margin", "loss")


class TrainingDynamics(Callback):
    """Record, by sample index and per epoch, how the network saw each training sample.

    On every training batch the callback reads the batch's logits, computed in train
    mode before that step's update (skorch's ``y_pred``), and stores for each sample:

    - ``correct``: 1.0 when the arg-max logit is the true class, else 0.0;
    - ``true_proba``: softmax probability of the true class;
    - ``margin``: true-class logit minus the largest other logit;
    - ``loss``: unweighted cross-entropy;
    - ``proba_history`` (only with ``record_proba_history=True``): the softmax vector.

    Samples are identified by the ``"index"`` entry of the batch's X, as produced by
    :class:`sk_coreset.trainer.NetClassifier` (a plain skorch net needs X to be a dict
    with an ``"index"`` array). Values stay on the training device until
    the epoch ends. A sample not seen in an epoch keeps NaN there.

    Parameters
    ----------
    record_proba_history : bool, default=False
        Also keep the full softmax vector per epoch (n * epochs * C floats).

    Attributes
    ----------
    n_epochs_ : int
        Epochs recorded so far.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from sk_coreset.trainer import NetClassifier
    >>> from sk_coreset.featurizers import TrainingDynamics
    >>> X, y = load_digits(return_X_y=True)
    >>> net = NetClassifier("mlp", max_epochs=2, random_state=0,
    ...                     callbacks=[("dynamics", TrainingDynamics())]).fit(X, y)
    >>> dict(net.callbacks_)["dynamics"].arrays()["correct"].shape
    (1797, 2)
    """

    def __init__(self, record_proba_history=False):
        self.record_proba_history = record_proba_history

    def initialize(self):
        self.columns_ = {name: [] for name in self._names()}
        self.current_ = None
        self.n_samples_ = None
        self.n_epochs_ = 0
        return self

    def _names(self):
        return DYNAMICS + (("proba_history",) if self.record_proba_history else ())

    def on_train_begin(self, net, X=None, y=None, **kwargs):
        self.n_samples_ = len(X)

    def on_epoch_begin(self, net, dataset_train=None, **kwargs):
        n, device = self.n_samples_, getattr(net, "device_", net.device)
        self.current_ = {
            name: torch.full((n,), float("nan"), device=device) for name in DYNAMICS
        }
        if self.record_proba_history:
            c = len(net.classes_)
            self.current_["proba_history"] = torch.full((n, c), float("nan"), device=device)

    def on_batch_end(self, net, batch=None, training=False, y_pred=None, **kwargs):
        if not training:
            return
        Xb, yb = batch
        logits = y_pred.detach().float()
        idx = torch.as_tensor(Xb["index"], device=logits.device)
        y = torch.as_tensor(yb, device=logits.device)
        for name, values in _batch_dynamics(logits, y).items():
            if name in self.current_:
                self.current_[name][idx] = values

    def on_epoch_end(self, net, **kwargs):
        for name, values in self.current_.items():
            self.columns_[name].append(values.cpu().numpy())
        self.current_ = None
        self.n_epochs_ += 1

    def arrays(self) -> dict[str, np.ndarray]:
        """The recorded dynamics: (n, epochs) each, ``proba_history`` (n, epochs, C)."""
        out = {}
        for name, cols in self.columns_.items():
            if cols:
                out[name] = np.stack(cols, axis=1).astype(np.float32)
        return out


def _batch_dynamics(logits: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
    rows = torch.arange(len(y), device=logits.device)
    true_logit = logits[rows, y]
    others = logits.clone()
    others[rows, y] = float("-inf")
    proba = logits.softmax(dim=1)
    return {
        "correct": (logits.argmax(dim=1) == y).float(),
        "true_proba": proba[rows, y],
        "margin": true_logit - others.max(dim=1).values,
        "loss": F.cross_entropy(logits, y, reduction="none"),
        "proba_history": proba,
    }
