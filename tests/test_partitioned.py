"""GreeDi: two-round partitioned selection.

Oracles: brute-force numpy objectives written here (facility location and graph cut on
an explicit cosine kernel, the covering radius from explicit distances) with naive
greedy and farthest-first loops over them; ``numpy.array_split`` of a seeded
permutation and scikit-learn's ``KMeans`` for the partitions; the wrapped selectors' own
results for ``n_partitions=1`` (those are checked against apricot and brute force in
their own test files); and the one-process run for a Dask cluster.
"""

from __future__ import annotations

import joblib
import numpy as np
import pytest
import torch
from distributed import Client, LocalCluster
from sklearn.cluster import KMeans

from sk_coreset.kernels import CHUNK_BYTES
from sk_coreset.selectors import (
    Entropy,
    FacilityLocation,
    GraphCut,
    GreeDi,
    KCenterGreedy,
    LogDeterminant,
    make_selector,
    partitioned,
)
from sk_coreset.selectors.partitioned import partition_rows

from conftest import make_signals

METHODS = ["FacilityLocation", "GraphCut", "KCenterGreedy"]
N, K, PARTS = 600, 30, 8


# ------------------------------------------------------------------ data and oracles
def manifold(n=N, dim=8, seed=0):
    """Points on a curved 2-D sheet in ``dim`` dimensions: coverage is informative."""
    rng = np.random.RandomState(seed)
    Z = rng.uniform(-1, 1, size=(n, 2))
    X = np.tanh(Z @ rng.normal(size=(2, dim))) * 3 + 0.05 * rng.normal(size=(n, dim))
    return X.astype(np.float32)


def cosine_kernel(G):
    U = np.asarray(G, dtype=np.float64)
    U = U / np.linalg.norm(U, axis=1, keepdims=True)
    S = 0.5 + 0.5 * U @ U.T
    np.fill_diagonal(S, 1.0)
    return S


def distances(X):
    X = np.asarray(X, dtype=np.float64)
    return np.sqrt(((X[:, None, :] - X[None, :, :]) ** 2).sum(-1))


def fl_value(S, picks):
    return S[:, list(picks)].max(1).sum() if len(picks) else 0.0


def gc_value(S, picks, lam=1.0):
    picks = list(picks)
    return lam * S[:, picks].sum() - S[np.ix_(picks, picks)].sum()


def assert_greedy_over(value, candidates, picks, rtol=1e-5):
    """Every pick has the largest marginal gain among the unpicked candidates (up to
    float32 rounding of the kernel), given the picks before it."""
    assert set(picks) <= set(candidates.tolist())
    for t, pick in enumerate(picks):
        base = value(picks[:t])
        rest = [c for c in candidates.tolist() if c not in picks[:t]]
        gains = np.array([value(picks[:t] + [c]) - base for c in rest])
        assert value(picks[: t + 1]) - base >= gains.max() - rtol * abs(gains).max(), t


def farthest_first(D, candidates, first, k):
    """Farthest-first traversal of ``candidates`` from ``first``; ties to the lowest index."""
    picks = [first]
    for _ in range(k - 1):
        gap = D[np.ix_(candidates, picks)].min(1)
        gap[np.isin(candidates, picks)] = -1
        picks.append(int(candidates[np.argmax(gap)]))
    return picks


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    # the farthest-first and greedy steps on these tiny pools are a few microseconds of
    # work each; two torch threads on a busy machine spend far longer synchronising
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def pool():
    X = manifold()
    return X, cosine_kernel(X), distances(X)


def objective(method, S, D):
    """Higher is better: facility location, graph cut, minus the covering radius."""
    if method == "FacilityLocation":
        return lambda picks: fl_value(S, picks)
    if method == "GraphCut":
        return lambda picks: gc_value(S, picks)
    return lambda picks: -D[:, list(picks)].min(1).max()


def greedi(method, **params):
    params = {"n_partitions": PARTS, "balance": False, "random_state": 0, **params}
    return GreeDi(make_selector(method), K, **params)


