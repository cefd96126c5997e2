"""Which process am I: the one ``accelerate`` process state every command shards with.

``accelerate launch --multi_gpu --num_processes N`` and ``torchrun --nproc_per_node N`` start N processes
with ``RANK``/``WORLD_SIZE`` set. On GPUs accelerate joins them with NCCL. On a machine without CUDA a
plain ``PartialState()`` ignores those variables (each process sees itself as rank 0 of 1, so every
process would certify every input); asking for the CPU state joins them with gloo instead. No flag of
ours is needed: 1 process or N, on CPUs or GPUs, the same command.
"""

from __future__ import annotations

from typing import Any


def process_state() -> Any:
    """The ``accelerate.PartialState`` of this process (rank ``process_index`` of ``num_processes``)."""
    import torch
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())


def accelerator(**kwargs: Any) -> Any:
    """An ``accelerate.Accelerator`` joined like :func:`process_state` (gloo on CPUs, NCCL on GPUs)."""
    import torch
    from accelerate import Accelerator

    return Accelerator(cpu=not torch.cuda.is_available(), **kwargs)



def end_process_group() -> None:
    """Leave the process group this process joined, if it joined one (a no-op in a single process).

    Call it once, at the end of a script started by ``accelerate launch`` or ``torchrun``: a process that
    exits with its group still open can abort (SIGABRT) while Python shuts down, as gloo's worker threads
    release their tensors after the interpreter is gone. The ``robusttext`` commands call it themselves."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
