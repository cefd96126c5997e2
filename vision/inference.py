"""Fast inference of a fixed image classifier on the CPU, verified against the model itself.

Certification classifies hundreds of noisy copies of every image with a network that never changes, so
it pays to specialize the network once: :func:`freeze_for_cpu` traces it, freezes the weights into the
graph and lets oneDNN fuse convolutions with their activations and pre-pack their weights
(``torch.jit.freeze`` + ``torch.jit.optimize_for_inference``; speed figures in ``docs/benchmarks.md``).

Tracing records one path through ``forward``; a model whose control flow depends on its input would
be traced wrongly, and certified as the traced network. So the frozen network is used only if tracing
raised no ``TracerWarning`` (which the tracer raises when a tensor decides Python control flow) and it
reproduces the eager logits on the batch it was traced with; otherwise the eager model is kept, with
a warning.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn


def freeze_for_cpu(net: nn.Module, example: torch.Tensor, atol: float = 1e-4) -> nn.Module | None:
    """A traced, frozen, oneDNN-optimized copy of ``net`` (in eval mode) that reproduces its logits on
    ``example`` within ``atol`` (relative to their scale) with the same argmax; None if tracing fails or
    the copy disagrees. ``net`` itself is not modified. The copy accepts any batch size."""
    net = net.eval()
    try:
        # torch.jit's deprecation notices are silenced; its TracerWarnings are recorded and mean
        # "not traceable".
        with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            x = example.clone()  # a normal tensor: tracing cannot record inference tensors
            frozen = torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.trace(net, x, check_trace=False)))
            eager, fast = net(x), frozen(x)
    except Exception as err:  # noqa: BLE001 - any failure only means: keep the eager model
        warnings.warn(f"could not optimize the model for CPU inference ({type(err).__name__}: {err}); "
                      "classifying with the eager model")
        return None
    tracer = [w for w in caught if issubclass(w.category, torch.jit.TracerWarning)]
    if tracer:
        warnings.warn(f"the model's control flow depends on its input ({tracer[0].message}); "
                      "classifying with the eager model")
        return None
    scale = max(1.0, float(eager.abs().max()))
    if eager.shape != fast.shape or not torch.equal(eager.argmax(1), fast.argmax(1)) or \
            float((eager - fast).abs().max()) > atol * scale:
        warnings.warn("the traced model does not reproduce the eager logits (input-dependent control flow?); "
                      "classifying with the eager model")
        return None
    return frozen