# ------------------------------------------------------------------ quality
@pytest.mark.parametrize("partition", ["random", "kmeans"])
@pytest.mark.parametrize("method", METHODS)
def test_two_rounds_keep_90_percent_of_the_centralised_gain_over_random(method, partition,
                                                                        pool):
    X, S, D = pool
    value = objective(method, S, D)
    rng = np.random.RandomState(1)
    random_value = np.mean([value(rng.choice(N, K, replace=False)) for _ in range(20)])
    # k-center greedy starts from a random row: average over seeds for both runs
    seeds = range(5) if method == "KCenterGreedy" else range(2)
    central, two_round = [], []
    for seed in seeds:
        one = make_selector(method, fraction=K, balance=False, random_state=seed).fit(X)
        central.append(value(one.sample_indices_.tolist()))
        sel = greedi(method, partition=partition, random_state=seed).fit(X)
        assert len(sel.local_indices_) == PARTS * K < N  # round 2 sees 40% of the pool
        two_round.append(value(sel.sample_indices_.tolist()))
    gain, central_gain = np.mean(two_round) - random_value, np.mean(central) - random_value
    assert central_gain > 0
    assert gain >= 0.9 * central_gain


# ------------------------------------------------------------------ round 2
def check_round_two(sel, method, S, D):
    """Greedy on the pool objective over the local picks, with the right gains."""
    picks = sel.sample_indices_.tolist()
    value = objective(method, S, D)
    assert_greedy_over(value, sel.local_indices_, picks)
    gains = np.diff([0.0] + [value(picks[: t + 1]) for t in range(len(picks))])
    np.testing.assert_allclose(sel.scores_[picks], gains, rtol=1e-4)
    assert np.isnan(np.delete(sel.scores_, picks)).all()


# max_memory (and MAX_LISTED) set how round 2 holds the similarities of the u = 240
# candidates to the 600 rows: the whole block, lists of the most similar candidates per
# row (rows open until covered), or none (every gain from the signal). Every setting
# leaves room for the parts' dense kernels.
ROOM = 3 * CHUNK_BYTES + 2 * N * 8 * 4  # blocks and two copies of the features
LISTS = [({}, "kept"), ({"max_memory": ROOM + 400_000}, 20),
         ({"max_memory": ROOM + 400_000, "MAX_LISTED": 16}, 16),
         ({"max_memory": ROOM + 400_000, "MAX_LISTED": 0}, 0)]


@pytest.mark.parametrize("setting, listed", LISTS)
@pytest.mark.parametrize("partition", ["random", "kmeans"])
def test_facility_location_round_two_is_greedy_on_the_whole_pool(setting, listed, partition,
                                                                 pool, monkeypatch):
    X, S, D = pool
    seen = []
    real = partitioned._PoolFacilityLocation

    class Spy(real):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            seen.append("kept" if self.cache is not None else self.listed)

    monkeypatch.setattr(partitioned, "_PoolFacilityLocation", Spy)
    if "MAX_LISTED" in setting:
        monkeypatch.setattr(partitioned, "MAX_LISTED", setting["MAX_LISTED"])
    memory = setting.get("max_memory", 4 * 2**30)
    sel = GreeDi(FacilityLocation(max_memory=memory), K, n_partitions=PARTS,
                 partition=partition, balance=False, random_state=0).fit(X)
    assert seen == [listed]
    check_round_two(sel, "FacilityLocation", S, D)


@pytest.mark.parametrize("bounded", [False, True])
@pytest.mark.parametrize("partition", ["random", "kmeans"])
def test_graph_cut_round_two_is_greedy_on_the_whole_pool(partition, bounded, pool):
    X, S, D = pool
    # bounded: the candidates' (u x u) kernel does not fit, its rows are computed on demand
    memory = {"max_memory": 3 * CHUNK_BYTES + 100_000} if bounded else {}
    sel = GreeDi(GraphCut(**memory), K, n_partitions=PARTS, partition=partition,
                 balance=False, random_state=0).fit(X)
    check_round_two(sel, "GraphCut", S, D)


def test_round_two_uses_the_gradient_kernel_of_the_wrapped_selector():
    signals, y = make_signals(class_sizes=(90, 70, 40), seed=3)
    labels = np.array(["ant", "bee", "cat"])[y]
    sel = GreeDi(FacilityLocation(), 12, n_partitions=4, balance=False,
                 random_state=0).fit(signals, labels)
    e = signals["proba"].astype(np.float64)
    e[np.arange(len(y)), y] -= 1  # last-layer gradients [e, e (x) h], written out
    h = signals["embedding"].astype(np.float64)
    G = np.concatenate([e, (e[:, :, None] * h[:, None, :]).reshape(len(y), -1)], axis=1)
    S = cosine_kernel(G)
    assert_greedy_over(lambda p: fl_value(S, p), sel.local_indices_,
                       sel.sample_indices_.tolist())


