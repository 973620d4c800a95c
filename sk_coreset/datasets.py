"""load_dataset: the paper's datasets, scikit-learn's digits and .npz files."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch.utils.data import Dataset

__all__ = ["DatasetSplits", "available_datasets", "load_dataset"]


@dataclass
class DatasetSplits:
    """A train/test split: arrays, or torch Datasets for folder-based image sets.

    ``X_*`` are uint8 images (N, H, W) or (N, H, W, C), or map-style Datasets yielding
    ``(uint8 CHW tensor, label)``; ``y_*`` are int64 label arrays in both cases.
    """

    X_train: np.ndarray | Dataset
    y_train: np.ndarray
    X_test: np.ndarray | Dataset
    y_test: np.ndarray
    class_names: list = field(default_factory=list)
    name: str = ""

    def __iter__(self):
        """Unpack as ``X_train, y_train, X_test, y_test``."""
        return iter((self.X_train, self.y_train, self.X_test, self.y_test))


_TORCHVISION = {
    "mnist": "MNIST",
    "qmnist": "QMNIST",
    "fashionmnist": "FashionMNIST",
    "svhn": "SVHN",
    "cifar10": "CIFAR10",
    "cifar100": "CIFAR100",
}
_FOLDERS = {"imagenet": "ImageNet", "tinyimagenet": "TinyImageNet"}


def available_datasets() -> list[str]:
    """Dataset names :func:`load_dataset` accepts besides ``.npz`` paths."""
    return ["digits", *_TORCHVISION.values(), *_FOLDERS.values()]


def load_dataset(name: str = "digits", root: str | os.PathLike | None = None,
                 download: bool = False) -> DatasetSplits:
    """Load a train/test split by name or from an ``.npz`` file.

    Parameters
    ----------
    name : str, default="digits"
        ``"digits"`` (scikit-learn's bundled 8x8 digits as uint8 images 0..16, split
        70/30 stratified with a fixed seed; needs no files); a torchvision dataset
        (``"MNIST"``, ``"QMNIST"``, ``"FashionMNIST"``, ``"SVHN"``, ``"CIFAR10"``,
        ``"CIFAR100"``; case and ``-_`` ignored) read from ``root``; ``"ImageNet"`` or
        ``"TinyImageNet"`` read from their folder layouts under ``root``; or a path ending
        in ``.npz`` holding ``X_train``, ``y_train``, ``X_test``, ``y_test`` (and
        optionally ``class_names``).
    root : path, default=None
        Directory of the torchvision / folder datasets.
    download : bool, default=False
        Let torchvision download a missing dataset into ``root``. Nothing is ever
        downloaded otherwise.

    Returns
    -------
    DatasetSplits
        ``X_train, y_train, X_test, y_test, class_names`` (unpacks as the first four).

    Examples
    --------
    >>> from sk_coreset.datasets import load_dataset
    >>> data = load_dataset("digits")
    >>> data.X_train.shape, data.X_test.shape
    ((1257, 8, 8), (540, 8, 8))
    """
    text = os.fspath(name)
    if text.lower().endswith(".npz"):
        return _load_npz(Path(text))
    key = re.sub(r"[^a-z0-9]", "", text.lower())
    if key == "digits":
        return _load_digits()
    if key in _TORCHVISION:
        return _load_torchvision(_TORCHVISION[key], _require_root(text, root), download)
    if key in _FOLDERS:
        if download:
            raise ValueError(
                f"{_FOLDERS[key]} cannot be downloaded automatically; obtain it from its "
                "official site and pass its directory as root."
            )
        loader = _load_imagenet if key == "imagenet" else _load_tiny_imagenet
        return loader(Path(_require_root(text, root)))
    raise ValueError(
        f"Unknown dataset {text!r}; choose one of {available_datasets()} or pass a path "
        "ending in .npz."
    )


def _require_root(name: str, root) -> Path:
    if root is None:
        raise ValueError(
            f"Dataset {name!r} is read from files: pass root=<directory> holding it (add "
            "download=True to let torchvision fetch it there), or use a .npz file or "
            "'digits'."
        )
    return Path(root)


def _load_digits() -> DatasetSplits:
    digits = load_digits()
    images = digits.images.astype(np.uint8)
    target = digits.target.astype(np.int64)
    X_tr, X_te, y_tr, y_te = train_test_split(
        images, target, test_size=0.3, stratify=target, random_state=0
    )
    return DatasetSplits(X_tr, y_tr, X_te, y_te, [str(c) for c in range(10)], "digits")


def _load_npz(path: Path) -> DatasetSplits:
    if not path.is_file():
        raise ValueError(f"No such .npz file: {path}.")
    with np.load(path, allow_pickle=False) as f:
        missing = [k for k in ("X_train", "y_train", "X_test", "y_test") if k not in f.files]
        if missing:
            raise ValueError(
                f"{path} lacks the arrays {missing}; a dataset .npz needs X_train, y_train, "
                "X_test and y_test."
            )
        arrays = {k: f[k] for k in ("X_train", "y_train", "X_test", "y_test")}
        names = (
            [str(c) for c in f["class_names"]]
            if "class_names" in f.files
            else [str(c) for c in np.unique(arrays["y_train"])]
        )
    return DatasetSplits(**arrays, class_names=names, name=path.stem)


def _load_torchvision(cls_name: str, root: Path, download: bool) -> DatasetSplits:
    from torchvision import datasets

    cls = getattr(datasets, cls_name)
    try:
        if cls_name == "SVHN":
            train = cls(root, split="train", download=download)
            test = cls(root, split="test", download=download)
        else:
            train = cls(root, train=True, download=download)
            test = cls(root, train=False, download=download)
    except RuntimeError as exc:
        raise ValueError(
            f"{cls_name} was not found under {root} ({exc}). Pass download=True to fetch it "
            f"there with torchvision, copy torchvision's {cls_name} files into that "
            "directory, or load a .npz copy with load_dataset('path/to/file.npz')."
        ) from None
    X_tr, y_tr = _arrays(train, cls_name)
    X_te, y_te = _arrays(test, cls_name)
    names = [str(c) for c in getattr(train, "classes", range(int(y_tr.max()) + 1))]
    return DatasetSplits(X_tr, y_tr, X_te, y_te, names, cls_name)


def _arrays(ds, cls_name: str):
    data = ds.data.numpy() if hasattr(ds.data, "numpy") else np.asarray(ds.data)
    if cls_name == "SVHN":
        # stored (N, 3, 32, 32); channels-last like the other RGB sets
        return np.ascontiguousarray(data.transpose(0, 2, 3, 1)), np.asarray(ds.labels, np.int64)
    targets = ds.targets.numpy() if hasattr(ds.targets, "numpy") else np.asarray(ds.targets)
    if targets.ndim == 2:  # QMNIST keeps extra columns; the first is the class
        targets = targets[:, 0]
    return data.astype(np.uint8, copy=False), targets.astype(np.int64)


def _pil_to_uint8(size: int | None, center: int | None):
    from torchvision import transforms

    steps = []
    if size is not None:
        steps += [transforms.Resize(size), transforms.CenterCrop(center)]
    steps.append(transforms.PILToTensor())
    return transforms.Compose(steps)


def _check_dirs(root: Path, name: str, *subdirs: str):
    missing = [d for d in subdirs if not (root / d).is_dir()]
    if missing:
        raise ValueError(
            f"{name} expects the folders {list(subdirs)} under {root}; missing {missing}. "
            "Download it from its official site and unpack it there."
        )


def _load_imagenet(root: Path) -> DatasetSplits:
    """ImageNet as root/train/<class>/*.JPEG and root/val/<class>/*.JPEG, 224 center crops."""
    from torchvision.datasets import ImageFolder

    _check_dirs(root, "ImageNet", "train", "val")
    tf = _pil_to_uint8(256, 224)
    train = ImageFolder(root / "train", transform=tf)
    test = ImageFolder(root / "val", transform=tf)
    return DatasetSplits(
        train, np.asarray(train.targets, np.int64), test, np.asarray(test.targets, np.int64),
        list(train.classes), "ImageNet",
    )


class _TinyImageNetVal(Dataset):
    """TinyImageNet's val/ folder: flat images labelled by val_annotations.txt."""

    def __init__(self, folder: Path, class_to_idx: dict, transform):
        rows = [
            line.split("\t")[:2]
            for line in (folder / "val_annotations.txt").read_text().splitlines()
            if line.strip()
        ]
        self.files = [folder / "images" / fname for fname, _ in rows]
        self.targets = [class_to_idx[wnid] for _, wnid in rows]
        self.transform = transform

    def __len__(self):
        return len(self.files)

    def __getitem__(self, i):
        from PIL import Image

        with Image.open(self.files[i]) as img:
            return self.transform(img.convert("RGB")), self.targets[i]


def _load_tiny_imagenet(root: Path) -> DatasetSplits:
    """TinyImageNet (64x64): root/train/<wnid>/images/*.JPEG and the labelled val/ split.

    The official test/ folder has no labels, so the labelled val/ split serves as test
    set (the reference's use of test/ gives meaningless accuracies).
    """
    from torchvision.datasets import ImageFolder

    _check_dirs(root, "TinyImageNet", "train", "val")
    if not (root / "val" / "val_annotations.txt").is_file():
        raise ValueError(f"TinyImageNet expects {root / 'val' / 'val_annotations.txt'}.")
    tf = _pil_to_uint8(None, None)
    train = ImageFolder(root / "train", transform=tf, loader=_rgb_loader)
    test = _TinyImageNetVal(root / "val", train.class_to_idx, tf)
    return DatasetSplits(
        train, np.asarray(train.targets, np.int64), test, np.asarray(test.targets, np.int64),
        list(train.classes), "TinyImageNet",
    )


def _rgb_loader(path):
    from PIL import Image

    with Image.open(path) as img:
        return img.convert("RGB")
