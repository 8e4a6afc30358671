"""Evaluators by type name (`config.evals.<name>.type`)."""

from jaxcv.evaluators import classification  # Registers 'classification'.
from jaxcv.evaluators.base import EVALUATORS, Evaluator, build_evaluators, register
