"""NetClassifier: a skorch classifier with the DeepCore paper's training recipe.

The data path is built for speed on a GPU: rows are gathered in batches straight from
the array (uint8 stays uint8 until it reaches the device), then scaled, normalised and,
for 32x32 RGB images, augmented (random crop with 4-pixel reflect padding, horizontal
flip) on the device.
"""

from __future__ import annotations

import contextlib
import inspect
import math
import numbers
from collections.abc import Mapping

import numpy as np
import torch
import torch.nn.functional as F
from skorch import NeuralNetClassifier
from skorch.callbacks import Callback, EpochTimer, PassthroughScoring, PrintLog
from sklearn.utils import check_random_state
from torch import nn
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from .kernels import resolve_device
from .nets import build_net

__all__ = ["NetClassifier", "random_crop_flip", "torch_seed"]

#: items sampled from a torch Dataset to estimate normalisation statistics
_STAT_SAMPLE = 5000


# ============================================================================ data adapters
def _collate_batch(batch):
    """The adapters below already return whole batches: nothing to collate."""
    return batch


def _image_layout(shape: tuple, dtype) -> str:
    """How one array of samples is laid out: "flat", "nhw", "nhwc" or "nchw"."""
    if len(shape) == 2:
        return "flat"
    if len(shape) == 3:
        return "nhw"
    if len(shape) != 4:
        raise ValueError(
            f"X must have shape (N, features), (N, H, W), (N, H, W, C) or (N, C, H, W); "
            f"got {tuple(shape)}."
        )
    first, last = shape[1], shape[-1]
    if first <= 4 < last:
        return "nchw"
    if last <= 4 < first:
        return "nhwc"
    # ambiguous (tiny images): uint8 images are usually stored channels-last
    return "nhwc" if np.dtype(dtype) == np.uint8 else "nchw"


def _to_nchw(x: np.ndarray | torch.Tensor, layout: str):
    if layout == "nhw":
        return x[:, None]
    if layout == "nhwc":
        return x.transpose(0, 3, 1, 2) if isinstance(x, np.ndarray) else x.permute(0, 3, 1, 2)
    return x


def _item_to_chw(img) -> torch.Tensor:
    """One image from a torch Dataset (PIL, array or tensor) as a (C, H, W) tensor."""
    if not isinstance(img, torch.Tensor):
        img = torch.from_numpy(np.array(img))
    if img.ndim == 2:
        return img[None]
    if img.ndim == 3 and img.shape[0] > 4 and img.shape[-1] <= 4:
        return img.permute(2, 0, 1)
    if img.ndim != 3:
        raise ValueError(f"Dataset items must be 2-D or 3-D images; got shape {tuple(img.shape)}.")
    return img


class _NetData(Dataset):
    """Base of the adapters: batches ``({"data", "index", "sample_weight"}, y_codes)``."""

    def __init__(self, n, codes=None, sample_weight=None):
        self.n = n
        self.codes = None if codes is None else torch.as_tensor(codes, dtype=torch.long)
        self.weights = (
            torch.ones(n, dtype=torch.float32)
            if sample_weight is None
            else torch.as_tensor(sample_weight, dtype=torch.float32)
        )

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        Xb, yb = self.__getitems__([i])
        return {k: v[0] for k, v in Xb.items()}, (None if yb is None else yb[0])

    def __getitems__(self, indices):
        idx = torch.as_tensor(np.asarray(indices, dtype=np.int64))
        Xb = {"data": self._images(idx.numpy()), "index": idx, "sample_weight": self.weights[idx]}
        return Xb, (None if self.codes is None else self.codes[idx])

    def _images(self, idx: np.ndarray) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


