"""tta.engine.optim.AdamW: torch.optim.AdamW's steps, bit for bit, without its constructor's
torch._dynamo import."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from tta.engine.optim import AdamW


def _params(seed: int) -> list[torch.nn.Parameter]:
    g = torch.Generator().manual_seed(seed)
    shapes = [(4, 3, 3, 3), (4,), (2, 5), (7,)]
    return [torch.nn.Parameter(torch.randn(s, generator=g)) for s in shapes]


@pytest.mark.parametrize(("dtype", "fused"), [(torch.float32, None), (torch.float64, None),
                                              (torch.float32, True)])
def test_steps_equal_torch_adamw(dtype, fused):
    """Also the fused kernel (the CUDA default), which torch also runs on the CPU."""
    ours, ref = _params(0), _params(0)
    for p in (*ours, *ref):
        p.data = p.data.to(dtype)
    groups = lambda ps: [{"params": ps[:2], "weight_decay": 0.05},  # noqa: E731
                         {"params": ps[2:], "weight_decay": 0.0}]
    opt = AdamW(groups(ours), lr=3e-3, fused=fused)
    torch_opt = torch.optim.AdamW(groups(ref), lr=3e-3, fused=fused)
    g = torch.Generator().manual_seed(1)
    for step in range(6):
        grads = [torch.randn(p.shape, generator=g, dtype=dtype) for p in ours]
        for i, (a, b, grad) in enumerate(zip(ours, ref, grads, strict=True)):
            if step == 2 and i == 3:  # a parameter without a gradient is left alone
                a.grad = b.grad = None
                continue
            a.grad, b.grad = grad.clone(), grad.clone()
        opt.step()
        torch_opt.step()
        for a, b in zip(ours, ref, strict=True):
            assert torch.equal(a, b)
        opt.zero_grad()
        assert all(p.grad is None for p in ours)
    assert float(opt.state[ours[3]][2]) == 5.0  # its step count skipped the gradient-free step


def test_no_dynamo_import():
    code = ("import sys, torch\nfrom tta.engine.optim import AdamW\n"
            "p = torch.nn.Parameter(torch.ones(3)); p.grad = torch.ones(3)\n"
            "opt = AdamW([{'params': [p]}], lr=0.1); opt.step(); opt.zero_grad()\n"
            "print('torch._dynamo' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "False"
