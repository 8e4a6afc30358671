"""Experiment configs of afd."""
