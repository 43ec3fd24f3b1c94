"""What running ``benchmarks/upstream_saliency.py`` beside OPTML-Group/Unlearn-Saliency (a6e89fd)
found, kept without the checkout: ``salun-soft``'s soft-thresholding schedule counts L, the steps
per epoch, as ``RL_pro.py`` does (``len(forget_loader) + len(retain_loader)``) also in the joint
pass, which takes fewer steps (before the fix the joint pass's own step count was used and the
weights differed from the reference's by 1e-5 after one epoch); and the script's refusal without
a checkout."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from bench.methods.salun import SalUnSoft
from torch import nn

from bench.core.contracts import ForgetRequest, MethodContext

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "upstream_saliency.py"


def _request(nf: int, nr: int) -> ForgetRequest:
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(nf + nr, 4, generator=g), torch.randint(3, (nf + nr,), generator=g)
    return ForgetRequest(num_classes=3, kind="random", forget_indices=list(range(nf)), forget_x=x[:nf],
                         forget_y=y[:nf], retain_x=x[nf:], retain_y=y[nf:])


@pytest.mark.parametrize("passes", ["joint", "alternate"])
def test_salun_soft_schedule_counts_forget_and_retain_batches(passes):
    # 10 forget and 20 retain points in batches of 16: RL_pro.py's L is 1 + 2 = 3 loader batches;
    # the joint pass itself takes ceil(30 / 16) = 2 steps.
    request, method = _request(10, 20), SalUnSoft()
    params = {**method.default_params, "passes": passes, "batch_size": 16, "epochs": 4, "mask_ratio": 0.5}
    model = nn.Linear(4, 3)
    n = sum(p.numel() for p in model.parameters())
    constraint = method.constraint(model, request, params, MethodContext(0, "cpu", lambda: nn.Linear(4, 3)))
    assert constraint.steps == 3
    total = 4 * 3
    for epoch in range(4):
        constraint.start_epoch(model, epoch)
        assert constraint.k == int(0.5 * ((total - (epoch * 3 + 1)) / total * n))


def test_script_refuses_without_a_checkout(tmp_path):
    for argv in ([], ["--upstream", str(tmp_path)]):
        out = subprocess.run([sys.executable, str(SCRIPT), *argv], capture_output=True, text=True, timeout=60)
        assert out.returncode == 2
        assert len(out.stderr.strip().splitlines()) == 1 and "Unlearn-Saliency" in out.stderr
