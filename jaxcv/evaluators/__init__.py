"""Evaluators by type name (`config.evals.<name>.type`), each module imported on first use."""

from jaxcv.evaluators.base import EVALUATORS, Evaluator, build_evaluators, register

__all__ = ['EVALUATORS', 'Evaluator', 'build_evaluators', 'register']