class _ArrayData(_NetData):
    """Rows of a numpy array / tensor, returned as NCHW (or flat) tensors of the same dtype."""

    def __init__(self, X, codes=None, sample_weight=None):
        super().__init__(len(X), codes, sample_weight)
        self.X = X
        self.layout = _image_layout(tuple(X.shape), _np_dtype(X))

    def _images(self, idx):
        if isinstance(self.X, torch.Tensor):
            rows = self.X[torch.from_numpy(idx)]
        else:
            rows = torch.from_numpy(np.ascontiguousarray(self.X[idx]))
        return _to_nchw(rows, self.layout).contiguous()

    def sample_shape(self) -> tuple:
        shape = tuple(self.X.shape)
        if self.layout == "nhw":
            return (1,) + shape[1:]
        if self.layout == "nhwc":
            return (shape[3],) + shape[1:3]
        return shape[1:]


class _TorchData(_NetData):
    """A map-style torch Dataset yielding ``(image, label)``; images become (C, H, W)."""

    def __init__(self, dataset, codes=None, sample_weight=None):
        super().__init__(len(dataset), codes, sample_weight)
        self.dataset = dataset

    def _images(self, idx):
        return torch.stack([_item_to_chw(self.dataset[int(i)][0]) for i in idx])

    def sample_shape(self) -> tuple:
        return tuple(_item_to_chw(self.dataset[0][0]).shape)


def _np_dtype(X):
    if isinstance(X, torch.Tensor):
        return np.dtype(np.uint8) if X.dtype == torch.uint8 else np.dtype(np.float32)
    return X.dtype


def _is_torch_dataset(X) -> bool:
    return isinstance(X, Dataset) and not isinstance(X, _NetData)


def _as_array(X):
    if isinstance(X, (np.ndarray, torch.Tensor)):
        return X
    arr = np.asarray(X)
    if arr.dtype == object:
        raise ValueError(
            "X must be a numeric array of images or features, or a torch Dataset yielding "
            "(image, label); got an object array."
        )
    return arr


def dataset_labels(dataset) -> np.ndarray:
    """Labels of a torch Dataset: its ``targets``/``labels`` attribute, else one pass."""
    for attr in ("targets", "labels"):
        if hasattr(dataset, attr):
            return np.asarray(getattr(dataset, attr))
    return np.asarray([_scalar(dataset[i][1]) for i in range(len(dataset))])


def _scalar(v):
    return v.item() if hasattr(v, "item") else v


# ============================================================================ augmentation
def random_crop_flip(x: torch.Tensor, padding: int = 4) -> torch.Tensor:
    """Random crop after reflect padding, and a random horizontal flip, per image.

    Works on an (N, C, H, W) batch in one gather, on whatever device ``x`` is. The
    offsets and flips are drawn from torch's global CPU generator, so a seeded run gives
    the same augmentation on CPU and GPU.
    """
    n, c, h, w = x.shape
    padded = F.pad(x, (padding,) * 4, mode="reflect")
    dy = torch.randint(0, 2 * padding + 1, (n,))
    dx = torch.randint(0, 2 * padding + 1, (n,))
    flip = torch.rand(n) < 0.5
    rows = dy[:, None] + torch.arange(h)
    cols = dx[:, None] + torch.arange(w)
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    dev = x.device
    return padded[
        torch.arange(n, device=dev)[:, None, None, None],
        torch.arange(c, device=dev)[None, :, None, None],
        rows.to(dev)[:, None, :, None],
        cols.to(dev)[:, None, None, :],
    ]


# ============================================================================ seeding
def torch_seed(random_state) -> int | None:
    """An int seed for torch from a scikit-learn ``random_state`` (None stays None)."""
    if random_state is None:
        return None
    if isinstance(random_state, numbers.Integral):
        return int(random_state)
    return int(check_random_state(random_state).randint(0, 2**31 - 1))


@contextlib.contextmanager
def _seeded(seed: int | None, device: torch.device):
    """Run with torch's global RNGs seeded, restoring the caller's RNG state afterwards."""
    if seed is None:
        yield
        return
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


