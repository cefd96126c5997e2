"""Gaussian randomized smoothing of image classifiers (Cohen, Rosenfeld & Kolter, ICML 2019).

The smoothed classifier ``g(x) = argmax_c P[f(x + d) = c]``, ``d ~ N(0, sigma^2 I)``, keeps its class
within the L2 radius ``sigma * Phi^-1(pA)`` (Thm. 1). This module only supplies the pieces the core
lacks for images:

* :class:`GaussianMechanism` - the noise, in the draw/key/cost protocol of
  :class:`robusttext.certificate.engine.Mechanism` (continuous noise never repeats, so ``key`` is None and the
  engine runs with ``dedup=False``);
* :class:`ImageBatchClassifier` - the base classifier ``f`` (optionally ``f(D(.))`` with a denoiser)
  as the engine's ``classify`` function;
* :class:`SmoothedImageClassifier` - PREDICT and CERTIFY through :class:`robusttext.certificate.engine.MonteCarloEngine`
  with :class:`robusttext.certificate.stats.GaussianL2Certificate`: noisy samples of many images are pooled into
  full batches, and image ``i`` always draws from ``robusttext.certificate.engine.input_rng(seed, i)``, so results
  are reproducible and identical however images are batched or sharded over processes;
* :func:`gaussian_noise_loss` - Gaussian data augmentation for training the base classifier.

Noise is added in pixel units and the noisy image is *not* clipped to [0, 1] (as in Cohen et al.):
the certificate covers exactly the distribution the base classifier sees.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from robusttext.certificate.engine import Certification, MonteCarloEngine, Prediction
from robusttext.certificate.protocol import CertifyProtocol
from robusttext.certificate.stats import GaussianL2Certificate, Top2Rule

from .data import validate_images
from .inference import freeze_for_cpu


def check_sigma(sigma: float) -> None:
    """Raise a clear ``ValueError`` unless ``sigma`` (noise std in pixel units) is a finite number > 0."""
    if not isinstance(sigma, (int, float)) or not (0 < float(sigma) < float("inf")):
        raise ValueError(f"sigma must be > 0 (Gaussian noise std in pixel units, e.g. 0.25 or 0.5), got {sigma!r}")


def check_budget(n0: int, n: int, alpha: float) -> None:
    """Raise a clear ``ValueError`` for an unusable CERTIFY budget."""
    for name, value in (("n0", n0), ("n", n)):
        if int(value) != value or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    if n0 > n:
        raise ValueError(f"n0 (selection samples, {n0}) must be <= n (estimation samples, {n}); Cohen et al. use n0=100, n=100000")
    if not (0 < float(alpha) < 1):
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}; e.g. alpha=0.001 as in Cohen et al.")


class GaussianMechanism:
    """Isotropic Gaussian noise ``N(0, sigma^2 I)`` added to a float32 image ``(C, H, W)``.

    ``device`` None: copies are numpy arrays drawn on the CPU. A device (e.g. ``"cuda"``): the noise is drawn
    there by that device's generator and the copies stay there as one tensor (nothing crosses the bus but
    the clean image). On the CPU both give the same numbers; on an accelerator the generator is the
    device's own (e.g. CUDA's Philox), so the noise, still a pure function of (seed, input index, draw
    number) on that kind of device, differs from the CPU's.
    """

    def __init__(self, sigma: float, device: str | torch.device | None = None) -> None:
        check_sigma(sigma)
        self.sigma = float(sigma)
        self.device = None if device is None else torch.device(device)

    def draw(self, x: np.ndarray | torch.Tensor, n: int, rng: np.random.Generator) -> np.ndarray | torch.Tensor:
        """``n`` noisy copies of ``x`` as one array ``(n, C, H, W)`` (its rows are the samples): a numpy array,
        or a tensor on ``device`` when the mechanism has one.

        The normals come from torch's vectorized sampler, seeded by one draw of the input's own
        stream ``rng``: a pure function of (seed, input index, draw number), hence reproducible and
        independent of batching and sharding, and several times faster than numpy's ziggurat.
        """
        device = self.device or torch.device("cpu")
        gen = torch.Generator(device=device).manual_seed(int(rng.integers(0, 2**63 - 1)))
        noise = torch.randn((int(n),) + tuple(x.shape), generator=gen, dtype=torch.float32, device=device)
        noise.mul_(self.sigma).add_(torch.as_tensor(x, device=device))
        return noise if self.device is not None else noise.numpy()

    def key(self, sample: np.ndarray) -> None:
        """Continuous noise: no two samples coincide, nothing to deduplicate."""
        return None

    def cost(self, sample: np.ndarray) -> int:
        """Every image costs the same."""
        return 0


class ImageBatchClassifier:
    """The base classifier ``f`` on a batch of noisy images (one array, or a list): argmax of ``model`` logits.

    With a ``denoiser`` the classifier is ``f(D(x))`` (denoised smoothing, Salman et al. 2020).
    Two inference levers, both on by default for networks with 2-d convolutions and both giving the
    same logits up to float summation order:

    * ``optimize`` (CPU only): classify with a traced, frozen, oneDNN-fused copy of the network
      (:func:`robusttext_vision.inference.freeze_for_cpu`), built on the first batch and used only if it reproduces
      the eager logits there. ``model`` is not modified.
    * ``channels_last`` (when not optimizing, e.g. on GPUs): run convolutions in the NHWC memory format
      (PyTorch's recommended layout for oneDNN and cuDNN). Like
      ``.to(device)``, this converts ``model`` and ``denoiser`` in place.
    """

    def __init__(
        self, model: nn.Module, device: str | torch.device = "cpu", denoiser: nn.Module | None = None,
        channels_last: bool | None = None, optimize: bool | None = None,
    ) -> None:
        self.device = torch.device(device)
        nets = [m for m in (model, denoiser) if m is not None]
        has_conv = any(isinstance(layer, nn.Conv2d) for net in nets for layer in net.modules())
        if optimize is None:
            optimize = has_conv and self.device.type == "cpu"
        if channels_last is None:
            channels_last = has_conv and not optimize
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.model = model.to(self.device, memory_format=self.memory_format).eval()
        self.denoiser = (denoiser.to(self.device, memory_format=self.memory_format).eval()
                         if denoiser is not None else None)
        self.net: nn.Module = self.model if self.denoiser is None else nn.Sequential(self.denoiser, self.model)
        self._frozen: nn.Module | None = None
        self._optimize = bool(optimize)  # becomes False once tried (then self._frozen tells the outcome)

    @torch.inference_mode()
    def logits(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device)
        if x.dim() == 4:
            x = x.contiguous(memory_format=self.memory_format)
        if self._optimize:
            self._optimize = False
            self._frozen = freeze_for_cpu(self.net, x)
        return (self._frozen if self._frozen is not None else self.net)(x)

    def __call__(self, samples: np.ndarray | torch.Tensor | Sequence[np.ndarray]) -> np.ndarray | torch.Tensor:
        """The class of each image: a numpy array for numpy input; for a tensor, a tensor on ``device``, not
        synchronised (the engine reads it after submitting its other batches)."""
        if isinstance(samples, torch.Tensor):
            return self.logits(samples).argmax(dim=1)
        batch = torch.from_numpy(samples if isinstance(samples, np.ndarray) else np.stack(samples))
        return self.logits(batch).argmax(dim=1).cpu().numpy()

    def predict_clean(self, images: torch.Tensor, batch_size: int = 500) -> np.ndarray:
        """``f`` on the images themselves (no noise), for clean accuracy."""
        out = [self.logits(images[i : i + batch_size]).argmax(1).cpu() for i in range(0, len(images), batch_size)]
        return torch.cat(out).numpy()


def default_batch_size(device: str | torch.device) -> int:
    """Noisy images per forward pass when none is given: 1000 on accelerators, 200 on CPUs (where larger
    batches of a frozen conv net run slower; ``docs/benchmarks.md``)."""
    return 200 if torch.device(device).type == "cpu" else 1000


class SmoothedImageClassifier:
    """Gaussian smoothing of an image classifier: PREDICT and CERTIFY (Cohen et al. 2019, Alg. 1 and 2).

    Args:
        model: base classifier mapping images ``(N, C, H, W)`` in pixel units to logits.
        num_classes: number of classes.
        sigma: noise std in pixel units (> 0); certified radii are L2 distances in pixel units.
        batch_size: noisy images per forward pass (pooled across images; default :func:`default_batch_size`).
        seed: image ``i`` draws from ``input_rng(seed, i)`` (reproducible, batching/sharding independent).
        denoiser: optional denoiser ``D`` in front of the model (certifies ``f(D(.))``).
        top2: runner-up bound, see :class:`robusttext.certificate.stats.GaussianL2Certificate`.
        channels_last, optimize: inference levers of :class:`ImageBatchClassifier` (default: on for
            conv nets, ``optimize`` on the CPU and ``channels_last`` elsewhere).
    """

    def __init__(
        self, model: nn.Module, num_classes: int, sigma: float, batch_size: int | None = None, seed: int = 0,
        device: str | torch.device = "cpu", denoiser: nn.Module | None = None, top2: Top2Rule = "complement",
        channels_last: bool | None = None, optimize: bool | None = None,
    ) -> None:
        self.certificate = GaussianL2Certificate(sigma=float(sigma), top2=top2)
        self.base = ImageBatchClassifier(model, device, denoiser, channels_last, optimize)
        # noise drawn where the model runs; on the CPU the same numbers as numpy-side draws
        self.mechanism = GaussianMechanism(sigma, device=self.base.device)
        batch_size = default_batch_size(self.base.device) if batch_size is None else batch_size
        self.engine = MonteCarloEngine(self.base, int(num_classes), batch_size=batch_size, dedup=False)
        self.seed = int(seed)

    @property
    def sigma(self) -> float:
        return self.mechanism.sigma

    def _prepare(self, images: torch.Tensor) -> list[torch.Tensor]:
        """The clean images as float32 tensors on the model's device (each copied there once)."""
        validate_images(images)
        return list(images.detach().to(self.base.device, torch.float32))

    def predict(
        self, images: torch.Tensor, n: int = 1000, alpha: float = 0.001, indices: Sequence[int] | None = None
    ) -> list[Prediction]:
        """PREDICT: majority class over ``n`` noisy copies, -1 (abstain) unless a binomial test rejects a
        tie at level ``alpha``; a non-abstained answer differs from g(x) with probability <= alpha."""
        check_budget(1, n, alpha)
        return self.engine.predict(self._prepare(images), self.mechanism, n, alpha, seed=self.seed, indices=indices)

    def certify(
        self, images: torch.Tensor, n0: int = 100, n: int = 10000, alpha: float = 0.001,
        indices: Sequence[int] | None = None, protocol: CertifyProtocol | None = None,
        on_done: Callable[[int, Certification], None] | None = None,
    ) -> list[Certification]:
        """CERTIFY: class from ``n0`` noisy copies, Clopper-Pearson lower bound ``pA`` from ``n`` separate
        copies, radius ``sigma * Phi^-1(pA)`` (-1 = abstain). With probability >= 1 - alpha, g returns
        the class everywhere within that L2 radius (pixel units).

        By default this is Cohen et al.'s protocol (:meth:`CertifyProtocol.fixed_sample`); ``protocol``
        replaces ``n0``, ``n`` and ``alpha`` with any other (sequential looks, futility stopping)."""
        if protocol is None:
            check_budget(n0, n, alpha)
            protocol = CertifyProtocol.fixed_sample(n0, n, alpha, top2=self.certificate.top2)
        return self.engine.certify(self._prepare(images), self.mechanism, self.certificate, protocol,
                                   seed=self.seed, indices=indices, on_done=on_done)


def gaussian_noise_loss(sigma: float) -> Callable:
    """Cross-entropy on ``x + N(0, sigma^2 I)``: the training of the base classifier in Cohen et al. (Sec. 4)."""
    check_sigma(sigma)

    def loss_fn(model: nn.Module, x: torch.Tensor, y: torch.Tensor, progress: float):
        logits = model(x + sigma * torch.randn_like(x))
        return F.cross_entropy(logits, y), logits

    return loss_fn

