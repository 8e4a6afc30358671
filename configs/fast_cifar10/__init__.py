"""Experiment configs of fast_cifar10."""
