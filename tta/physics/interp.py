"""Upsampling of MS images to the PAN grid: the toolbox 23-tap interpolator and bicubic."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from tta.checks import check_bchw, check_ratio

__all__ = ["CDF23", "bicubic_upsample", "interp23tap", "interp23tap_kernel"]

#: Half of the toolbox 23-tap filter, centre tap first (``interp23tap.m``: ``CDF23``).
CDF23 = tuple(
    2.0 * v
    for v in (0.5, 0.305334091185, 0.0, -0.072698593239, 0.0, 0.021809577942, 0.0,
              -0.005192756653, 0.0, 0.000807762146, 0.0, -0.000060081482)
)


def interp23tap_kernel(*, device: torch.device | str | None = None,
                       dtype: torch.dtype | None = None) -> Tensor:
    """The symmetric 23-tap filter ``[fliplr(CDF23(2:end)) CDF23]``.

    Args:
        device: Device of the result (default CPU).
        dtype: Dtype of the result (default ``torch.get_default_dtype()``).

    Returns:
        Tensor ``(23,)``; the centre tap is 1, the other even offsets are 0 (an interpolating
        filter), and the taps sum to 2 up to the toolbox's
        truncated coefficients (the odd taps sum to 1 - 4e-10), i.e. unit gain after zero
        insertion.

    Reference:
        Toolbox ``interp23tap.m`` (a Cohen-Daubechies-Feauveau 9/7-derived half-band filter).
    """
    half = torch.tensor(CDF23, dtype=torch.float64)
    return torch.cat([half[1:].flip(0), half]).to(device=device,
                                                  dtype=dtype or torch.get_default_dtype())


def _upsample2_axis(x: Tensor, odd_taps: Tensor, offset: int, axis: int) -> Tensor:
    """x2 along ``axis`` (-2 or -1): zero insertion at ``offset`` + circular 23-tap filtering.

    Computed in polyphase form: the 23-tap filter is 1 at the centre and 0 at the other even
    offsets, so the inserted samples keep their values exactly and each new in-between sample
    is a 12-tap circular combination of its neighbours (``odd_taps``, the taps at offsets
    -11, -9, ..., 11). Plain multiply-adds: no convolution kernel (hence no TF32 rounding on
    GPUs) and half the work of filtering the zero-stuffed signal.
    """
    n = x.shape[axis]
    # mid[i] sits between x[i] and x[i+1]: sum_k odd_taps[k] * x[i + k - 5], k = 0..11
    idx = torch.arange(-5, n + 6, device=x.device).remainder(n)
    padded = x.index_select(axis, idx)
    mid = sum(odd_taps[k] * padded.narrow(axis, k, n) for k in range(odd_taps.numel()))
    # offset 0: [x0, m0, x1, m1, ...]; offset 1: [m_{n-1}, x0, m0, x1, ..., m_{n-2}, x_{n-1}]
    pair = (x, mid) if offset == 0 else (mid.roll(1, dims=axis), x)
    out = torch.stack(pair, dim=axis)
    shape = list(x.shape)
    shape[axis] *= 2
    return out.reshape(shape)


def interp23tap(x: Tensor, ratio: int) -> Tensor:
    """Upsample by a power of two with the toolbox's 23-tap interpolating filter.

    ``log2(ratio)`` steps of x2: zero insertion (first step: samples at odd positions, later
    steps: at even positions) then separable filtering, columns then rows, with circular
    borders. LR pixel ``i`` lands on HR index ``ratio*i + ratio//2`` (2 for ratio 4), the
    phase :func:`~tta.physics.decimate` samples by default, and keeps its value exactly:
    ``decimate(interp23tap(x, r), r) == x`` bit for bit.

    Args:
        x: Tensor ``(B, C, h, w)``.
        ratio: Upsampling factor, a power of two (1 returns ``x``).

    Returns:
        Tensor ``(B, C, ratio*h, ratio*w)``, same dtype (float64 stays float64; half precision
        is computed in float32) and device; linear and differentiable in ``x``.

    Raises:
        ValueError: ``ratio`` is not a power of two, or bad shapes.

    Reference:
        Toolbox ``interp23tap.m`` (Aiazzi et al., "Context-driven fusion of high spatial and
        spectral resolution images based on oversampled multiresolution analysis", IEEE TGRS
        2002). Difference: the toolbox loops ``ratio/2`` times, which equals ``log2(ratio)``
        only for ratios 2 and 4; we always do ``log2(ratio)`` steps (correct for 8, 16, ...).
    """
    check_bchw(x)
    ratio = check_ratio(ratio)
    if ratio & (ratio - 1):
        raise ValueError(f"interp23tap needs a power-of-two ratio, got {ratio}")
    out_dtype = x.dtype
    work = torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype
    y = x.to(work)
    odd_taps = interp23tap_kernel(device=x.device, dtype=work)[0::2]  # offsets -11, ..., 11
    steps = ratio.bit_length() - 1
    for step in range(steps):
        offset = 1 if step == 0 else 0
        y = _upsample2_axis(y, odd_taps, offset, axis=-2)  # MATLAB: columns first (on t')
        y = _upsample2_axis(y, odd_taps, offset, axis=-1)
    return y.to(out_dtype)


def bicubic_upsample(x: Tensor, ratio: int) -> Tensor:
    """Bicubic upsampling (``F.interpolate``, ``align_corners=False``, MATLAB's cubic kernel).

    Uses torch's antialiased bicubic path, which for upsampling is plain cubic convolution
    with the Keys kernel ``a = -0.5`` (MATLAB's; it reproduces linear ramps exactly), rather
    than the default ``a = -0.75`` path (which does not).

    Pixel-centre convention: LR pixel ``i`` is centred at HR coordinate
    ``ratio*i + (ratio-1)/2`` (1.5 for ratio 4), half a PAN pixel before the grid of
    :func:`interp23tap` / :func:`~tta.physics.decimate` (index ``ratio*i + ratio//2``).

    Args:
        x: Tensor ``(B, C, h, w)``.
        ratio: Integer upsampling factor.

    Returns:
        Tensor ``(B, C, ratio*h, ratio*w)``, differentiable in ``x``.

    Raises:
        ValueError: Bad shapes or ratio.

    Reference:
        MATLAB ``imresize(I, ratio)`` (bicubic), same kernel and pixel-centre convention.
        Difference: only at the borders (the outer ~2 LR pixels), where MATLAB mirrors the
        out-of-image indices and torch drops them and renormalises the weights.
    """
    check_bchw(x)
    ratio = check_ratio(ratio)
    if ratio == 1:
        return x
    h, w = x.shape[-2:]
    work = torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype
    out = F.interpolate(x.to(work), size=(ratio * h, ratio * w), mode="bicubic",
                        antialias=True, align_corners=False)
    return out.to(x.dtype)
