"""Meta-estimators: :class:`CoresetClassifier` and :class:`CoresetCV`.

``CoresetClassifier`` chains featurizer -> selector -> trainer as one scikit-learn
classifier, so that ``Pipeline`` and ``GridSearchCV`` can tune the selector and its
fraction. ``CoresetCV`` evaluates the same chain over fractions x selectors x seeds, but
featurizes once per split and seed and fits a selector whose ranking is nested once for
all fractions; it fans out with joblib and can resume from a checkpoint directory.
"""

from __future__ import annotations

import numbers
import os
import tempfile
import time
from collections import defaultdict
from collections.abc import Mapping

import joblib
import numpy as np
import scipy.sparse as sp
from joblib import Parallel, delayed
from scipy.stats import rankdata
from sklearn.base import BaseEstimator, ClassifierMixin, MetaEstimatorMixin, clone
from sklearn.utils import get_tags
from sklearn.metrics import check_scoring
from sklearn.model_selection import check_cv
from sklearn.utils import _safe_indexing
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import _num_samples, check_is_fitted, check_memory
from sklearn.utils.validation import column_or_1d, has_fit_parameter
from torch.utils.data import Dataset, Subset
from tqdm.auto import tqdm

from .base import BaseSelector, Signals, allocate_budgets, resolve_budget
from .selectors import RandomSelector, make_selector

__all__ = ["CoresetCV", "CoresetClassifier"]


# --------------------------------------------------------------------------- helpers
def _default_estimator():
    from .trainer import NetClassifier

    return NetClassifier()


def _featurize(featurizer, X, y, extra: tuple):
    """Fit a clone of ``featurizer`` on ``(X, y)``; return it and the signals of ``X``.

    ``extra`` names on-request signals the selectors need: ``deepfool`` (asked of
    ``signals``) and ``proba_history`` (switched on with ``record_proba_history``).
    """
    featurizer = clone(featurizer)
    if "proba_history" in extra and "record_proba_history" in featurizer.get_params():
        featurizer.set_params(record_proba_history=True)
    fitted = featurizer.fit(X, y)
    if hasattr(fitted, "signals"):
        kwargs = {"deepfool": True} if "deepfool" in extra else {}
        signals = fitted.signals(X, y, **kwargs)
    else:
        signals = Signals(embedding=np.asarray(fitted.transform(X)))
    return fitted, signals


def _extra_signals(selectors) -> tuple:
    """The on-request signals (see :func:`_featurize`) that any of ``selectors`` reads."""
    needed = {name for s in selectors for name in s._required_signals}
    return tuple(sorted(needed & {"deepfool", "proba_history"}))


def _check_compatible(featurizer, selector, estimator):
    """Refuse selector/featurizer/estimator combinations that cannot work, before fitting."""
    if featurizer is not None and not hasattr(featurizer, "signals"):
        extra = sorted(set(selector._required_signals) - {"embedding"})
        if extra:
            raise ValueError(
                f"{type(selector).__name__} needs the signal(s) {extra}, but the featurizer "
                f"{type(featurizer).__name__} only has transform() (an embedding). Use a "
                "featurizer with signals(X, y) such as NetFeaturizer, or a selector that "
                "reads only the embedding."
            )
    if selector._returns_weights and not has_fit_parameter(estimator, "sample_weight"):
        raise ValueError(
            f"{type(selector).__name__} returns sample weights but "
            f"{type(estimator).__name__}.fit does not accept sample_weight. Use an "
            "estimator whose fit takes sample_weight (e.g. NetClassifier) or a selector "
            "without weights."
        )


def _check_data(X, y, owner: str):
    """``(X, y)`` with y 1-D; array-likes without a shape (other than lists and Datasets)
    become arrays, so that rows can be indexed."""
    if not hasattr(X, "shape") and hasattr(X, "__array__"):
        X = np.asarray(X)
    if y is None:
        raise ValueError(f"{owner} requires y to be passed, but the target y is None.")
    y = column_or_1d(y, warn=True)
    check_classification_targets(y)
    if _num_samples(X) != len(y):
        raise ValueError(
            f"X has {_num_samples(X)} samples but y has {len(y)}; pass one label per row."
        )
    return X, y


