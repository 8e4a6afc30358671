"""Experiment configs: one folder per paper or experiment family; each file defines get_config(arg)."""
