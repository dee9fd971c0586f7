"""No-reference loss terms on the PAN grid: spectral consistency, spatial consistency, anchor.

Every term takes the fused image ``(B, C, H, W)`` (sensor DN divided by the max DN), returns a
0-d tensor in the fused image's dtype on its device, and is differentiable in ``fused``. The
operators come from :mod:`tta.physics` (MTF kernels, filtering, decimation) and the
correlation field from :mod:`tta.metrics` (``local_cross_correlation``, the field of
``D_rho``): the MTF and correlation math exist in one place.

Borders: ``spectral_loss`` counts its ``border`` in MS pixels, ``spatial_loss`` and
``anchor_loss`` in pixels of the image they receive (PAN grid); :func:`default_border` gives an
MS border beyond which the MTF filtering no longer sees the replicate padding of a patch.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from tta.checks import check_bchw, check_gains, check_int
from tta.metrics import local_cross_correlation
from tta.metrics.no_reference import xcorr_field
from tta.physics import MTFDecimation, depthwise_filter, mtf_kernels

__all__ = [
    "GENERIC_GNYQ_MS",
    "ZPNN_THRESHOLD_WINDOW",
    "anchor_loss",
    "default_border",
    "ergas_loss",
    "q2n_loss",
    "reproject_fused",
    "spatial_loss",
    "spectral_loss",
    "zpnn_rho_max",
]

Gains = Sequence[float] | Tensor | float
Phase = Sequence[int] | np.ndarray | Tensor

#: MS Nyquist gain of the PAN low-pass in :func:`zpnn_rho_max` when no gains are given (the
#: toolbox's generic MS value, as used by :mod:`tta.sensors` for sensors it does not cover).
GENERIC_GNYQ_MS = 0.3

#: Window side of the Z-PNN threshold correlation (``semi_width = 8`` in Z-PNN's ``main.py``).
ZPNN_THRESHOLD_WINDOW = 16

_NORMS = ("l1", "l2")
#: Kinds of :func:`spatial_loss`.
SPATIAL_KINDS = ("zpnn", "drho")


# ----------------------------------------------------------------------------- helpers
def _check_image(x: Tensor, name: str) -> None:
    check_bchw(x, name)


def _crop(x: Tensor, border: int, name: str = "border") -> Tensor:
    """``x[..., b:-b, b:-b]``; raises if nothing would be left."""
    border = check_int(border, name, 0)
    if border == 0:
        return x
    h, w = x.shape[-2:]
    if 2 * border >= min(h, w):
        raise ValueError(
            f"{name}={border} leaves nothing of a {h}x{w} image (need 2*{name} < {min(h, w)}); "
            "use larger patches or a smaller border"
        )
    return x[..., border : h - border, border : w - border]


def _pan_like(pan: Tensor, fused: Tensor) -> Tensor:
    _check_image(pan, "pan")
    if pan.shape[0] != fused.shape[0] or pan.shape[1] != 1 or pan.shape[-2:] != fused.shape[-2:]:
        raise ValueError(
            f"pan must be (B, 1, H, W) = ({fused.shape[0]}, 1, {fused.shape[-2]}, "
            f"{fused.shape[-1]}) to match fused {tuple(fused.shape)}, got {tuple(pan.shape)}"
        )
    return pan.to(device=fused.device, dtype=fused.dtype)


def _correlation(x: Tensor, y: Tensor, window: int) -> Tensor:
    """Cross-correlation field of ``x`` ``(B, C, H, W)`` with ``y`` ``(B, 1|C, H, W)``.

    The fr-pansh-eval-tool / Z-PNN field with ``half_width = window / 2`` (windows of
    ``2*ceil(window/2)`` pixels): :func:`tta.metrics.local_cross_correlation` (float64) for
    float64 inputs, the same field computed in ``x``'s dtype otherwise (float32 training is
    3-4x faster this way; the field's definition is unchanged).
    """
    window = check_int(window, "window", 1)
    if x.dtype == torch.float64:
        return local_cross_correlation(x, y, window / 2.0)
    return xcorr_field(x, y.to(x.dtype), window / 2.0)


# ----------------------------------------------------------------------------- spectral
def spectral_loss(
    fused: Tensor,
    ms: Tensor,
    gnyq_ms: Gains | None,
    ratio: int,
    *,
    phase: Phase | None = None,
    kernels: Tensor | None = None,
    border: int = 0,
    norm: str = "l1",
    size: int = 41,
    projector: MTFDecimation | None = None,
) -> Tensor:
    """Spectral consistency: the fused image, MTF-filtered and decimated, must give the MS.

    ``proj = decimate(MTF(fused), ratio, phase)`` with each band filtered by its MTF-matched
    kernel (:func:`tta.physics.mtf_kernels`, replicate borders) and sampled at its phase;
    the loss is ``mean |proj - ms|`` (``"l1"``) or ``mean (proj - ms)^2`` (``"l2"``) over the
    batch, the bands and the MS pixels left after cutting ``border`` pixels on every side.

    Args:
        fused: Fused image ``(B, C, H, W)``, ``H`` and ``W`` divisible by ``ratio``.
        ms: Original MS ``(B, C, H/ratio, W/ratio)`` (cast to ``fused``'s dtype/device).
        gnyq_ms: MS Nyquist gains (length C, or one scalar for all bands); unused (may be
            None) when ``kernels`` is given.
        ratio: PAN/MS resolution ratio.
        phase: Decimation phase, as :func:`tta.physics.decimate` takes it: None (default,
            ``(ratio//2, ratio//2)``), ``(2,)``, per band ``(C, 2)`` or per sample and band
            ``(B, C, 2)`` (e.g. :func:`tta.physics.coregistration_phases`).
        kernels: Precomputed MTF kernels ``(C, k, k)`` or ``(1, k, k)`` (e.g. the buffer of
            :class:`~tta.losses.PhysicsLoss`), to skip building them on every call.
        border: MS pixels left out on every side (see :func:`default_border`).
        norm: ``"l1"`` (default, Z-PNN) or ``"l2"``.
        size: Odd kernel side when ``kernels`` is None (toolbox default 41).
        projector: A :class:`tta.physics.MTFDecimation` of these kernels to reuse (its
            operators are cached per shape and phase; e.g. :class:`~tta.losses.PhysicsLoss`'s).

    Returns:
        0-d tensor in ``fused``'s dtype; exactly 0 when ``fused``'s reprojection equals ``ms``.

    Raises:
        ValueError: Shapes that do not match the ratio, a bad phase, norm or border, or
            neither gains nor kernels.

    Reference:
        Z-PNN spectral loss (Ciotola et al., "Pansharpening by convolutional neural networks
        in the full resolution framework", IEEE TGRS 2022; github.com/matciotola/Z-PNN
        ``losses.py``, ``SpectralLoss``/``SpectralLossNocorr``): per-band MTF filtering,
        per-band phase decimation and the L1 distance averaged over the MS samples.
        Differences: replicate padding with a ``border`` cut instead of a valid convolution
        (Z-PNN cuts the full kernel half-size, 20 PAN pixels), kernels of
        :func:`tta.physics.mtf_kernels` (unit DC gain).

    Example:
        >>> ms = decimate(mtf_filter(x, sensor.mtf_ms, 4), 4)
        >>> spectral_loss(x, ms, sensor.mtf_ms, 4)  # 0 up to rounding
    """
    _check_image(fused, "fused")
    _check_image(ms, "ms")
    ratio = check_int(ratio, "ratio", 1)
    b, c, h, w = fused.shape
    if h % ratio or w % ratio:
        raise ValueError(f"fused {h}x{w} is not divisible by ratio {ratio}")
    if tuple(ms.shape) != (b, c, h // ratio, w // ratio):
        raise ValueError(
            f"ms must be {(b, c, h // ratio, w // ratio)} for fused {tuple(fused.shape)} at "
            f"ratio {ratio}, got {tuple(ms.shape)}"
        )
    if norm not in _NORMS:
        raise ValueError(f"norm must be one of {_NORMS}, got {norm!r}")
    if kernels is None:
        if gnyq_ms is None:
            raise ValueError("spectral_loss needs the MS Nyquist gains (gnyq_ms) or kernels")
        kernels = mtf_kernels(check_gains(gnyq_ms), ratio, size, device=fused.device,
                              dtype=torch.float64)
    proj = (projector or MTFDecimation(kernels, ratio))(fused, phase)
    diff = _crop(proj - ms.to(device=fused.device, dtype=fused.dtype), border)
    return diff.abs().mean() if norm == "l1" else diff.square().mean()


def default_border(
    gnyq_ms: Gains | None,
    ratio: int,
    *,
    size: int = 41,
    kernels: Tensor | None = None,
    tol: float = 1e-3,
) -> int:
    """The smallest MS border beyond which the MTF filtering barely sees the padding.

    A kept MS sample lies at least ``ratio * border`` PAN pixels from the patch edge, whatever
    its phase; the border is the smallest one for which, for every band, the share of the
    kernel's absolute mass at offsets beyond that distance (one side, rows or columns) is at
    most ``tol``. The nominal half-size (``size // 2 // ratio`` = 5 MS pixels for 41 x 41
    kernels at ratio 4) would leave 6 x 6 of the 16 x 16 MS pixels of a 64 x 64 patch; the
    Gaussian-like kernels are far narrower than their support: with ``tol = 1e-3`` the result
    is 2 for every preset sensor (12 x 12 MS pixels of a 64 x 64 patch at ratio 4, 28 x 28 of
    a 64 x 64 patch at ratio 2). Measured tails (mass beyond 4 / 8 PAN pixels): 1.2e-2 /
    1.1e-5 for gain 0.3 at ratio 4, 2.3e-2 / 8.0e-5 for 0.22.

    Args:
        gnyq_ms: MS Nyquist gains (unused when ``kernels`` is given).
        ratio: PAN/MS resolution ratio.
        size: Odd kernel side when ``kernels`` is None.
        kernels: MTF kernels ``(C, k, k)``.
        tol: Largest share of kernel mass allowed to fall on padded pixels.

    Returns:
        The border in MS pixels (an int >= 0).

    Raises:
        ValueError: Neither gains nor kernels, or a bad ratio/size.

    Reference:
        Our choice (the kernels of :func:`tta.physics.mtf_kernels`); Z-PNN cuts the full
        half-size with its valid convolution, affordable on whole images, not on patches.
    """
    ratio = check_int(ratio, "ratio", 1)
    if kernels is None:
        if gnyq_ms is None:
            raise ValueError("default_border needs the MS Nyquist gains (gnyq_ms) or kernels")
        kernels = mtf_kernels(check_gains(gnyq_ms), ratio, size, dtype=torch.float64)
    a = kernels.detach().to(device="cpu", dtype=torch.float64).abs()
    half = a.shape[-1] // 2
    total = a.sum(dim=(-2, -1))
    rows, cols = a.sum(dim=-1), a.sum(dim=-2)  # (K, k) profiles
    border = 0
    while ratio * border < half:
        d = ratio * border
        tails = torch.stack([rows[:, : half - d].sum(-1), rows[:, half + d + 1 :].sum(-1),
                             cols[:, : half - d].sum(-1), cols[:, half + d + 1 :].sum(-1)])
        if bool((tails / total).max() <= tol):
            break
        border += 1
    return border


# ----------------------------------------------------------------------------- spatial
def zpnn_rho_max(
    lms: Tensor,
    pan: Tensor,
    ratio: int,
    *,
    gnyq_ms: Gains | None = None,
    kernels: Tensor | None = None,
    window: int = ZPNN_THRESHOLD_WINDOW,
    size: int = 41,
) -> Tensor:
    """The Z-PNN correlation threshold: local correlation of the upsampled MS with a low PAN.

    The PAN is low-passed with the MTF kernel of the *first* MS band and correlated, band by
    band, with the upsampled MS using the cross-correlation field of
    :func:`tta.metrics.local_cross_correlation` with ``half_width = window / 2``. Computed
    without gradient.

    Args:
        lms: MS upsampled to the PAN grid ``(B, C, H, W)`` (e.g. :func:`tta.physics.
            interp23tap`).
        pan: PAN ``(B, 1, H, W)``.
        ratio: PAN/MS resolution ratio (the filter cut-off).
        gnyq_ms: MS Nyquist gains (the first one is used); default :data:`GENERIC_GNYQ_MS`.
        kernels: Precomputed MTF kernels ``(C, k, k)`` (the first is used) instead of gains.
        window: Correlation window side (Z-PNN: 16, i.e. ``semi_width = 8``).
        size: Odd kernel side when ``kernels`` is None.

    Returns:
        Tensor ``(B, C, H, W)`` in ``lms``'s dtype, detached.

    Raises:
        ValueError: Shape mismatch.

    Reference:
        Z-PNN ``utils.local_corr_mask`` (github.com/matciotola/Z-PNN): ``1 - xcorr(
        MTF_band0(PAN), I_MS, semi_width)``, of which this is ``1 -`` that mask. Difference:
        replicate instead of reflection padding in the low-pass.
    """
    _check_image(lms, "lms")
    pan = _pan_like(pan, lms)
    ratio = check_int(ratio, "ratio", 1)
    with torch.no_grad():
        if kernels is None:
            gain = GENERIC_GNYQ_MS if gnyq_ms is None else check_gains(gnyq_ms)[0]
            kernels = mtf_kernels([gain], ratio, size, device=lms.device, dtype=torch.float64)
        pan_low = depthwise_filter(pan.detach(), kernels[:1], padding="replicate")
        return _correlation(lms.detach(), pan_low, window)


def spatial_loss(
    fused: Tensor,
    pan: Tensor,
    ratio: int,
    *,
    lms: Tensor | None = None,
    window: int | None = None,
    kind: str = "zpnn",
    border: int = 0,
    rho_max: Tensor | None = None,
    gnyq_ms: Gains | None = None,
    kernels: Tensor | None = None,
    threshold_window: int = ZPNN_THRESHOLD_WINDOW,
) -> Tensor:
    """Spatial consistency with the PAN, from the local correlation of each band with it.

    ``rho`` is the cross-correlation field of fr-pansh-eval-tool / Z-PNN between each fused
    band and the PAN (:func:`tta.metrics.local_cross_correlation`, ``half_width =
    window / 2``: windows of ``2*ceil(window/2)`` pixels, ``window`` by default ``ratio``):

    * ``kind="zpnn"``: ``mean[(1 - rho) * 1(rho < rho_max)]`` with ``rho`` clamped below at
      -1: pixels whose correlation already reaches the one the MS allows cost nothing, the
      others pull ``rho`` up (gradient of ``-rho``). ``rho_max`` is :func:`zpnn_rho_max`
      (from ``lms``) unless given;
    * ``kind="drho"``: ``mean(1 - rho)`` with ``rho`` clamped to [-1, 1], the ``D_rho`` index.

    Means run over batch, bands and the pixels left after cutting ``border`` on every side.
    The field pads the images with zeros (and centres each pixel on its own window mean), so
    within ``window`` pixels of the edges an affine (not linear) relation to the PAN no
    longer gives ``rho = 1``; a ``border`` of at least ``window`` leaves those pixels out
    (:class:`~tta.losses.PhysicsLoss` cuts ``ratio * border`` = 8 PAN pixels by default).

    Args:
        fused: Fused image ``(B, C, H, W)``.
        pan: PAN ``(B, 1, H, W)``.
        ratio: PAN/MS resolution ratio (default window, the ``rho_max`` low-pass).
        lms: Upsampled MS ``(B, C, H, W)``, needed by ``"zpnn"`` unless ``rho_max`` is given.
        window: Correlation window side (default ``ratio``; odd sides act as the next even
            one, as ``half_width = window / 2`` in the reference code).
        kind: ``"zpnn"`` or ``"drho"``.
        border: PAN pixels left out on every side (after computing the field).
        rho_max: Precomputed threshold ``(B, C, H, W)`` (or broadcastable), e.g. computed
            once on the whole scene and cropped like the patches, as Z-PNN does.
        gnyq_ms, kernels: MS gains or MTF kernels for :func:`zpnn_rho_max`.
        threshold_window: Window side of :func:`zpnn_rho_max` (Z-PNN: 16).

    Returns:
        0-d tensor in ``fused``'s dtype, differentiable in ``fused`` (0 to 2).

    Raises:
        ValueError: Shape mismatch, unknown kind, a bad border, or ``"zpnn"`` without
            ``lms`` nor ``rho_max``.

    Reference:
        ``"zpnn"``: Z-PNN structural loss (Ciotola et al., IEEE TGRS 2022;
        github.com/matciotola/Z-PNN ``losses.py`` ``StructuralLoss`` with ``sigma = ratio``,
        ``cross_correlation.xcorr_torch`` and ``utils.local_corr_mask``), the published code:
        ``X = 1 - clamp(rho, min=-1)``, ``mean(X * (X > 1 - rho_max))`` (the clipped form
        ``mean(1 - min(rho, rho_max))`` has the same gradient almost everywhere; we keep the
        code's values, 0 where every threshold is met). ``"drho"``:
        fr-pansh-eval-tool ``D_rho.m`` (Scarpa & Ciotola, Remote Sensing 2022), as
        :func:`tta.metrics.d_rho` but on the fused image's dtype and with a border.

    Example:
        >>> spatial_loss(fused, pan, 4, lms=interp23tap(ms, 4))          # Z-PNN
        >>> spatial_loss(fused, pan, 4, kind="drho", border=8)            # D_rho-like
    """
    _check_image(fused, "fused")
    pan = _pan_like(pan, fused)
    ratio = check_int(ratio, "ratio", 1)
    if kind not in SPATIAL_KINDS:
        raise ValueError(f"kind must be one of {SPATIAL_KINDS}, got {kind!r}")
    rho = _correlation(fused, pan, ratio if window is None else window)
    if kind == "drho":
        return _crop(1.0 - rho.clamp(-1.0, 1.0), border).mean()
    if rho_max is None:
        if lms is None:
            raise ValueError("spatial_loss(kind='zpnn') needs lms (upsampled MS) or rho_max")
        if lms.shape != fused.shape:
            raise ValueError(f"lms {tuple(lms.shape)} does not match fused {tuple(fused.shape)}")
        rho_max = zpnn_rho_max(lms, pan, ratio, gnyq_ms=gnyq_ms, kernels=kernels,
                               window=threshold_window)
    rho_max = rho_max.detach().to(device=fused.device, dtype=fused.dtype)
    x = 1.0 - rho.clamp_min(-1.0)
    worst = x > (1.0 - rho_max)
    return _crop(x * worst.to(x.dtype), border).mean()


# ----------------------------------------------------------------------------- lambda-PNN
def reproject_fused(fused: Tensor, ratio: int, *, kernels: Tensor,
                    phase: Phase | None = None,
                    projector: MTFDecimation | None = None) -> Tensor:
    """``decimate(MTF(fused), ratio, phase)``: the fused image brought back to the MS grid
    (the projection inside :func:`spectral_loss`, for the terms that compare it as a whole;
    :class:`tta.physics.MTFDecimation`, ``projector`` if given)."""
    _check_image(fused, "fused")
    return (projector or MTFDecimation(kernels, ratio))(fused, phase)


def ergas_loss(proj: Tensor, ms: Tensor, ratio: int, *, border: int = 0,
               eps: float = 1e-12) -> Tensor:
    """ERGAS between a reprojected fused image and the MS (both on the MS grid).

    ``100 / ratio * sqrt(mean_b(RMSE_b^2 / mu_b^2))`` per sample, averaged over the batch.

    Reference:
        lambda-PNN (Ciotola et al., "Unsupervised deep learning-based pansharpening with
        jointly enhanced spectral and spatial fidelity", IEEE TGRS 2023;
        github.com/matciotola/Lambda-PNN): the ERGAS term of its loss, on the reprojected
        output; the index as :func:`tta.metrics.ergas`.
    """
    if proj.shape != ms.shape:
        raise ValueError(f"proj {tuple(proj.shape)} does not match ms {tuple(ms.shape)}")
    d = _crop(proj - ms.to(proj.dtype), border)
    m = _crop(ms.to(proj.dtype), border)
    ratio_sq = d.square().mean(dim=(-2, -1)) / m.mean(dim=(-2, -1)).square().clamp_min(eps)
    return (100.0 / ratio * ratio_sq.mean(dim=-1).clamp_min(eps).sqrt()).mean()


def q2n_loss(proj: Tensor, ms: Tensor, *, border: int = 0, block_size: int = 32) -> Tensor:
    """``1 - Q2n(ms, proj)``: Khan's spectral distortion of the reprojected fused image.

    Q2n on float values (no DN cast, so it is differentiable) with ``block_size`` blocks,
    reduced to the image side when the MS is smaller.

    Reference:
        lambda-PNN's ``D_lambda,K`` term (github.com/matciotola/Lambda-PNN ``metrics.py``);
        Q2n as :func:`tta.metrics.q2n` (toolbox ``q2n.m``).
    """
    from tta.metrics import q2n

    if proj.shape != ms.shape:
        raise ValueError(f"proj {tuple(proj.shape)} does not match ms {tuple(ms.shape)}")
    p, m = _crop(proj, border), _crop(ms.to(proj.dtype), border)
    block = max(2, min(block_size, *m.shape[-2:]))
    return 1.0 - q2n(m, p, block, dn_cast=False).mean()


# ----------------------------------------------------------------------------- anchor
def anchor_loss(fused: Tensor, reference: Tensor, *, border: int = 0) -> Tensor:
    """L1 distance to a reference output (e.g. the source model's), a constant.

    Args:
        fused: ``(B, C, H, W)``.
        reference: Same shape; detached (no gradient flows into it).
        border: Pixels left out on every side.

    Returns:
        0-d tensor ``mean |fused - reference|`` in ``fused``'s dtype.

    Raises:
        ValueError: Shape mismatch or a bad border.

    Reference:
        Our choice: an L1 pull towards the frozen source model's output, against drift in
        the directions the physics terms leave free (L1 like the spectral term).
    """
    _check_image(fused, "fused")
    _check_image(reference, "reference")
    if reference.shape != fused.shape:
        raise ValueError(
            f"reference {tuple(reference.shape)} does not match fused {tuple(fused.shape)}"
        )
    ref = reference.detach().to(device=fused.device, dtype=fused.dtype)
    return _crop(fused - ref, border).abs().mean()
