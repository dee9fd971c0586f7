"""AdamW for the adaptation's steps, without ``torch.optim.Optimizer``.

Constructing any ``torch.optim.Optimizer`` imports ``torch._dynamo`` (``add_param_group`` is
wrapped so that the compiler skips it): about 0.9 s of every ``tta adapt`` process on a CPU,
a tenth of a whole 512² run. :class:`AdamW` keeps the same per-parameter state and calls the
same kernel, torch's functional :func:`torch.optim.adamw.adamw`, with ``torch.optim.AdamW``'s
defaults (betas 0.9 / 0.999, eps 1e-8, no amsgrad; the fused kernel when asked, else torch's
default choice), so its steps equal ``torch.optim.AdamW``'s bit for bit
(``tests/test_optim.py``). ``torch.compile`` of the training step does not involve it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import Tensor
from torch.optim.adamw import adamw

__all__ = ["AdamW"]


class AdamW:
    """``torch.optim.AdamW`` over parameter groups (each ``{"params", "weight_decay"}``).

    Args:
        groups: Parameter groups; ``weight_decay`` defaults to 0.01 as in torch.
        lr: Learning rate.
        betas: Coefficients of the running averages of the gradient and its square.
        eps: Term added to the denominator.
        fused: The fused kernel (CUDA); None lets torch choose (as ``torch.optim.AdamW``).
    """

    def __init__(self, groups: Iterable[Mapping[str, Any]], lr: float, *,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 fused: bool | None = None) -> None:
        self.groups = [{"params": list(g["params"]),
                        "weight_decay": float(g.get("weight_decay", 1e-2))} for g in groups]
        self.lr, self.betas, self.eps, self.fused = float(lr), betas, float(eps), fused
        self.state: dict[Tensor, tuple[Tensor, Tensor, Tensor]] = {}

    def zero_grad(self) -> None:
        """Drop every parameter's gradient (``set_to_none``)."""
        for group in self.groups:
            for p in group["params"]:
                p.grad = None

    def _state(self, p: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(exp_avg, exp_avg_sq, step)`` of ``p``, created as ``torch.optim.Adam`` does:
        the step count on the parameter's device for the fused kernel, else on the CPU."""
        if p not in self.state:
            scalar = torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32
            step = (torch.zeros((), dtype=torch.float32, device=p.device) if self.fused
                    else torch.tensor(0.0, dtype=scalar))
            self.state[p] = (torch.zeros_like(p, memory_format=torch.preserve_format),
                             torch.zeros_like(p, memory_format=torch.preserve_format), step)
        return self.state[p]

    @torch.no_grad()
    def step(self) -> None:
        """One AdamW step on every parameter that has a gradient."""
        for group in self.groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            avgs, sqs, steps = zip(*(self._state(p) for p in params), strict=True)
            adamw(params, [p.grad for p in params], list(avgs), list(sqs), [], list(steps),
                  foreach=None, capturable=False, differentiable=False, fused=self.fused,
                  grad_scale=None, found_inf=None,
                  has_complex=any(torch.is_complex(p) for p in params), amsgrad=False,
                  beta1=self.betas[0], beta2=self.betas[1], lr=self.lr,
                  weight_decay=group["weight_decay"], eps=self.eps, maximize=False)
