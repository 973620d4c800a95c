"""CoresetClassifier and CoresetCV.

Oracles: a hand-written featurize -> select -> train chain for CoresetClassifier;
scikit-learn's GridSearchCV over CoresetClassifier for CoresetCV (same seeds, same
splits, so every cell must give the same score); fit counters for the caching and
reuse guarantees; numpy means and argmax for the result tables.
"""

from __future__ import annotations

import os
import threading

import joblib
import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression, SGDClassifier
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.random_projection import GaussianRandomProjection
from sklearn.svm import LinearSVC
from sklearn.utils.estimator_checks import check_estimator

from sk_coreset import RandomSelector
from sk_coreset.base import BaseSelector, PoolSelection, ScoreSelector
from sk_coreset.datasets import load_dataset
from sk_coreset.featurizers import NetFeaturizer
from sk_coreset.model_selection import CoresetClassifier, CoresetCV, _select_fractions
from sk_coreset.selectors import available_selectors, make_selector
from sk_coreset.trainer import NetClassifier

from conftest import make_signals


# ----------------------------------------------------------------- test estimators
class CentroidDistance(ScoreSelector):
    """Nested score selector: distance of the embedding to its class mean."""

    _required_signals = ("embedding",)
    _requires_y = True
    fits = 0
    threads: list = []

    def __init__(self, fraction=0.1, *, balance=True, random_state=None, keep="highest"):
        super().__init__(fraction, balance=balance, random_state=random_state, keep=keep)

    def fit(self, X, y=None):
        type(self).fits += 1
        type(self).threads.append(threading.current_thread().name)
        return super().fit(X, y)

    def _score(self, signals, y, random_state):
        emb = np.asarray(signals["embedding"], dtype=float)
        out = np.empty(len(emb))
        for c in np.unique(y):
            rows = y == c
            out[rows] = np.linalg.norm(emb[rows] - emb[rows].mean(0), axis=1)
        return out


class RandomWeights(BaseSelector):
    """Weighted, non-nested selector: random rows with random weights."""

    _required_signals = ("embedding",)
    _nested = False
    _returns_weights = True
    fits = 0

    def __init__(self, fraction=0.1, *, balance=True, random_state=None):
        super().__init__(fraction, balance=balance, random_state=random_state)

    def fit(self, X, y=None):
        type(self).fits += 1
        return super().fit(X, y)

    def _select_pool(self, signals, y, budget, random_state):
        idx = random_state.permutation(signals.shape[0])[:budget]
        return PoolSelection(idx, weights=random_state.uniform(0.5, 2.0, size=budget))


class NeedsProba(ScoreSelector):
    _required_signals = ("proba",)

    def __init__(self, fraction=0.1, *, balance=True, random_state=None, keep="highest"):
        super().__init__(fraction, balance=balance, random_state=random_state, keep=keep)

    def _score(self, signals, y, random_state):
        return -np.asarray(signals["proba"]).max(1)


class CountingProjection(GaussianRandomProjection):
    """A seeded transform-only featurizer that counts its fits."""

    fits = 0

    def fit(self, X, y=None):
        type(self).fits += 1
        return super().fit(X, y)


class SpyClassifier(SGDClassifier):
    """Records what fit received."""

    def fit(self, X, y, sample_weight=None):
        self.seen_ = (np.array(X), np.array(y), sample_weight)
        return super().fit(X, y, sample_weight=sample_weight)


class Flaky(SGDClassifier):
    """SGD that counts fits and can be told (class-wide) to fail after some fits."""

    fits = 0
    fail_after = None

    def fit(self, X, y, sample_weight=None):
        if type(self).fail_after is not None and type(self).fits >= type(self).fail_after:
            raise RuntimeError("simulated interruption")
        type(self).fits += 1
        return super().fit(X, y, sample_weight=sample_weight)


def sgd():
    return Flaky(loss="log_loss", max_iter=20, tol=None, random_state=0)


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    rng = np.random.RandomState(0)
    rows = rng.permutation(len(y))[:450]
    return X[rows] / 16.0, y[rows]


def _reset_counters():
    for cls in (CentroidDistance, RandomWeights, CountingProjection, Flaky):
        cls.fits = 0
    Flaky.fail_after = None


@pytest.fixture(autouse=True)
def reset_counters():
    _reset_counters()