def _take(X, rows):
    """Rows of ``X``; a torch Dataset becomes a ``Subset`` (not a list of items)."""
    if isinstance(X, Dataset) and not hasattr(X, "shape"):
        return Subset(X, np.asarray(rows).tolist())
    if sp.issparse(X):  # COO, DOK, ... cannot index rows
        return X.tocsr()[rows]
    return _safe_indexing(X, rows)


def _fit_weighted(estimator, X, y, weights, use_weights: bool):
    if use_weights:
        return estimator.fit(X, y, sample_weight=weights)
    return estimator.fit(X, y)


def _seeded(estimator, seed):
    """A clone of ``estimator`` with every (nested) ``random_state`` set to ``seed``."""
    estimator = clone(estimator)
    keys = [
        k for k in estimator.get_params(deep=True)
        if k == "random_state" or k.endswith("__random_state")
    ]
    return estimator.set_params(**dict.fromkeys(keys, seed))


def _timed_fit(selector, signals, y):
    start = time.perf_counter()
    selector.fit(signals, y)
    return selector, time.perf_counter() - start


def _prefix_selection(fitted, y, fraction):
    """The selection ``fitted`` would make at ``fraction``, from its per-pool rankings.

    Returns ``None`` when a pool's budget at ``fraction`` exceeds its ranking (largest
    remainder budgets are not monotone in the total: the Alabama paradox); refit then.
    """
    rankings = fitted.class_rankings_
    n = len(y)
    sizes = [n] if len(rankings) == 1 else np.unique(y, return_counts=True)[1]
    budgets = allocate_budgets(sizes, resolve_budget(fraction, n))
    if any(b > len(r) for b, r in zip(budgets, rankings)):
        return None
    return fitted._merge(
        [r[:b] for r, b in zip(rankings, budgets)], [np.ones(b) for b in budgets]
    )


def _select_fractions(selector, signals, y, fractions):
    """``{fraction: (indices, weights, seconds)}``; one fit for a nested ranking.

    Selectors with weights are refitted per fraction: their weights depend on the whole
    selected set, not only on its rank order.
    """
    out, fitted = {}, None
    if selector._nested and not selector._returns_weights:
        top = max(fractions, key=lambda f: resolve_budget(f, len(y)))
        fitted, top_seconds = _timed_fit(clone(selector).set_params(fraction=top), signals, y)
    for fraction in fractions:
        prefix = None if fitted is None else _prefix_selection(fitted, y, fraction)
        if prefix is None:
            one, seconds = _timed_fit(clone(selector).set_params(fraction=fraction), signals, y)
            out[fraction] = (one.sample_indices_, one.sample_weight_, seconds)
        else:
            out[fraction] = (*prefix, top_seconds)
    return out


# ------------------------------------------------------------------ CoresetClassifier
def _estimator_has(attr):
    def check(self):
        est = getattr(self, "estimator_", None)
        if est is None:
            est = self.estimator if self.estimator is not None else _default_estimator()
        return hasattr(est, attr)

    return check


