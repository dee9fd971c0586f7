"""Padding shared by the physics operators (private); their argument checks are
:mod:`tta.checks`."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def pad2d(x: Tensor, pad: int, mode: str) -> Tensor:
    """Pad the last two axes of ``x`` by ``pad`` pixels on every side.

    Args:
        x: Tensor ``(..., H, W)`` with at least 3 dimensions.
        pad: Pixels added on each side (any size, also larger than the image).
        mode: ``"replicate"`` (MATLAB ``padarray``/``imfilter`` ``'replicate'``) or
            ``"circular"`` (MATLAB ``'circular'``: indices taken modulo the size, so pads larger
            than the image wrap several times, which ``F.pad`` refuses).

    Returns:
        Tensor ``(..., H + 2*pad, W + 2*pad)``.
    """
    if pad == 0:
        return x
    if mode == "replicate":
        return F.pad(x, (pad, pad, pad, pad), mode="replicate")
    if mode != "circular":
        raise ValueError(f"unknown padding mode {mode!r}")
    h, w = x.shape[-2:]
    rows = torch.arange(-pad, h + pad, device=x.device).remainder(h)
    cols = torch.arange(-pad, w + pad, device=x.device).remainder(w)
    return x.index_select(-2, rows).index_select(-1, cols)
