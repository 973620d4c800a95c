"""Selection fanned out with joblib (processes, a Dask cluster) and out-of-core signals.

The oracle everywhere is the serial fit (``n_jobs=None``) on in-memory numpy arrays,
which the per-family test files check against independent implementations: a parallel
run, a memory-mapped input or a ``dask.array`` input must give exactly the same
selection (indices, weights, scores). Structural checks (which code path runs, what
each task receives) use spies.
"""

from __future__ import annotations

import inspect

import dask.array as da
import joblib
import numpy as np
import pytest
from distributed import Client, LocalCluster

from sk_coreset import Signals, base
from sk_coreset.base import BaseSelector, PoolSelection
from sk_coreset.selectors import CCS, Cal, available_selectors, make_selector

from conftest import make_signals

SELECTORS = available_selectors()
CLASS_SIZES = (40, 25, 15)  # the conformance fixture's shapes
# a plain array stands for one signal; these need two (an embedding and another)
NEEDS_SEVERAL = {"Cal", "D2Pruning"}
PLAIN = [name for name in SELECTORS if name not in NEEDS_SEVERAL]
ON_CLUSTER = ["KCenterGreedy", "Herding", "FacilityLocation", "GradMatch", "D2Pruning"]


@pytest.fixture(scope="module")
def data():
    return make_signals(class_sizes=CLASS_SIZES, seed=1)


def build(name, **params):
    return make_selector(name, fraction=0.25, random_state=0, **params)


def own_signal(name):
    return (type(make_selector(name))._required_signals or ("embedding",))[0]


_SERIAL = {}


def serial(name, data, balance=True, plain=False):
    """The oracle: a serial fit on the in-memory arrays (computed once per case)."""
    key = (name, balance, plain)
    if key not in _SERIAL:
        S, y = data
        _SERIAL[key] = build(name, balance=balance).fit(S[own_signal(name)] if plain else S, y)
    return _SERIAL[key]


def assert_same_selection(got, expected):
    np.testing.assert_array_equal(got.sample_indices_, expected.sample_indices_)
    np.testing.assert_array_equal(got.sample_weight_, expected.sample_weight_)
    for a, b in zip(got.class_rankings_, expected.class_rankings_):
        np.testing.assert_array_equal(a, b)
    if expected.scores_ is None:
        assert got.scores_ is None
    else:
        np.testing.assert_array_equal(got.scores_, expected.scores_)  # NaN == NaN here


def memmapped(signals, folder):
    out = {}
    for name, value in signals.items():
        np.save(folder / f"{name}.npy", value)
        out[name] = np.load(folder / f"{name}.npy", mmap_mode="r")
    return Signals(**out)


def lazy(signals):
    # 17-row chunks: every class pool straddles several chunks
    return Signals(**{k: da.from_array(v, chunks=(17,) + v.shape[1:]) for k, v in signals.items()})


# ------------------------------------------------------------------ the parameter
@pytest.mark.parametrize("name", SELECTORS)
def test_n_jobs_is_a_constructor_parameter(name, data):
    cls = type(make_selector(name))
    assert inspect.signature(cls).parameters["n_jobs"].default is None
    assert "n_jobs" in cls._parameter_constraints
    assert make_selector(name, n_jobs=3).get_params()["n_jobs"] == 3
    with pytest.raises(ValueError, match="n_jobs"):
        build(name, n_jobs=0).fit(*data)


# ------------------------------------------------------------------ processes
@pytest.mark.parametrize("name", SELECTORS)
def test_two_processes_select_like_one(name, data):
    S, y = data
    assert_same_selection(build(name, n_jobs=2).fit(S, y), serial(name, data))


