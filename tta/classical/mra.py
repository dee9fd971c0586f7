"""Interpolation and multiresolution-analysis methods: EXP, MTF-GLP-FS, MTF-GLP-HPM, AWLP
(Vivone et al. toolbox definitions)."""

from __future__ import annotations

from torch import Tensor

from tta.classical._common import (
    MATLAB_EPS,
    cov2,
    lp_filter_gauss,
    mean2,
    ndwt_lowpass,
    prepare,
    std2,
)
from tta.physics import bicubic_upsample, decimate, interp23tap, mtf_filter, pan_downsample
from tta.sensors import Sensor

__all__ = ["awlp", "exp", "mtf_glp_fs", "mtf_glp_hpm"]


def exp(ms: Tensor, pan: Tensor, *, sensor: Sensor | str, ratio: int | None = None) -> Tensor:
    """EXP: the MS upsampled with the toolbox's 23-tap interpolator (PAN is not used).

    Args:
        ms: ``(B, C, h, w)``.
        pan: ``(B, 1, ratio*h, ratio*w)`` (checked for shape only).
        sensor: Sensor or preset name (band count, default ratio).
        ratio: Scale ratio (default: the sensor's).

    Returns:
        ``(B, C, H, W)`` in ``ms``'s dtype: :func:`tta.physics.interp23tap` of ``ms``.

    Reference:
        Toolbox ``Tools/interp23tap.m`` (``I_MS`` of the demos, row ``EXP``); see
        :func:`tta.physics.interp23tap` for its one difference (ratios >= 8).
    """
    x = prepare(ms, pan, sensor, ratio)
    return x.finish(x.lms)


def _glp_lowpass(img: Tensor, gains, ratio: int) -> Tensor:
    """``interp23tap(imresize(imfilter(img, h_k, 'replicate'), 1/ratio, 'nearest'))`` per band."""
    return interp23tap(decimate(mtf_filter(img, gains, ratio), ratio), ratio)


def mtf_glp_fs(ms: Tensor, pan: Tensor, *, sensor: Sensor | str,
               ratio: int | None = None) -> Tensor:
    """MTF-matched generalised Laplacian pyramid with full-scale regression injection.

    ``PAN_LP_k`` = PAN filtered with band ``k``'s MS MTF kernel, decimated (nearest, phase
    ``ratio//2``) and re-expanded with interp23tap; gain
    ``g_k = cov(I_MS_k, PAN) / cov(PAN_LP_k, PAN)`` (full-scale covariances);
    output ``I_MS_k + g_k (PAN - PAN_LP_k)``. PAN is not equalised.

    Args:
        ms: ``(B, C, h, w)`` MS in DN (or any common scale with PAN).
        pan: ``(B, 1, ratio*h, ratio*w)``.
        sensor: Sensor or preset name (MS MTF gains, band count, default ratio).
        ratio: Scale ratio (default: the sensor's).

    Returns:
        ``(B, C, H, W)`` in ``ms``'s dtype.

    Reference:
        Toolbox ``GLP/MTF_GLP_FS.m`` called as ``MTF_GLP_FS(I_MS, I_PAN, sensor, ratio)``
        (``Demo_Reduced_Resolution.m``); Vivone et al., IEEE TIP 2018. Difference: MTF
        kernels sum to 1 (:func:`tta.physics.mtf_kernels`). Equivariant to a common positive
        scaling of MS and PAN, and invariant to an affine change of PAN (``g_k`` absorbs its
        gain; with unit-sum kernels an offset cancels in ``PAN - PAN_LP_k``).
    """
    x = prepare(ms, pan, sensor, ratio)
    lms, p, r = x.lms, x.pan, x.ratio
    pan_lp = _glp_lowpass(p.expand(-1, x.n_bands, -1, -1), x.sensor.mtf_ms, r)
    gains = cov2(lms, p) / cov2(pan_lp, p)
    return x.finish(lms + gains * (p - pan_lp))


