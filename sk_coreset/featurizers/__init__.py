"""Featurizers: proxy training, training-dynamics callbacks and DeepFool."""

from .callbacks import TrainingDynamics
from .deepfool import DeepFoolResult, deepfool
from .net_featurizer import NetFeaturizer

__all__ = ["DeepFoolResult", "NetFeaturizer", "TrainingDynamics", "deepfool"]