# ============================================================================ callbacks
class _CosineLR(Callback):
    """Cosine decay from ``net.lr`` to ``net.min_lr``, stepped after every training batch."""

    def initialize(self):
        self.step_, self.total_ = 0, None
        return self

    def on_epoch_begin(self, net, dataset_train=None, **kwargs):
        if net.schedule != "cosine" or self.total_ is not None:
            return
        batch = net.get_params_for("iterator_train").get("batch_size", net.batch_size)
        batch = len(dataset_train) if batch == -1 else batch
        self.total_ = max(1, math.ceil(len(dataset_train) / batch)) * net.max_epochs
        self._set(net)

    def on_batch_end(self, net, training=False, **kwargs):
        if training and self.total_ is not None:
            self.step_ += 1
            self._set(net)

    def _set(self, net):
        t = min(self.step_, self.total_) / self.total_
        floor = min(net.min_lr, net.lr)
        lr = floor + (net.lr - floor) * 0.5 * (1 + math.cos(math.pi * t))
        for group in net.optimizer_.param_groups:
            group["lr"] = lr


class _EpochProgress(Callback):
    """One tqdm bar over the epochs, shown when ``net.verbose``."""

    def on_train_begin(self, net, X=None, y=None, **kwargs):
        self.bar_ = tqdm(total=net.max_epochs, desc=type(net).__name__, unit="epoch",
                         disable=not net.verbose, leave=False)

    def on_epoch_end(self, net, **kwargs):
        self.bar_.update(1)
        self.bar_.set_postfix(loss=f"{net.history[-1, 'train_loss']:.4f}")

    def on_train_end(self, net, X=None, y=None, **kwargs):
        self.bar_.close()


