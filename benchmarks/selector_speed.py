"""Time every registered selector on CIFAR-10-scale synthetic signals.

Every selector in ``available_selectors()`` (so selectors added later are benchmarked
automatically) is fitted on synthetic but internally consistent signals: a float32
embedding (default 50,000 x 512) with class structure, logits and softmax over 10
classes, 10 epochs of training dynamics (``correct``, ``true_proba``, ``margin``,
``loss``, ``proba_history``) and DeepFool distances; fraction 0.1, balanced.

Each case runs in its own Python process, so that its peak memory is its own: the
reported extra memory is the child's peak resident memory during ``fit`` minus its
resident memory once the signals are loaded. On Linux the kernel's peak counter
(VmHWM) is reset after loading, so a transient peak of the loading step cannot hide the
peak of ``fit``; ``extra_maxrss_mb`` in the JSON is the plain ``ru_maxrss`` difference
(a lower bound). Before timing, the selector is fitted once on 2,000 rows
to pay one-off costs (library initialisation, thread pools) outside the measurement.

A separate case runs ``KCenterGreedy`` on 200,000 x 512 float32 signals, unbalanced,
k = 2,000, both through the estimator and through the bare
:func:`~sk_coreset.selectors.geometry.k_center_greedy`, and compares the extra memory
with ``n * 4`` bytes (one float per row: the running minimum) and ``k * n * 4`` bytes
(the distance buffer of the reference implementation).

Results are merged into ``benchmarks/results/selectors.json`` and rendered as
``benchmarks/results/selectors.md``.

Usage::

    python benchmarks/selector_speed.py                      # every selector + the large case
    python benchmarks/selector_speed.py --only Herding KCenter --no-large
    python benchmarks/selector_speed.py --n 10000 --unbalanced --no-large
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
from _proc import cpu_seconds, peak_mb, reset_peak, run_child, status_mb

RESULTS = Path(__file__).resolve().parent / "results"
EPOCHS = 10
SCORE_TARGET_S = 1.0
GEOMETRY_TARGET_S = {"KCenterGreedy": 3.0, "Herding": 3.0}
# Score-based, but dominated by an exact kNN search, O(n_c^2 d) per class: no 1 s target.
HEAVY_SCORES = {"Cal"}


# ----------------------------------------------------------------- signals
def make_signals(n: int, dim: int, classes: int, seed: int = 0, embedding_only=False):
    """Synthetic signals with rows grouped in class blobs; generated in place, in chunks,
    so that no temporary is as large as the embedding."""
    from sk_coreset import Signals

    rng = np.random.default_rng(seed)
    y = rng.permutation(np.arange(n) % classes)
    centres = rng.standard_normal((classes, dim), dtype=np.float32) * 0.5
    embedding = rng.standard_normal((n, dim), dtype=np.float32)
    for start in range(0, n, 8192):
        embedding[start : start + 8192] += centres[y[start : start + 8192]]
    if embedding_only:
        return Signals(embedding=embedding), y
    W = rng.standard_normal((dim, classes), dtype=np.float32) / np.sqrt(dim)
    # centres / sqrt(dim) keeps the true-class logit near 6: confident, not one-hot
    logits = embedding @ (W + centres.T / np.sqrt(dim))
    logits += rng.standard_normal((n, classes), dtype=np.float32)
    scale = np.linspace(0.2, 1.0, EPOCHS, dtype=np.float32)
    history = logits[:, None, :] * scale[None, :, None]
    history += rng.standard_normal(history.shape, dtype=np.float32)
    proba_history = _softmax(history)
    rows = np.arange(n)
    true_logit = history[rows, :, y]
    history[rows, :, y] = -np.inf
    signals = Signals(
        embedding=embedding,
        logits=logits,
        proba=_softmax(logits),
        correct=true_logit > history.max(-1),
        true_proba=proba_history[rows, :, y],
        margin=true_logit - history.max(-1),
        loss=-np.log(proba_history[rows, :, y]),
        proba_history=proba_history,
        deepfool=rng.gamma(2.0, size=n).astype(np.float32),
    )
    return signals, y


def _softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


# ------------------------------------------------------------------- child
def run_case(case: dict) -> dict:
    """Run one case in this process and return its measurements."""
    import torch

    from sk_coreset.selectors import make_selector
    from sk_coreset.selectors.geometry import k_center_greedy

    function = case["kind"] == "function"
    signals, y = make_signals(case["n"], case["dim"], case["classes"],
                              embedding_only=case.get("embedding_only", False))
    if case.get("device"):
        signals = type(signals)(**{k: torch.as_tensor(v, device=case["device"])
                                   for k, v in signals.items()})
    budget = int(round(case["fraction"] * case["n"])) if case["fraction"] < 1 else case["fraction"]

    def fit(S, labels, k):
        if function:
            return k_center_greedy(S["embedding"], k, random_state=0)
        sel = make_selector(case["name"], fraction=k, balance=case["balance"], random_state=0)
        return sel.fit(S, labels)

    warm = min(2000, case["n"])
    fit(signals[:warm], y[:warm], max(1, warm // 10))
    gc.collect()
    baseline = peak_mb()
    hwm = reset_peak()
    resident = status_mb("VmRSS") if hwm else None
    cpu, start = cpu_seconds(), time.perf_counter()
    fit(signals, y, budget)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    extra_maxrss = max(0.0, peak_mb() - baseline)
    extra = max(0.0, status_mb("VmHWM") - resident) if hwm else extra_maxrss
    return {"seconds": seconds, "cpu_seconds": cpu_seconds() - cpu, "baseline_mb": baseline,
            "extra_mb": extra, "extra_maxrss_mb": extra_maxrss, "k": budget}


# ----------------------------------------------------------------- report
def target_for(result: dict):
    if result["kind"] == "function" or result["n"] != 50_000 or result.get("large"):
        return None
    from sk_coreset.base import ScoreSelector
    from sk_coreset.selectors import make_selector

    if result["name"] in GEOMETRY_TARGET_S:
        return GEOMETRY_TARGET_S[result["name"]]
    if result["name"] in HEAVY_SCORES:
        return None
    return SCORE_TARGET_S if isinstance(make_selector(result["name"]), ScoreSelector) else None


def case_key(case: dict) -> str:
    mode = "balanced" if case["balance"] else "unbalanced"
    return (f"{case['name']}|{case['kind']}|{case['n']}x{case['dim']}|{case['classes']}|"
            f"{case['fraction']}|{mode}|{case.get('device') or 'cpu'}")


def render(results: dict, meta: dict) -> str:
    lines = [
        "# Selector benchmark",
        "",
        f"Machine: {meta['machine']}; torch threads {meta['threads']}; "
        f"load average at start {meta['load_avg']:.2f} (the machine may be shared: "
        "timings are noisy). Extra memory = peak resident memory of the case's own process "
        "during `fit` minus its resident memory once the signals are loaded. CPU time = "
        "user + system time of the case's process during `fit`, over all its threads (on a "
        "busy machine it is steadier than wall time).",
        "",
        "| selector | signals | mode | k | time (s) | target (s) | CPU time (s) "
        "| extra peak memory (MiB) | status |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    large = []
    for r in sorted(results.values(), key=lambda r: (r["n"], r["name"], r["kind"])):
        target = target_for(r)
        ok = r["status"] == "ok"
        time_s = f"{r['seconds']:.2f}" if ok else "-"
        if ok and target is not None:
            time_s += " ✓" if r["seconds"] <= target else " ✗"
        name = r["name"] if r["kind"] == "selector" else "k_center_greedy()"
        mode = "balanced" if r["balance"] else "unbalanced"
        extra = f"{r['extra_mb']:.1f}" if ok else "-"
        cpu = f"{r['cpu_seconds']:.2f}" if ok else "-"
        lines.append(
            f"| {name} | {r['n']:,} x {r['dim']} | {mode} | {r.get('k', '-')} | {time_s} "
            f"| {target if target is not None else '-'} | {cpu} | {extra} | {r['status']} |"
        )
        if r.get("large") and ok:
            large.append(r)
    for r in large:
        n, k = r["n"], r["k"]
        name = "KCenterGreedy.fit" if r["kind"] == "selector" else "k_center_greedy()"
        lines += [
            "",
            f"**{name} at n = {n:,}, k = {k:,}:** extra memory {r['extra_mb']:.1f} MiB; "
            f"n·4 B = {n * 4 / 2**20:.2f} MiB, k·n·4 B = {k * n * 4 / 2**20:,.0f} MiB "
            f"(the reference's k x n buffer), n·d·4 B = {n * r['dim'] * 4 / 2**20:,.0f} MiB "
            "(one copy of the embedding). Buffers smaller than memory the process freed "
            "earlier reuse resident pages, so O(n) buffers may add less than n·4 B here.",
        ]
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", metavar="NAME",
                        help="selector names (any registered alias)")
    parser.add_argument("--n", type=int, default=50_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--fraction", type=float, default=0.1)
    parser.add_argument("--unbalanced", action="store_true")
    parser.add_argument("--no-large", action="store_true",
                        help="skip the 200,000 x 512 KCenterGreedy memory case")
    parser.add_argument("--large-n", type=int, default=200_000)
    parser.add_argument("--large-k", type=int, default=2_000)
    parser.add_argument("--device", default=None, help="e.g. cuda: signals as tensors there")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per case")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(run_case(json.loads(args.child))))
        return

    import torch

    from sk_coreset.selectors import available_selectors, make_selector

    names = available_selectors()
    if args.only:
        names = [type(make_selector(name)).__name__ for name in args.only]
    common = {"dim": args.dim, "classes": args.classes, "device": args.device}
    cases = [{**common, "name": name, "kind": "selector", "n": args.n,
              "fraction": args.fraction, "balance": not args.unbalanced} for name in names]
    if not args.no_large and "KCenterGreedy" in names:
        big = {**common, "name": "KCenterGreedy", "n": args.large_n, "fraction": args.large_k,
               "balance": False, "embedding_only": True, "large": True}
        cases += [{**big, "kind": "selector"}, {**big, "kind": "function"}]

    RESULTS.mkdir(parents=True, exist_ok=True)
    store = RESULTS / "selectors.json"
    saved = json.loads(store.read_text()) if store.exists() else {"results": {}}
    meta = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
            "threads": args.threads, "load_avg": os.getloadavg()[0],
            "torch": torch.__version__, "date": time.strftime("%Y-%m-%d %H:%M")}
    for case in cases:
        result = run_child(__file__, case, args.timeout, args.threads)
        saved["results"][case_key(case)] = result
        shown = f"{result['seconds']:.2f} s, +{result['extra_mb']:.0f} MiB" \
            if result["status"] == "ok" else result["status"]
        print(f"{case['name']:>22} {case['kind']:>8} n={case['n']:>7}: {shown}", flush=True)
        saved["meta"] = meta
        store.write_text(json.dumps(saved, indent=1))
        (RESULTS / "selectors.md").write_text(render(saved["results"], meta))


if __name__ == "__main__":
    main()