def test_k_center_round_two_is_farthest_first_over_the_local_picks(pool):
    X, _, D = pool
    sel = greedi("KCenterGreedy", partition="kmeans").fit(X)
    picks = sel.sample_indices_.tolist()
    assert sel.scores_ is None
    assert picks == farthest_first(D, sel.local_indices_, picks[0], K)


# ------------------------------------------------------------------ round 1
@pytest.mark.parametrize("method", METHODS)
def test_round_one_runs_the_method_in_each_part(method, pool):
    X, S, D = pool
    sel = greedi(method, partition="kmeans", oversample=1.5).fit(X)
    local = 45  # ceil(1.5 * 30) per part, or the whole part
    sizes = sel.partition_sizes_[0]
    assert len(sel.local_indices_) == np.minimum(sizes, local).sum()
    for part in range(PARTS):
        rows = np.flatnonzero(sel.partition_labels_ == part)
        budget = min(len(rows), local)
        got = set(np.intersect1d(sel.local_indices_, rows).tolist())
        if method == "FacilityLocation":  # the selector's own run on the part
            own = FacilityLocation(fraction=budget, balance=False).fit(X[rows])
            assert got == set(rows[own.sample_indices_].tolist())
        elif method == "GraphCut":  # graph cut restricted to the part: pool row sums
            assert got == set(_greedy_order(S, rows, budget))
        else:  # a farthest-first traversal of the part, from one of its rows
            assert any(got == set(farthest_first(D, rows, start, budget)) for start in got)


def _greedy_order(S, rows, budget):
    picks = []
    for _ in range(budget):
        rest = [r for r in rows.tolist() if r not in picks]
        picks.append(rest[int(np.argmax([gc_value(S, picks + [r]) for r in rest]))])
    return picks


# ------------------------------------------------------------------ one part
@pytest.mark.parametrize("balance", [True, False])
@pytest.mark.parametrize("method", METHODS)
def test_one_partition_is_the_wrapped_selector(method, balance):
    signals, y = make_signals(class_sizes=(50, 30, 20), seed=4)
    own = make_selector(method, fraction=0.2, balance=balance, random_state=3).fit(signals, y)
    sel = GreeDi(make_selector(method), 0.2, n_partitions=1, balance=balance,
                 random_state=3).fit(signals, y)
    np.testing.assert_array_equal(sel.sample_indices_, own.sample_indices_)
    for a, b in zip(sel.class_rankings_, own.class_rankings_):
        np.testing.assert_array_equal(a, b)
    if own.scores_ is None:
        assert sel.scores_ is None
    else:
        np.testing.assert_array_equal(sel.scores_, own.scores_)
    assert (sel.partition_labels_ == 0).all()
    np.testing.assert_array_equal(sel.local_indices_, np.sort(own.sample_indices_))


# ------------------------------------------------------------------ partitions
def test_random_partition_is_an_even_split_of_a_seeded_permutation():
    labels = partition_rows(103, 8, random_state=5)
    expected = np.empty(103, dtype=np.int64)
    for part, rows in enumerate(np.array_split(np.random.RandomState(5).permutation(103), 8)):
        expected[rows] = part
    np.testing.assert_array_equal(labels, expected)
    assert sorted(np.bincount(labels).tolist()) == [12] * 1 + [13] * 7
    np.testing.assert_array_equal(partition_rows(103, 8, random_state=5), labels)
    assert not np.array_equal(partition_rows(103, 8, random_state=6), labels)


def test_kmeans_partition_is_scikit_learns_kmeans():
    X = np.random.RandomState(0).normal(size=(300, 5))
    labels = partition_rows(X, 6, method="kmeans", random_state=7)
    np.testing.assert_array_equal(labels, KMeans(6, n_init=1, random_state=7).fit(X).labels_)
    # more rows than max_fit_rows: fitted on a seeded subsample, every row assigned
    big = partition_rows(X, 6, method="kmeans", random_state=7, max_fit_rows=100)
    rng = np.random.RandomState(7)
    sample = np.sort(rng.choice(300, 100, replace=False))
    model = KMeans(6, n_init=1, random_state=rng).fit(X[sample])
    np.testing.assert_array_equal(big, model.predict(X))


