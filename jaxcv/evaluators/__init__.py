"""Evaluators by type name (`config.evals.<name>.type`)."""

from jaxcv.evaluators import classification  # Registers 'classification'.
from jaxcv.evaluators import domains  # Registers 'domains'.
from jaxcv.evaluators import feature_gap, robustness  # Register 'feature_gap', 'robustness'.
from jaxcv.evaluators import generative  # Registers 'generative'.
from jaxcv.evaluators import segmentation  # Registers 'segmentation'.
from jaxcv.evaluators.base import EVALUATORS, Evaluator, build_evaluators, register
