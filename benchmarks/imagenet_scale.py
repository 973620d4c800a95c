"""Every registered selector on ImageNet-shaped, memory-mapped signals, locally and on Dask.

The signals are synthetic but internally consistent, with the class structure of
``selector_speed.make_signals``: by default 1,281,167 rows (ImageNet-1k's training set),
1,000 classes, a float32 embedding of width 512 with one Gaussian blob per class, logits
and their softmax over the classes, 10 epochs of training dynamics (``correct``,
``true_proba``, ``margin``, ``loss``), DeepFool distances and the per-epoch softmax
``proba_history``. The full history, (n, 10, 1,000) float32, would take 51 GB, so only
its last ``--history-epochs`` epochs (3 by default: TDDS needs at least 3 to be
non-degenerate) are stored, in ``--history-dtype`` (float32 by default); the output says
which. Rows are ordered by class on disk (``--layout sorted``, the order of an
``ImageFolder`` dataset featurized without shuffling); ``--layout shuffled`` interleaves
the classes at random, as ``selector_speed.py`` does, which makes every per-class read
touch pages all over each file: beyond the page cache that is random I/O, one page fault
at a time. Each signal is a ``.npy`` file in ``--data-dir``, written once in row chunks (the
generating process stays within about 2 GB) and reused by later runs when its
description (``signals.json``) matches; the selectors read them as ``np.load(...,
mmap_mode="r")`` memory maps, so only the rows of the pool being selected are in memory.

Every selector in ``available_selectors()`` (so selectors added later are included;
``--only`` picks some) is fitted at fraction 0.1, balanced (DeepCore's protocol), with
``random_state=0`` and the whole signal bundle, each case in its own Python process:

- ``local``: one process, ``n_jobs=None``, ``--threads`` torch/BLAS threads;
- ``dask`` (``--dask``): the same fit with ``n_jobs=-1`` inside
  ``joblib.parallel_backend("dask")`` on a ``distributed.LocalCluster`` of 2 worker
  processes with 1 thread each (``--worker-memory`` each), started in the case's process
  before the clock starts. The pools are read from the memory maps in that process and
  shipped to the workers. Its ``sample_indices_`` (and weights) are compared with the
  local run's when both ran. Dask's nanny starts workers with
  ``MALLOC_TRIM_THRESHOLD_=65536``, which turns off glibc's adaptive mmap threshold: every
  temporary of more than 128 KiB is then mapped and unmapped anew, and selectors that
  allocate many multi-MB torch temporaries per pool (Glister at 1,000 classes: 3-4x) run
  slower than in a plain process. ``--worker-env MALLOC_MMAP_THRESHOLD_=33554432
  MALLOC_TRIM_THRESHOLD_=268435456`` measures the workers with that undone.

Measured per case, during ``fit`` only (the signals are opened and a warm-up fit on 2,000
rows pays one-off costs first): wall time in the case's process (for Dask, the client and
scheduler side), CPU time (user + system, all threads; for Dask the client's plus the
workers'), and memory:

- ``extra RSS``: the case process's peak resident memory during ``fit`` (VmHWM, reset
  just before ``fit`` as in ``selector_speed.py``) minus its resident memory before.
  Pages of the memory-mapped files that ``fit`` reads count in it (as ``RssFile``) although
  the kernel can drop them at any time: it is an upper bound of what ``fit`` needs.
- ``peak private memory``: the largest sum, over the case's process and all its
  descendants (the Dask workers), of anonymous resident memory (``rss - shared`` from
  ``/proc/PID/statm``, sampled every 0.1 s by the parent from process start to end). It
  excludes the file pages of the memory maps and is what is judged against the issue's
  16 GB limit; short spikes between two samples can be missed.
- ``workers' peak``: each Dask worker's VmHWM during ``fit`` (reset before it); workers
  map no file, so this is their private memory.

A case that runs longer than ``--timeout`` seconds is killed (with its workers) and
recorded as timed out; a case that fails is recorded with the end of its traceback.
``--fit-classes K`` selects only the rows of the first K classes (a slice of the
memory maps, so they stay memory-mapped; needs ``--layout sorted``) and extrapolates the
time to every class linearly: pools are independent and their sizes equal.

Results are merged by case key into ``benchmarks/results/imagenet_scale.json`` and
rendered as ``benchmarks/results/imagenet_scale.md``. Runs at another size than
ImageNet's (``--n``, ``--classes``) go to ``imagenet_scale_<n>x<classes>.*`` unless
``--output-suffix`` names the files.

Usage::

    python benchmarks/imagenet_scale.py --generate-only           # write the signals once
    python benchmarks/imagenet_scale.py --dask                    # every selector, both modes
    python benchmarks/imagenet_scale.py --only Entropy KCenterGreedy --timeout 600
    python benchmarks/imagenet_scale.py --n 50000 --classes 100 \\
        --data-dir /tmp/imnet_small --dask                         # a small run
    python benchmarks/imagenet_scale.py --fit-classes 10 --output-suffix first10classes
    python benchmarks/imagenet_scale.py --render                  # markdown from the JSON
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import hashlib
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
from _proc import cpu_seconds, reset_peak, status_mb

RESULTS = Path(__file__).resolve().parent / "results"
IMAGENET_N, IMAGENET_CLASSES = 1_281_167, 1000
LIMIT_MB = 16 * 1024
EPOCHS = 10
CHUNK_ROWS = 8192
FORMAT_VERSION = 1
POLL_S = 0.1
WARM_ROWS = 2000


# ----------------------------------------------------------------- signals on disk
def signal_specs(spec: dict) -> dict:
    """Shape and dtype of every file: name -> (shape, dtype)."""
    n, c, d, e = spec["n"], spec["classes"], spec["dim"], spec["epochs"]
    return {
        "labels": ((n,), "int32"),
        "embedding": ((n, d), "float32"),
        "logits": ((n, c), "float32"),
        "proba": ((n, c), "float32"),
        "correct": ((n, e), "bool"),
        "true_proba": ((n, e), "float32"),
        "margin": ((n, e), "float32"),
        "loss": ((n, e), "float32"),
        "proba_history": ((n, spec["history_epochs"], c), spec["history_dtype"]),
        "deepfool": ((n,), "float32"),
    }


def spec_bytes(spec: dict) -> dict:
    return {name: int(np.prod(shape)) * np.dtype(dtype).itemsize
            for name, (shape, dtype) in signal_specs(spec).items()}


def signals_present(folder: Path, spec: dict) -> bool:
    """Whether ``folder`` holds complete signals generated from ``spec``."""
    meta = folder / "signals.json"
    if not meta.exists():
        return False
    saved = json.loads(meta.read_text())
    if {k: saved.get(k) for k in spec} != spec:
        return False
    for name, (shape, dtype) in signal_specs(spec).items():
        path = folder / f"{name}.npy"
        if not path.exists():
            return False
        array = np.load(path, mmap_mode="r")
        if array.shape != shape or array.dtype != np.dtype(dtype):
            return False
    return True


def ensure_signals(folder: Path, spec: dict, threads: int) -> dict:
    """Generate the signals into ``folder`` unless they are there already; their description."""
    folder.mkdir(parents=True, exist_ok=True)
    if signals_present(folder, spec):
        return json.loads((folder / "signals.json").read_text())
    need = sum(spec_bytes(spec).values())
    free = shutil.disk_usage(folder).free + sum(
        p.stat().st_size for p in folder.glob("*.npy"))
    if need + 2**30 > free:
        raise SystemExit(f"The signals need {need / 1e9:.1f} GB but {folder} has "
                         f"{free / 1e9:.1f} GB free; pass another --data-dir or a smaller "
                         "--history-epochs / --history-dtype float16.")
    (folder / "signals.json").unlink(missing_ok=True)
    print(f"generating {need / 1e9:.1f} GB of signals in {folder} ...", flush=True)
    start = time.perf_counter()
    generate(folder, spec, threads)
    meta = {**spec, "generation_seconds": time.perf_counter() - start, "bytes": need,
            "generated": time.strftime("%Y-%m-%d %H:%M")}
    (folder / "signals.json").write_text(json.dumps(meta, indent=1))
    print(f"generated in {meta['generation_seconds']:.0f} s", flush=True)
    return meta


def generate(folder: Path, spec: dict, threads: int):
    """Write every signal chunk by chunk with plain file writes, so the memory in use is
    that of one chunk (the files' pages go to the page cache, not to this process)."""
    import torch
    from tqdm import tqdm

    torch.set_num_threads(threads)
    n, classes, dim = spec["n"], spec["classes"], spec["dim"]
    rng = np.random.default_rng(spec["seed"])
    y = rng.permutation(np.arange(n) % classes)
    if spec["layout"] == "sorted":
        y = np.sort(y)
    centres = torch.from_numpy(rng.standard_normal((classes, dim), dtype=np.float32) * 0.5)
    W = torch.from_numpy(rng.standard_normal((dim, classes), dtype=np.float32) / dim**0.5)
    # centres / sqrt(dim) keeps the true-class logit near 6: confident, not one-hot
    head = W + centres.T / dim**0.5
    scale = torch.linspace(0.2, 1.0, spec["epochs"])
    keep = spec["history_epochs"]
    with contextlib.ExitStack() as stack:
        files = {}
        for name, (shape, dtype) in signal_specs(spec).items():
            path = folder / f"{name}.npy"
            np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape).flush()
            offset = np.load(path, mmap_mode="r").offset
            files[name] = (stack.enter_context(open(path, "r+b")), offset, np.dtype(dtype))
        for index, start in enumerate(tqdm(range(0, n, CHUNK_ROWS), desc="signals",
                                           mininterval=5)):
            rows = slice(start, min(n, start + CHUNK_ROWS))
            gen = torch.Generator().manual_seed(spec["seed"] * 1_000_003 + index)
            labels = torch.from_numpy(y[rows].astype(np.int64))
            parts = _chunk(gen, labels, centres, head, scale, keep)
            parts["labels"] = labels.to(torch.int32)
            parts["deepfool"] = torch.from_numpy(np.random.default_rng(
                (spec["seed"], index)).gamma(2.0, size=len(labels)).astype(np.float32))
            for name, (handle, offset, dtype) in files.items():
                part = np.ascontiguousarray(parts[name].numpy(), dtype=dtype)
                handle.seek(offset + start * (part.nbytes // len(part)))
                handle.write(part.tobytes())


def _chunk(gen, labels, centres, head, scale, keep: int) -> dict:
    """One chunk of rows of every signal but labels and deepfool (torch, float32)."""
    import torch

    m, (classes, dim) = len(labels), centres.shape
    embedding = torch.randn(m, dim, generator=gen) + centres[labels]
    logits = embedding @ head + torch.randn(m, classes, generator=gen)
    history = logits[:, None, :] * scale[None, :, None]
    history += torch.randn(history.shape, generator=gen)
    proba_history = torch.softmax(history, dim=-1)
    rows = torch.arange(m)
    true_logit = history[rows, :, labels].clone()
    true_proba = proba_history[rows, :, labels]
    history[rows, :, labels] = -torch.inf
    best_other = history.amax(dim=-1)
    return {
        "embedding": embedding,
        "logits": logits,
        "proba": torch.softmax(logits, dim=-1),
        "correct": true_logit > best_other,
        "true_proba": true_proba,
        "margin": true_logit - best_other,
        "loss": -true_proba.log(),
        "proba_history": proba_history[:, -keep:],
    }


def load_signals(folder: Path):
    """The signals as read-only memory maps, and the labels in memory."""
    from sk_coreset import Signals

    names = [p.stem for p in sorted(folder.glob("*.npy")) if p.stem != "labels"]
    signals = Signals(**{name: np.load(folder / f"{name}.npy", mmap_mode="r")
                         for name in names})
    return signals, np.load(folder / "labels.npy").astype(np.int64)


# ----------------------------------------------------------------- memory, clocks
def _worker_reset() -> float:
    """On a Dask worker: reset VmHWM, return the CPU time so far."""
    reset_peak()
    return cpu_seconds()


def _worker_peak() -> dict:
    """On a Dask worker: VmHWM (MiB) since the reset and the CPU time so far."""
    return {"hwm_mb": status_mb("VmHWM") or resource.getrusage(
        resource.RUSAGE_SELF).ru_maxrss / 1024, "cpu": cpu_seconds()}


def _worker_threads(threads: int) -> int:
    import torch

    torch.set_num_threads(threads)
    return os.getpid()


class TreeMonitor(threading.Thread):
    """Poll a process and its descendants; keep the peak of their summed private
    (anonymous: ``rss - shared``) and total resident memory, in MiB."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid, self.private_mb, self.rss_mb = pid, 0.0, 0.0
        self.most_processes = 0
        self._done = threading.Event()

    def run(self):
        import psutil

        try:
            root = psutil.Process(self.pid)
        except psutil.Error:
            return
        while not self._done.is_set():
            private = rss = 0
            try:
                procs = [root, *root.children(recursive=True)]
            except psutil.Error:
                break
            for proc in procs:
                try:
                    info = proc.memory_info()
                except psutil.Error:
                    continue
                private += info.rss - info.shared
                rss += info.rss
            self.private_mb = max(self.private_mb, private / 2**20)
            self.rss_mb = max(self.rss_mb, rss / 2**20)
            self.most_processes = max(self.most_processes, len(procs))
            self._done.wait(POLL_S)

    def stop(self):
        self._done.set()
        self.join()


def kill_tree(pid: int):
    """Kill a process we started and every process it started (leaves first)."""
    import psutil

    try:
        root = psutil.Process(pid)
        procs = root.children(recursive=True)[::-1] + [root]
    except psutil.Error:
        return
    for proc in procs:
        try:
            proc.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(procs, timeout=10)


# ----------------------------------------------------------------- child
def run_case(case: dict) -> dict:
    """Run one case in this process and return its measurements."""
    import joblib
    import torch

    from sk_coreset.selectors import make_selector

    torch.set_num_threads(case["threads"])
    signals, y = load_signals(Path(case["data_dir"]))
    # warm up on the last classes, so that the pages of the fitted rows stay cold
    rows = np.flatnonzero(y >= case["classes"] - min(10, case["classes"]))[:WARM_ROWS]
    warm = signals[rows], y[rows]
    if case.get("fit_classes"):
        # rows are sorted by class: the first classes are a slice, still memory-mapped
        stop = int(np.searchsorted(y, case["fit_classes"]))
        signals, y = signals[:stop], y[:stop]
    cluster, client = start_cluster(case) if case["mode"] == "dask" else (None, None)

    def fit(S, labels, fraction):
        sel = make_selector(case["name"], fraction=fraction, balance=True, random_state=0,
                            n_jobs=-1 if client else None)
        if client is None:
            return sel.fit(S, labels)
        with joblib.parallel_backend("dask"):
            return sel.fit(S, labels)

    try:
        fit(*warm, case["fraction"])  # one-off costs, off the clock
        gc.collect()
        before = client.run(_worker_reset) if client else {}
        hwm = reset_peak()
        resident = status_mb("VmRSS") or 0.0
        cpu, start = cpu_seconds(), time.perf_counter()
        sel = fit(signals, y, case["fraction"])
        seconds = time.perf_counter() - start
        cpu = cpu_seconds() - cpu
        peak = status_mb("VmHWM") if hwm else None
        after = client.run(_worker_peak) if client else {}
    finally:
        if client is not None:
            client.close()
            cluster.close()
    workers = [after[w]["hwm_mb"] for w in sorted(after)]
    return {
        "seconds": seconds,
        "cpu_seconds": cpu,
        "workers_cpu_seconds": sum(after[w]["cpu"] - before[w] for w in after),
        "rss_before_mb": resident,
        "extra_mb": max(0.0, peak - resident) if peak is not None else None,
        "workers_peak_mb": workers,
        "k": len(sel.sample_indices_),
        "indices_sha1": _digest(sel.sample_indices_),
        "weights_sha1": _digest(sel.sample_weight_),
    }


def start_cluster(case: dict):
    """A 2-worker, 1-thread-each ``LocalCluster`` and its client, in this process."""
    import logging

    import dask
    from distributed import Client, LocalCluster

    for name, value in case.get("worker_env", {}).items():
        dask.config.set({f"distributed.nanny.pre-spawn-environ.{name}": value})
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                           memory_limit=case["worker_memory"], dashboard_address=None,
                           silence_logs=logging.ERROR)
    client = Client(cluster)
    client.run(_worker_threads, 1)
    return cluster, client


def _digest(array) -> str:
    return hashlib.sha1(np.ascontiguousarray(array).tobytes()).hexdigest()


# ----------------------------------------------------------------- parent
def spawn(case: dict, timeout: float) -> dict:
    """Run ``case`` in a child process under a tree monitor and a time limit."""
    threads = "1" if case["mode"] == "dask" else str(case["threads"])
    env = dict(os.environ, OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads,
               OPENBLAS_NUM_THREADS=threads)
    load = os.getloadavg()[0]
    proc = subprocess.Popen([sys.executable, __file__, "--child", json.dumps(case)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    monitor = TreeMonitor(proc.pid)
    monitor.start()
    started = time.perf_counter()
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_tree(proc.pid)
        proc.communicate()
        status = f"timed out after {timeout:.0f} s"
        out, err = "", ""
    else:
        status = "ok" if proc.returncode == 0 else "error"
    finally:
        monitor.stop()
    result = {**case, "status": status, "load_avg": load,
              "process_seconds": time.perf_counter() - started,
              "peak_private_mb": monitor.private_mb, "peak_rss_mb": monitor.rss_mb,
              "processes": monitor.most_processes}
    if status == "ok":
        result.update(json.loads(out.strip().splitlines()[-1]))
    elif status == "error":
        lines = (err or out).strip().splitlines()
        result["status"] = "error: " + (lines[-1] if lines else f"rc={proc.returncode}")
        result["traceback"] = "\n".join(lines[-40:])
    return result


def mode_label(case: dict) -> str:
    if case["mode"] == "dask":
        env = " ".join(f"{k}={v}" for k, v in sorted(case.get("worker_env", {}).items()))
        return "dask, 2 x 1 thread" + (f", {env}" if env else "")
    return f"local, {case['threads']} thread" + ("s" if case["threads"] > 1 else "")


def data_key(case: dict) -> str:
    subset = f"|first{case['fit_classes']}" if case.get("fit_classes") else ""
    return (f"{case['n']}x{case['dim']}|{case['classes']}|{case['fraction']}|{case['layout']}|"
            f"history{case['history_epochs']}{case['history_dtype']}{subset}")


def case_key(case: dict) -> str:
    return f"{case['name']}|{mode_label(case)}|{data_key(case)}"


def equal_to_local(results: dict, result: dict) -> str:
    """Whether a Dask result selected what every local run of the same case selected."""
    if result["mode"] == "local":
        return "-"
    twins = [r for r in results.values() if r["mode"] == "local" and r["status"] == "ok"
             and r["name"] == result["name"] and data_key(r) == data_key(result)]
    if result["status"] != "ok" or not twins:
        return "not compared"
    same = all(result["indices_sha1"] == r["indices_sha1"] for r in twins)
    weights = all(result["weights_sha1"] == r["weights_sha1"] for r in twins)
    return "yes" if same and weights else "indices only" if same else "**no**"


def render(results: dict, meta: dict) -> str:
    lines = ["# Every selector on ImageNet-shaped memory-mapped signals (issue 9)", "",
             (f"Machine: {meta['machine']}; last run {meta['date']}; torch {meta['torch']}. "
             "**The machine may have been shared with other jobs: wall times are noisy (the "
             "load column is the 1-minute load average when the case started) and CPU times "
             "are the steadier measure.** Every case ran in its own process; the signals "
             "were opened as read-only memory maps and a warm-up fit on 2,000 rows ran "
             "before the clock started."), "",
             ("local: one process, `n_jobs=None`. dask: `n_jobs=-1` under "
             "`joblib.parallel_backend(\"dask\")` on a `LocalCluster` of 2 worker processes "
             "x 1 thread, started before the clock; time is the client's wall time, CPU the "
             "client's plus the workers'. Extra RSS: the case process's VmHWM during `fit` "
             "minus its RSS before, *including* the pages of the memory-mapped files it read "
             "(reclaimable cache). Peak private: the largest sum of anonymous resident memory "
             "over the case process and its Dask workers, sampled every "
             f"{POLL_S} s over the whole case (signals opened, warm-up and fit); it is judged "
             f"against the {LIMIT_MB // 1024} GB limit. Workers: each worker's VmHWM during "
             "`fit` (they map no file). Equal to local: the Dask run's `sample_indices_` and "
             "`sample_weight_` are identical to those of every local run of the same case."),
             ""]
    groups = {}
    for r in results.values():
        groups.setdefault(data_key(r), []).append(r)
    for _, rows in sorted(groups.items(), key=lambda g: (g[1][0]["n"], g[0])):
        lines += _section(rows, meta, results)
    return "\n".join(lines)


def _section(rows: list, meta: dict, results: dict) -> list:
    """The heading, data description and table of one signal set."""
    first = rows[0]
    n, classes, dim, hist = first["n"], first["classes"], first["dim"], first["history_epochs"]
    subset = first.get("fit_classes")
    data = meta.get("data", {}).get(f"{n}x{classes}", {})
    size, gen = data.get("bytes"), data.get("generation_seconds")
    title = (f"## {n:,} rows x {dim}, {classes:,} classes, fraction {first['fraction']}, "
             "balanced" + (f": the first {subset} classes only" if subset else ""))
    text = (f"Signals (float32 unless said): embedding ({n:,}, {dim}); logits and proba "
            f"({n:,}, {classes:,}); correct (bool), true_proba, margin, loss over {EPOCHS} "
            f"epochs; deepfool; **proba_history holds only the last {hist} of the {EPOCHS} "
            f"epochs, in {first['history_dtype']}** (all {EPOCHS} in float32 would take "
            f"{n * EPOCHS * classes * 4 / 1e9:.1f} GB). Rows are {first['layout']} by class"
            + (f"; {size / 1e9:.1f} GB on disk" if size else "")
            + (f", generated once in {gen:.0f} s." if gen else "."))
    if subset:
        text += (f" Only the rows of the first {subset} classes (a slice of the memory "
                 "maps, so still memory-mapped) were selected; pools are independent, so the "
                 f"last time column multiplies the measured time by {classes}/{subset} "
                 "(CPU-bound per-class work; one-off costs inside `fit` make it an "
                 "overestimate).")
    header = ("| selector | mode | time (s) | " + ("time for all classes (s) | " if subset
                                                   else "")
              + "CPU (s) | extra RSS in fit (MiB) | workers' peak (MiB) "
              "| peak private (MiB) | within 16 GB? | equal to local? | load | status |")
    lines = [title, "", text, "", header, "|---" * header.count(" | ") + "|---|"]
    for r in sorted(rows, key=lambda r: (r["name"], r["mode"] != "local", -r["threads"])):
        lines.append(_row(r, subset, results))
    return lines + [""]


def _row(r: dict, subset, results: dict) -> str:
    ok = r["status"] == "ok"
    within = "✓" if r["peak_private_mb"] <= LIMIT_MB else "**✗**"
    cells = [r["name"], mode_label(r)]
    if ok:
        cells.append(f"{r['seconds']:.1f}")
        if subset:
            total = r["seconds"] * r["classes"] / subset
            cells.append(f"{total:,.0f}" if total >= 10 else f"{total:.1f}")
        cpu = r.get("cpu_seconds", 0) + r.get("workers_cpu_seconds", 0)
        workers = " / ".join(f"{w:.0f}" for w in r.get("workers_peak_mb", [])) or "-"
        extra = f"{r['extra_mb']:.0f}" if r.get("extra_mb") is not None else "-"
        cells += [f"{cpu:.1f}", extra, workers, f"{r['peak_private_mb']:.0f}", within,
                  equal_to_local(results, r), f"{r['load_avg']:.1f}", "ok"]
    else:
        cells += ["-"] * (5 if subset else 4) + [f"{r['peak_private_mb']:.0f}", within, "-",
                                                  f"{r['load_avg']:.1f}", r["status"]]
    return "| " + " | ".join(cells) + " |"


def output_paths(args) -> tuple[Path, Path]:
    suffix = args.output_suffix
    if suffix is None and (args.n, args.classes) != (IMAGENET_N, IMAGENET_CLASSES):
        suffix = f"{args.n}x{args.classes}"
    stem = "imagenet_scale" + (f"_{suffix}" if suffix else "")
    return RESULTS / f"{stem}.json", RESULTS / f"{stem}.md"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", metavar="NAME",
                        help="selector names (any registered alias); default: all")
    parser.add_argument("--n", type=int, default=IMAGENET_N)
    parser.add_argument("--classes", type=int, default=IMAGENET_CLASSES)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--fraction", type=float, default=0.1)
    parser.add_argument("--history-epochs", type=int, default=3,
                        help="epochs of proba_history kept (the last ones of 10)")
    parser.add_argument("--history-dtype", choices=["float32", "float16"], default="float32")
    parser.add_argument("--layout", choices=["sorted", "shuffled"], default="sorted",
                        help="row order on disk: each class contiguous (default, as an "
                             "ImageFolder dataset is ordered) or classes interleaved")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", type=Path, default=Path("/work/runs/imagenet_signals"))
    parser.add_argument("--dask", action="store_true",
                        help="also run every selector on a 2-worker LocalCluster")
    parser.add_argument("--no-local", action="store_true", help="skip the local runs")
    parser.add_argument("--worker-memory", default="6GB",
                        help="memory_limit of each Dask worker")
    parser.add_argument("--worker-env", nargs="+", default=[], metavar="NAME=VALUE",
                        help="environment of the Dask workers, on top of Dask's "
                             "distributed.nanny.pre-spawn-environ (e.g. "
                             "MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=268435456)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch/BLAS threads of a local case (2 oversubscribes a shared "
                             "2-core machine)")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per case")
    parser.add_argument("--fit-classes", type=int, default=None, metavar="K",
                        help="select only the rows of the first K classes (needs --layout "
                             "sorted); the time for all classes is extrapolated")
    parser.add_argument("--output-suffix", default=None,
                        help="write imagenet_scale_<suffix>.{json,md}")
    parser.add_argument("--generate-only", action="store_true",
                        help="write the signals to --data-dir and stop")
    parser.add_argument("--resume", action="store_true",
                        help="skip the cases already saved with status ok")
    parser.add_argument("--render", action="store_true",
                        help="only rewrite the markdown from the saved JSON")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(run_case(json.loads(args.child))))
        return
    store, markdown = output_paths(args)
    saved = json.loads(store.read_text()) if store.exists() else {"results": {}, "meta": {}}
    saved["results"] = {case_key(r): r for r in saved["results"].values()}
    if args.render:
        markdown.write_text(render(saved["results"], saved["meta"]))
        return
    spec = {"version": FORMAT_VERSION, "n": args.n, "classes": args.classes, "dim": args.dim,
            "epochs": EPOCHS, "history_epochs": args.history_epochs,
            "history_dtype": args.history_dtype, "layout": args.layout, "seed": args.seed}
    if args.fit_classes is not None and (args.layout != "sorted"
                                         or not 0 < args.fit_classes <= args.classes):
        raise SystemExit("--fit-classes needs --layout sorted and 0 < K <= --classes.")
    data = ensure_signals(args.data_dir, spec, args.threads)
    if args.generate_only:
        return

    import torch

    from sk_coreset.selectors import available_selectors, make_selector

    names = available_selectors()
    if args.only:
        names = [type(make_selector(name)).__name__ for name in args.only]
    modes = ([] if args.no_local else ["local"]) + (["dask"] if args.dask else [])
    RESULTS.mkdir(parents=True, exist_ok=True)
    meta = saved["meta"]
    meta.update({"machine": f"{platform.processor() or platform.machine()}, "
                            f"{os.cpu_count()} CPUs, "
                            f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f}"
                            " GiB RAM",
                 "torch": torch.__version__, "date": time.strftime("%Y-%m-%d %H:%M")})
    meta.setdefault("data", {})[f"{args.n}x{args.classes}"] = data
    common = {"n": args.n, "classes": args.classes, "dim": args.dim, "fraction": args.fraction,
              "layout": args.layout, "history_epochs": args.history_epochs,
              "history_dtype": args.history_dtype, "data_dir": str(args.data_dir),
              "threads": args.threads, "worker_memory": args.worker_memory,
              "fit_classes": args.fit_classes,
              "worker_env": dict(item.split("=", 1) for item in args.worker_env)}
    for name in names:
        for mode in modes:
            case = {**common, "name": name, "mode": mode}
            done = saved["results"].get(case_key(case), {})
            if args.resume and done.get("status") == "ok":
                continue
            result = spawn(case, args.timeout)
            saved["results"][case_key(case)] = result
            shown = (f"{result['seconds']:.1f} s, peak private {result['peak_private_mb']:.0f}"
                     f" MiB, {equal_to_local(saved['results'], result)}"
                     if result["status"] == "ok" else result["status"])
            print(f"{name:>20} {mode:>5}: {shown}", flush=True)
            store.write_text(json.dumps(saved, indent=1))
            markdown.write_text(render(saved["results"], meta))


if __name__ == "__main__":
    main()
