"""The ``sk-coreset`` command.

``sk-coreset demo`` runs every registered selector on scikit-learn's digits on CPU in a
few minutes; ``sk-coreset run`` is the DeepCore paper's command line. Both train a proxy
network (the featurizer), select coresets at each fraction and seed, train a network
from scratch on each coreset, and write a table (CSV), every number (JSON) and the
accuracy-versus-fraction plot (PNG) to ``--output``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np
from sklearn.base import clone

from .selectors import available_selectors, make_selector

DEMO_DEFAULTS = {
    "dataset": "digits", "data_path": None, "model": "mlp", "selection": ["all"],
    "fraction": [0.05, 0.1, 0.2, 0.5], "epochs": 15, "selection_epochs": 10,
    "seeds": [0, 1, 2], "batch_size": 64, "lr": 0.05, "device": "cpu",
    "output": "sk_coreset_demo", "threads": 1,
}
RUN_DEFAULTS = {
    "dataset": "CIFAR10", "data_path": "data", "model": "ResNet18", "selection": ["Uniform"],
    "fraction": [0.1], "epochs": 200, "selection_epochs": 10, "seeds": [0],
    "batch_size": 128, "lr": 0.1, "device": "auto", "output": "sk_coreset_results",
    "threads": None,
}
SCHEDULES = {"CosineAnnealingLR": "cosine", "constant": "constant"}
GREEDY = {"naivegreedy": "naive", "lazygreedy": "lazy", "stochasticgreedy": "stochastic"}


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"fraction {text} must lie in (0, 1]")
    return value


def _add_experiment_arguments(parser: argparse.ArgumentParser, defaults: dict) -> None:
    add = parser.add_argument
    add("--dataset", default=defaults["dataset"],
        help="dataset name for sk_coreset.datasets.load_dataset (digits is built in; "
             "e.g. MNIST, CIFAR10 need --data-path) (default: %(default)s)")
    add("--data-path", default=defaults["data_path"],
        help="directory holding the dataset files (default: %(default)s)")
    add("--download", action="store_true",
        help="download the dataset into --data-path if it is missing")
    add("--model", default=defaults["model"],
        help="network for both the proxy and the trainer, e.g. mlp, LeNet, ResNet18 "
             "(default: %(default)s)")
    add("--selection", nargs="+", default=defaults["selection"], metavar="METHOD",
        help="one or more selection methods by name (case-insensitive), 'Uncertainty' "
             "(see --uncertainty), 'Submodular' (see --submodular) or 'all' for every "
             f"registered selector: {', '.join(available_selectors())} "
             "(default: %(default)s)")
    add("--fraction", nargs="+", type=_fraction, default=defaults["fraction"],
        metavar="F", help="one or more coreset fractions in (0, 1] (default: %(default)s)")
    add("--epochs", type=int, default=defaults["epochs"],
        help="training epochs of the network trained on each coreset (default: %(default)s)")
    add("--selection-epochs", type=int, default=defaults["selection_epochs"],
        help="training epochs of the proxy network that computes the selection signals "
             "(default: %(default)s)")
    add("--seeds", nargs="+", type=int, default=defaults["seeds"], metavar="SEED",
        help="one repetition per seed; seed s seeds the proxy, the selector and the "
             "trainer (default: %(default)s)")
    add("--balance", action=argparse.BooleanOptionalAction, default=True,
        help="select every class separately with proportional budgets (default: balance)")
    add("--batch-size", type=int, default=defaults["batch_size"],
        help="mini-batch size of the proxy and the trainer (default: %(default)s)")
    add("--lr", type=float, default=defaults["lr"],
        help="learning rate of the trainer (default: %(default)s)")
    add("--optimizer", default="SGD", choices=["SGD", "Adam"],
        help="trainer optimizer; SGD uses momentum 0.9, Nesterov, weight decay 5e-4 "
             "(default: %(default)s)")
    add("--scheduler", default="CosineAnnealingLR", choices=list(SCHEDULES),
        help="trainer learning-rate schedule: cosine annealing to 1e-4 stepped per "
             "iteration, or constant (default: %(default)s)")
    add("--uncertainty", default="Entropy", choices=["LeastConfidence", "Entropy", "Margin"],
        help="score used by --selection Uncertainty (default: %(default)s)")
    add("--submodular", default="GraphCut",
        choices=["FacilityLocation", "GraphCut", "LogDeterminant"],
        help="function used by --selection Submodular (default: %(default)s)")
    add("--submodular-greedy", default="LazyGreedy",
        choices=["NaiveGreedy", "LazyGreedy", "StochasticGreedy"],
        help="greedy optimizer of the selectors that have one (submodular functions, "
             "and gradient matching where the optimizer is allowed) (default: %(default)s)")
    add("--output", default=defaults["output"],
        help="directory for results.csv, results.json and accuracy.png (default: %(default)s)")
    add("--device", default=defaults["device"],
        help="torch device: auto, cpu or cuda (default: %(default)s)")
    add("--max-samples", type=int, default=None,
        help="use only the first N training samples, for quick checks (default: all)")
    add("--threads", type=int, default=defaults["threads"],
        help="torch CPU threads (tiny networks train fastest on 1; default: %(default)s, "
             "None = torch's choice)")
    add("--n-jobs", type=int, default=None,
        help="parallel jobs over seeds and cells (joblib; keep 1 on a GPU) (default: 1)")
    add("--quiet", action="store_true", help="no progress bars")


def build_parser() -> argparse.ArgumentParser:
    """The ``sk-coreset`` argument parser (subcommands ``demo`` and ``run``)."""
    parser = argparse.ArgumentParser(
        prog="sk-coreset",
        description="Coreset selection for deep learning: evaluate selectors across "
                    "fractions and seeds.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser(
        "demo", help="every registered selector on digits, on CPU, in a few minutes",
        description="Every registered selector on scikit-learn's digits at fractions "
                    "0.05, 0.1, 0.2, 0.5 with 3 seeds, a small MLP as proxy and trainer.",
    )
    _add_experiment_arguments(demo, DEMO_DEFAULTS)
    run = sub.add_parser(
        "run", help="the DeepCore paper's experiment command line",
        description="Train a proxy, select coresets and train a network on each, as in "
                    "the DeepCore paper (final-epoch test accuracy).",
    )
    _add_experiment_arguments(run, RUN_DEFAULTS)
    return parser


def _accepts(selector, **params) -> bool:
    try:
        clone(selector).set_params(**params)._validate_params()
    except ValueError:
        return False
    return True


def build_selectors(args: argparse.Namespace) -> dict:
    """Selectors named by ``--selection``, with --balance, --uncertainty and --submodular*."""
    names = []
    for name in args.selection:
        key = name.lower()
        if key == "all":
            names.extend(available_selectors())
        elif key == "uncertainty":
            names.append(args.uncertainty)
        elif key == "submodular":
            names.append(args.submodular)
        else:
            names.append(name)
    selectors = {}
    for name in dict.fromkeys(names):
        selector = make_selector(name, balance=args.balance)
        greedy = GREEDY[args.submodular_greedy.lower()]
        if "optimizer" in selector.get_params() and _accepts(selector, optimizer=greedy):
            selector.set_params(optimizer=greedy)
        selectors[name] = selector
    return selectors


def build_models(args: argparse.Namespace):
    """The proxy (NetFeaturizer) and the trainer (NetClassifier) that the flags describe."""
    import torch

    from .featurizers import NetFeaturizer
    from .trainer import NetClassifier

    featurizer = NetFeaturizer(
        module=args.model, max_epochs=args.selection_epochs, batch_size=args.batch_size,
        device=args.device, verbose=0,
    )
    trainer = NetClassifier(
        module=args.model, max_epochs=args.epochs, lr=args.lr, batch_size=args.batch_size,
        optimizer=getattr(torch.optim, args.optimizer), schedule=SCHEDULES[args.scheduler],
        device=args.device, verbose=0,
    )
    return featurizer, trainer


def _load(args):
    from .datasets import load_dataset
    from .model_selection import _take

    X, y, X_test, y_test = load_dataset(args.dataset, root=args.data_path,
                                        download=args.download)
    if args.max_samples is not None:
        rows = np.arange(min(args.max_samples, len(y)))
        X, y = _take(X, rows), y[rows]
    return X, y, X_test, y_test


def _experiment(args, selectors, data):
    import torch

    from .model_selection import CoresetCV

    X, y, X_test, y_test = data
    featurizer, trainer = build_models(args)
    search = CoresetCV(
        trainer, args.fraction, selectors, featurizer=featurizer,
        test_set=(X_test, y_test), seeds=args.seeds, n_jobs=args.n_jobs,
        verbose=0 if args.quiet else 1,
    )
    previous = torch.get_num_threads()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    try:
        return search.fit(X, y)
    finally:
        torch.set_num_threads(previous)


def _jsonable(value):
    if isinstance(value, np.ma.MaskedArray):
        value = value.data
    if isinstance(value, np.ndarray):
        return [_jsonable(v) for v in value.tolist()]
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, np.generic):
        return value.item()
    return value


def write_outputs(search, output: str, config: dict) -> dict:
    """Write results.csv, results.json and accuracy.png; return their paths."""
    from matplotlib.figure import Figure

    from .plotting import summary_table

    os.makedirs(output, exist_ok=True)
    paths = {kind: os.path.join(output, name) for kind, name in
             (("csv", "results.csv"), ("json", "results.json"), ("png", "accuracy.png"))}
    search.to_frame().drop(columns="params").to_csv(paths["csv"], index=False)
    record = {
        "config": config,
        "best_params": search.best_params_,
        "best_score": search.best_score_,
        "split_labels": search.split_labels_,
        "cv_results": search.cv_results_,
        "cells": search.cells_,
        "summary": summary_table(search).reset_index().to_dict(orient="records"),
    }
    with open(paths["json"], "w") as fh:
        json.dump(_jsonable(record), fh, indent=1)
    fig = Figure(figsize=(10, 5.5), layout="constrained")
    search.plot(ax=fig.subplots(), title=f"{config['dataset']}, {config['model']}: test "
                f"accuracy of a network trained on each coreset")
    fig.savefig(paths["png"], dpi=150)
    return paths


def main(argv=None) -> int:
    """Entry point of the ``sk-coreset`` console script."""
    args = build_parser().parse_args(argv)
    try:
        selectors = build_selectors(args)
        data = _load(args)
    except (ValueError, OSError) as exc:
        print(f"sk-coreset: error: {exc}", file=sys.stderr)
        return 2
    start = time.perf_counter()
    search = _experiment(args, selectors, data)
    elapsed = time.perf_counter() - start
    config = dict(vars(args))
    config["elapsed_seconds"] = round(elapsed, 2)
    paths = write_outputs(search, args.output, config)

    from .plotting import summary_table

    print(f"{args.dataset} / {args.model}: test accuracy (%) of a network trained on each "
          f"coreset, mean ± std over seeds {args.seeds}")
    print(summary_table(search).to_string())
    print(f"best: {search.best_params_} at {100 * search.best_score_:.1f}%")
    print(f"finished in {elapsed:.1f} s; wrote {', '.join(paths.values())}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
