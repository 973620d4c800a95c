"""load_dataset: digits, .npz files, torchvision folders (offline) and image folders."""

import os
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.datasets import load_digits

from sk_coreset.datasets import load_dataset
from sk_coreset.trainer import NetClassifier

REPO = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("SK_CORESET_DATA", REPO.parent / "shared" / "data"))


def shared_file(name: str) -> Path:
    path = DATA_DIR / name
    if not path.is_file():
        pytest.fail(f"{path} is missing: set SK_CORESET_DATA to the shared .npz folder")
    return path


def test_digits_is_a_seeded_stratified_70_30_split_of_sklearn_digits():
    data = load_dataset()
    X_tr, y_tr, X_te, y_te = data
    assert X_tr.shape == (1257, 8, 8) and X_te.shape == (540, 8, 8)
    assert X_tr.dtype == np.uint8 and X_tr.max() <= 16
    assert data.class_names == [str(i) for i in range(10)]
    ref = load_digits()
    # the two parts together are exactly sklearn's images, each with its own label
    rows = {(img.tobytes(), lab) for img, lab in zip(ref.images.astype(np.uint8), ref.target)}
    got = [(img.tobytes(), lab) for img, lab in zip(np.concatenate([X_tr, X_te]),
                                                    np.concatenate([y_tr, y_te]))]
    assert len(got) == 1797 and set(got) == rows
    # stratified: every class's share of the test set is within one sample of 30%
    for c in range(10):
        n_c = np.sum(ref.target == c)
        assert abs(np.sum(y_te == c) - 0.3 * n_c) <= 1
    again = load_dataset("Digits")
    np.testing.assert_array_equal(again.X_train, X_tr)


def test_npz_files_load(tmp_path):
    path = tmp_path / "toy.npz"
    rng = np.random.RandomState(0)
    arrays = dict(X_train=rng.randint(0, 255, (6, 4, 4, 3), dtype=np.uint8),
                  y_train=np.arange(6) % 2,
                  X_test=rng.randint(0, 255, (2, 4, 4, 3), dtype=np.uint8),
                  y_test=np.array([0, 1]))
    np.savez(path, **arrays, class_names=np.array(["cat", "dog"]))
    data = load_dataset(str(path))
    for key, value in arrays.items():
        np.testing.assert_array_equal(getattr(data, key), value)
    assert data.class_names == ["cat", "dog"]
    np.savez(tmp_path / "bad.npz", X_train=arrays["X_train"])
    with pytest.raises(ValueError, match="y_train"):
        load_dataset(tmp_path / "bad.npz")


def test_shared_mnist_npz():
    data = load_dataset(str(shared_file("mnist.npz")))
    assert data.X_train.shape == (60000, 28, 28) and data.X_test.shape == (10000, 28, 28)
    assert len(data.class_names) == 10


def _write_idx(path: Path, array: np.ndarray):
    code = 0x08  # unsigned byte
    header = struct.pack(">HBB", 0, code, array.ndim) + struct.pack(">" + "I" * array.ndim,
                                                                     *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def test_torchvision_mnist_from_root_without_download(tmp_path):
    # torchvision's MNIST reads the raw IDX files; write a small set of them offline
    rng = np.random.RandomState(0)
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    images = {"train": rng.randint(0, 256, (12, 28, 28)), "t10k": rng.randint(0, 256, (5, 28, 28))}
    labels = {"train": np.arange(12) % 10, "t10k": np.arange(5)}
    for split in ("train", "t10k"):
        _write_idx(raw / f"{split}-images-idx3-ubyte", images[split])
        _write_idx(raw / f"{split}-labels-idx1-ubyte", labels[split])
    data = load_dataset("mnist", root=tmp_path)
    np.testing.assert_array_equal(data.X_train, images["train"].astype(np.uint8))
    np.testing.assert_array_equal(data.y_test, labels["t10k"])
    assert data.X_train.dtype == np.uint8 and data.y_train.dtype == np.int64
    assert data.class_names[0].startswith("0")


def test_missing_torchvision_files_say_how_to_get_them(tmp_path):
    with pytest.raises(ValueError, match="download=True"):
        load_dataset("CIFAR10", root=tmp_path)
    with pytest.raises(ValueError, match="root"):
        load_dataset("fashion-mnist")
    with pytest.raises(ValueError, match="Unknown dataset"):
        load_dataset("cifar11")
    assert not any(tmp_path.iterdir())  # nothing was downloaded


def _image(path: Path, size, seed):
    rng = np.random.RandomState(seed)
    Image.fromarray(rng.randint(0, 256, (*size, 3), dtype=np.uint8)).save(path)


def test_imagenet_folder_layout(tmp_path):
    for split in ("train", "val"):
        for k, wnid in enumerate(["n01", "n02"]):
            folder = tmp_path / split / wnid
            folder.mkdir(parents=True)
            _image(folder / f"a{k}.png", (260, 300), k)
    data = load_dataset("ImageNet", root=tmp_path)
    image, label = data.X_train[1]
    assert tuple(image.shape) == (3, 224, 224) and image.dtype == torch.uint8
    assert label == 1 and list(data.y_train) == [0, 1]
    assert data.class_names == ["n01", "n02"]
    with pytest.raises(ValueError, match="train"):
        load_dataset("imagenet", root=tmp_path / "nowhere")


def test_tiny_imagenet_layout_trains_a_net(tmp_path):
    wnids = ["n01", "n02"]
    for k, wnid in enumerate(wnids):
        folder = tmp_path / "train" / wnid / "images"
        folder.mkdir(parents=True)
        for j in range(3):
            _image(folder / f"{wnid}_{j}.JPEG", (64, 64), 10 * k + j)
    val = tmp_path / "val"
    (val / "images").mkdir(parents=True)
    lines = []
    for j in range(4):
        _image(val / "images" / f"val_{j}.JPEG", (64, 64), 100 + j)
        lines.append(f"val_{j}.JPEG\t{wnids[j % 2]}\t0\t0\t63\t63")
    (val / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    data = load_dataset("tiny-imagenet", root=tmp_path)
    assert len(data.X_train) == 6 and list(data.y_test) == [0, 1, 0, 1]
    image, label = data.X_test[1]
    assert tuple(image.shape) == (3, 64, 64) and label == 1
    clf = NetClassifier("lenet", max_epochs=1, batch_size=4, random_state=0)
    clf.fit(data.X_train, data.y_train)
    assert clf.predict(data.X_test).shape == (4,)
