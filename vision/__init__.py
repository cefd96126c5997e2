"""robusttext vision sidecar: image attacks, adversarial training, Gaussian and denoised smoothing.

Built on the core's statistics (``robusttext.stats``) and Monte Carlo engine (``robusttext.engine``);
the core never imports this package.
"""