class CoresetClassifier(MetaEstimatorMixin, ClassifierMixin, BaseEstimator):
    """Featurize, select a coreset, train on it: one scikit-learn classifier.

    ``fit(X, y)`` fits the featurizer on ``(X, y)`` and computes its signals (or hands
    ``X`` itself to the selector when ``featurizer=None``), selects rows with the
    selector, and fits the estimator on those rows of the ORIGINAL ``X`` with the
    selector's weights as ``sample_weight`` when the selector returns weights.
    ``predict`` goes straight to the fitted estimator: the featurizer is not used at
    prediction time.

    Parameters
    ----------
    featurizer : estimator or None, default=None
        Has ``fit(X, y)`` and either ``signals(X, y)`` returning :class:`Signals` (e.g.
        ``NetFeaturizer``) or ``transform(X)`` (its output becomes the ``embedding``
        signal). ``None`` gives ``X`` to the selector unchanged.
    selector : BaseSelector or None, default=None
        The coreset selector; ``None`` means ``RandomSelector()`` (10% uniformly).
    estimator : classifier or None, default=None
        The trainer, fitted on the selected rows; ``None`` means ``NetClassifier()``
        with its defaults (the paper's recipe). Must accept ``sample_weight`` in ``fit``
        when the selector returns weights.
    memory : str, joblib.Memory or None, default=None
        Caches the fitted featurizer and its signals, keyed by the featurizer's
        parameters and the data, so that a ``GridSearchCV`` over the selector fits the
        featurizer once per split.

    Attributes
    ----------
    featurizer_ : estimator or None
        The fitted featurizer.
    selector_ : BaseSelector
        The fitted selector.
    estimator_ : estimator
        The estimator fitted on the coreset.
    sample_indices_ : ndarray of int64
        Rows of ``X`` that the estimator was fitted on, most important first.
    sample_weight_ : ndarray of float64
        The selector's weights for those rows (ones for selectors without weights).
    select_time_ : float
        Seconds spent in the selector's ``fit``.
    classes_ : ndarray
        Class labels known to the estimator.
    n_features_in_ : int
        Number of features, when ``X`` is a 2-D array.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from sklearn.decomposition import PCA
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sk_coreset import CoresetClassifier, RandomSelector
    >>> X, y = load_digits(return_X_y=True)
    >>> clf = CoresetClassifier(PCA(8, random_state=0), RandomSelector(0.2, random_state=0),
    ...                         LogisticRegression(max_iter=500)).fit(X, y)
    >>> len(clf.sample_indices_)
    359
    """

    def __init__(self, featurizer=None, selector=None, estimator=None, memory=None):
        self.featurizer = featurizer
        self.selector = selector
        self.estimator = estimator
        self.memory = memory

    def fit(self, X, y):
        """Select a coreset of ``(X, y)`` and fit the estimator on it.

        Parameters
        ----------
        X : array-like, Signals or row-indexable dataset of shape (n_samples, ...)
            Training data; what the featurizer and the estimator accept.
        y : array-like of shape (n_samples,)
            Class labels.

        Returns
        -------
        self
        """
        X, y = _check_data(X, y, type(self).__name__)
        selector = clone(self.selector) if self.selector is not None else RandomSelector()
        if not isinstance(selector, BaseSelector):
            raise ValueError(
                f"selector must be a BaseSelector such as RandomSelector(); got "
                f"{type(selector).__name__}. Build one by name with make_selector(name)."
            )
        estimator = clone(self.estimator) if self.estimator is not None else _default_estimator()
        _check_compatible(self.featurizer, selector, estimator)

        if self.featurizer is None:
            self.featurizer_, signals = None, X
        else:
            featurize = check_memory(self.memory).cache(_featurize)
            self.featurizer_, signals = featurize(
                self.featurizer, X, y, _extra_signals([selector])
            )
        self.selector_, self.select_time_ = _timed_fit(selector, signals, y)
        self.sample_indices_ = self.selector_.sample_indices_
        self.sample_weight_ = self.selector_.sample_weight_
        self.estimator_ = _fit_weighted(
            estimator, _take(X, self.sample_indices_), y[self.sample_indices_],
            self.sample_weight_, selector._returns_weights,
        )
        self.classes_ = getattr(self.estimator_, "classes_", np.unique(y))
        if hasattr(X, "shape") and len(X.shape) == 2:
            self.n_features_in_ = X.shape[1]
        return self

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        parts = [self.estimator if self.estimator is not None else _default_estimator(),
                 self.selector if self.selector is not None else RandomSelector()]
        parts += [] if self.featurizer is None else [self.featurizer]
        tags.input_tags.sparse = all(get_tags(p).input_tags.sparse for p in parts)
        return tags

    def predict(self, X):
        """Predict with the estimator trained on the coreset."""
        check_is_fitted(self, "estimator_")
        return self.estimator_.predict(X)

    @available_if(_estimator_has("predict_proba"))
    def predict_proba(self, X):
        """Class probabilities from the estimator trained on the coreset."""
        check_is_fitted(self, "estimator_")
        return self.estimator_.predict_proba(X)

    @available_if(_estimator_has("predict_log_proba"))
    def predict_log_proba(self, X):
        """Log class probabilities from the estimator trained on the coreset."""
        check_is_fitted(self, "estimator_")
        return self.estimator_.predict_log_proba(X)

    @available_if(_estimator_has("decision_function"))
    def decision_function(self, X):
        """Decision function of the estimator trained on the coreset."""
        check_is_fitted(self, "estimator_")
        return self.estimator_.decision_function(X)

    def score(self, X, y, sample_weight=None):
        """The estimator's own ``score`` (accuracy for classifiers)."""
        check_is_fitted(self, "estimator_")
        if sample_weight is None:
            return self.estimator_.score(X, y)
        return self.estimator_.score(X, y, sample_weight=sample_weight)


