"""Score-based multimodal autoencoders (SBM, arXiv 2305.15708) on PolyMNIST: docs/sbm.md."""
