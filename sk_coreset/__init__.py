"""sk_coreset: coreset selection for deep learning as scikit-learn estimators."""

from .base import BaseSelector, Signals, allocate_budgets
from .selectors import RandomSelector, available_selectors, make_selector

__version__ = "0.1.0"

__all__ = [
    "BaseSelector",
    "RandomSelector",
    "Signals",
    "allocate_budgets",
    "available_selectors",
    "make_selector",
]
