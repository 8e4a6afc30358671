"""Experiment configs of ldm_scaling."""
