"""Experiment configs of domainbed."""