# ------------------------------------------------------------------------- CoresetCV
def _named_selectors(selectors) -> dict:
    if isinstance(selectors, (str, BaseSelector)):
        selectors = [selectors]
    if isinstance(selectors, Mapping):
        items = list(selectors.items())
    else:
        items = [(s if isinstance(s, str) else type(s).__name__, s) for s in selectors]
    if not items:
        raise ValueError("selectors is empty; pass selector names or instances, e.g. ['Uniform'].")
    named = {}
    for name, sel in items:
        sel = make_selector(sel) if isinstance(sel, str) else sel
        if not isinstance(sel, BaseSelector):
            raise ValueError(
                f"selectors must hold names or BaseSelector instances; got {sel!r}."
            )
        if name in named:
            raise ValueError(
                f"Two selectors are named {name!r}; pass a dict {{name: selector}} to "
                "tell them apart."
            )
        named[str(name)] = sel
    return named


def _check_fractions(fractions, n_train: int) -> list:
    fractions = [fractions] if isinstance(fractions, numbers.Number) else list(fractions)
    if not fractions:
        raise ValueError("fractions is empty; pass e.g. fractions=[0.05, 0.1, 0.2].")
    for f in fractions:
        resolve_budget(f, n_train)
    if len(set(fractions)) != len(fractions):
        raise ValueError(f"fractions {fractions} contain duplicates; list each once.")
    return fractions


def _check_seeds(seeds) -> list:
    if isinstance(seeds, numbers.Number) or isinstance(seeds, str):
        raise ValueError(f"seeds must be a sequence of ints such as (0, 1, 2); got {seeds!r}.")
    seeds = list(seeds)
    if not seeds or not all(isinstance(s, numbers.Integral) for s in seeds):
        raise ValueError(f"seeds must be a non-empty sequence of ints; got {seeds!r}.")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds {seeds} contain duplicates; list each once.")
    return [int(s) for s in seeds]


def _selector_key(name, selector):
    params = {k: v for k, v in selector.get_params(deep=False).items()
              if k not in ("fraction", "random_state")}
    return (name, type(selector).__name__, joblib.hash(params))


class _Store:
    """Finished results by key: in memory, and with a directory also on disk.

    Each result is written to a temporary file and renamed into place, so a run killed
    mid-write leaves no half-written result behind.
    """

    def __init__(self, directory, fingerprint):
        self.directory = None if directory is None else os.fspath(directory)
        self._results = {}
        if self.directory is None:
            return
        os.makedirs(self.directory, exist_ok=True)
        stamp = os.path.join(self.directory, "fingerprint.txt")
        if os.path.exists(stamp):
            with open(stamp) as fh:
                if fh.read().strip() != fingerprint:
                    raise ValueError(
                        f"checkpoint directory {self.directory!r} holds results of a run with "
                        "other data, splits, estimator, featurizer or scoring; pass a new "
                        "directory or delete this one."
                    )
        else:
            self._write_text(stamp, fingerprint)

    def _path(self, key):
        return os.path.join(self.directory, f"{key[0]}-{joblib.hash(key)}.pkl")

    def get(self, key):
        if key not in self._results and self.directory is not None:
            path = self._path(key)
            if os.path.exists(path):
                self._results[key] = joblib.load(path)
        return self._results.get(key)

    def put(self, key, value):
        self._results[key] = value
        if self.directory is not None:
            fd, tmp = tempfile.mkstemp(dir=self.directory, suffix=".tmp")
            os.close(fd)
            joblib.dump(value, tmp)
            os.replace(tmp, self._path(key))

    def _write_text(self, path, text):
        fd, tmp = tempfile.mkstemp(dir=self.directory, suffix=".tmp")
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, path)


def _featurize_and_select(featurizer, jobs, X, y, seed, extra):
    """One (split, seed): fit the featurizer once, then every selector it serves."""
    start = time.perf_counter()
    if featurizer is None:
        signals = X
    else:
        _, signals = _featurize(_seeded(featurizer, seed), X, y, extra)
    featurize_time = time.perf_counter() - start
    out = {}
    for name, (selector, fractions) in jobs.items():
        for fraction, picked in _select_fractions(_seeded(selector, seed), signals, y,
                                                  fractions).items():
            out[(name, fraction)] = picked
    return featurize_time, out


