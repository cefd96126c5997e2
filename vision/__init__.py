"""robusttext vision sidecar: image attacks, adversarial training, Gaussian and denoised smoothing.

Built on the core's statistics (``robusttext.certificate.stats``), Monte Carlo engine (``robusttext.certificate.engine``) and
results store (``robusttext.runs.results``); the core never imports this package. Modules, one job each:

=====================  ==========================================================================
``robusttext_vision.data``        one loader API: MNIST (IDX), Fashion-MNIST (Debian package), digits, CIFAR-10
``robusttext_vision.models``      small CNN, linear model, normalization wrapper, save/load
``robusttext_vision.attacks``     FGSM and PGD (Linf, L2; targeted; restarts; per-example early stop)
``robusttext_vision.training``    the one ``accelerate`` training loop (checkpoints, exact resume)
``robusttext_vision.adversarial`` PGD-AT (Madry et al. 2018) and FGSM-RS (Wong et al. 2020) losses
``robusttext_vision.smoothing``   Gaussian mechanism + PREDICT/CERTIFY on the core engine (Cohen et al. 2019)
``robusttext_vision.denoise``     DnCNN denoiser, MSE and stability objectives (Salman et al. 2020)
``robusttext_vision.linear``      exactly robust binary linear classifier (closed-form inner maximisation)
``robusttext_vision.pipelines``   the jobs, one call each on a model folder, images, a config, a folder
``robusttext_vision.report``      Markdown tables and PNGs
``robusttext_vision.figures``     the pictures behind the tables: adversarial examples, curves over eps, noisy copies
``robusttext_vision.cli``         ``robusttext vision train|attack|certify|denoise|linear|coloredmnist``
=====================  ==========================================================================
"""
