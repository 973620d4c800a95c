"""sk_coreset: coreset selection for deep learning as scikit-learn estimators.

Selectors (``sk_coreset.selectors``) pick rows from per-sample ``Signals`` produced by a
``NetFeaturizer``; ``NetClassifier`` trains on the selected rows; ``CoresetClassifier``
and ``CoresetCV`` chain and compare them inside scikit-learn.
"""

from ._config import config_context, get_config, set_config
from .base import BaseSelector, ScoreSelector, SelectorSampler, Signals, allocate_budgets
from .datasets import load_dataset
from .featurizers import NetFeaturizer, TrainingDynamics
from .model_selection import CoresetClassifier, CoresetCV
from .nets import available_nets, build_net
from .selectors import RandomSelector, available_selectors, make_selector
from .trainer import NetClassifier

__version__ = "0.1.0"

__all__ = [
    "BaseSelector",
    "CoresetCV",
    "CoresetClassifier",
    "NetClassifier",
    "NetFeaturizer",
    "RandomSelector",
    "ScoreSelector",
    "SelectorSampler",
    "Signals",
    "TrainingDynamics",
    "allocate_budgets",
    "available_nets",
    "available_selectors",
    "build_net",
    "config_context",
    "get_config",
    "load_dataset",
    "make_selector",
    "set_config",
]