# ------------------------------------------------------------- CoresetClassifier
def test_classifier_matches_hand_written_chain(digits):
    X, y = digits
    clf = CoresetClassifier(
        CountingProjection(8, random_state=3), CentroidDistance(0.2, random_state=1), sgd(),
    ).fit(X, y)
    emb = GaussianRandomProjection(8, random_state=3).fit(X).transform(X)
    # oracle: in each class, the selected rows are the ones farthest from the class mean
    assert len(set(clf.sample_indices_)) == round(0.2 * len(y))
    for c in np.unique(y):
        rows = np.flatnonzero(y == c)
        dist = np.linalg.norm(emb[rows] - emb[rows].mean(0), axis=1)
        picked = set(clf.sample_indices_) & set(rows)
        assert picked == set(rows[np.argsort(-dist)[: len(picked)]])
    manual = sgd().fit(X[clf.sample_indices_], y[clf.sample_indices_])
    np.testing.assert_array_equal(clf.predict(X), manual.predict(X))
    np.testing.assert_allclose(clf.predict_proba(X), manual.predict_proba(X))
    assert clf.score(X, y) == manual.score(X, y)
    assert clf.n_features_in_ == 64 and list(clf.classes_) == list(range(10))


def test_weights_reach_the_estimator_only_for_weighted_selectors(digits):
    X, y = digits
    weighted = CoresetClassifier(CountingProjection(8, random_state=0),
                                 RandomWeights(0.3, random_state=0), SpyClassifier()).fit(X, y)
    X_seen, y_seen, w_seen = weighted.estimator_.seen_
    np.testing.assert_array_equal(X_seen, X[weighted.sample_indices_])
    np.testing.assert_array_equal(y_seen, y[weighted.sample_indices_])
    assert w_seen is not None and not np.allclose(w_seen, 1.0)
    np.testing.assert_array_equal(w_seen, weighted.selector_.sample_weight_)

    plain = CoresetClassifier(None, RandomSelector(0.3, random_state=0), SpyClassifier()).fit(X, y)
    assert plain.estimator_.seen_[2] is None
    assert plain.featurizer_ is None


def test_default_selector_and_pipeline(digits):
    X, y = digits
    clf = CoresetClassifier(estimator=sgd())
    assert clone(clf).get_params()["selector"] is None
    pipe = make_pipeline(StandardScaler(), clf).fit(X, y)
    assert len(pipe[-1].sample_indices_) == round(0.1 * len(y))
    assert 0.5 < pipe.score(X, y) <= 1.0


def test_classifier_rejects_impossible_combinations(digits):
    X, y = digits
    with pytest.raises(ValueError, match="only has transform"):
        CoresetClassifier(CountingProjection(4), NeedsProba(), LogisticRegression()).fit(X, y)
    with pytest.raises(ValueError, match="does not accept sample_weight"):
        CoresetClassifier(None, RandomWeights(), make_pipeline(LinearSVC())).fit(X, y)
    with pytest.raises(ValueError, match="BaseSelector"):
        CoresetClassifier(None, LogisticRegression(), LogisticRegression()).fit(X, y)
    with pytest.raises(ValueError, match="samples but y"):
        CoresetClassifier(None, None, LogisticRegression()).fit(X, y[:-1])


def test_grid_search_with_memory_fits_featurizer_once_per_split(digits, tmp_path):
    X, y = digits
    grid = {"selector": [RandomSelector(random_state=0), CentroidDistance(),
                         RandomWeights(random_state=0)],
            "selector__fraction": [0.05, 0.1]}
    base = CoresetClassifier(CountingProjection(8, random_state=0), RandomSelector(), sgd())
    cached = GridSearchCV(clone(base).set_params(memory=str(tmp_path)), grid, cv=3,
                          refit=False).fit(X, y)
    assert len(cached.cv_results_["params"]) == 6
    assert CountingProjection.fits == 3
    CountingProjection.fits = 0
    plain = GridSearchCV(base, grid, cv=3, refit=False).fit(X, y)
    assert CountingProjection.fits == 18
    np.testing.assert_array_equal(plain.cv_results_["mean_test_score"],
                                  cached.cv_results_["mean_test_score"])


# --------------------------------------------------------------------- CoresetCV
SELECTORS = {"uniform": RandomSelector(), "centroid": CentroidDistance(),
             "weights": RandomWeights()}
FRACTIONS = [0.05, 0.1, 0.3]
SEEDS = [0, 1]


def coreset_cv(**kw):
    params = dict(estimator=sgd(), fractions=FRACTIONS, selectors=SELECTORS,
                  featurizer=CountingProjection(8), cv=3, seeds=SEEDS)
    params.update(kw)
    return CoresetCV(**params)


