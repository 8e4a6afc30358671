"""Experiment configs of cifar10."""
