"""GreeDi (two-round partitioned facility location) on a pool too large for one kernel.

An unbalanced pool of float32 Gaussian blobs (default 200,000 x 64, 100 blobs) is too
large for FacilityLocation's dense kernel (n^2 float32: 149 GiB). GreeDi with 16 random
and 16 k-means parts selects a fraction of it (default 0.01): each part's dense kernel
is (n / 16)^2, round 2 needs the candidates' similarities to the pool in blocks. Every
case runs in its own Python process, and its extra memory is that process's peak
resident memory during ``fit`` minus its resident memory once the data are loaded (the
kernel's peak counter is reset after loading, as in ``selector_speed.py``); the parts
run one after another (``n_jobs=1``), so the peak is the whole job's.

Quality is the facility-location objective ``sum_i max_(j in S) (0.5 + 0.5 cos(x_i,
x_j))`` over every row, computed here in blocks: on the full pool relative to random
subsets of the same size (mean of 3), and on a subsample (default 20,000 rows) where
the centralised greedy (FacilityLocation with its dense kernel) is feasible, as the share
of the centralised gain over random, ``(f - f_random) / (f_central - f_random)``.

Results go to ``benchmarks/results/greedi.json`` and ``greedi.md``.

Usage::

    python benchmarks/greedi.py                               # 200,000 x 64, fraction 0.01
    python benchmarks/greedi.py --n 50000 --max-memory 1      # smaller; 1 GiB per kernel
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _proc import cpu_seconds, peak_mb, reset_peak, run_child, status_mb

RESULTS = Path(__file__).resolve().parent / "results"


# ----------------------------------------------------------------- data and objective
def make_pool(n: int, dim: int, blobs: int, seed: int = 0) -> np.ndarray:
    """Gaussian blobs: centres N(0, 4 I), unit noise, float32, generated in chunks."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((blobs, dim), dtype=np.float32) * 2
    X = rng.standard_normal((n, dim), dtype=np.float32)
    member = rng.integers(0, blobs, n)
    for start in range(0, n, 65536):
        X[start : start + 65536] += centres[member[start : start + 65536]]
    return X


def subsample(n: int, size: int, seed: int = 1) -> np.ndarray:
    return np.sort(np.random.default_rng(seed).choice(n, size, replace=False))


def fl_objective(X: np.ndarray, picks) -> float:
    """``sum_i max_(j in picks) (0.5 + 0.5 cos)``, in blocks of rows (float64 sums)."""
    import torch

    U = torch.from_numpy(X)
    U = U / U.norm(dim=1, keepdim=True).clamp_min(1e-30)
    C = U[torch.as_tensor(np.asarray(picks))]
    total = 0.0
    for start in range(0, len(U), 8192):
        best = (U[start : start + 8192] @ C.T).max(1).values.clamp(max=1.0)
        total += float((0.5 + 0.5 * best).sum(dtype=torch.float64))
    return total


# ------------------------------------------------------------------- child
def run_case(case: dict) -> dict:
    """Run one case in this process and return its measurements."""
    import torch

    from sk_coreset.selectors import FacilityLocation, GreeDi

    X = make_pool(case["n"], case["dim"], case["blobs"])
    if case["rows"] < case["n"]:
        X = np.ascontiguousarray(X[subsample(case["n"], case["rows"])])
    k = max(1, round(case["fraction"] * len(X)))
    if case["kind"] == "baseline":
        rng = np.random.default_rng(0)
        values = [fl_objective(X, rng.choice(len(X), k, replace=False)) for _ in range(3)]
        return {"objective": float(np.mean(values)), "k": k}
    memory = case["max_memory_gib"] * 2**30
    if case["kind"] == "central":
        sel = FacilityLocation(k, balance=False, kernel="dense")  # 4 GiB: the reference
    else:
        sel = GreeDi(FacilityLocation(max_memory=memory), k, n_partitions=case["parts"],
                     partition=case["kind"], balance=False, random_state=0, n_jobs=1)
    gc.collect()
    baseline = peak_mb()
    hwm = reset_peak()
    resident = status_mb("VmRSS") if hwm else None
    cpu, start = cpu_seconds(), time.perf_counter()
    sel.fit(X)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    extra_maxrss = max(0.0, peak_mb() - baseline)
    extra = max(0.0, status_mb("VmHWM") - resident) if hwm else extra_maxrss
    out = {"seconds": seconds, "cpu_seconds": cpu_seconds() - cpu, "extra_mb": extra,
           "extra_maxrss_mb": extra_maxrss, "k": k,
           "objective": fl_objective(X, sel.sample_indices_)}
    if case["kind"] != "central":
        sizes = sel.partition_sizes_[0]
        out.update(candidates=int(len(sel.local_indices_)), part_min=int(sizes.min()),
                   part_max=int(sizes.max()))
    return out


