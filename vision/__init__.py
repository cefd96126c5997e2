"""robusttext vision sidecar: image attacks, adversarial training, Gaussian and denoised smoothing.

Built on the core's statistics (``robusttext.stats``), Monte Carlo engine (``robusttext.engine``) and
results store (``robusttext.results``); the core never imports this package. Modules, one job each:

=====================  ==========================================================================
``vision.data``        one loader API: MNIST (IDX), Fashion-MNIST (Debian package), digits, CIFAR-10
``vision.models``      small CNN, linear model, normalization wrapper, save/load
``vision.attacks``     FGSM and PGD (Linf, L2; targeted; restarts; per-example early stop)
``vision.training``    the one ``accelerate`` training loop (checkpoints, exact resume)
``vision.adversarial`` PGD-AT (Madry et al. 2018) and FGSM-RS (Wong et al. 2020) losses
``vision.smoothing``   Gaussian mechanism + PREDICT/CERTIFY on the core engine (Cohen et al. 2019)
``vision.denoise``     DnCNN denoiser, MSE and stability objectives (Salman et al. 2020)
``vision.linear``      exactly robust binary linear classifier (closed-form inner maximisation)
``vision.pipelines``   what each subcommand runs (load, call the library, write results)
``vision.compare``     normal vs PGD-AT vs Gaussian CNN in one table
``vision.report``      Markdown tables and PNGs
``vision.figures``     the pictures behind the tables: adversarial examples, curves over eps, noisy copies
``vision.cli``         ``robusttext vision train|attack|certify|denoise|linear|compare``
=====================  ==========================================================================
"""
