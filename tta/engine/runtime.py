"""How the engine runs a network: device, bf16 autocast (CUDA only), call convention, and the
adapted network's call (the adapter sees each batch's inputs first). Shared by
:mod:`tta.engine.adapt` and :mod:`tta.engine.reuse`."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from tta.decomposition import ForwardFn
from tta.engine.protocols import AdapterLike

__all__ = ["Runtime", "run_adapted_fn", "to_tensor"]


@dataclass(frozen=True)
class Runtime:
    """Where and how networks run: device, bf16 autocast (CUDA only), call convention."""

    device: torch.device
    use_amp: bool
    forward_fn: ForwardFn

    def autocast(self) -> AbstractContextManager:
        return torch.autocast("cuda", torch.bfloat16) if self.use_amp else nullcontext()

    def run(self, net: nn.Module, ms: Tensor, pan: Tensor, lms: Tensor) -> Tensor:
        """``net`` on normalised inputs, output in float32."""
        with self.autocast():
            out = self.forward_fn(net, ms, pan, lms)
        return out.float()


def run_adapted_fn(rt: Runtime, adapter: AdapterLike, net: nn.Module, ms: Tensor,
                   pan: Tensor, lms: Tensor) -> Tensor:
    """The adapted network: the adapter sees the inputs (conditioning), then ``net`` runs."""
    adapter.set_condition(ms, pan, lms)
    return rt.run(net, ms, pan, lms)


def to_tensor(a: np.ndarray, device: torch.device, scale: float) -> Tensor:
    """A DN array as a float32 tensor on ``device``, divided by ``scale``."""
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)).to(device) / scale
