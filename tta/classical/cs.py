"""Component-substitution methods: BT-H, GSA, BDSD-PC (Vivone et al. toolbox definitions)."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from tta.classical._common import (
    MATLAB_EPS,
    flat,
    lp_filter_gauss,
    lstsq,
    mean2,
    ndwt_lowpass,
    prctile_low,
    prepare,
    std2,
)
from tta.physics import decimate, mtf_filter, mtf_filter_pan, pan_downsample
from tta.sensors import Sensor

__all__ = ["bdsd_pc", "bt_h", "gsa"]

#: ``BroveyRegHazeMin.m``: haze fractions of the 1st percentile for 4-band (B, G, R, NIR) MS.
HAZE_FRACTIONS_4 = (0.95, 0.45, 0.40, 0.05)


def haze_levels(lms: Tensor) -> Tensor:
    """Per-band haze (path radiance) estimate ``minMS`` of the toolbox, ``(B, C, 1, 1)``.

    Four bands: ``[0.95 0.45 0.40 0.05] .* prctile(band, 1)`` (the band order is taken as
    B, G, R, NIR by position, as in the toolbox); any other band count: the band minimum.
    """
    if lms.shape[1] == 4:
        frac = torch.tensor(HAZE_FRACTIONS_4, dtype=lms.dtype, device=lms.device)
        return prctile_low(lms, 1.0) * frac[:, None, None]
    return lms.amin(dim=(-2, -1), keepdim=True)


def bt_h(ms: Tensor, pan: Tensor, *, sensor: Sensor | str, ratio: int | None = None) -> Tensor:
    """Brovey transform with haze correction (BT-H).

    ``I_MS`` = interp23tap(MS). Haze ``L`` per band (:func:`haze_levels`); ``PAN_LP`` =
    ``LPfilterGauss(PAN)``; weights ``w = I_MS \\ PAN_LP`` (global least squares, no constant,
    on the PAN grid); intensity ``I = sum_k w_k (I_MS_k - L_k)``; PAN matched to ``I`` with the
    low-pass statistics ``P = (PAN - mean(PAN_LP)) std(I) / std(PAN_LP) + mean(I)``; output
    ``max(I_MS - L, 0) .* P ./ (I + eps) + L``.

    Args:
        ms: ``(B, C, h, w)`` MS in DN (or any common scale with PAN).
        pan: ``(B, 1, ratio*h, ratio*w)``.
        sensor: Sensor or preset name (only its band count and default ratio are used).
        ratio: Scale ratio (default: the sensor's).

    Returns:
        ``(B, C, H, W)`` in ``ms``'s dtype.

    Reference:
        Toolbox ``BT-H/BroveyRegHazeMin.m`` called as ``BroveyRegHazeMin(I_MS, I_PAN, ratio)``
        (``Demo_Reduced_Resolution.m``); Lolli et al., IEEE GRSL 2017. Differences: the
        ``LPfilterGauss`` kernel sums to 1 (see :func:`tta.classical._common.lp_filter_gauss`);
        none otherwise. Equivariant to a common positive scaling of MS and PAN (up to the
        ``eps`` of the division).
    """
    x = prepare(ms, pan, sensor, ratio)
    lms, p = x.lms, x.pan
    haze = haze_levels(lms)
    pan_lp = lp_filter_gauss(p, x.ratio)
    w = lstsq(flat(lms), flat(pan_lp))[..., 0]  # (B, C)
    intensity = ((lms - haze) * w[..., None, None]).sum(dim=1, keepdim=True)
    p_eq = (p - mean2(pan_lp)) * (std2(intensity) / std2(pan_lp)) + mean2(intensity)
    fused = (lms - haze).clamp_min(0.0) * (p_eq / (intensity + MATLAB_EPS)) + haze
    return x.finish(fused)


def gsa(ms: Tensor, pan: Tensor, *, sensor: Sensor | str, ratio: int | None = None) -> Tensor:
    """Gram-Schmidt adaptive (GSA) component substitution.

    Means removed from ``I_MS`` (interp23tap), from the LR MS and from PAN; weights
    ``alpha = [MS_LR0, 1] \\ LPfilterPlusDec(PAN0)`` (regression of the low-passed and
    decimated zero-mean PAN on the zero-mean LR MS plus a constant); intensity
    ``I = [I_MS0, 1] alpha``, ``I0 = I - mean(I)``; gains ``g_k = cov(I0, I_MS0_k) / var(I0)``;
    output ``I_MS0_k + g_k (PAN0 - I0)``, each band shifted back to the mean of ``I_MS_k``.

    ``LPfilterPlusDec`` = :func:`tta.classical._common.ndwt_lowpass` (the toolbox's
    ``ndwt2_working``/``indwt2_working`` low-pass) then ``imresize(., 1/ratio, 'nearest')``
    (:func:`tta.physics.decimate`).

    Args:
        ms: ``(B, C, h, w)`` MS in DN (or any common scale with PAN).
        pan: ``(B, 1, ratio*h, ratio*w)``.
        sensor: Sensor or preset name (band count and default ratio).
        ratio: Scale ratio (default: the sensor's).

    Returns:
        ``(B, C, H, W)`` in ``ms``'s dtype.

    Reference:
        Toolbox ``GS/GSA.m`` called through its interface ``GSA(I_MS, I_PAN, I_MS_LR, ratio)``
        (the DLPan demos run the segmented C-GSA instead, whose ``gen_LP_image.m`` estimates
        the weights with ``LPfilterGauss``; plain GSA uses ``LPfilterPlusDec``); Aiazzi et al.,
        IEEE TGRS 2007. No difference (the
        regression is a QR/SVD least-squares solve, equal to MATLAB's backslash for
        full-rank data). Equivariant to a common positive scaling of MS and PAN.
    """
    x = prepare(ms, pan, sensor, ratio)
    lms, p, r = x.lms, x.pan, x.ratio
    lms0 = lms - mean2(lms)
    ms0 = x.ms - mean2(x.ms)
    p0 = p - mean2(p)
    p_lr = decimate(ndwt_lowpass(p0, r), r)
    ones_lr = torch.ones_like(ms0[:, :1])
    alpha = lstsq(flat(torch.cat([ms0, ones_lr], dim=1)), flat(p_lr))[..., 0]  # (B, C+1)
    c = x.n_bands
    intensity = (lms0 * alpha[:, :c, None, None]).sum(dim=1, keepdim=True)
    intensity = intensity + alpha[:, c:, None, None]
    i0 = intensity - mean2(intensity)
    n = i0.shape[-2] * i0.shape[-1]
    var_i0 = (i0 * i0).sum(dim=(-2, -1), keepdim=True) / (n - 1)
    gains = (i0 * (lms0 - mean2(lms0))).sum(dim=(-2, -1), keepdim=True) / (n - 1) / var_i0
    fused = lms0 + gains * (p0 - i0)
    fused = fused - mean2(fused) + mean2(lms)
    return x.finish(fused)


def _bounded_lstsq_host(r: Tensor, qtb: Tensor) -> Tensor:
    """``min ||r g - qtb_k||`` s.t. ``g_0 >= 0``, ``g_1.. <= 0``, per sample and band (host).

    Args:
        r: ``(B, K, K)`` triangular factor of the regressors.
        qtb: ``(B, K, M)`` projected targets.

    Returns:
        ``(B, K, M)`` on ``r``'s device.
    """
    from scipy.optimize import lsq_linear

    r_h = r.detach().cpu().numpy()
    t_h = qtb.detach().cpu().numpy()
    k = r_h.shape[-1]
    lower = np.full(k, -np.inf)
    upper = np.zeros(k)
    lower[0], upper[0] = 0.0, np.inf
    out = np.zeros(t_h.shape)
    for b in range(r_h.shape[0]):
        for m in range(t_h.shape[-1]):
            sol = lsq_linear(r_h[b], t_h[b, :, m], bounds=(lower, upper), method="bvls",
                             tol=1e-12)
            out[b, :, m] = sol.x
    return torch.from_numpy(out).to(device=r.device, dtype=r.dtype)


def bdsd_pc(ms: Tensor, pan: Tensor, *, sensor: Sensor | str, ratio: int | None = None) -> Tensor:
    """Band-dependent spatial detail with physical constraints (BDSD-PC).

    At reduced scale: ``GT = imresize(I_MS, 1/ratio)`` (bicubic), ``MS_LR = MTF(GT)`` (sensor
    MS MTF, no decimation), ``PAN_LR = imresize(MTF_PAN(PAN), 1/ratio, 'nearest')``. For each
    band ``k`` the coefficients ``gamma_k`` (``C + 1``: PAN then every MS band) minimise
    ``||[PAN_LR, MS_LR] gamma_k - (GT_k - MS_LR_k)||`` subject to ``gamma_k[0] >= 0`` (PAN
    weight) and ``gamma_k[1:] <= 0`` (MS weights); output ``I_MS_k + [PAN, I_MS] gamma_k``.

    The regressors are shared by all bands: one thin QR per sample on the device reduces each
    band's problem to a ``(C+1) x (C+1)`` one with the same minimiser, solved exactly on the
    host (CPU) with ``scipy.optimize.lsq_linear(method="bvls")`` (bounded-variable least
    squares, an active-set method); only these tiny factors cross to the host.

    Args:
        ms: ``(B, C, h, w)`` MS in DN (or any common scale with PAN).
        pan: ``(B, 1, ratio*h, ratio*w)``.
        sensor: Sensor or preset name (MS and PAN MTF gains, band count, default ratio).
        ratio: Scale ratio (default: the sensor's).

    Returns:
        ``(B, C, H, W)`` in ``ms``'s dtype.

    Reference:
        Toolbox ``BDSD/BDSD_PC.m`` called as ``BDSD_PC(I_MS, I_PAN, ratio, sensor)``
        (``Demo_Reduced_Resolution.m``); Vivone, IEEE TGRS 2019. Differences: the toolbox
        solves with ``lsqlin`` (``A = eye(C+1)``, ``A(1,1) = -1``, ``A g <= 0``; iterative
        interior point, default tolerances) where we compute the exact constrained minimiser;
        bicubic ``imresize`` is :func:`tta.physics.pan_downsample` (differs from MATLAB only
        at the image borders); MTF kernels sum to 1 (:func:`tta.physics.mtf_kernels`).
        Equivariant to a common positive scaling of MS and PAN.
    """
    x = prepare(ms, pan, sensor, ratio)
    lms, p, r, s = x.lms, x.pan, x.ratio, x.sensor
    gt = pan_downsample(lms, r)
    ms_lr = mtf_filter(gt, s.mtf_ms, r)
    pan_lr = decimate(mtf_filter_pan(p, s), r)
    regressors = flat(torch.cat([pan_lr, ms_lr], dim=1))  # (B, n, C+1)
    q, rr = torch.linalg.qr(regressors)
    qtb = q.mT @ flat(gt - ms_lr)  # (B, C+1, C)
    gamma = _bounded_lstsq_host(rr, qtb)  # (B, C+1, C)
    hr = torch.cat([p, lms], dim=1)
    fused = lms + torch.einsum("bkhw,bkc->bchw", hr, gamma)
    return x.finish(fused)
