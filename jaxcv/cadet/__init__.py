"""CADet (Guille-Escuret et al., arXiv 2210.01742): self-supervised OOD detection with a
contrastive encoder (SimCLR, jaxcv/tasks/simclr.py).

  mmd.py         kernels (contrastive cosine, Gaussian pixel), unbiased MMD², batched permutation
                 test, power against sample size
  two_sample.py  the two-sample test end to end (power curves, type-I check, CIFAR-10.1 or a
                 stated substitute shift)
  score.py       m_in / m_out in closed form, their combination and p-value calibration
  detector.py    CADet as an OOD detector (`build_detector('cadet(n_views=10)')`)
  benchmark.py   single-sample detection of adversarial, novel-class and corrupted inputs
  data.py        the CIFAR-10.1 reader
See docs/cadet.md.
"""