@pytest.mark.parametrize("method", METHODS)
def test_kmeans_parts_are_the_blobs_and_random_parts_are_even(method):
    rng = np.random.RandomState(2)
    directions = np.linalg.qr(rng.normal(size=(8, 8)))[0]  # distinct directions: the
    centres = 20 * directions  # blobs stay apart after scaling rows to unit norm
    blob = np.repeat(np.arange(8), 40)
    X = (centres[blob] + rng.normal(size=(320, 8))).astype(np.float32)
    sel = GreeDi(make_selector(method), 16, n_partitions=8, partition="kmeans",
                 balance=False, random_state=0).fit(X)
    pairs = set(zip(blob.tolist(), sel.partition_labels_.tolist()))
    assert len(pairs) == 8 == len({p for _, p in pairs})  # one part per blob
    even = GreeDi(make_selector(method), 16, n_partitions=8, random_state=0).fit(X, blob % 2)
    assert [s.tolist() for s in even.partition_sizes_] == [[20] * 8, [20] * 8]


# ------------------------------------------------------------------ errors
@pytest.mark.parametrize("params, match", [
    ({"selector": Entropy()}, "FacilityLocation, GraphCut, KCenterGreedy"),
    ({"selector": LogDeterminant()}, "supports"),
    ({"selector": "FacilityLocation"}, "selector"),
    ({"selector": FacilityLocation(signal="precomputed")}, "precomputed"),
    ({"selector": KCenterGreedy(already_selected=[0, 1])}, "already_selected"),
    ({"n_partitions": 0}, "n_partitions"),
    ({"n_partitions": 601}, "n_partitions=601 exceeds the 600 sample"),
    ({"partition": "grid"}, "partition"),
    ({"oversample": 0.5}, "oversample"),
    ({"selector": FacilityLocation(optimizer="fast")}, "optimizer"),
])
def test_invalid_parameters_raise(params, match, pool):
    X = pool[0]
    with pytest.raises(ValueError, match=match):
        GreeDi(**{"fraction": K, **params}).fit(X)


def test_a_part_kernel_over_max_memory_raises_before_selecting(pool):
    X = pool[0]
    # a dense kernel of 300 rows and a block of its rows: 2 * 300^2 float32 > 500 kB
    small = FacilityLocation(kernel="dense", max_memory=500_000)
    # the limit is the wrapped selector's, and the library setting would not lift it
    message = (r"\(max_memory=500000 of the wrapped FacilityLocation\)\. .*Fixes: more "
               r"partitions \(n_partitions=4\); a larger max_memory of the wrapped "
               r"FacilityLocation\.$")
    with pytest.raises(ValueError, match=message):
        GreeDi(small, 2, n_partitions=2, balance=False).fit(X)
    # 8 parts of 75 rows fit where 2 parts of 300 would not
    sel = GreeDi(small, 2, n_partitions=8, balance=False).fit(X)
    assert "_pool_memory_limit" not in vars(sel.selector_)  # no share left behind


def test_partition_rows_errors():
    with pytest.raises(ValueError, match="n_partitions"):
        partition_rows(5, 6)
    with pytest.raises(ValueError, match="method"):
        partition_rows(5, 2, method="grid")
    with pytest.raises(ValueError, match="rows to cluster"):
        partition_rows(5, 2, method="kmeans")


# ------------------------------------------------------------------ a Dask cluster
def test_parts_on_a_dask_cluster_select_like_one_process():
    signals, y = make_signals(class_sizes=(120, 80), seed=5)
    runs = [GreeDi(FacilityLocation(), 0.1, partition="kmeans", random_state=0),
            GreeDi(KCenterGreedy(), 0.1, n_partitions=4, balance=False, random_state=0)]
    local = [sel.fit(signals, y) for sel in runs]
    expected = [(s.sample_indices_, s.scores_, s.local_indices_, s.partition_labels_)
                for s in local]
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        before = client.run_on_scheduler(lambda dask_scheduler: dask_scheduler.transition_counter)
        with joblib.parallel_backend("dask"):
            got = [sel.set_params(n_jobs=-1).fit(signals, y) for sel in runs]
        after = client.run_on_scheduler(lambda dask_scheduler: dask_scheduler.transition_counter)
    assert after > before  # the parts ran on the cluster
    for sel, (indices, scores, local_indices, labels) in zip(got, expected):
        np.testing.assert_array_equal(sel.sample_indices_, indices)
        np.testing.assert_array_equal(sel.local_indices_, local_indices)
        np.testing.assert_array_equal(sel.partition_labels_, labels)
        if scores is None:
            assert sel.scores_ is None
        else:
            np.testing.assert_array_equal(sel.scores_, scores)
