"""Launching a command on 2 real CPU processes and checking that both did their share.

``accelerate launch --num_processes 2 --cpu`` starts ONE process (accelerate's simple launcher); the
torchrun launcher (``--multi_gpu``) starts two, which robusttext joins with gloo on a machine without CUDA.
"""

from __future__ import annotations

import json
import shutil
import socket
import sys
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_two() -> list[str]:
    """The command prefix that starts 2 processes (then the script path or ``-m module`` and its args)."""
    launcher = shutil.which("accelerate") or str(Path(sys.executable).with_name("accelerate"))
    return [launcher, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
            "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(free_port())]


def assert_two_shares(run_dir: Path, num_items: int) -> None:
    """Both ranks of a world of 2 processed disjoint, non-empty shares that together cover every item."""
    shares = [json.loads(line) for line in (Path(run_dir) / "shards.jsonl").read_text().splitlines()]
    assert sorted(s["rank"] for s in shares) == [0, 1], shares
    assert all(s["world_size"] == 2 for s in shares), shares
    a, b = (set(s["indices"]) for s in shares)
    assert a and b and not a & b, shares
    assert a | b == set(range(num_items)), shares