# ----------------------------------------------------------------- report
def summarise(results: list) -> None:
    """Add the quality ratios to each result, in place."""
    for rows in {r["rows"] for r in results}:
        same = {r["kind"]: r for r in results if r["rows"] == rows and r["status"] == "ok"}
        rand = same.get("baseline", {}).get("objective")
        central = same.get("central", {}).get("objective")
        for r in same.values():
            r["coverage"] = r["objective"] / rows
            if rand and r["kind"] != "baseline":
                r["vs_random"] = r["objective"] / rand
            if rand and central and r["kind"] in ("random", "kmeans"):
                r["share_of_central_gain"] = (r["objective"] - rand) / (central - rand)


def _cells(result: dict):
    """Formatter of one result's fields: "-" for a field it lacks."""
    return lambda key, fmt: format(result[key], fmt) if key in result else "-"


def render(results: list, meta: dict) -> str:
    lines = [
        "# GreeDi: two-round partitioned facility location",
        "",
        f"Machine: {meta['machine']}; torch threads {meta['threads']}; load average at "
        f"start {meta['load_avg']:.2f} (the machine was shared with other jobs: timings "
        "are noisy). Pool: Gaussian blobs, float32, unbalanced (one pool); fraction "
        f"{meta['fraction']}; GreeDi(FacilityLocation(max_memory={meta['max_memory_gib']} "
        f"GiB)) with {meta['parts']} parts, n_jobs=1. Extra memory = peak resident memory "
        "of the case's process during `fit` minus its resident memory after loading. "
        "f = facility-location objective (0.5 + 0.5 cos) over every row; random = mean "
        "of 3 random subsets of the same size; share = (f - f_random) / (f_central - "
        "f_random).",
        "",
        "| rows | method | k | candidates | parts (min-max) | time (s) | CPU time (s) "
        "| extra peak memory (MiB) | f / rows | f / f_random | share of centralised gain "
        "| status |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    names = {"baseline": "random subset", "central": "FacilityLocation (centralised, dense)"}
    for r in sorted(results, key=lambda r: (-r["rows"], r["kind"])):
        name = names.get(r["kind"], f"GreeDi, {r['kind']} parts")
        cell = _cells(r)
        parts = f"{r['part_min']:,}-{r['part_max']:,}" if "part_min" in r else "-"
        lines.append(
            f"| {r['rows']:,} | {name} | {cell('k', ',')} | {cell('candidates', ',')} "
            f"| {parts} | {cell('seconds', '.1f')} | {cell('cpu_seconds', '.1f')} "
            f"| {cell('extra_mb', ',.0f')} | {cell('coverage', '.4f')} "
            f"| {cell('vs_random', '.4f')} | {cell('share_of_central_gain', '.3f')} "
            f"| {r['status']} |"
        )
    n = meta["n"]
    lines += ["", f"A dense kernel of the whole pool would take n^2 x 4 B = "
              f"{n * n * 4 / 2**30:,.1f} GiB; each of the {meta['parts']} random parts' "
              f"kernels takes {(n / meta['parts']) ** 2 * 4 / 2**30:,.2f} GiB."]
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--blobs", type=int, default=100)
    parser.add_argument("--fraction", type=float, default=0.01)
    parser.add_argument("--parts", type=int, default=16)
    parser.add_argument("--sub", type=int, default=20_000,
                        help="rows of the subsample where the centralised greedy runs")
    parser.add_argument("--max-memory", type=float, default=4.0, help="GiB per kernel")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds per case")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(run_case(json.loads(args.child))))
        return

    import torch

    common = {"n": args.n, "dim": args.dim, "blobs": args.blobs, "fraction": args.fraction,
              "parts": args.parts, "max_memory_gib": args.max_memory}
    cases = [{**common, "rows": rows, "kind": kind}
             for rows, kinds in ((args.n, ("baseline", "random", "kmeans")),
                                 (args.sub, ("baseline", "central", "random", "kmeans")))
             for kind in kinds]
    meta = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
            "threads": args.threads, "load_avg": os.getloadavg()[0], "torch": torch.__version__,
            "date": time.strftime("%Y-%m-%d %H:%M"), **common}
    results = []
    RESULTS.mkdir(parents=True, exist_ok=True)
    for case in cases:
        result = run_child(__file__, case, args.timeout, args.threads)
        results.append(result)
        shown = (f"{result.get('seconds', 0):.1f} s, +{result.get('extra_mb', 0):.0f} MiB, "
                 f"f={result['objective']:.1f}") if result["status"] == "ok" else result["status"]
        print(f"rows={case['rows']:>7} {case['kind']:>8}: {shown}", flush=True)
    summarise(results)
    (RESULTS / "greedi.json").write_text(json.dumps({"meta": meta, "results": results},
                                                    indent=1))
    (RESULTS / "greedi.md").write_text(render(results, meta))


if __name__ == "__main__":
    main()
