"""Benchmarks that time jaxcv against PyTorch references on the same device."""
