"""NetFeaturizer: train a proxy network and read per-sample signals from it."""

from __future__ import annotations

import copy
import hashlib
import numbers
import weakref

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval
from sklearn.utils.validation import check_is_fitted
from torch import nn
from tqdm.auto import tqdm

from ..base import Signals
from ..trainer import NetClassifier, _is_torch_dataset, dataset_labels
from .callbacks import TrainingDynamics
from .deepfool import deepfool as _deepfool

__all__ = ["NetFeaturizer"]


class NetFeaturizer(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """Train a proxy network (or several) and turn it into per-sample signals.

    ``fit`` trains ``n_init`` independently initialised proxies with the recipe of
    METHODS.md "Proxy training" (SGD, momentum 0.9, Nesterov, weight decay 5e-4,
    constant learning rate, no augmentation) and records the training dynamics of every
    sample with :class:`TrainingDynamics`. ``transform`` returns embeddings;
    :meth:`signals` returns the :class:`sk_coreset.Signals` that selectors consume.

    Parameters
    ----------
    module : str, nn.Module class or instance, default="resnet18"
        The proxy architecture, as for :class:`sk_coreset.trainer.NetClassifier`. An
        instance is deep-copied (never trained in place) and allows ``n_init=1`` only.
    max_epochs : int, default=10
        Proxy training epochs (the paper's Table-1 runs use 10).
    n_init : int, default=1
        Independent proxies, each with its own seed derived from ``random_state``.
        Per-init signals are stacked on axis 1: ``(n, n_init, ...)``.
    batch_size : int, default=128
        Training and inference batch size.
    lr : float, default=0.1
        Constant learning rate.
    momentum : float, default=0.9
        SGD momentum.
    nesterov : bool, default=True
        Nesterov momentum.
    weight_decay : float, default=5e-4
        Weight decay.
    record_proba_history : bool, default=False
        Also record the softmax vector of every sample per epoch (``proba_history``,
        n * epochs * C floats; needed by TDDS).
    deepfool_max_iter : int, default=50
        DeepFool's maximum number of steps.
    deepfool_overshoot : float, default=0.02
        DeepFool's overshoot used to cross the boundary (the score excludes it).
    deepfool_candidates : int, default=10
        Classes DeepFool considers (the largest logits).
    mean, std : sequence of float or None, default=None
        Input normalisation; None estimates it from the training data.
    device : str, default="auto"
        ``"auto"`` uses CUDA when available, else CPU.
    random_state : int, RandomState instance or None, default=None
        Seeds the proxies (initialisation and shuffling).
    verbose : int, default=0
        Progress bars over proxies, epochs and DeepFool batches.

    Attributes
    ----------
    nets_ : list of NetClassifier
        The trained proxies.
    classes_ : ndarray
        Labels seen in ``fit``.
    dynamics_ : dict of ndarray
        ``correct``, ``true_proba``, ``margin``, ``loss`` of shape (n, epochs), or
        (n, n_init, epochs) with several inits; ``proba_history`` (n, [n_init,] epochs, C)
        when recorded. ``correct`` holds 0.0/1.0.
    seeds_ : ndarray of int
        The seed of each proxy.
    n_samples_fit_ : int
        Rows seen in ``fit``.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from sk_coreset.featurizers import NetFeaturizer
    >>> X, y = load_digits(return_X_y=True)
    >>> feat = NetFeaturizer("mlp", max_epochs=2, random_state=0).fit(X, y)
    >>> S = feat.signals(X, y)
    >>> S["embedding"].shape, S["correct"].shape
    ((1797, 128), (1797, 2))
    """

    _parameter_constraints: dict = {
        "module": [str, type, nn.Module],
        "max_epochs": [Interval(numbers.Integral, 1, None, closed="left")],
        "n_init": [Interval(numbers.Integral, 1, None, closed="left")],
        "batch_size": [Interval(numbers.Integral, 1, None, closed="left")],
        "lr": [Interval(numbers.Real, 0, None, closed="neither")],
        "momentum": [Interval(numbers.Real, 0, None, closed="left")],
        "nesterov": ["boolean"],
        "weight_decay": [Interval(numbers.Real, 0, None, closed="left")],
        "record_proba_history": ["boolean"],
        "deepfool_max_iter": [Interval(numbers.Integral, 0, None, closed="left")],
        "deepfool_overshoot": [Interval(numbers.Real, 0, None, closed="left")],
        "deepfool_candidates": [Interval(numbers.Integral, 2, None, closed="left")],
        "mean": ["array-like", None],
        "std": ["array-like", None],
        "device": [str, torch.device],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        module="resnet18",
        *,
        max_epochs=10,
        n_init=1,
        batch_size=128,
        lr=0.1,
        momentum=0.9,
        nesterov=True,
        weight_decay=5e-4,
        record_proba_history=False,
        deepfool_max_iter=50,
        deepfool_overshoot=0.02,
        deepfool_candidates=10,
        mean=None,
        std=None,
        device="auto",
        random_state=None,
        verbose=0,
    ):
        self.module = module
        self.max_epochs = max_epochs
        self.n_init = n_init
        self.batch_size = batch_size
        self.lr = lr
        self.momentum = momentum
        self.nesterov = nesterov
        self.weight_decay = weight_decay
        self.record_proba_history = record_proba_history
        self.deepfool_max_iter = deepfool_max_iter
        self.deepfool_overshoot = deepfool_overshoot
        self.deepfool_candidates = deepfool_candidates
        self.mean = mean
        self.std = std
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    # ------------------------------------------------------------------ fitting
    def fit(self, X, y=None):
        """Train ``n_init`` proxies on ``X, y`` and record their training dynamics.

        Parameters
        ----------
        X : array-like or torch Dataset
            Images (N, H, W), (N, H, W, C) or (N, C, H, W), uint8 or float, flat features
            (N, n_features) for ``module="mlp"``, or a map-style Dataset of
            ``(image, label)``.
        y : array-like of shape (N,), default=None
            Labels (any hashable values); read from the Dataset when None.

        Returns
        -------
        self
        """
        self._validate_params()
        if isinstance(self.module, nn.Module) and self.n_init > 1:
            raise ValueError(
                "n_init > 1 needs independently initialised proxies; pass the module as a "
                "name or class, not an instance."
            )
        labels = self._labels(X, y)
        self.classes_ = np.unique(labels)
        base = check_random_state(self.random_state).randint(0, 2**31 - 1 - self.n_init)
        self.seeds_ = base + np.arange(self.n_init)
        self.nets_, runs = [], []
        inits = tqdm(self.seeds_, desc="proxy inits", disable=not self.verbose or self.n_init == 1)
        for seed in inits:
            net = self._proxy(int(seed)).fit(X, labels)
            self.nets_.append(net)
            runs.append(dict(net.callbacks_)["dynamics"].arrays())
        self.dynamics_ = {name: self._stack([r[name] for r in runs]) for name in runs[0]}
        self.n_samples_fit_ = len(labels)
        self._fit_key = _data_key(X)
        self._n_features_out = self._embedding_width() * self.n_init
        return self

    def _proxy(self, seed: int) -> NetClassifier:
        module = copy.deepcopy(self.module) if isinstance(self.module, nn.Module) else self.module
        return NetClassifier(
            module,
            max_epochs=self.max_epochs,
            lr=self.lr,
            batch_size=self.batch_size,
            momentum=self.momentum,
            nesterov=self.nesterov,
            weight_decay=self.weight_decay,
            schedule="constant",
            augment=False,
            mean=self.mean,
            std=self.std,
            device=self.device,
            random_state=seed,
            verbose=self.verbose,
            callbacks=[("dynamics", TrainingDynamics(self.record_proba_history))],
        )

    def _labels(self, X, y):
        if y is None:
            if not _is_torch_dataset(X):
                raise ValueError("NetFeaturizer.fit needs labels: call fit(X, y).")
            y = dataset_labels(X)
        y = np.asarray(y)
        if y.ndim != 1 or len(y) != len(X):
            raise ValueError(
                f"y must be 1-D with one label per row of X; got shape {y.shape} for "
                f"{len(X)} rows."
            )
        return y

    def _stack(self, arrays):
        return arrays[0] if self.n_init == 1 else np.stack(arrays, axis=1)

    def _embedding_width(self) -> int:
        return int(_final_linear(self.nets_[0].module_).in_features)

    # ------------------------------------------------------------------ outputs
    def transform(self, X) -> np.ndarray:
        """Penultimate embeddings, (n, d); with several inits (n, n_init * d)."""
        check_is_fitted(self, "nets_")
        emb = self._stack([_forward(net, X)["embedding"] for net in self.nets_])
        return emb.reshape(len(emb), -1)

    def signals(self, X, y=None, deepfool: bool = False) -> Signals:
        """Per-sample signals of ``X`` for the selectors.

        Parameters
        ----------
        X : array-like or torch Dataset
            Samples laid out like the training data.
        y : array-like of shape (n,), default=None
            Labels; only checked for length (the dynamics use the labels of ``fit``).
        deepfool : bool, default=False
            Also compute ``deepfool``, the squared L2 norm of the DeepFool perturbation
            (in the network's normalised input space).

        Returns
        -------
        Signals
            ``embedding`` (n, d), ``proba`` and ``logits`` (n, C) from the proxy in eval
            mode; when ``X`` is the data passed to ``fit`` (the same object or identical
            content) also ``correct``, ``true_proba``, ``margin``, ``loss`` (n, epochs)
            and, if recorded, ``proba_history`` (n, epochs, C); ``deepfool`` (n,) on
            request. With ``n_init > 1`` every array gets an init axis at position 1.
        """
        check_is_fitted(self, "nets_")
        if y is not None and len(y) != len(X):
            raise ValueError(f"X has {len(X)} rows but y has {len(y)} labels.")
        runs = [_forward(net, X) for net in self.nets_]
        out = {name: self._stack([r[name] for r in runs]) for name in runs[0]}
        if deepfool:
            out["deepfool"] = self._stack([self._deepfool(net, X) for net in self.nets_])
        if _same_data(self._fit_key, X):
            out.update(self.dynamics_)
        return Signals(**out)

    def _deepfool(self, net: NetClassifier, X) -> np.ndarray:
        module = net.module_.eval()
        batches = net.get_iterator(net.get_dataset(X), training=False)
        scores = []
        for batch in tqdm(batches, desc="DeepFool", disable=not self.verbose):
            result = _deepfool(
                module,
                net.prepare(batch[0]["data"]),
                max_iter=self.deepfool_max_iter,
                overshoot=self.deepfool_overshoot,
                n_candidates=self.deepfool_candidates,
            )
            scores.append(result.sq_norm.detach().cpu().numpy())
        return np.concatenate(scores).astype(np.float32)

    def __getstate__(self):
        state = self.__dict__.copy()
        if "_fit_key" in state:
            state["_fit_key"] = {**state["_fit_key"], "ref": None}
        return state

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True
        return tags


# ---------------------------------------------------------------------------- helpers
def _final_linear(module: nn.Module) -> nn.Linear:
    """The network's output layer: ``module.classifier`` if linear, else the last Linear."""
    head = getattr(module, "classifier", None)
    if isinstance(head, nn.Linear):
        return head
    linears = [m for m in module.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError(
            f"{type(module).__name__} has no nn.Linear output layer, so its embedding "
            "(the input of that layer) is undefined; add a final nn.Linear."
        )
    return linears[-1]


def _forward(net: NetClassifier, X) -> dict[str, np.ndarray]:
    """Embedding (input of the final linear layer), logits and softmax, eval mode."""
    module = net.module_.eval()
    captured = []
    hook = _final_linear(module).register_forward_hook(
        lambda mod, inputs, output: captured.append(inputs[0].detach())
    )
    embeddings, logits = [], []
    try:
        with torch.no_grad():
            for batch in net.get_iterator(net.get_dataset(X), training=False):
                logits.append(module(net.prepare(batch[0]["data"])).float().cpu())
                embeddings.append(captured.pop().float().flatten(1).cpu())
    finally:
        hook.remove()
    z = torch.cat(logits)
    return {
        "embedding": torch.cat(embeddings).numpy(),
        "logits": z.numpy(),
        "proba": z.softmax(dim=1).numpy(),
    }


def _content_hash(X) -> str | None:
    if _is_torch_dataset(X):
        return None
    arr = X.detach().cpu().numpy() if isinstance(X, torch.Tensor) else np.asarray(X)
    if arr.dtype == object:
        return None
    digest = hashlib.sha1(str((arr.shape, arr.dtype.str)).encode())
    digest.update(np.ascontiguousarray(arr).view(np.uint8).reshape(-1))
    return digest.hexdigest()


def _data_key(X) -> dict:
    try:
        ref = weakref.ref(X)
    except TypeError:
        ref = None
    return {"ref": ref, "len": len(X), "hash": _content_hash(X)}


def _same_data(key: dict, X) -> bool:
    """Whether X is the fitted data: the same object, or an array with identical content."""
    if key["ref"] is not None and key["ref"]() is X:
        return True
    if key["hash"] is None or len(X) != key["len"]:
        return False
    return _content_hash(X) == key["hash"]
