"""Memory: the library limit, up-front estimates, kernel choices and refusals.

Oracles: byte counts worked out by hand from what the code allocates (a dense
facility-location kernel is ``n^2`` float32, a kNN kernel ``n * m`` pairs, k-center
greedy a few floats per row...), the physical memory read from ``os.sysconf`` here,
patched readers that raise (an estimate must not read any signal value), and, for every
registered selector, the peak resident memory of a real ``fit`` measured by the kernel
(``VmHWM`` after ``clear_refs``) in a separate process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import dask.array as da
import numpy as np
import pytest
from sklearn.exceptions import NotFittedError
from sklearn.utils.validation import check_is_fitted

import sk_coreset
from sk_coreset import Signals
from sk_coreset._config import format_bytes, memory_limit
from sk_coreset.kernels import CHUNK_BYTES
from sk_coreset.selectors import (
    FacilityLocation,
    GradMatch,
    GraphCut,
    KCenterGreedy,
    LogDeterminant,
    available_selectors,
    make_selector,
)

from conftest import make_signals

MiB = 2**20


def features(n, dim=16, seed=0):
    return np.random.RandomState(seed).normal(size=(n, dim)).astype(np.float32)


def fitted_attributes(sel):
    return [k for k in vars(sel) if k.endswith("_") and not k.startswith("__")]


# ------------------------------------------------------------------ the setting
@pytest.mark.parametrize("value, expected", [
    ("8GB", 8 * 10**9), ("512MiB", 512 * 2**20), ("1.5 GiB", 3 * 2**29), ("100kb", 10**5),
    ("2TiB", 2 * 2**40), ("4096", 4096), (123456, 123456), (1e9, 10**9),
    (float("inf"), float("inf")), (None, None),
])
def test_set_config_parses_sizes(value, expected):
    with sk_coreset.config_context(max_memory=value):
        assert sk_coreset.get_config()["max_memory"] == expected
    assert sk_coreset.get_config()["max_memory"] is None


@pytest.mark.parametrize("bad", ["8 gigs", "", "GB", "-1GB", "1.2.3MB", 0, -5, True, [1],
                                 float("nan")])
def test_set_config_refuses_what_is_not_a_size(bad):
    with pytest.raises(ValueError, match="max_memory"):
        sk_coreset.set_config(max_memory=bad)
    assert sk_coreset.get_config()["max_memory"] is None


def test_config_is_restored_after_errors_and_per_thread():
    with pytest.raises(RuntimeError), sk_coreset.config_context(max_memory="1GB"):
        raise RuntimeError
    assert sk_coreset.get_config()["max_memory"] is None
    seen = {}
    with sk_coreset.config_context(max_memory="1GB"):
        thread = threading.Thread(target=lambda: seen.update(sk_coreset.get_config()))
        thread.start()
        thread.join()
        sk_coreset.get_config()["max_memory"] = 5  # a copy: changes nothing
        assert sk_coreset.get_config()["max_memory"] == 10**9
    assert seen == {"max_memory": None}
    sk_coreset.set_config()  # nothing passed: nothing changes
    assert sk_coreset.get_config()["max_memory"] is None


def test_default_limit_is_80_percent_of_physical_memory():
    physical = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    assert memory_limit() == int(0.8 * physical)
    with sk_coreset.config_context(max_memory="2GiB"):
        assert memory_limit() == 2 * 2**30
        assert memory_limit(1000) == 1000  # a selector's own max_memory wins


# ------------------------------------------------------------------ hand-counted estimates
def test_dense_facility_location_estimate_by_hand():
    n, d = 300, 16
    X = features(n, d)
    kernel = n * n * 4  # the (n, n) float32 kernel
    block = n * n * 4  # the lazy greedy's first gain evaluation reads a block of n rows
    heap = (160 + 8) * n  # the heap of (gain, index) tuples and the current maxima
    outputs = 64 * n  # labels, pools, scores and rankings
    sel = FacilityLocation(fraction=30, balance=False, signal="embedding", kernel="dense")
    assert sel.estimate_memory(X) == kernel + block + heap + outputs


def test_knn_facility_location_estimate_by_hand():
    # 100,000 rows: the dense kernel would take 40 GB; a kNN kernel needs O(n m)
    n, d, m = 100_000, 16, 10
    X = np.zeros((n, d), dtype=np.float32)  # never touched: the estimate reads no value
    step = CHUNK_BYTES // (n * 4 * 3)  # rows of kernel per search block
    search = 4 * n * d + 4 * n * d + 4 * step * n + 16 * n * m  # unit rows, squares, block, lists
    build = 124 * n * m  # COO arrays, the CSR matrix, its transpose, their maximum
    greedy = 152 * n * m + (160 + 32) * n  # the CSR copy, per-pair temporaries, the heap
    sel = FacilityLocation(fraction=0.01, balance=False, kernel="knn", n_neighbors=m)
    assert sel.estimate_memory(X) == max(search, build, greedy) + 64 * n
    with sk_coreset.config_context(max_memory="4GB"):  # auto: dense does not fit, kNN does
        auto = FacilityLocation(fraction=0.01, balance=False, n_neighbors=m)
        assert auto.estimate_memory(X) == sel.estimate_memory(X)


def test_k_center_greedy_estimate_grows_by_a_few_floats_per_row():
    d, k = 16, 100
    small, large = (np.zeros((n, d), dtype=np.float32) for n in (1_000_000, 2_000_000))
    # per row: squared norms (computed a block of rows at a time) and their half, the
    # running minimum, two int64 working arrays, the outputs
    per_row = 2 * 4 + 4 + 16 + 64
    sel = KCenterGreedy(fraction=k, balance=False)
    grow = sel.estimate_memory(large) - sel.estimate_memory(small)
    assert grow == per_row * 1_000_000
    # fixed blocks: a block of squares (4 MiB), a fold of 32 centres (3 x 4 MiB) and a certification of 1024 rows
    fixed = sel.estimate_memory(small) - per_row * 1_000_000
    assert fixed == 4 * MiB + 3 * 4 * MiB + 1024 * (d + 3 * 32) * 4 + 8 * k


def test_budget_times_n_rows_of_log_determinant_and_grad_match():
    n = 10_000
    X = features(n)
    assert 200 * 20 < n  # budgets under 5% of the pool: kernel rows on demand, not dense
    logdet = [LogDeterminant(fraction=b, balance=False).estimate_memory(X) for b in (100, 200)]
    assert logdet[1] - logdet[0] == 4 * 100 * n  # 100 more float32 rows of the Cholesky factor
    grad = [GradMatch(fraction=b, balance=False).estimate_memory(X) for b in (100, 200)]
    # Gram rows of the picks and their reordered copy, 7 (budget x budget) float64 arrays
    assert grad[1] - grad[0] == 2 * 4 * 100 * n + 7 * 8 * (200**2 - 100**2)


def test_parallel_pools_add_up():
    X, y = features(1000), np.repeat([0, 1], 500)
    one = FacilityLocation(fraction=0.2, signal="embedding").estimate_memory(X, y)
    two = FacilityLocation(fraction=0.2, signal="embedding", n_jobs=2).estimate_memory(X, y)
    pool = 2 * 500 * 500 * 4  # each pool's kernel and a block of its rows
    assert pool < one < 2 * pool < two


# ------------------------------------------------------------------ no value is read
@pytest.fixture
def unreadable(monkeypatch):
    """Signals whose values cannot be read: computing or converting them raises."""
    def refuse(*args, **kwargs):
        raise AssertionError("a signal value was read")

    monkeypatch.setattr(da.Array, "compute", refuse)
    monkeypatch.setattr(da.Array, "__array__", refuse)
    S, y = make_signals(class_sizes=(60, 40, 30), seed=2)
    lazy = Signals(**{k: da.from_array(v, chunks=(25,) + v.shape[1:]) for k, v in S.items()})
    return lazy, y


@pytest.mark.parametrize("name", available_selectors())
def test_estimate_reads_no_value_of_dask_signals(name, unreadable):
    lazy, y = unreadable
    for balance in (True, False):
        sel = make_selector(name, balance=balance, random_state=0)
        assert sel.estimate_memory(lazy, y) > 0
        assert fitted_attributes(sel) == []
    # the patch does catch reads (the random baseline's: transform's identity check)
    with pytest.raises(AssertionError, match="read"):
        make_selector(name, random_state=0).fit(lazy, y)


def mapped_pages():
    """Resident bytes of mapped files (RssShmem where the folder is a tmpfs)."""
    return _status("RssFile") + _status("RssShmem")


def test_estimate_reads_no_page_of_a_memmap(tmp_path):
    n, d = 200_000, 128  # 102 MB on disk, sparse: reading it would map its pages
    path = tmp_path / "embedding.f32"
    np.memmap(path, dtype=np.float32, mode="w+", shape=(n, d)).flush()
    X = np.memmap(path, dtype=np.float32, mode="r", shape=(n, d))
    y = np.arange(n) % 10
    before = mapped_pages()
    for sel in (FacilityLocation(signal="embedding"), KCenterGreedy(), GraphCut(balance=False)):
        assert sel.estimate_memory(X, y) > 0
    assert mapped_pages() - before < 5 * MiB
    np.asarray(X).sum()  # the control: reading it maps its pages
    assert mapped_pages() - before > 50 * MiB


# ------------------------------------------------------------------ kernel choice, refusal
def test_dense_to_knn_switch_follows_the_limit():
    X = features(2000)
    kinds = {kind: FacilityLocation(fraction=0.05, balance=False, kernel=kind, n_neighbors=8)
             for kind in ("dense", "knn")}
    need = {kind: sel.estimate_memory(X) for kind, sel in kinds.items()}
    assert need["knn"] < need["dense"]
    picks = {kind: sel.fit(X).sample_indices_ for kind, sel in kinds.items()}
    auto = FacilityLocation(fraction=0.05, balance=False, n_neighbors=8)
    for limit, kind in ((need["dense"], "dense"), (need["dense"] - 1, "knn"),
                        (need["knn"], "knn")):
        with sk_coreset.config_context(max_memory=limit):
            assert auto.estimate_memory(X) == need[kind]
            np.testing.assert_array_equal(auto.fit(X).sample_indices_, picks[kind])
        # a selector's own max_memory works the same way
        own = FacilityLocation(fraction=0.05, balance=False, n_neighbors=8, max_memory=limit)
        np.testing.assert_array_equal(own.fit(X).sample_indices_, picks[kind])
    with sk_coreset.config_context(max_memory=need["knn"] - 1), pytest.raises(ValueError):
        auto.fit(X)


def test_graph_cut_builds_the_dense_kernel_only_when_it_fits():
    X = features(2000)
    sel = GraphCut(fraction=200, balance=False)  # budget >= 5% of the pool: dense pays
    dense = sel.estimate_memory(X)
    assert dense > 2000 * 2000 * 4
    with sk_coreset.config_context(max_memory=dense - 1):
        rows = sel.estimate_memory(X)
    assert rows < 2000 * 2000 * 4  # rows on demand: no (n, n) kernel


def test_refusal_names_estimate_limit_pool_and_fixes(monkeypatch):
    X, y = features(3000), np.arange(3000) % 3
    sel = FacilityLocation(fraction=0.1, balance=False, signal="embedding")

    def never(*args, **kwargs):
        raise AssertionError("selection started")

    monkeypatch.setattr(FacilityLocation, "_select_pool", never)
    with sk_coreset.config_context(max_memory="10MB"), pytest.raises(ValueError) as err:
        need = sel.estimate_memory(X, y)  # the leanest plan: a kNN kernel
        sel.fit(X, y)
    message = str(err.value)
    assert "FacilityLocation would need about " + format_bytes(need) in message
    assert format_bytes(10**7) in message and "9.54 MiB" in message
    assert "3000 rows (budget 300)" in message
    for fix in ("kernel='knn'", "balance=True", "GreeDi(FacilityLocation(...), n_partitions=",
                "sk_coreset.config_context(max_memory="):
        assert fix in message
    assert fitted_attributes(sel) == []  # nothing half-fitted
    with pytest.raises(NotFittedError):
        check_is_fitted(sel)


def test_refusal_with_the_selectors_own_max_memory():
    sel = GraphCut(fraction=0.5, balance=False, max_memory="100kB")
    with pytest.raises(ValueError, match=r"max_memory='100kB'.*a larger max_memory"):
        sel.fit(features(2000))
    assert fitted_attributes(sel) == []


def test_a_refused_refit_keeps_the_previous_fit():
    X = features(2000)
    sel = KCenterGreedy(fraction=10, balance=False, random_state=0).fit(X[:100])
    before = sel.sample_indices_.copy()
    with sk_coreset.config_context(max_memory="1kB"), pytest.raises(ValueError, match="would"):
        sel.fit(X)
    np.testing.assert_array_equal(sel.sample_indices_, before)
    assert sel.n_samples_fit_ == 100


# ------------------------------------------------------------------ estimates versus reality
# Which fit each selector is measured on: (params, rows of the signals). The default is
# the whole 20,000 x 256 float32 set in one pool; methods that are slow there get a
# smaller pool or budget, still large enough that their memory is tens of MB.
N_ROWS, DIM, CLASSES = 20_000, 256, 10
CASES = {
    "KCenterGreedy": ({"fraction": 0.02}, N_ROWS),
    "ContextualDiversity": ({"fraction": 0.02}, N_ROWS),
    "Herding": ({"fraction": 0.02}, N_ROWS),
    "Cal": ({}, 3000),
    "FacilityLocation": ({}, 3000),
    "GraphCut": ({}, 3000),
    "LogDeterminant": ({}, 3000),
    "Craig": ({"kernel": "knn"}, 4000),
    "GradMatch": ({}, 3000),
    "Glister": ({"fraction": 0.05}, 3000),
    "D2Pruning": ({}, 3000),
    "GreeDi": ({"fraction": 0.01, "n_partitions": 8}, 8000),
}
# measured <= SLACK * estimate + ABOVE, and estimate <= LOOSE * measured + BELOW
SLACK, ABOVE, LOOSE, BELOW = 1.5, 20 * MiB, 10, 50 * MiB


def _signals(n, dim, classes, epochs=10, seed=0):
    """Consistent float32 signals of every well-known name, built in place."""
    rng = np.random.default_rng(seed)
    y = rng.permutation(np.arange(n) % classes)
    centres = rng.standard_normal((classes, dim), dtype=np.float32)
    emb = rng.standard_normal((n, dim), dtype=np.float32)
    emb += centres[y]
    logits = emb @ (centres.T / np.float32(np.sqrt(dim)))
    history = logits[:, None, :] * np.linspace(0.2, 1, epochs, dtype=np.float32)[None, :, None]
    history += rng.standard_normal(history.shape, dtype=np.float32)
    proba_history = np.exp(history - history.max(-1, keepdims=True))
    proba_history /= proba_history.sum(-1, keepdims=True)
    proba = np.exp(logits - logits.max(-1, keepdims=True))
    proba /= proba.sum(-1, keepdims=True)
    rows = np.arange(n)
    true = history[rows, :, y]
    history[rows, :, y] = -np.inf
    return Signals(
        embedding=emb, logits=logits, proba=proba, correct=true > history.max(-1),
        true_proba=proba_history[rows, :, y], margin=true - history.max(-1),
        loss=-np.log(proba_history[rows, :, y]), proba_history=proba_history,
        deepfool=rng.gamma(2.0, size=n).astype(np.float32),
    ), y


def _status(field):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024


def _measure_every_selector():
    """In a fresh process: per selector, its estimate and the peak of a real fit."""
    import gc
    import time
    import warnings

    import torch

    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    S, y = _signals(N_ROWS, DIM, CLASSES)
    for name in available_selectors():
        params, rows = CASES.get(name, ({}, N_ROWS))
        params = {"balance": False, "random_state": 0, **params}
        make_selector(name, **params).fit(S[:1000], y[:1000])  # one-off costs, outside
        sel = make_selector(name, **params)
        estimate = sel.estimate_memory(S[:rows], y[:rows])
        gc.collect()
        Path("/proc/self/clear_refs").write_text("5")  # the peak counter restarts here
        before = _status("VmRSS")
        start = time.perf_counter()
        sel.fit(S[:rows], y[:rows])
        seconds = time.perf_counter() - start
        measured = _status("VmHWM") - before
        print(json.dumps([name, rows, estimate, measured, round(seconds, 2)]), flush=True)
        del sel
        gc.collect()


def test_estimates_bound_the_measured_peak_of_every_selector():
    # big blocks go straight to mmap and back, so that freed memory is not reused
    # silently and the peak counts what each fit has live at once
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", MALLOC_TRIM_THRESHOLD_="131072",
               OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).parent), env.get("PYTHONPATH", "")])
    done = subprocess.run([sys.executable, __file__], env=env, capture_output=True, text=True,
                          timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("[")]
    assert [r[0] for r in rows] == available_selectors()
    table = "\n".join(f"{name:>20} {n:>6} rows: estimate {est / MiB:8.1f} MiB, measured "
                      f"{got / MiB:8.1f} MiB, {s:5.2f} s" for name, n, est, got, s in rows)
    print(table)
    for name, _, estimate, measured, _ in rows:
        assert measured <= SLACK * estimate + ABOVE, f"{name} underestimated\n{table}"
        assert estimate <= LOOSE * measured + BELOW, f"{name} overestimated\n{table}"


if __name__ == "__main__":
    _measure_every_selector()
