"""Experiment configs of coin."""
