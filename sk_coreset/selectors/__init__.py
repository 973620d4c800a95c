"""Coreset selectors and the name registry.

Every selector is registered under its class name and the names the DeepCore paper and
its command line use; :func:`make_selector` matches them case-insensitively, ignoring
``-``, ``_`` and spaces. One module per family; importing it registers its selectors.
"""

from ..base import BaseSelector, ScoreSelector
from ._registry import available_selectors, make_selector, register_selector
from .random import RandomSelector
from .uncertainty import Entropy, LeastConfidence, Margin
from .geometry import ContextualDiversity, Herding, KCenterGreedy
from .dynamics import AUM, EL2N, Forgetting, GraNd
from .boundary import Cal, DeepFool
from .submodular import FacilityLocation, GraphCut, LogDeterminant
from .gradient import Craig, GradMatch, Glister
from .pruning import CCS, D2Pruning, Moderate, Prototypes
from .temporal import TDDS, DynamicUncertainty
from .partitioned import GreeDi

__all__ = [
    "AUM",
    "BaseSelector",
    "CCS",
    "Cal",
    "ContextualDiversity",
    "Craig",
    "D2Pruning",
    "DeepFool",
    "DynamicUncertainty",
    "EL2N",
    "Entropy",
    "FacilityLocation",
    "Forgetting",
    "GradMatch",
    "GraNd",
    "GreeDi",
    "GraphCut",
    "Glister",
    "Herding",
    "KCenterGreedy",
    "LeastConfidence",
    "LogDeterminant",
    "Margin",
    "Moderate",
    "Prototypes",
    "RandomSelector",
    "ScoreSelector",
    "TDDS",
    "available_selectors",
    "make_selector",
    "register_selector",
]
