"""Feature visualisation (paper 5, MACO: arXiv 2306.06805): magnitude-constrained Fourier images
with learnable phase, Lucid's Fourier and pixel baselines, the magnitude-and-phase ablation,
MACO's crop/noise transforms, objectives on logits and sown layers, the accumulated-gradient
transparency map, and the paper's metrics. See docs/maco.md.

    from jaxcv import featviz
    magnitude = featviz.spectrum.compute_magnitude(train_images)
    param = featviz.parameterizations.build('maco', 32, 32, magnitude=magnitude)
    forward = featviz.objectives.classifier_forward(model, variables)
    vis = featviz.optimize.visualize(forward, param, featviz.objectives.parse('logit'),
                                     targets=range(10), steps=256, input_size=(32, 32))
"""

from jaxcv.featviz import metrics, objectives, optimize, parameterizations, spectrum, transforms

__all__ = ['metrics', 'objectives', 'optimize', 'parameterizations', 'spectrum', 'transforms']