def test_serial_path_does_not_use_joblib(data, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("joblib.Parallel used on the serial path")

    monkeypatch.setattr(base, "Parallel", refuse)
    S, y = data
    for name in ("KCenterGreedy", "Entropy", "Cal"):
        for n_jobs in (None, 1):
            assert_same_selection(build(name, n_jobs=n_jobs).fit(S, y), serial(name, data))


def test_n_jobs_none_follows_a_joblib_backend_context(data, monkeypatch):
    calls = []

    def spy(*args, **kwargs):
        calls.append(kwargs["n_jobs"])
        return joblib.Parallel(*args, **kwargs)

    monkeypatch.setattr(base, "Parallel", spy)
    S, y = data
    with joblib.parallel_backend("threading", n_jobs=2):
        got = build("KCenterGreedy").fit(S, y)
    assert calls == [None]  # joblib takes the worker count from the context
    assert_same_selection(got, serial("KCenterGreedy", data))


_SEEN = []  # what each pool task of _Recorder received (threads share the list)


class _Recorder(BaseSelector):
    _required_signals = ("embedding",)

    def _select_pool(self, signals, y, budget, random_state):
        emb = signals["embedding"]
        _SEEN.append((type(emb), emb.shape[0], len(np.unique(y))))
        return PoolSelection(random_state.permutation(emb.shape[0])[:budget])


@pytest.mark.parametrize("kind", ["memmap", "dask"])
def test_each_task_receives_only_its_pool_in_memory(kind, data, tmp_path):
    S, y = data
    X = memmapped(S, tmp_path) if kind == "memmap" else lazy(S)
    _SEEN.clear()
    with joblib.parallel_backend("threading"):
        _Recorder(fraction=0.25, random_state=0, n_jobs=2).fit(X, y)
    assert sorted(_SEEN, key=lambda s: s[1]) == [
        (np.ndarray, size, 1) for size in sorted(CLASS_SIZES)
    ]


def test_rowwise_scores_split_large_pools_into_blocks(data, monkeypatch):
    # blocks of 7 rows: one pool (balance=False) is scored by several parallel tasks
    real = base._chunks
    monkeypatch.setattr(base, "_chunks", lambda pools: real(pools, size=7))
    S, y = data
    for name in ("Entropy", "TDDS", "GraNd"):
        got = build(name, balance=False, n_jobs=2).fit(S, y)
        assert_same_selection(got, serial(name, data, balance=False))


def test_wrapped_cal_scores_each_pool_like_cal(data):
    # Cal scores a pool on its own, so CCS can wrap it; its scores equal Cal's own
    S, y = data
    cal = serial("Cal", data)
    wrapped = CCS(fraction=0.25, random_state=0, base_selector=Cal()).fit(S, y)
    given = CCS(fraction=0.25, random_state=0, base_selector=Cal())
    given.fit(Signals(embedding=S["embedding"], proba=S["proba"], scores=cal.scores_), y)
    np.testing.assert_allclose(wrapped.scores_, cal.scores_, rtol=1e-12)
    assert_same_selection(wrapped, given)


# ------------------------------------------------------------------ out of core
@pytest.mark.parametrize("balance", [True, False])
@pytest.mark.parametrize("name", SELECTORS)
def test_memmapped_signals_select_like_in_memory(name, balance, data, tmp_path):
    S, y = data
    got = build(name, balance=balance).fit(memmapped(S, tmp_path), y)
    assert_same_selection(got, serial(name, data, balance))


@pytest.mark.parametrize("balance", [True, False])
@pytest.mark.parametrize("name", SELECTORS)
def test_dask_signals_select_like_in_memory(name, balance, data):
    S, y = data
    assert_same_selection(build(name, balance=balance).fit(lazy(S), y),
                          serial(name, data, balance))

class Unreadable:
    """A signal that fails the test when any of its rows is read."""

    def __init__(self, n_rows, viewable=False):
        self.shape, self.ndim, self.dtype = (n_rows, 4), 2, np.dtype(np.float32)
        self.viewable = viewable

    def __getitem__(self, key):
        raise AssertionError("a signal the selector does not use was read")

    def __array__(self, *args, **kwargs):
        if self.viewable:  # as np.asarray of a memory map: a view, nothing read yet
            return np.zeros(self.shape, self.dtype)
        raise AssertionError("a signal the selector does not use was read")


@pytest.mark.parametrize("name", SELECTORS)
def test_signals_a_selector_does_not_use_are_never_read(name, data):
    # a featurizer's bundle carries every signal; a pool must copy only what its
    # selector reads (at ImageNet size the unused ones are tens of GB)
    S, y = data
    # the random baseline reads no signal, so transform's identity check samples a few
    # rows of each; every other selector's check samples only the signals it reads
    reads_none = not type(make_selector(name))._required_signals
    bundle = Signals(**S, unused=Unreadable(S.shape[0], viewable=reads_none))
    assert_same_selection(build(name).fit(bundle, y), serial(name, data))



@pytest.mark.parametrize("name", PLAIN)
def test_memmapped_plain_array_selects_like_in_memory(name, data, tmp_path):
    S, y = data
    X = memmapped(Signals(x=S[own_signal(name)]), tmp_path)["x"]
    assert_same_selection(build(name).fit(X, y), serial(name, data, plain=True))


@pytest.mark.parametrize("name", PLAIN)
def test_dask_plain_array_is_never_read_whole(name, data, monkeypatch):
    def refuse(self, *args, **kwargs):
        raise AssertionError("the whole dask array was converted with np.asarray")

    S, y = data
    X = lazy(Signals(x=S[own_signal(name)]))["x"]
    monkeypatch.setattr(da.Array, "__array__", refuse)
    sel = build(name).fit(X, y)
    assert_same_selection(sel, serial(name, data, plain=True))
    if X.ndim > 1:  # a 1-D array is a vector of scores, and transform wants 2-D data
        np.testing.assert_array_equal(sel.transform(X).compute(), S[own_signal(name)][sel.sample_indices_])


def test_dask_plain_array_errors_name_the_fix(data):
    S, y = data
    with pytest.raises(ValueError, match="reshape"):
        build("KCenterGreedy").fit(da.from_array(S["embedding"][:, 0], chunks=17), y)
    with pytest.raises(ValueError, match="numeric"):
        build("KCenterGreedy").fit(da.from_array(S["embedding"].astype(complex), chunks=17), y)


# ------------------------------------------------------------------ a Dask cluster
@pytest.fixture(scope="module")
def client():
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as dask_client:
        yield dask_client


def _transitions(dask_scheduler):
    return dask_scheduler.transition_counter


@pytest.mark.parametrize("name", ON_CLUSTER)
def test_pools_on_a_dask_cluster_select_like_one_process(name, data, client):
    S, y = data
    before = client.run_on_scheduler(_transitions)
    with joblib.parallel_backend("dask"):
        got = build(name, n_jobs=-1).fit(S, y)
    assert client.run_on_scheduler(_transitions) > before  # the pools ran on the cluster
    assert_same_selection(got, serial(name, data))


# ------------------------------------------------------------------ alignment
def misaligned(array):
    """A copy of ``array`` that starts one byte past an aligned address, as arrays
    unpickled on a Dask worker can."""
    raw = np.empty(array.nbytes + 1, dtype=np.uint8)[1:]
    out = raw.view(array.dtype).reshape(array.shape)
    out[...] = array
    assert not out.flags.aligned
    return out


def test_a_pool_received_misaligned_is_aligned_before_selection(data):
    # vectorised kernels round differently on misaligned data: on ImageNet-shaped
    # signals, 4 of 1,000 k-center pools broke a near tie otherwise than the local run
    S, y = data
    sent = Signals(embedding=misaligned(S["embedding"]), proba=misaligned(S["proba"]))
    got_signals, got_y = base._call_aligned(lambda s, labels: (s, labels), sent, misaligned(y))
    for name in ("embedding", "proba"):
        assert got_signals[name].flags.aligned
        np.testing.assert_array_equal(got_signals[name], S[name])
    assert got_y.flags.aligned
    np.testing.assert_array_equal(got_y, y)