def mtf_glp_hpm(ms: Tensor, pan: Tensor, *, sensor: Sensor | str,
                ratio: int | None = None) -> Tensor:
    """MTF-matched generalised Laplacian pyramid with high-pass modulation (HPM).

    PAN equalised to each band: ``P_k = (PAN - mean(PAN)) std(I_MS_k) / std(LPfilterGauss(PAN))
    + mean(I_MS_k)``; ``P_LP_k`` = ``P_k`` filtered with band ``k``'s MS MTF kernel, decimated
    (nearest) and re-expanded with interp23tap; output ``I_MS_k .* P_k ./ (P_LP_k + eps)``.

    A spatially constant MS band has ``std(I_MS_k) = 0``, so its equalised PAN is constant and
    the band is returned unchanged (no PAN detail is injected): the equalisation, not the
    modulation, decides this case.

    Args:
        ms: ``(B, C, h, w)`` MS in DN (or any common scale with PAN).
        pan: ``(B, 1, ratio*h, ratio*w)``.
        sensor: Sensor or preset name (MS MTF gains, band count, default ratio).
        ratio: Scale ratio (default: the sensor's).

    Returns:
        ``(B, C, H, W)`` in ``ms``'s dtype.

    Reference:
        Toolbox ``GLP/MTF_GLP_HPM.m`` called through its interface
        ``MTF_GLP_HPM(I_MS, I_PAN, sensor, ratio)`` (the DLPan demos list the regression
        variant ``MTF_GLP_HPM_R`` instead): equalisation with ``LPfilterGauss``, decimated and
        re-interpolated ``PAN_LP``; unlike ``MTF_GLP_HPM_Haze_min.m`` no haze term, unlike
        ``MTF_GLP.m`` multiplicative injection. Aiazzi et al. 2003/2006, Vivone et al. IEEE
        TGRS 2015. Differences: the
        MTF and ``LPfilterGauss`` kernels sum to 1. Equivariant to a common positive scaling of
        MS and PAN (up to the ``eps``) and invariant to an affine change of PAN.
    """
    x = prepare(ms, pan, sensor, ratio)
    lms, p, r = x.lms, x.pan, x.ratio
    p_eq = (p - mean2(p)) * (std2(lms) / std2(lp_filter_gauss(p, r))) + mean2(lms)
    p_lp = _glp_lowpass(p_eq, x.sensor.mtf_ms, r)
    return x.finish(lms * (p_eq / (p_lp + MATLAB_EPS)))


def awlp(ms: Tensor, pan: Tensor, *, sensor: Sensor | str, ratio: int | None = None) -> Tensor:
    """Additive wavelet luminance proportional (AWLP).

    Intensity ratios ``I_MS_k / (mean_k I_MS_k + eps)``; PAN equalised to each band with the
    statistics of its bicubic down/up-sampled version
    ``P_k = (PAN - mean(PAN)) std(I_MS_k) / std(imresize(imresize(PAN, 1/r), r)) + mean(I_MS_k)``;
    details ``P_k - LP(P_k)`` with ``LP`` the toolbox's undecimated wavelet approximation
    (:func:`tta.classical._common.ndwt_lowpass`, ``ceil(log2(ratio))`` levels of the
    Starck-Murtagh ``[1 4 6 4 1]/16`` filter); output ``I_MS_k + details_k .* ratio_k``.
    ``LP`` is linear and keeps constants, so the details are computed once on PAN and scaled
    per band.

    Args:
        ms: ``(B, C, h, w)`` MS in DN (or any common scale with PAN).
        pan: ``(B, 1, ratio*h, ratio*w)``.
        sensor: Sensor or preset name (band count, default ratio).
        ratio: Scale ratio (default: the sensor's).

    Returns:
        ``(B, C, H, W)`` in ``ms``'s dtype.

    Reference:
        Toolbox ``AWLP/AWLP.m`` called through its interface ``AWLP(I_MS, I_PAN, ratio)`` (not
        in the DLPan demo lists); Otazu et al., IEEE TGRS 2005. Differences: bicubic
        ``imresize`` is :func:`tta.physics.pan_downsample` /
        :func:`tta.physics.bicubic_upsample` (differ from MATLAB only near the borders, and
        enter only through one global standard deviation). The toolbox's ``ndwt2`` does not
        dilate its filter between levels, so its "a trous" decomposition is a repeated
        B3-spline smoothing; we reproduce it as is. Equivariant to a common positive scaling
        of MS and PAN (up to the ``eps``) and invariant to an affine change of PAN.
    """
    x = prepare(ms, pan, sensor, ratio)
    lms, p, r = x.lms, x.pan, x.ratio
    intensity_ratio = lms / (lms.mean(dim=1, keepdim=True) + MATLAB_EPS)
    p_lr = bicubic_upsample(pan_downsample(p, r), r)
    scale = std2(lms) / std2(p_lr)  # (B, C, 1, 1)
    details = scale * (p - ndwt_lowpass(p, r))
    return x.finish(lms + details * intensity_ratio)
