"""Shared helpers of the quality indexes (private): input coercion, box sums, DN cast, cuts."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

#: MATLAB ``eps`` (spacing of doubles at 1.0), used where the toolbox substitutes it for 0.
MATLAB_EPS = float(np.finfo(np.float64).eps)

WORK_DTYPE = torch.float64


def as_bchw(x: Any, name: str, *, device: torch.device | None = None) -> tuple[Tensor, bool]:
    """Coerce an image to a float64 ``(B, C, H, W)`` tensor.

    Accepts tensors or arrays of shape ``(B, C, H, W)``, ``(C, H, W)`` or ``(H, W)``.

    Returns:
        The tensor (on ``device`` when given, else the input's device) and whether the
        input carried a batch axis.
    """
    t = x if isinstance(x, Tensor) else torch.as_tensor(np.asarray(x))
    if t.ndim == 4:
        batched = True
    elif t.ndim == 3:
        t, batched = t.unsqueeze(0), False
    elif t.ndim == 2:
        t, batched = t[None, None], False
    else:
        raise ValueError(f"{name} must be (B, C, H, W), (C, H, W) or (H, W); got {tuple(t.shape)}")
    if t.numel() == 0:
        raise ValueError(f"{name} is empty: shape {tuple(t.shape)}")
    if t.is_complex() or t.dtype == torch.bool:
        raise ValueError(f"{name} must hold real numbers, got {t.dtype}")
    return t.to(device=device if device is not None else t.device, dtype=WORK_DTYPE), batched


def pair(ref: Any, fused: Any, names: tuple[str, str] = ("ref", "fused")
         ) -> tuple[Tensor, Tensor, bool]:
    """Two same-shape images as float64 ``(B, C, H, W)`` on ``ref``'s device."""
    x, batched = as_bchw(ref, names[0])
    y, batched_y = as_bchw(fused, names[1], device=x.device)
    if x.shape != y.shape:
        raise ValueError(
            f"{names[0]} {tuple(x.shape)} and {names[1]} {tuple(y.shape)} differ in shape"
        )
    return x, y, batched or batched_y


def finish(value: Tensor, batched: bool) -> Tensor:
    """``(B,)`` result, or a 0-d tensor for an unbatched input."""
    return value if batched else value[0]


def box_sum(x: Tensor, k: int | tuple[int, int]) -> Tensor:
    """Sum over every ``k x k`` box at valid positions (stride 1), separably.

    Equals MATLAB ``filter2(ones(k), x, 'valid')``; output ``(..., H-k+1, W-k+1)``.
    """
    kh, kw = (k, k) if isinstance(k, int) else k
    if x.dtype == torch.float32 and max(kh, kw) <= 8 and not torch.compiler.is_compiling():
        # float32 (the losses), eager: a depthwise convolution with a ones kernel, 1.3x faster
        # than shifted adds forward and 2x with its backward (no slice-backward zero fills);
        # compiled, the shifted adds fuse (and inductor 2.13 trips on this conv's backward)
        # (TF32 off on CUDA, as for the MTF filters: the sums stay float32-exact)
        from tta.physics.mtf import _full_fp32

        lead, (h, w) = x.shape[:-2], x.shape[-2:]
        g = math.prod(lead)
        with _full_fp32(x.device):
            out = F.conv2d(x.reshape(1, g, h, w), x.new_ones(g, 1, kh, kw), groups=g)
        return out.reshape(*lead, h - kh + 1, w - kw + 1)
    if max(kh, kw) <= 8:  # a few shifted adds beat avg_pool2d on CPU for small boxes
        h, w = x.shape[-2] - kh + 1, x.shape[-1] - kw + 1
        rows = x[..., 0:h, :]
        for i in range(1, kh):
            rows = rows + x[..., i:i + h, :]
        out = rows[..., 0:w]
        for j in range(1, kw):
            out = out + rows[..., j:j + w]
        return out
    x = F.avg_pool2d(x, kernel_size=(kh, 1), stride=1, divisor_override=1)
    return F.avg_pool2d(x, kernel_size=(1, kw), stride=1, divisor_override=1)


def uint16_cast(x: Tensor) -> Tensor:
    """MATLAB ``uint16(x)`` as floats: NaN -> 0, saturate to [0, 65535], round half away."""
    x = torch.nan_to_num(x, nan=0.0).clamp(0.0, 65535.0)
    low = torch.floor(x)
    return low + (x - low >= 0.5).to(x.dtype)


def toolbox_cut(x: Tensor, border: int) -> Tensor:
    """MATLAB ``I(border:end-border, border:end-border, :)`` (1-based): keeps H-2*border+1 rows.

    ``border = 0`` means no cut (the toolbox's ``flag_cut_bounds = 0``).
    """
    if border < 0:
        raise ValueError(f"border must be >= 0, got {border}")
    if border == 0:
        return x
    h, w = x.shape[-2:]
    if h - 2 * border + 1 < 1 or w - 2 * border + 1 < 1:
        raise ValueError(f"a {border}-pixel border cut leaves nothing of a {h}x{w} image")
    return x[..., border - 1 : h - border, border - 1 : w - border]


def symmetric_index(n: int, total: int, device: torch.device) -> Tensor:
    """Indices ``0..total-1`` into a length-``n`` axis, mirrored past the end (edge repeated).

    For ``total - n <= n`` this is MATLAB's ``x(n:-1:n-est+1)`` continuation in ``q2n.m``
    (numpy ``mode="symmetric"``); beyond that the mirroring repeats periodically.
    """
    idx = torch.arange(total, device=device).remainder(2 * n)
    return torch.where(idx < n, idx, 2 * n - 1 - idx)


def blocks(x: Tensor, size: int) -> tuple[Tensor, Tensor]:
    """Tile the last two axes into non-overlapping ``size x size`` blocks (``blockproc``).

    Partial blocks at the bottom/right edges are kept with their real extent, as MATLAB
    ``blockproc`` hands them to its function.

    Returns:
        ``(tiles, mask)``: tiles ``(B, C, n_blocks, size*size)`` (zero beyond the image) and
        a float mask ``(n_blocks, size*size)`` that is 1 on real pixels. Blocks are ordered
        row-major over the block grid.
    """
    b, c, h, w = x.shape
    nh, nw = -(-h // size), -(-w // size)
    ph, pw = nh * size - h, nw * size - w

    def tile(t: Tensor) -> Tensor:
        t = F.pad(t, (0, pw, 0, ph))
        bb, cc = t.shape[:2]
        t = t.reshape(bb, cc, nh, size, nw, size).permute(0, 1, 2, 4, 3, 5)
        return t.reshape(bb, cc, nh * nw, size * size)

    mask = tile(torch.ones(1, 1, h, w, dtype=x.dtype, device=x.device))[0, 0]
    return tile(x), mask