def _train_and_score(estimator, scorer, X_fit, y_fit, weights, use_weights, X_test, y_test):
    start = time.perf_counter()
    fitted = _fit_weighted(estimator, X_fit, y_fit, weights, use_weights)
    fit_time = time.perf_counter() - start
    score = scorer(fitted, X_test, y_test)
    return float(score), fit_time, time.perf_counter() - start - fit_time


def _parallel(n_jobs):
    try:
        return Parallel(n_jobs=n_jobs, return_as="generator_unordered")
    except ValueError:  # the "multiprocessing" backend only returns lists
        return Parallel(n_jobs=n_jobs)


class CoresetCV(MetaEstimatorMixin, BaseEstimator):
    """Accuracy of a trainer on coresets, across fractions x selectors x seeds.

    For every CV split (or the one ``test_set``) and seed, the featurizer is fitted
    once and every selector selects from its signals; a selector with a nested ranking
    (``_nested`` and no weights) is fitted once, at the largest fraction, and the
    smaller fractions take per-class prefixes of its ranking, which is exactly the
    selection a fit at that fraction makes. Each (selector, fraction, seed, split) cell
    then trains a clone of ``estimator`` on the selected rows and scores it. Seed ``s``
    sets every ``random_state`` parameter of the selector, the featurizer and the
    estimator, so a cell equals ``CoresetClassifier`` with those seeds under
    ``GridSearchCV``.

    Parameters
    ----------
    estimator : classifier
        The trainer (e.g. ``NetClassifier``); must accept ``sample_weight`` for
        selectors that return weights.
    fractions : sequence of float in (0, 1] or int
        Coreset sizes to evaluate.
    selectors : sequence of str or BaseSelector, or dict of name -> selector
        Selectors by registry name or instance; their ``fraction`` and
        ``random_state`` are overridden.
    featurizer : estimator or None, default=None
        As in :class:`CoresetClassifier`.
    cv : int, CV splitter, iterable or None, default=None
        As in ``GridSearchCV`` (``None``: 5-fold stratified). Not with ``test_set``.
    test_set : tuple (X_test, y_test) or None, default=None
        Train on all of ``X`` and score on this held-out set (one split).
    seeds : sequence of int, default=(0, 1, 2)
        One repetition per seed.
    scoring : str, callable or None, default=None
        As in ``GridSearchCV``; ``None`` uses the estimator's ``score``.
    n_jobs : int or None, default=None
        Parallel jobs over (split, seed) featurizations and over cells; joblib's
        active backend is used, so ``joblib.parallel_backend("dask")`` runs on Dask.
    checkpoint : str, path or None, default=None
        Directory in which every finished selection and cell is saved; a run with
        the same data and settings resumes from it without recomputing them.
    verbose : int, default=0
        Progress bars when > 0.

    Attributes
    ----------
    cv_results_ : dict of ndarray
        ``GridSearchCV``-style results, one row per (selector, fraction): ``params``,
        ``param_selector``, ``param_fraction``, ``split{i}_test_score``,
        ``mean/std/rank_test_score``, ``mean/std_fit_time``, ``mean/std_score_time``,
        ``mean/std_select_time`` (for a nested selector, its one fit at the largest
        fraction), ``mean/std_featurize_time``, ``mean_n_selected``. Column ``i``
        holds seed ``split_labels_[i][0]`` on CV split ``split_labels_[i][1]``.
    split_labels_ : list of (seed, split) tuples
        What each ``split{i}`` column is.
    cells_ : list of dict
        One record per (selector, fraction, seed, split).
    best_index_ : int
    best_params_ : dict
        ``{"selector": name, "fraction": f}`` with the best mean score over seeds
        and splits.
    best_score_ : float
    n_splits_ : int
        Number of ``split{i}`` columns (CV splits x seeds).
    scorer_ : callable

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sk_coreset import CoresetCV
    >>> X, y = load_digits(return_X_y=True)
    >>> search = CoresetCV(LogisticRegression(max_iter=300), [0.1, 0.3], ["Uniform"],
    ...                    cv=3, seeds=[0, 1]).fit(X, y)
    >>> search.best_params_
    {'selector': 'Uniform', 'fraction': 0.3}
    """

    def __init__(self, estimator, fractions, selectors, featurizer=None, cv=None,
                 test_set=None, seeds=(0, 1, 2), scoring=None, n_jobs=None,
                 checkpoint=None, verbose=0):
        self.estimator = estimator
        self.fractions = fractions
        self.selectors = selectors
        self.featurizer = featurizer
        self.cv = cv
        self.test_set = test_set
        self.seeds = seeds
        self.scoring = scoring
        self.n_jobs = n_jobs
        self.checkpoint = checkpoint
        self.verbose = verbose

    # ------------------------------------------------------------------ fit
    def fit(self, X, y):
        """Evaluate every (selector, fraction) over seeds and splits.

        Parameters
        ----------
        X : array-like or row-indexable dataset of shape (n_samples, ...)
        y : array-like of shape (n_samples,)

        Returns
        -------
        self
        """
        X, y = _check_data(X, y, type(self).__name__)
        splits = self._splits(X, y)
        selectors = _named_selectors(self.selectors)
        fractions = _check_fractions(self.fractions, min(len(tr) for tr, _ in splits))
        seeds = _check_seeds(self.seeds)
        for selector in selectors.values():
            _check_compatible(self.featurizer, selector, self.estimator)
        self.scorer_ = check_scoring(self.estimator, scoring=self.scoring)
        store = _Store(self.checkpoint, self._fingerprint(X, y, splits)
                       if self.checkpoint is not None else None)

        cells = [(name, f, s, k) for name in selectors for f in fractions
                 for s in seeds for k in range(len(splits))]
        keys = {name: _selector_key(name, sel) for name, sel in selectors.items()}
        todo = [c for c in cells if store.get(self._cell_key(keys, c)) is None]
        self._run_selections(X, y, splits, selectors, keys, todo, store)
        self._run_cells(X, y, splits, selectors, keys, todo, store)
        self._set_results(
            [store.get(self._cell_key(keys, c)) for c in cells],
            list(selectors), fractions, seeds, len(splits),
        )
        return self

    def _splits(self, X, y):
        if self.test_set is None:
            cv = check_cv(self.cv, y, classifier=True)
            return [(np.asarray(tr), np.asarray(te)) for tr, te in cv.split(X, y)]
        if self.cv is not None:
            raise ValueError("Pass either cv or test_set, not both.")
        if not (isinstance(self.test_set, (tuple, list)) and len(self.test_set) == 2):
            raise ValueError("test_set must be a pair (X_test, y_test).")
        X_test, y_test = self.test_set
        if _num_samples(X_test) != len(y_test):
            raise ValueError(
                f"test_set has {_num_samples(X_test)} samples but {len(y_test)} labels."
            )
        return [(np.arange(len(y)), None)]

    def _test_data(self, X, y, test_idx):
        if test_idx is None:
            return self.test_set[0], np.asarray(self.test_set[1])
        return _take(X, test_idx), y[test_idx]

    def _fingerprint(self, X, y, splits):
        return joblib.hash((
            clone(self.estimator), None if self.featurizer is None else clone(self.featurizer),
            self.scoring, X, y, [tr for tr, _ in splits], self.test_set,
        ))

    @staticmethod
    def _cell_key(keys, cell):
        name, fraction, seed, split = cell
        return ("cell", keys[name], fraction, seed, split)

    @staticmethod
    def _selection_key(keys, cell):
        name, fraction, seed, split = cell
        return ("selection", keys[name], fraction, seed, split)

    def _run_selections(self, X, y, splits, selectors, keys, todo, store):
        """Featurize and select for every (split, seed) that an unfinished cell needs."""
        jobs = defaultdict(lambda: defaultdict(list))
        for cell in todo:
            if store.get(self._selection_key(keys, cell)) is None:
                name, fraction, seed, split = cell
                jobs[(split, seed)][name].append(fraction)
        if not jobs:
            return
        extra = _extra_signals(selectors.values())
        tasks = (
            delayed(self._select_task)(
                (split, seed), self.featurizer,
                {name: (selectors[name], fs) for name, fs in per_sel.items()},
                _take(X, splits[split][0]), y[splits[split][0]], seed, extra,
            )
            for (split, seed), per_sel in jobs.items()
        )
        bar = tqdm(total=len(jobs), desc="featurize + select", disable=not self.verbose)
        for (split, seed), (featurize_time, picked) in _parallel(self.n_jobs)(tasks):
            for (name, fraction), (idx, weights, seconds) in picked.items():
                store.put(
                    self._selection_key(keys, (name, fraction, seed, split)),
                    {"indices": idx, "weights": weights, "select_time": seconds,
                     "featurize_time": featurize_time},
                )
            bar.update()
        bar.close()

    @staticmethod
    def _select_task(tag, *args):
        return tag, _featurize_and_select(*args)

    @staticmethod
    def _train_task(cell, *args):
        return cell, _train_and_score(*args)

    def _run_cells(self, X, y, splits, selectors, keys, todo, store):
        def task(cell):
            name, fraction, seed, split = cell
            picked = store.get(self._selection_key(keys, cell))
            rows = splits[split][0][picked["indices"]]
            X_test, y_test = self._test_data(X, y, splits[split][1])
            return delayed(self._train_task)(
                cell, _seeded(self.estimator, seed), self.scorer_,
                _take(X, rows), y[rows], picked["weights"],
                selectors[name]._returns_weights, X_test, y_test,
            )

        bar = tqdm(total=len(todo), desc="train + score", disable=not self.verbose)
        for cell, (score, fit_time, score_time) in _parallel(self.n_jobs)(map(task, todo)):
            picked = store.get(self._selection_key(keys, cell))
            name, fraction, seed, split = cell
            store.put(self._cell_key(keys, cell), {
                "selector": name, "fraction": fraction, "seed": seed, "split": split,
                "test_score": score, "fit_time": fit_time, "score_time": score_time,
                "select_time": picked["select_time"],
                "featurize_time": picked["featurize_time"],
                "n_selected": len(picked["indices"]),
            })
            bar.update()
        bar.close()

    def _set_results(self, records, names, fractions, seeds, n_cv):
        n_cols = len(seeds) * n_cv
        self.split_labels_ = [(s, k) for s in seeds for k in range(n_cv)]
        self.cells_ = records
        # records are ordered selector, fraction, seed, split: one row per candidate
        table = {key: np.array([r[key] for r in records], dtype=np.float64).reshape(-1, n_cols)
                 for key in ("test_score", "fit_time", "score_time", "select_time",
                             "featurize_time", "n_selected")}
        params = [{"selector": n, "fraction": f} for n in names for f in fractions]
        results = {}
        for key in ("fit_time", "score_time", "select_time", "featurize_time"):
            results[f"mean_{key}"] = table[key].mean(axis=1)
            results[f"std_{key}"] = table[key].std(axis=1)
        for p in ("selector", "fraction"):
            results[f"param_{p}"] = np.ma.MaskedArray(
                np.array([c[p] for c in params], dtype=object), mask=False
            )
        results["params"] = params
        for i in range(n_cols):
            results[f"split{i}_test_score"] = table["test_score"][:, i]
        results["mean_test_score"] = table["test_score"].mean(axis=1)
        results["std_test_score"] = table["test_score"].std(axis=1)
        results["rank_test_score"] = rankdata(
            -results["mean_test_score"], method="min"
        ).astype(np.int32)
        results["mean_n_selected"] = table["n_selected"].mean(axis=1)
        self.cv_results_ = results
        self.n_splits_ = n_cols
        self.best_index_ = int(np.argmin(results["rank_test_score"]))
        self.best_params_ = dict(params[self.best_index_])
        self.best_score_ = float(results["mean_test_score"][self.best_index_])

    # -------------------------------------------------------------- outputs
    def to_frame(self, cells: bool = False):
        """Results as a pandas DataFrame.

        Parameters
        ----------
        cells : bool, default=False
            ``False``: one row per (selector, fraction), the columns of ``cv_results_``.
            ``True``: one row per (selector, fraction, seed, split) cell.
        """
        check_is_fitted(self, "cv_results_")
        pd = _import_pandas()
        if cells:
            return pd.DataFrame(self.cells_)
        return pd.DataFrame({k: (list(v) if k == "params" else np.asarray(v))
                             for k, v in self.cv_results_.items()})

    def plot(self, ax=None, **kwargs):
        """Accuracy against fraction (log axis), one curve per selector with a std band.

        Needs matplotlib (the ``plot`` extra). Keyword arguments go to
        :func:`sk_coreset.plotting.plot_fraction_curves`. Returns the axes.
        """
        check_is_fitted(self, "cv_results_")
        from .plotting import plot_fraction_curves

        return plot_fraction_curves(self.cv_results_, ax=ax, **kwargs)


def _import_pandas():
    try:
        import pandas as pd
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "to_frame() needs pandas: pip install 'sk-coreset[plot]'."
        ) from exc
    return pd