@pytest.fixture(scope="module")
def reference_run(digits):
    _reset_counters()
    search = coreset_cv().fit(*digits)
    return search, {"centroid": CentroidDistance.fits, "weights": RandomWeights.fits,
                    "featurizer": CountingProjection.fits}


def test_coreset_cv_equals_grid_search(digits, reference_run):
    X, y = digits
    search, _ = reference_run
    grid = [{"selector": [clone(sel)], "selector__fraction": FRACTIONS,
             "selector__random_state": [s], "featurizer__random_state": [s],
             "estimator__random_state": [s]}
            for sel in SELECTORS.values() for s in SEEDS]
    gs = GridSearchCV(CoresetClassifier(CountingProjection(8), estimator=sgd()), grid,
                      cv=3, refit=False).fit(X, y)
    names = {type(s).__name__: n for n, s in SELECTORS.items()}
    expected = {}
    for i, p in enumerate(gs.cv_results_["params"]):
        key = (names[type(p["selector"]).__name__], p["selector__fraction"])
        seed = p["selector__random_state"]
        for k in range(3):
            expected[key + (seed, k)] = gs.cv_results_[f"split{k}_test_score"][i]
    res = search.cv_results_
    assert len(res["params"]) == 9 and search.n_splits_ == 6
    for row, p in enumerate(res["params"]):
        for col, (seed, k) in enumerate(search.split_labels_):
            got = res[f"split{col}_test_score"][row]
            assert got == expected[(p["selector"], p["fraction"], seed, k)]


def test_nested_selector_fitted_once_per_split_and_seed(reference_run):
    _, counts = reference_run
    n_groups = 3 * len(SEEDS)
    assert counts["featurizer"] == n_groups
    assert counts["centroid"] == n_groups
    assert counts["weights"] == n_groups * len(FRACTIONS)


def test_cv_results_tables_and_plot(reference_run):
    search, _ = reference_run
    res = search.cv_results_
    scores = np.column_stack([res[f"split{i}_test_score"] for i in range(search.n_splits_)])
    np.testing.assert_allclose(res["mean_test_score"], scores.mean(1))
    np.testing.assert_allclose(res["std_test_score"], scores.std(1))
    best = int(np.argmax(scores.mean(1)))
    assert res["rank_test_score"][best] == 1 and search.best_index_ == best
    assert search.best_params_ == res["params"][best]
    assert search.best_score_ == pytest.approx(scores.mean(1)[best])
    assert list(res["param_selector"]) == [n for n in SELECTORS for _ in FRACTIONS]
    for row, p in enumerate(res["params"]):  # 3-fold CV of 450 rows trains on 300
        assert res["mean_n_selected"][row] == round(p["fraction"] * 300)
    for key in ("mean_fit_time", "mean_select_time", "mean_featurize_time", "mean_score_time"):
        assert np.all(res[key] >= 0)

    frame = search.to_frame()
    assert frame.shape[0] == 9 and "mean_test_score" in frame
    cells = search.to_frame(cells=True)
    assert cells.shape[0] == 9 * 6
    assert set(cells.columns) >= {"selector", "fraction", "seed", "split", "test_score"}

    import matplotlib

    matplotlib.use("Agg")
    ax = search.plot()
    assert ax.get_xscale() == "log"
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert set(lines) == set(SELECTORS)
    np.testing.assert_allclose(lines["centroid"].get_ydata(), 100 * scores[3:6].mean(1))
    np.testing.assert_allclose(lines["centroid"].get_xdata(), FRACTIONS)
    assert len(ax.collections) == 3  # one std band per selector


def test_summary_table_hand_worked():
    from sk_coreset.plotting import summary_table

    res = {"param_selector": ["A", "A", "B", "B"], "param_fraction": [0.5, 0.1, 0.5, 0.1],
           "mean_test_score": [0.9, 0.7, 0.85, 0.75], "std_test_score": [0.01, 0.02, 0, 0.1],
           "mean_select_time": [0.25, 0.25, 1.5, 0.5]}
    table = summary_table(res)
    assert list(table.columns) == ["10%", "50%", "select s"]
    assert list(table.index) == ["A", "B"]
    assert table.loc["A", "10%"] == "70.0 ± 2.0" and table.loc["B", "50%"] == "85.0 ± 0.0"
    assert table.loc["B", "select s"] == "1.500"


