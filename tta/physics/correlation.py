"""Local correlation maps and PAN/MS coregistration (decimation-phase search)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from tta.checks import check_bchw, check_gains, check_ratio
from tta.physics.mtf import Gains, depthwise_filter, mtf_kernels

__all__ = ["coregistration_phases", "local_correlation"]


def _box_mean(x: Tensor, window: int) -> Tensor:
    """Mean over every ``window x window`` box (stride 1, valid positions), separably."""
    x = F.avg_pool2d(x, kernel_size=(window, 1), stride=1)
    return F.avg_pool2d(x, kernel_size=(1, window), stride=1)


def local_correlation(x: Tensor, y: Tensor, window: int, eps: float = 1e-8) -> Tensor:
    """Per-channel Pearson correlation in every ``window x window`` box.

    Computed from box-filtered moments: ``rho = cov / sqrt(var_x var_y)`` with population
    (``1/n``) moments of the box. Each channel is first centred on its image mean, which
    leaves ``rho`` unchanged but avoids cancellation in ``E[x^2] - E[x]^2`` for DN-scale data.

    Args:
        x: Tensor ``(B, C, H, W)``.
        y: Tensor ``(B, C, H, W)`` or ``(B, 1, H, W)`` (broadcast to every channel of ``x``).
        window: Box side, ``1 <= window <= min(H, W)``.
        eps: Floor of the denominator ``sqrt(var_x var_y)``: boxes where ``x`` or ``y`` is
            (nearly) constant give ``rho ~ 0`` instead of NaN, and the gradient stays finite.

    Returns:
        Tensor ``(B, C, H - window + 1, W - window + 1)``, values in ``[-1, 1]`` up to
        rounding; entry ``(i, j)`` describes the box whose top-left pixel is ``(i, j)``.
        Differentiable in ``x`` and ``y``.

    Raises:
        ValueError: Shape mismatch or a window larger than the image.

    Reference:
        The correlation factor of the Wang-Bovik universal image quality index (IEEE SPL
        2002), on sliding boxes at every valid position as in its reference code
        ``img_qi.m`` (``filter2(ones(B), ., 'valid')``). Difference: ``eps`` flooring instead
        of special-casing flat boxes (the toolbox ``q2n.m`` also steps by blocks, not by 1).
    """
    check_bchw(x, "x")
    check_bchw(y, "y")
    b, c, h, w = x.shape
    if y.shape[0] != b or y.shape[1] not in (1, c) or tuple(y.shape[-2:]) != (h, w):
        raise ValueError(f"y {tuple(y.shape)} does not match x {tuple(x.shape)}")
    if not 1 <= window <= min(h, w):
        raise ValueError(f"window must lie in [1, {min(h, w)}], got {window}")
    out_dtype = x.dtype
    work = torch.promote_types(x.dtype, y.dtype)
    if work in (torch.float16, torch.bfloat16):
        work = torch.float32
    x = x.to(work)
    y = y.to(work)
    x = x - x.mean(dim=(-2, -1), keepdim=True)
    y = y - y.mean(dim=(-2, -1), keepdim=True)
    y = y.expand(b, c, h, w)
    mx, my = _box_mean(x, window), _box_mean(y, window)
    cov = _box_mean(x * y, window) - mx * my
    vx = (_box_mean(x * x, window) - mx * mx).clamp_min(0)
    vy = (_box_mean(y * y, window) - my * my).clamp_min(0)
    rho = cov / torch.sqrt((vx * vy).clamp_min(eps * eps))
    return rho.to(out_dtype)


def coregistration_phases(
    ms: Tensor,
    pan: Tensor,
    gnyq_ms: Gains,
    ratio: int,
    *,
    size: int = 41,
    return_scores: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """Per band, the PAN decimation phase that best matches the MS band.

    For each band ``c`` the PAN is low-passed with that band's MTF kernel, decimated at each of
    the ``ratio**2`` phases ``(dy, dx)`` and correlated (Pearson, over the whole image) with the
    MS band; the phase with the highest correlation is returned. The PAN is filtered once into
    ``C`` channels (its spectrum is shared) and all phases are compared in one broadcast.

    Args:
        ms: Tensor ``(B, C, h, w)``.
        pan: Tensor ``(B, 1, ratio*h, ratio*w)``.
        gnyq_ms: MS Nyquist gains (length C, or one scalar).
        ratio: PAN/MS resolution ratio.
        size: Odd MTF kernel side.
        return_scores: Also return the correlation of every phase.

    Returns:
        LongTensor ``(B, C, 2)`` of ``(dy, dx)`` in ``[0, ratio)`` (on ``ms``'s device), to be
        fed to :func:`~tta.physics.decimate` as ``phase``; with ``return_scores`` also the
        correlations ``(B, C, ratio, ratio)``. ``(ratio//2, ratio//2)`` means the pair follows
        the toolbox's decimation convention; another phase means the PAN is displaced by
        ``phase - ratio//2`` PAN pixels (down/right positive) with respect to the MS. The
        search stays inside one ``ratio x ratio`` block, so only displacements in
        ``[-ratio//2, ratio - ratio//2)`` PAN pixels are identified; larger ones are not
        recovered. Not differentiable (argmax).

    Raises:
        ValueError: Shape mismatch or bad gains/ratio.

    Reference:
        Phase search in the spirit of the toolbox's MS/PAN alignment conventions
        (``resize_images.m`` decimation at ``ratio/2``); an integer-PAN-pixel registration
        probe, not a sub-pixel method.
    """
    check_bchw(ms, "ms")
    check_bchw(pan, "pan")
    ratio = check_ratio(ratio)
    b, c, h, w = ms.shape
    if pan.shape[0] != b or pan.shape[1] != 1 or tuple(pan.shape[-2:]) != (ratio * h,
                                                                             ratio * w):
        raise ValueError(
            f"PAN {tuple(pan.shape)} does not match MS {tuple(ms.shape)} at ratio {ratio}"
        )
    gains = check_gains(gnyq_ms, c)
    work = torch.promote_types(ms.dtype, pan.dtype)
    if work in (torch.float16, torch.bfloat16):
        work = torch.float32
    with torch.no_grad():
        kernels = mtf_kernels(gains, ratio, size, device=pan.device, dtype=work)
        low = depthwise_filter(pan.to(work), kernels)  # (B, C, H, W)
        phases = low.reshape(b, c, h, ratio, w, ratio).permute(0, 1, 3, 5, 2, 4)
        phases = phases - phases.mean(dim=(-2, -1), keepdim=True)
        target = ms.to(device=pan.device, dtype=work)
        target = target - target.mean(dim=(-2, -1), keepdim=True)
        target = target[:, :, None, None]
        num = (phases * target).sum(dim=(-2, -1))
        den = torch.sqrt((phases * phases).sum(dim=(-2, -1)) * (target * target).sum(
            dim=(-2, -1)))
        scores = num / den.clamp_min(torch.finfo(work).tiny)  # (B, C, r, r)
        best = scores.reshape(b, c, ratio * ratio).argmax(dim=-1)
        out = torch.stack([best // ratio, best % ratio], dim=-1).to(ms.device)
    return (out, scores.to(ms.device)) if return_scores else out
