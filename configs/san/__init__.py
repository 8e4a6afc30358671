"""SAN (arXiv 2211.14513) with IIC and PiCIE-style baselines on CamVid: docs/san.md."""