# ============================================================================ the classifier
class NetClassifier(NeuralNetClassifier):
    """A skorch network classifier trained with the DeepCore paper's recipe.

    Defaults: SGD with learning rate 0.1, momentum 0.9, Nesterov, weight decay 5e-4, a
    cosine schedule stepped every iteration down to ``min_lr=1e-4``, batch 128, and for
    32x32 RGB images random crops (4-pixel reflect padding) with horizontal flips. The
    whole training set is used (``train_split=None``). Inputs are scaled (uint8 / 255)
    and standardised per channel with statistics of the training data unless ``mean``
    and ``std`` are given. The reported metric is the final model's accuracy (``score``);
    no epoch is selected on test data.

    Parameters
    ----------
    module : str, nn.Module class or instance, default="resnet18"
        A name of :func:`sk_coreset.nets.build_net` (built for the data's channels, image
        size and classes), a module class (instantiated with the ``module__*`` parameters;
        ``n_classes``, ``in_channels`` and ``image_size`` are filled in when its
        constructor takes them), or an instance (used as is).
    max_epochs : int, default=200
        Training epochs.
    lr : float, default=0.1
        Initial learning rate.
    batch_size : int, default=128
        Batch size for training and prediction.
    momentum : float, default=0.9
        SGD momentum (used when ``optimizer`` is SGD).
    nesterov : bool, default=True
        Nesterov momentum (used when ``optimizer`` is SGD).
    weight_decay : float, default=5e-4
        Weight decay passed to the optimizer.
    schedule : {"cosine", "constant"}, default="cosine"
        Learning-rate schedule: cosine annealing per iteration to ``min_lr``, or constant.
    min_lr : float, default=1e-4
        Final learning rate of the cosine schedule.
    augment : "auto" or bool, default="auto"
        Random crop + horizontal flip during training. ``"auto"`` enables it for 32x32
        RGB images only (the paper's CIFAR recipe).
    mean, std : sequence of float or None, default=None
        Per-channel (or per-feature for flat inputs) normalisation on the [0, 1] scale
        (uint8 inputs are divided by 255). None estimates them from the training data.
    device : str, default="auto"
        ``"auto"`` uses CUDA when available, else CPU; or any torch device string.
    random_state : int, RandomState instance or None, default=None
        Seeds weight initialisation, shuffling, augmentation and dropout. The caller's
        torch RNG state is restored after ``fit``.
    verbose : int, default=0
        1 shows a progress bar over the epochs; 2 also prints skorch's epoch table.
    train_split : callable or None, default=None
        skorch's validation split; None trains on every row.
    criterion, optimizer, classes, **kwargs
        As in :class:`skorch.NeuralNetClassifier` (``iterator_train__num_workers``,
        ``optimizer__*``, ``callbacks``, ...). The criterion must accept
        ``reduction="none"``.

    Attributes
    ----------
    classes_ : ndarray
        The labels seen in ``fit``.
    module_ : nn.Module
        The trained network.
    input_shape_ : tuple
        Shape of one sample as the network sees it, (C, H, W) or (n_features,).
    mean_, std_ : ndarray
        Normalisation statistics used.
    device_ : torch.device
        The device the network lives on.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from sk_coreset.trainer import NetClassifier
    >>> X, y = load_digits(return_X_y=True)
    >>> clf = NetClassifier("mlp", max_epochs=2, lr=0.05, random_state=0).fit(X, y)
    >>> clf.predict(X[:3]).shape
    (3,)
    """

    def __init__(
        self,
        module="resnet18",
        *,
        criterion=nn.CrossEntropyLoss,
        optimizer=torch.optim.SGD,
        lr=0.1,
        max_epochs=200,
        batch_size=128,
        momentum=0.9,
        nesterov=True,
        weight_decay=5e-4,
        schedule="cosine",
        min_lr=1e-4,
        augment="auto",
        mean=None,
        std=None,
        device="auto",
        random_state=None,
        verbose=0,
        train_split=None,
        classes=None,
        **kwargs,
    ):
        super().__init__(
            module,
            criterion=criterion,
            optimizer=optimizer,
            lr=lr,
            max_epochs=max_epochs,
            batch_size=batch_size,
            device=device,
            verbose=verbose,
            train_split=train_split,
            classes=classes,
            **kwargs,
        )
        self.momentum = momentum
        self.nesterov = nesterov
        self.weight_decay = weight_decay
        self.schedule = schedule
        self.min_lr = min_lr
        self.augment = augment
        self.mean = mean
        self.std = std
        self.random_state = random_state

    # ------------------------------------------------------------------ skorch plumbing
    @property
    def _default_callbacks(self):
        callbacks = [
            ("epoch_timer", EpochTimer()),
            ("train_loss", PassthroughScoring(name="train_loss", on_train=True)),
            ("valid_loss", PassthroughScoring(name="valid_loss")),
            ("lr_schedule", _CosineLR()),
            ("progress", _EpochProgress()),
        ]
        if self.verbose and self.verbose > 1:
            callbacks.append(("print_log", PrintLog()))
        return callbacks

    @contextlib.contextmanager
    def _device_resolved(self):
        """skorch moves modules to ``self.device``; let it see a real device meanwhile."""
        requested = self.device
        self.device_ = resolve_device(requested)
        self.device = str(self.device_)
        try:
            yield
        finally:
            self.device = requested

    def initialize(self):
        with self._device_resolved():
            return super().initialize()

    def set_params(self, **kwargs):
        if not self.initialized_:
            return super().set_params(**kwargs)
        with self._device_resolved():
            super().set_params(**kwargs)
        if "device" in kwargs:
            self.device = kwargs["device"]
        return self

    def __getstate__(self):
        state = super().__getstate__()
        state.pop("norm_cache_", None)  # device tensors; rebuilt on demand
        return state

    def __setstate__(self, state):
        requested = state.get("device")
        if requested in (None, "auto"):
            state["device"] = str(resolve_device(requested))
        super().__setstate__(state)
        if requested in (None, "auto"):
            if "device_" in self.__dict__:
                self.device_ = torch.device(self.device)
            self.device = requested

    def initialize_module(self):
        kwargs = self.get_params_for("module")
        if isinstance(self.module, str):
            self._check_input_known()
            if kwargs:
                raise ValueError(
                    f"module={self.module!r} is built by name and takes no module__ "
                    f"parameters (got {sorted(kwargs)}); pass a module class to set them."
                )
            channels, size = self._net_geometry()
            self.module_ = build_net(self.module, len(self.classes_), channels, size)
            return self
        if isinstance(self.module, type) and "input_shape_" in self.__dict__:
            kwargs = {**self._geometry_kwargs(self.module), **kwargs}
        self.module_ = self.initialized_instance(self.module, kwargs)
        return self

    def initialize_criterion(self):
        kwargs = self.get_params_for("criterion")
        if isinstance(self.criterion, type):
            kwargs.setdefault("reduction", "none")
        self.criterion_ = self.initialized_instance(self.criterion, kwargs)
        return self

    def get_params_for_optimizer(self, prefix, named_parameters):
        args, kwargs = super().get_params_for_optimizer(prefix, named_parameters)
        kwargs.setdefault("weight_decay", self.weight_decay)
        optimizer = self.optimizer
        if isinstance(optimizer, type) and issubclass(optimizer, torch.optim.SGD):
            kwargs.setdefault("momentum", self.momentum)
            kwargs.setdefault("nesterov", self.nesterov)
        return args, kwargs

    def get_dataset(self, X, y=None):
        if isinstance(X, _NetData):
            return X
        return self._wrap(X)

    def get_iterator(self, dataset, training=False):
        prefix = "iterator_train" if training else "iterator_valid"
        kwargs = self.get_params_for(prefix)
        kwargs.setdefault("batch_size", self.batch_size)
        if kwargs["batch_size"] == -1:
            kwargs["batch_size"] = len(dataset)
        kwargs.setdefault("collate_fn", _collate_batch)
        if training:
            kwargs.setdefault("shuffle", True)
        if self.device_.type == "cuda":
            kwargs.setdefault("pin_memory", True)
        iterator = self.iterator_train if training else self.iterator_valid
        return iterator(dataset, **kwargs)

    def check_data(self, X, y):
        """Labels are encoded in :meth:`fit`; nothing to infer here."""

    def infer(self, x, **fit_params):
        data = x["data"] if isinstance(x, Mapping) else x
        return self.module_(self.prepare(data), **fit_params)

    def get_loss(self, y_pred, y_true, X=None, training=False):
        y_true = torch.as_tensor(y_true, device=y_pred.device)
        if isinstance(self.criterion_, nn.NLLLoss):
            y_pred = torch.log(y_pred + torch.finfo(y_pred.dtype).eps)
        losses = self.criterion_(y_pred, y_true)
        if losses.ndim == 0:
            return losses
        if isinstance(X, Mapping) and "sample_weight" in X:
            w = torch.as_tensor(X["sample_weight"]).to(losses)
            total = w.sum()
            return (w * losses).sum() / torch.where(total > 0, total, torch.ones_like(total))
        return losses.mean()

    # ------------------------------------------------------------------ data preparation
    def prepare(self, data: torch.Tensor) -> torch.Tensor:
        """Move a raw batch to the device, scale, normalise and (training) augment it.

        This is the exact input of ``module_``: DeepFool and embedding extraction use it.
        """
        x = torch.as_tensor(data).to(self.device_, non_blocking=True)
        scale = 1 / 255 if x.dtype == torch.uint8 else 1.0
        x = x.to(torch.float32) * scale if x.dtype != torch.float32 else x
        if tuple(x.shape[1:]) != tuple(self.input_shape_):
            raise ValueError(
                f"{type(self).__name__} was fitted on samples of shape {self.input_shape_} "
                f"but got {tuple(x.shape[1:])}; pass data laid out like the training data."
            )
        mean, std = self._norm_tensors()
        x = (x - mean) / std
        if self.module_.training and self.augment_:
            x = random_crop_flip(x)
        return x

    def _norm_tensors(self):
        cache = self.__dict__.get("norm_cache_")
        if cache is None or cache[0].device != self.device_:
            view = (1, -1) if len(self.input_shape_) == 1 else (1, -1, 1, 1)
            cache = tuple(
                torch.as_tensor(v, dtype=torch.float32, device=self.device_).reshape(view)
                for v in (self.mean_, self.std_)
            )
            self.norm_cache_ = cache
        return cache

    def _wrap(self, X, codes=None, sample_weight=None) -> _NetData:
        if _is_torch_dataset(X):
            return _TorchData(X, codes, sample_weight)
        return _ArrayData(_as_array(X), codes, sample_weight)

    def _check_input_known(self):
        if "input_shape_" not in self.__dict__:
            raise ValueError(
                f"{type(self).__name__}(module={self.module!r}) builds its network from the "
                "training data; call fit(X, y) instead of initialize()."
            )

    def _net_geometry(self):
        shape = self.input_shape_
        if len(shape) == 1:
            if isinstance(self.module, str) and self.module.lower() != "mlp":
                raise ValueError(
                    f"module={self.module!r} needs images, but X is flat (n_samples, "
                    f"{shape[0]}). Pass images shaped (N, H, W), (N, H, W, C) or (N, C, H, W), "
                    "or use module='mlp'."
                )
            return shape[0], 1
        return shape[0], shape[1:]

    def _geometry_kwargs(self, cls) -> dict:
        channels, size = self._net_geometry()
        offered = {"n_classes": len(self.classes_), "in_channels": channels, "image_size": size}
        try:
            accepted = inspect.signature(cls).parameters
        except (TypeError, ValueError):
            return {}
        return {k: v for k, v in offered.items() if k in accepted}

    def _fit_statistics(self, data: _NetData):
        channels = self.input_shape_[0]
        if self.mean is not None and self.std is not None:
            mean = np.broadcast_to(np.asarray(self.mean, dtype=np.float64), (channels,))
            std = np.broadcast_to(np.asarray(self.std, dtype=np.float64), (channels,))
        else:
            mean, std = _channel_stats(data)
            if self.mean is not None:
                mean = np.broadcast_to(np.asarray(self.mean, dtype=np.float64), (channels,))
            if self.std is not None:
                std = np.broadcast_to(np.asarray(self.std, dtype=np.float64), (channels,))
        if np.any(~np.isfinite(std)) or np.any(np.asarray(std) < 0):
            raise ValueError("std must be finite and non-negative.")
        self.mean_ = np.array(mean, dtype=np.float32)
        self.std_ = np.where(np.asarray(std) > 1e-12, std, 1.0).astype(np.float32)
        self.norm_cache_ = None

    # ------------------------------------------------------------------ public API
    def fit(self, X, y=None, sample_weight=None, **fit_params):
        """Train a fresh network on ``X, y`` (weighted per sample if asked).

        Parameters
        ----------
        X : array-like or torch Dataset
            Images (N, H, W), (N, H, W, C) or (N, C, H, W), uint8 or float; flat features
            (N, n_features) for ``module="mlp"``; or a map-style Dataset yielding
            ``(image, label)``.
        y : array-like of shape (N,), default=None
            Labels (any hashable values). Optional for a Dataset, whose labels are read
            from its ``targets`` attribute or its items.
        sample_weight : array-like of shape (N,), default=None
            Non-negative weights; each batch's loss is ``sum(w * l) / sum(w)``.

        Returns
        -------
        self
        """
        self._check_params()
        data = self._fit_data(X, y, sample_weight)
        device = resolve_device(self.device)
        with _seeded(torch_seed(self.random_state), device):
            return super().fit(data, None, **fit_params)

    def partial_fit(self, X, y=None, classes=None, **fit_params):
        """Continue training on ``X, y`` (which must use the fitted classes)."""
        if not self.initialized_:
            return self.fit(X, y, **fit_params)
        sample_weight = fit_params.pop("sample_weight", None)
        if not isinstance(X, _NetData):
            codes = self._encode(self._labels_of(X, y))
            X = self._wrap(X, codes, self._check_weights(sample_weight, len(codes)))
        return super().partial_fit(X, None, **fit_params)

    def predict(self, X):
        """Predicted labels (values of ``classes_``)."""
        return self.classes_[np.asarray(self.predict_proba(X)).argmax(axis=1)]

    # ------------------------------------------------------------------ helpers
    def _check_params(self):
        if self.schedule not in ("cosine", "constant"):
            raise ValueError(f"schedule must be 'cosine' or 'constant'; got {self.schedule!r}.")
        if self.augment not in ("auto", True, False):
            raise ValueError(f"augment must be 'auto', True or False; got {self.augment!r}.")
        for name in ("lr", "min_lr", "weight_decay", "momentum"):
            value = getattr(self, name)
            if not isinstance(value, numbers.Real) or not value >= 0:
                raise ValueError(f"{name} must be a non-negative number; got {value!r}.")
        for name in ("max_epochs", "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, numbers.Integral) or (value < 1 and value != -1):
                raise ValueError(f"{name} must be a positive int; got {value!r}.")
        resolve_device(self.device)

    def _labels_of(self, X, y):
        if y is None:
            if not _is_torch_dataset(X):
                raise ValueError("y is required unless X is a torch Dataset yielding labels.")
            y = dataset_labels(X)
        y = np.asarray(y)
        if y.ndim != 1:
            raise ValueError(f"y must be 1-D with one label per sample; got shape {y.shape}.")
        if y.dtype.kind == "f" and not np.all(np.isfinite(y)):
            raise ValueError("y contains NaN or inf; remove those rows or fix the labels.")
        return y

    def _encode(self, y):
        classes = self.classes_
        lookup = {c: i for i, c in enumerate(classes.tolist())}
        try:
            return np.fromiter((lookup[v] for v in y.tolist()), dtype=np.int64, count=len(y))
        except KeyError as exc:
            raise ValueError(
                f"y contains the label {exc.args[0]!r}, which is not among the classes "
                f"{classes.tolist()}."
            ) from None

    def _check_weights(self, sample_weight, n):
        if sample_weight is None:
            return None
        w = np.asarray(sample_weight, dtype=np.float64)
        if w.shape != (n,):
            raise ValueError(f"sample_weight must have shape ({n},); got {w.shape}.")
        if not np.all(np.isfinite(w)) or np.any(w < 0) or not np.any(w > 0):
            raise ValueError(
                "sample_weight must be finite, non-negative and not all zero."
            )
        return w

    def _fit_data(self, X, y, sample_weight):
        labels = self._labels_of(X, y)
        if len(labels) != len(X):
            raise ValueError(f"X has {len(X)} samples but y has {len(labels)} labels.")
        if len(labels) == 0:
            raise ValueError("Cannot fit on 0 samples.")
        if self.classes is not None:
            self.classes_inferred_ = np.asarray(self.classes)
        else:
            self.classes_inferred_ = np.unique(labels)
        codes = self._encode(labels)
        data = self._wrap(X, codes, self._check_weights(sample_weight, len(labels)))
        self.input_shape_ = tuple(int(s) for s in data.sample_shape())
        if self.augment is True and len(self.input_shape_) != 3:
            raise ValueError("augment=True needs images; X is flat features.")
        self.augment_ = self.augment is True or (
            self.augment == "auto" and self.input_shape_ == (3, 32, 32)
        )
        self._fit_statistics(data)
        return data


def _channel_stats(data: _NetData):
    """Per-channel (per-feature for flat data) mean and std on the [0, 1] scale."""
    n = len(data)
    if isinstance(data, _TorchData) and n > _STAT_SAMPLE:
        rows = np.sort(np.random.RandomState(0).choice(n, _STAT_SAMPLE, replace=False))
    else:
        rows = np.arange(n)
    total = total_sq = count = 0
    for start in range(0, len(rows), 1024):
        x = data._images(rows[start:start + 1024])
        x = x.double() / 255 if x.dtype == torch.uint8 else x.double()
        dims = [0] + list(range(2, x.ndim))
        total = total + x.sum(dims)
        total_sq = total_sq + (x * x).sum(dims)
        count += x.numel() // x.shape[1]
    mean = total / count
    var = (total_sq / count - mean * mean).clamp_min(0)
    return mean.numpy(), var.sqrt().numpy()
