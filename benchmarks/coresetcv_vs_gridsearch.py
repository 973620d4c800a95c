"""CoresetCV against the equivalent GridSearchCV over CoresetClassifier, on the demo grid.

Both evaluate the same cells (selector x fraction x seed, trained on digits' training set
and scored on its test set) with the demo's proxy and trainer. GridSearchCV trains the
proxy once per candidate and fits every selector once per fraction; CoresetCV trains the
proxy once per seed and reuses nested rankings. The script checks that every cell gets the
same score and reports both wall times.

The default is the full demo grid (every registered selector; about 5 minutes for both
on 2 CPU cores); ``--selection`` restricts both methods to a subset. Wall and CPU seconds
are reported: on a shared machine the CPU ratio is the steadier one. Results go to
benchmarks/results/ as JSON and markdown.

Usage::

    python benchmarks/coresetcv_vs_gridsearch.py [--selection Uniform Entropy] [--n-jobs 1]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.model_selection import GridSearchCV, PredefinedSplit

from sk_coreset.cli import DEMO_DEFAULTS, build_models, build_parser, build_selectors
from sk_coreset.datasets import load_dataset
from sk_coreset.model_selection import CoresetClassifier, CoresetCV

RESULTS = Path(__file__).resolve().parent / "results"


def _timed(fit, *data):
    """(wall seconds, CPU seconds of this process) of ``fit(*data)``."""
    wall, cpu = time.perf_counter(), time.process_time()
    fit(*data)
    return time.perf_counter() - wall, time.process_time() - cpu


def _grid_search(args, selectors, data):
    X, y, X_test, y_test = data
    featurizer, trainer = build_models(args)
    grid = [
        {"selector": [sel], "selector__fraction": args.fraction,
         "selector__random_state": [s], "featurizer__random_state": [s],
         "estimator__random_state": [s]}
        for sel in selectors.values() for s in args.seeds
    ]
    split = PredefinedSplit(np.r_[np.full(len(y), -1), np.zeros(len(y_test), dtype=int)])
    search = GridSearchCV(CoresetClassifier(featurizer, estimator=trainer), grid, cv=split,
                          refit=False, n_jobs=args.n_jobs)
    elapsed = _timed(search.fit, np.concatenate([X, X_test]), np.concatenate([y, y_test]))
    # GridSearchCV clones each candidate's selector; every selector class appears once
    names = {type(sel).__name__: name for name, sel in selectors.items()}
    scores = {}
    for params, score in zip(search.cv_results_["params"],
                             search.cv_results_["split0_test_score"]):
        name = names[type(params["selector"]).__name__]
        scores[(name, params["selector__fraction"], params["selector__random_state"])] = score
    return scores, elapsed


def _coreset_cv(args, selectors, data):
    X, y, X_test, y_test = data
    featurizer, trainer = build_models(args)
    search = CoresetCV(trainer, args.fraction, selectors, featurizer=featurizer,
                       test_set=(X_test, y_test), seeds=args.seeds, n_jobs=args.n_jobs)
    elapsed = _timed(search.fit, X, y)
    scores = {(c["selector"], c["fraction"], c["seed"]): c["test_score"] for c in search.cells_}
    return scores, elapsed


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--selection", nargs="+", default=["all"],
                        help="selectors to compare (default: all, the demo grid)")
    parser.add_argument("--n-jobs", type=int, default=None, help="joblib jobs for both")
    parser.add_argument("--output", default=str(RESULTS), help="results directory")
    bench = parser.parse_args(argv)
    args = build_parser().parse_args(["demo", "--selection", *bench.selection])
    args.n_jobs = bench.n_jobs
    torch.set_num_threads(args.threads)
    selectors = build_selectors(args)
    X, y, X_test, y_test = load_dataset(args.dataset)
    data = (X, y, X_test, y_test)

    load_before = os.getloadavg()
    cv_scores, cv_time = _coreset_cv(args, selectors, data)
    gs_scores, gs_time = _grid_search(args, build_selectors(args), data)
    diffs = {k: abs(cv_scores[k] - gs_scores[k]) for k in cv_scores}
    mismatched = sorted(k for k, d in diffs.items() if d > 0)
    report = {
        "grid": {"selectors": list(selectors), "fractions": args.fraction, "seeds": args.seeds,
                 "cells": len(cv_scores), "dataset": args.dataset, "model": args.model,
                 "epochs": args.epochs, "selection_epochs": args.selection_epochs,
                 "demo_defaults": DEMO_DEFAULTS},
        "coresetcv_seconds": round(cv_time[0], 2),
        "gridsearchcv_seconds": round(gs_time[0], 2),
        "speedup": round(gs_time[0] / cv_time[0], 2),
        "coresetcv_cpu_seconds": round(cv_time[1], 2),
        "gridsearchcv_cpu_seconds": round(gs_time[1], 2),
        "cpu_speedup": round(gs_time[1] / cv_time[1], 2),
        "identical_scores": not mismatched,
        "max_abs_score_difference": max(diffs.values()),
        "mismatched_cells": [list(k) for k in mismatched],
        "machine": {"platform": platform.platform(), "processor": platform.processor(),
                    "torch_threads": torch.get_num_threads(), "n_jobs": bench.n_jobs,
                    "load_average_before_after": [load_before[0], os.getloadavg()[0]]},
    }
    out = Path(bench.output)
    out.mkdir(parents=True, exist_ok=True)
    (out / "coresetcv_vs_gridsearch.json").write_text(json.dumps(report, indent=1))
    (out / "coresetcv_vs_gridsearch.md").write_text(_markdown(report))
    print(_markdown(report))
    return report


def _markdown(r):
    g = r["grid"]
    return (
        "# CoresetCV vs GridSearchCV (digits demo grid)\n\n"
        f"Selectors: {', '.join(g['selectors'])}; fractions {g['fractions']}; seeds "
        f"{g['seeds']}; {g['cells']} cells; {g['model']} proxy ({g['selection_epochs']} "
        f"epochs) and trainer ({g['epochs']} epochs), trained on the training split and "
        "scored on the test split.\n\n"
        "| method | wall seconds | CPU seconds |\n|---|---|---|\n"
        f"| GridSearchCV(CoresetClassifier) | {r['gridsearchcv_seconds']} | "
        f"{r['gridsearchcv_cpu_seconds']} |\n"
        f"| CoresetCV | {r['coresetcv_seconds']} | {r['coresetcv_cpu_seconds']} |\n\n"
        f"Speedup: **{r['speedup']}x** wall, **{r['cpu_speedup']}x** CPU. "
        "Identical scores in every cell: "
        f"**{r['identical_scores']}** (max |difference| {r['max_abs_score_difference']}).\n\n"
        "CPU seconds count this process only (meaningful with --n-jobs 1). The wall-clock "
        "ratio depends on other load: load average before/after "
        f"{r['machine']['load_average_before_after']} on {os.cpu_count()} cores.\n"
    )


if __name__ == "__main__":
    main()
