"""Coreset selectors and the name registry.

Every selector is registered under its class name and the names the DeepCore paper and
its command line use; :func:`make_selector` matches them case-insensitively, ignoring
``-``, ``_`` and spaces. One module per family; importing it registers its selectors.
"""

from ..base import BaseSelector, ScoreSelector
from ._registry import available_selectors, make_selector, register_selector
from .random import RandomSelector

__all__ = [
    "BaseSelector",
    "RandomSelector",
    "ScoreSelector",
    "available_selectors",
    "make_selector",
    "register_selector",
]
