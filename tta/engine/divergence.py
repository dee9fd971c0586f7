"""Falling back to the direct network when an adaptation diverges.

A learning rate too large for a scene makes the loss explode, then NaN, and the adapted
network would write a NaN product. :class:`DivergenceGuard` snapshots the trainable
parameters before training, looks at the losses every few steps (one device sync per
``every`` steps, not per step), and on a non-finite or exploding loss, or non-finite
parameters at the end, puts the snapshot back: the adapters start as the identity, so the
result is the direct transfer of the source network, and the report says ``diverged``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["DivergenceGuard"]


class DivergenceGuard:
    """Watch a training loop's losses; restore the initial parameters if it diverges.

    Args:
        params: The parameters the optimiser changes.
        every: Check the losses every this many steps.
        explode: A loss larger than ``explode`` times the first one counts as diverged.

    Example::

        guard = DivergenceGuard(params)
        for step in range(steps):
            loss = ...; loss.backward(); opt.step()
            if guard.stop(loss):
                break
        diverged = guard.finish()
    """

    def __init__(self, params: list[nn.Parameter], *, every: int = 10,
                 explode: float = 1e6) -> None:
        self.params = list(params)
        self.initial = [p.detach().clone() for p in self.params]
        self.every, self.explode = every, explode
        self.pending: list[Tensor] = []
        self.first: float | None = None
        self.diverged = False
        self.step: int | None = None
        self._count = 0

    def _check(self) -> bool:
        if not self.pending:
            return self.diverged
        losses = torch.stack([t.detach().float() for t in self.pending]).cpu()
        if self.first is None:
            self.first = abs(float(losses[0]))
        limit = self.explode * max(self.first, 1e-12)
        bad = ~torch.isfinite(losses) | (losses.abs() > limit)
        if bool(bad.any()):
            self.diverged = True
            self.step = self._count - len(self.pending) + int(bad.nonzero()[0])
        self.pending.clear()
        return self.diverged

    def stop(self, loss: Tensor) -> bool:
        """Record one step's loss; True when training should stop (it diverged)."""
        self.pending.append(loss.detach())
        self._count += 1
        return self._count % self.every == 0 and self._check()

    def finish(self) -> bool:
        """Check what is left; restore the initial parameters if diverged. Returns diverged."""
        self._check()
        if not self.diverged and not all(bool(torch.isfinite(p).all()) for p in self.params):
            self.diverged, self.step = True, self._count
        if self.diverged:
            with torch.no_grad():
                for p, p0 in zip(self.params, self.initial, strict=True):
                    p.copy_(p0)
        return self.diverged
