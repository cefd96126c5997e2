"""Fishr under ``accelerate launch`` with 2 CPU processes (gloo): per-domain statistics are combined
across processes, so penalty, EMA state and (DDP-averaged) gradients equal a single process on the
same global batch, over several optimizer steps."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = r'''
import json, sys, copy
import torch
import torch.nn.functional as F
from accelerate import Accelerator
from robusttext.training.fishr import FishrPenalty, HeadCapture, find_head

acc = Accelerator(cpu=True)
rank, world = acc.process_index, acc.num_processes
assert world == 2 and torch.distributed.get_backend() == "gloo", (world, acc.distributed_type)
torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.Tanh(), torch.nn.Linear(6, 3)).double()
ref = copy.deepcopy(model)
cap, ref_cap = HeadCapture(find_head(model, 3)), HeadCapture(find_head(ref, 3))
opt = torch.optim.SGD(model.parameters(), lr=0.1)
ref_opt = torch.optim.SGD(ref.parameters(), lr=0.1)
model, opt = acc.prepare(model, opt)
pen, ref_pen = FishrPenalty(3, ema=0.9), FishrPenalty(3, ema=0.9, sync=False)
gen = torch.Generator().manual_seed(1)
report = {"penalty": [], "ref_penalty": [], "max_grad_diff": [], "state_diff": []}
for step in range(3):
    x = torch.randn(24, 4, generator=gen, dtype=torch.float64) * 2
    y = torch.randint(0, 3, (24,), generator=gen)
    d = torch.randint(0, 3, (24,), generator=gen)  # unequal domain counts, split unevenly over processes
    shard = slice(rank * 12, (rank + 1) * 12)
    logits = model(x[shard])
    p = pen(*cap.take(), y[shard], d[shard])
    acc.backward(F.cross_entropy(logits, y[shard]) + 50.0 * p)
    ref_logits = ref(x)
    rp = ref_pen(*ref_cap.take(), y, d)
    (F.cross_entropy(ref_logits, y) + 50.0 * rp).backward()
    diffs = [float((a.grad - b.grad).abs().max()) for a, b in zip(acc.unwrap_model(model).parameters(), ref.parameters())]
    report["penalty"].append(float(p.detach()))
    report["ref_penalty"].append(float(rp.detach()))
    report["max_grad_diff"].append(max(diffs))
    report["state_diff"].append(float((pen.state - ref_pen.state).abs().max()))
    opt.step(); opt.zero_grad(); ref_opt.step(); ref_opt.zero_grad()
with open(f"{sys.argv[1]}.rank{rank}.json", "w") as fh:
    json.dump(report, fh)
acc.end_training()  # leaves the process group before Python shuts down
'''


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.multiprocess
@pytest.mark.slow
def test_two_processes_equal_one_process(tmp_path):
    launcher = shutil.which("accelerate") or str(Path(sys.executable).with_name("accelerate"))
    if not Path(launcher).exists():
        pytest.skip("accelerate launcher not found")
    script = tmp_path / "ddp_fishr.py"
    script.write_text(SCRIPT)
    out = tmp_path / "report"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # `--cpu` alone runs ONE process (accelerate's simple launcher); `--multi_gpu` is the torchrun launcher,
    # and Accelerator(cpu=True) in the script makes it MULTI_CPU with gloo (also on machines with GPUs).
    cmd = [launcher, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
           "--dynamo_backend", "no", "--main_process_port", str(_free_port()), str(script), str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for rank in (0, 1):
        rep = json.loads(Path(f"{out}.rank{rank}.json").read_text())
        assert min(rep["ref_penalty"]) > 0
        for p, rp in zip(rep["penalty"], rep["ref_penalty"]):
            assert p == pytest.approx(rp, rel=1e-10, abs=1e-15)
        assert max(rep["max_grad_diff"]) < 1e-10
        assert max(rep["state_diff"]) < 1e-12
