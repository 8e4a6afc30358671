"""SAN (arXiv 2211.14513): unsupervised semantic segmentation with alignment and uniformity.

- `models`: pixel encoder, ViT semantic generator, SEAT attention, decoder; IIC / PiCIE networks.
- `losses`: L_Con, L_Rec, orthogonality, IIC's segmentation loss, PiCIE's cluster losses.
- `views`: two views with known geometric transforms and the exact map back.
- `tasks`: the loop's tasks 'san', 'iic_seg', 'picie'.
- `evaluator`: the 'pixel_geometry' evaluator (alignment / uniformity of pixel embeddings).
- `textures`: the synthetic texture-region segmentation set ('texture_regions').
Guide: docs/san.md. Registered lazily (jaxcv/plugins.py): importing the loop imports none of it.
"""
