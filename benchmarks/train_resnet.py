"""Train ResNet-18 with the DeepCore recipe on CIFAR-10; report images/s and accuracy.

Usage::

    python benchmarks/train_resnet.py                          # 15 epochs, 50,000 images
    python benchmarks/train_resnet.py --epochs 1 --subset 2000 --test-subset 1000   # CPU check

The recipe is sk_coreset's NetClassifier default: SGD lr 0.1, momentum 0.9, Nesterov,
weight decay 5e-4, cosine schedule per iteration to 1e-4, batch 128, random crop with
4-pixel reflect padding and horizontal flip. The accuracy is that of the final model on
the (sub)set of test images. Results go to benchmarks/results/ as JSON and markdown.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from sk_coreset.kernels import resolve_device
from sk_coreset.trainer import NetClassifier

HERE = Path(__file__).resolve().parent


def default_data() -> Path:
    root = os.environ.get("SK_CORESET_DATA", HERE.parent.parent / "shared" / "data")
    return Path(root) / "cifar10.npz"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("data", nargs="?", type=Path, default=default_data(),
                   help="CIFAR-10 .npz with X_train/y_train/X_test/y_test")
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--subset", type=int, default=50000, help="training images (first N rows)")
    p.add_argument("--test-subset", type=int, default=10000, help="test images (first N rows)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--module", default="resnet18")
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--note", default="", help="free text stored with the results")
    p.add_argument("--out", type=Path, default=HERE / "results")
    return p.parse_args(argv)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads"


def run(args) -> dict:
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    torch.backends.cudnn.benchmark = True
    with np.load(args.data) as f:
        X_tr, y_tr = f["X_train"][: args.subset], f["y_train"][: args.subset]
        X_te, y_te = f["X_test"][: args.test_subset], f["y_test"][: args.test_subset]
    clf = NetClassifier(
        args.module, max_epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
        device=str(device), random_state=args.seed, verbose=1,
        iterator_train__num_workers=args.workers,
    )
    start = time.perf_counter()
    clf.fit(X_tr, y_tr)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    train_s = time.perf_counter() - start
    start = time.perf_counter()
    accuracy = clf.score(X_te, y_te)
    eval_s = time.perf_counter() - start
    epoch_s = [float(d) for d in clf.history[:, "dur"]]
    steady = len(X_tr) / float(np.median(epoch_s[1:])) if len(epoch_s) > 1 else None
    return {
        "benchmark": "train_resnet",
        "module": args.module,
        "device": device_name(device),
        "torch": torch.__version__,
        "data": str(args.data),
        "n_train": int(len(X_tr)),
        "n_test": int(len(X_te)),
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "seed": args.seed,
        "train_seconds": train_s,
        "train_images_per_s": args.epochs * len(X_tr) / train_s,
        "steady_images_per_s": steady,
        "epoch_seconds": epoch_s,
        "final_train_loss": float(clf.history[-1, "train_loss"]),
        "test_accuracy": float(accuracy),
        "eval_images_per_s": len(X_te) / eval_s,
        "note": args.note,
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def markdown(res: dict) -> str:
    steady = res["steady_images_per_s"]
    rows = [
        ("device", res["device"]),
        ("network", res["module"]),
        ("training images x epochs", f"{res['n_train']} x {res['epochs']}"),
        ("train time (s)", f"{res['train_seconds']:.1f}"),
        ("train images/s (all epochs)", f"{res['train_images_per_s']:.1f}"),
        ("train images/s (median epoch after the first)",
         "n/a" if steady is None else f"{steady:.1f}"),
        ("final train loss", f"{res['final_train_loss']:.4f}"),
        (f"test accuracy ({res['n_test']} images)", f"{100 * res['test_accuracy']:.2f}%"),
        ("eval images/s", f"{res['eval_images_per_s']:.1f}"),
    ]
    if res["note"]:
        rows.append(("note", res["note"]))
    lines = ["| quantity | value |", "|---|---|"] + [f"| {k} | {v} |" for k, v in rows]
    return "\n".join(lines) + "\n"


def main(argv=None):
    args = parse_args(argv)
    res = run(args)
    args.out.mkdir(parents=True, exist_ok=True)
    kind = "cuda" if "CPU" not in res["device"] else "cpu"
    stem = f"train_{res['module']}_{kind}_{res['n_train']}x{res['epochs']}"
    (args.out / f"{stem}.json").write_text(json.dumps(res, indent=2) + "\n")
    table = markdown(res)
    (args.out / f"{stem}.md").write_text(table)
    print(table)
    print(f"wrote {args.out / (stem + '.json')} and .md")


if __name__ == "__main__":
    main()