def test_test_set_matches_manual_training(digits):
    X, y = digits
    X_tr, y_tr, X_te, y_te = X[:300], y[:300], X[300:], y[300:]
    search = CoresetCV(sgd(), [0.2, 0.5], ["Uniform"], test_set=(X_te, y_te),
                       seeds=[4, 7]).fit(X_tr, y_tr)
    for row, f in enumerate([0.2, 0.5]):
        for col, seed in enumerate([4, 7]):
            idx = RandomSelector(f, random_state=seed).fit(X_tr, y_tr).sample_indices_
            manual = sgd().set_params(random_state=seed).fit(X_tr[idx], y_tr[idx])
            score = manual.score(X_te, y_te)
            assert search.cv_results_[f"split{col}_test_score"][row] == score


def test_checkpoint_resume_recomputes_no_finished_cell(digits, tmp_path, reference_run):
    X, y = digits
    reference, _ = reference_run
    Flaky.fail_after = 20
    with pytest.raises(RuntimeError, match="simulated interruption"):
        coreset_cv(checkpoint=tmp_path).fit(X, y)
    finished = len([f for f in os.listdir(tmp_path) if f.startswith("cell-")])
    assert finished == 20
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]

    Flaky.fail_after, Flaky.fits, CountingProjection.fits = None, 0, 0
    resumed = coreset_cv(checkpoint=tmp_path).fit(X, y)
    assert Flaky.fits == 9 * 6 - 20
    assert CountingProjection.fits == 0  # every selection was checkpointed already
    for key in ("mean_test_score", "std_test_score", "rank_test_score"):
        np.testing.assert_array_equal(resumed.cv_results_[key], reference.cv_results_[key])

    Flaky.fits = 0
    coreset_cv(checkpoint=tmp_path).fit(X, y)
    assert Flaky.fits == 0
    with pytest.raises(ValueError, match="checkpoint directory"):
        coreset_cv(checkpoint=tmp_path).fit(X[:300], y[:300])


def test_runs_on_a_dask_cluster(digits):
    import distributed
    X, y = digits
    kw = dict(fractions=[0.1, 0.3], selectors={"uniform": RandomSelector(),
                                              "centroid": CentroidDistance()}, cv=2)
    serial = coreset_cv(**kw).fit(X, y)
    CentroidDistance.threads = []
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster:
        with distributed.Client(cluster):
            with joblib.parallel_backend("dask"):
                parallel = coreset_cv(**kw).fit(X, y)
    assert CentroidDistance.threads and "MainThread" not in CentroidDistance.threads
    for key in ("mean_test_score", "rank_test_score"):
        np.testing.assert_array_equal(parallel.cv_results_[key], serial.cv_results_[key])


@pytest.mark.parametrize("kw, match", [
    ({"test_set": ([[0]], [0])}, "either cv or test_set"),
    ({"fractions": [0.1, 0.1]}, "duplicates"),
    ({"fractions": [1.5]}, "fraction"),
    ({"seeds": 3}, "sequence of ints"),
    ({"seeds": [0, 0]}, "duplicates"),
    ({"selectors": []}, "empty"),
    ({"selectors": ["NoSuchMethod"]}, "Unknown selector"),
    ({"selectors": [RandomSelector(), RandomSelector()]}, "dict"),
    ({"selectors": {"w": RandomWeights()}, "estimator": make_pipeline(LinearSVC())},
     "sample_weight"),
])
def test_coreset_cv_validation(digits, kw, match):
    X, y = digits
    with pytest.raises(ValueError, match=match):
        coreset_cv(**kw).fit(X, y)


def test_stratified_default_split_is_used(digits):
    X, y = digits
    search = CoresetCV(sgd(), [0.5], ["Uniform"], seeds=[3]).fit(X, y)
    assert search.n_splits_ == 5
    first_test = next(StratifiedKFold(5).split(X, y))[1]
    idx = RandomSelector(0.5, random_state=3).fit(
        X[np.setdiff1d(np.arange(len(y)), first_test)],
        y[np.setdiff1d(np.arange(len(y)), first_test)]).sample_indices_
    train = np.setdiff1d(np.arange(len(y)), first_test)[idx]
    expected = sgd().set_params(random_state=3).fit(X[train], y[train]).score(
        X[first_test], y[first_test])
    assert search.cv_results_["split0_test_score"][0] == expected


