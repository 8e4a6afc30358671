"""Diffusion models: noise schedules, samplers, conditioning, cost, sharding, quality metrics.

Submodules are imported on use (no eager imports here), so `import jaxcv` stays light.
"""