@pytest.mark.parametrize("name", available_selectors())
def test_reused_ranking_equals_a_fit_at_each_fraction(name):
    """The selection CoresetCV derives for each fraction equals a direct fit at it."""
    signals, y = make_signals(class_sizes=(30, 21, 12), seed=2)
    selector = make_selector(name, random_state=5)
    fractions = [0.05, 0.1, 0.3, 0.5]
    derived = _select_fractions(selector, signals, y, fractions)
    for f in fractions:
        direct = clone(selector).set_params(fraction=f).fit(signals, y)
        np.testing.assert_array_equal(derived[f][0], direct.sample_indices_)
        np.testing.assert_array_equal(derived[f][1], direct.sample_weight_)


def test_sklearn_estimator_checks():
    estimator = CoresetClassifier(None, CentroidDistance(1.0), LogisticRegression())
    results = check_estimator(estimator, on_fail=None)
    failed = [(r["check_name"], str(r["exception"])) for r in results if r["status"] == "failed"]
    assert not failed


def test_budget_paradox_falls_back_to_a_fit():
    """Largest-remainder budgets (1,1,1) at 3 rows but (0,2,2) at 4: class 0 shrinks."""
    y = np.array([0, 1, 1, 1, 2, 2, 2])
    X = np.arange(14.0).reshape(7, 2)
    selector = RandomSelector(random_state=0)
    derived = _select_fractions(selector, X, y, [0.43, 0.57])
    for f, expected_classes in ((0.43, [0, 1, 2]), (0.57, [1, 1, 2, 2])):
        direct = clone(selector).set_params(fraction=f).fit(X, y)
        np.testing.assert_array_equal(derived[f][0], direct.sample_indices_)
        assert sorted(y[derived[f][0]]) == expected_classes


# ------------------------------------------------------------ with the networks
class CountingNetFeaturizer(NetFeaturizer):
    fits = 0

    def fit(self, X, y=None):
        type(self).fits += 1
        return super().fit(X, y)


@pytest.fixture
def one_torch_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def digit_images():
    X, y, _, _ = load_dataset("digits")
    return X[:240], y[:240]


def nets():
    return (CountingNetFeaturizer("mlp", max_epochs=2, batch_size=32, device="cpu"),
            NetClassifier("mlp", max_epochs=2, lr=0.05, batch_size=32, device="cpu"))


def net_selectors():
    return {"Uniform": RandomSelector(), "KCenterGreedy": make_selector("KCenterGreedy"),
            "Entropy": make_selector("Entropy")}


def test_grid_search_with_nets_fits_the_proxy_once_per_split(digit_images, tmp_path,
                                                               one_torch_thread):
    X, y = digit_images
    featurizer, trainer = nets()
    CountingNetFeaturizer.fits = 0
    grid = {"selector": list(net_selectors().values()), "selector__fraction": [0.05, 0.1]}
    clf = CoresetClassifier(featurizer.set_params(random_state=0), RandomSelector(),
                            trainer.set_params(random_state=0), memory=str(tmp_path))
    search = GridSearchCV(clf, grid, cv=3, refit=False).fit(X, y)
    assert len(search.cv_results_["params"]) == 6
    assert np.all(np.isfinite(search.cv_results_["mean_test_score"]))
    assert CountingNetFeaturizer.fits == 3


def test_coreset_cv_with_nets_equals_grid_search(digit_images, one_torch_thread):
    X, y = digit_images
    featurizer, trainer = nets()
    fractions, seeds = [0.05, 0.1, 0.3], [0, 1]
    search = CoresetCV(trainer, fractions, net_selectors(), featurizer=featurizer, cv=3,
                       seeds=seeds).fit(X, y)
    grid = [{"selector": [sel], "selector__fraction": fractions,
             "selector__random_state": [s], "featurizer__random_state": [s],
             "estimator__random_state": [s]}
            for sel in net_selectors().values() for s in seeds]
    gs = GridSearchCV(CoresetClassifier(featurizer, estimator=trainer), grid, cv=3,
                      refit=False).fit(X, y)
    names = {type(s).__name__: n for n, s in net_selectors().items()}
    expected = {}
    for i, p in enumerate(gs.cv_results_["params"]):
        key = (names[type(p["selector"]).__name__], p["selector__fraction"],
               p["selector__random_state"])
        expected[key] = [gs.cv_results_[f"split{k}_test_score"][i] for k in range(3)]
    for cell in search.cells_:
        key = (cell["selector"], cell["fraction"], cell["seed"])
        assert cell["test_score"] == expected[key][cell["split"]]
