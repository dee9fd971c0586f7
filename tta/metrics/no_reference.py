"""Full-resolution (no-reference) quality indexes.

* QNR family of the Vivone et al. toolbox: :func:`d_lambda`, :func:`d_s`, :func:`qnr`
  (``D_lambda.m``, ``D_s.m``, ``QNR.m``) and the hybrid :func:`d_lambda_k`, :func:`hqnr`
  (``D_lambda_K.m``, ``HQNR.m``);
* the reprojection protocol of Scarpa & Ciotola (fr-pansh-eval-tool, MATLAB folder):
  :func:`reproject` (``resize_w_mtf.m`` with ``generate_MTF_variables.m``), the R-indexes
  R-Q2n, R-Q, R-SAM, R-ERGAS (``consistency_metrics_evaluation.m`` on the reprojection) and
  :func:`d_rho` (``D_rho.m`` / ``local_cross_correlation.m``);
* :func:`fr_metrics`, all of them at once.

Inputs are batched ``(B, C, H, W)`` tensors (or unbatched ``(C, H, W)``; PAN ``(B, 1, H, W)``,
``(1, H, W)`` or ``(H, W)``) in DN; computations are float64 on the fused image's device. The
MTF filter, the 23-tap interpolator, the PAN downsampler and the decimation come from
:mod:`tta.physics`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from tta.checks import check_gains
from tta.metrics._common import (
    as_bchw,
    blocks,
    box_sum,
    finish,
    pair,
    toolbox_cut,
)
from tta.metrics.reference import ergas, q2n, q_index, sam
from tta.sensors import Sensor, get_sensor

__all__ = [
    "d_lambda",
    "d_lambda_k",
    "d_rho",
    "d_s",
    "fr_metrics",
    "hqnr",
    "local_cross_correlation",
    "qnr",
    "reproject",
    "reprojection_metrics",
    "reprojection_phases",
]

Gains = Sequence[float] | Tensor | float


def _physics():
    """:mod:`tta.physics`, imported on first use."""
    import tta.physics as physics

    return physics


def _image_and_pan(fused: Any, pan: Any) -> tuple[Tensor, Tensor, bool]:
    f, batched = as_bchw(fused, "fused")
    p, _ = as_bchw(pan, "pan", device=f.device)
    if p.shape[1] != 1:
        raise ValueError(f"pan must have one channel, got {tuple(p.shape)}")
    if p.shape[0] != f.shape[0] or p.shape[-2:] != f.shape[-2:]:
        raise ValueError(f"pan {tuple(p.shape)} does not match fused {tuple(f.shape)}")
    return f, p, batched


# ----------------------------------------------------------------------------- block UQI
def _block_moments(x: Tensor, block_size: int) -> tuple[Tensor, Tensor, Tensor]:
    """Block means, centred tiles and pixel counts of ``x`` on ``blockproc``'s block grid."""
    tiles, mask = blocks(x, block_size)
    count = mask.sum(dim=-1)
    mean = tiles.sum(dim=-1) / count
    centred = (tiles - mean[..., None]) * mask
    return mean, centred, count


def _uqi(cov: Tensor, var_x: Tensor, var_y: Tensor, mx: Tensor, my: Tensor) -> Tensor:
    """``uqi`` of ``D_lambda.m`` / ``D_s.m``: ``4 C12 mx my / (C11 + C22) / (mx^2 + my^2)``."""
    return 4.0 * cov * mx * my / (var_x + var_y) / (mx * mx + my * my)


def _band_pair_q(x: Tensor, block_size: int) -> Tensor:
    """Mean block UQI of every band pair ``i < j`` of ``x``: ``(B, C*(C-1)/2)``."""
    mean, centred, count = _block_moments(x, block_size)  # (B,C,n), (B,C,n,p), (n,)
    gram = torch.einsum("bcnp,bdnp->bncd", centred, centred) / (count - 1.0)[:, None, None]
    c = x.shape[1]
    i, j = torch.triu_indices(c, c, offset=1, device=x.device)
    var = torch.diagonal(gram, dim1=-2, dim2=-1)  # (B, n, C)
    mean = mean.transpose(1, 2)  # (B, n, C)
    q = _uqi(gram[..., i, j], var[..., i], var[..., j], mean[..., i], mean[..., j])
    return q.mean(dim=1)


def _band_vs_q(x: Tensor, y: Tensor, block_size: int) -> Tensor:
    """Mean block UQI of each band of ``x`` against the single band ``y``: ``(B, C)``."""
    mx, cx, count = _block_moments(x, block_size)
    my, cy, _ = _block_moments(y, block_size)
    dof = count - 1.0
    cov = (cx * cy).sum(dim=-1) / dof
    vx = (cx * cx).sum(dim=-1) / dof
    vy = (cy * cy).sum(dim=-1) / dof
    return _uqi(cov, vx, vy, mx, my).mean(dim=-1)


# ----------------------------------------------------------------------------- QNR family
def d_lambda(ms_up: Any, fused: Any, block_size: int = 32, p: float = 1.0) -> Tensor:
    """Spectral distortion of the QNR.

    For every band pair ``i < j``: ``Q_exp`` = mean of the UIQI between bands i and j of the
    upsampled MS over non-overlapping ``block_size`` blocks, ``Q_fused`` = the same on the
    fused image; ``D_lambda = (mean_pairs |Q_fused - Q_exp|^p)^(1/p)``. The block UIQI is
    ``4 cov m_x m_y / (var_x + var_y) / (m_x^2 + m_y^2)`` (``cov``, ``var`` unbiased), so flat
    blocks give NaN as in the toolbox.

    Args:
        ms_up: MS upsampled to the PAN grid (the toolbox's ``I_MS``: ``interp23tap``).
        fused: Fused image, same shape.
        block_size: ``S`` (32).
        p: Exponent (1).

    Reference:
        Toolbox ``D_lambda.m`` with ``flag_orig_paper = 0`` (toolbox 1.0 option: ``Q_exp`` from
        the upsampled MS at PAN scale, ``blockproc`` blocks); Alparone et al., PE&RS 2008.
        Argument order: the toolbox has ``D_lambda(I_F, I_MS, ...)``; we put the MS first.
        Difference: the toolbox refuses sizes that are not block multiples; we keep the
        partial edge blocks with their real extent (what ``blockproc`` would pass).
    """
    ref, f, batched = pair(ms_up, fused, ("ms_up", "fused"))
    if ref.shape[1] < 2:
        raise ValueError("D_lambda needs at least two bands")
    q_exp = _band_pair_q(ref, block_size)
    q_fused = _band_pair_q(f, block_size)
    value = ((q_fused - q_exp).abs() ** p).mean(dim=1) ** (1.0 / p)
    return finish(value, batched)


def _pan_low(pan: Tensor, ratio: int) -> Tensor:
    """``interp23tap(imresize(I_PAN, 1/ratio), ratio)`` of ``D_s.m``."""
    ph = _physics()
    return ph.interp23tap(ph.pan_downsample(pan, ratio), ratio)


def d_s(ms_up: Any, pan: Any, fused: Any, ratio: int, block_size: int = 32,
        q: float = 1.0) -> Tensor:
    """Spatial distortion of the QNR.

    For every band: ``Q_high`` = mean block UIQI between the fused band and the PAN,
    ``Q_low`` = mean block UIQI between the upsampled MS band and the PAN reduced by
    ``ratio`` (antialiased bicubic, MATLAB ``imresize``) and interpolated back with the
    23-tap filter; ``D_s = (mean_b |Q_high - Q_low|^q)^(1/q)``.

    Args:
        ms_up: MS upsampled to the PAN grid (``interp23tap``).
        pan: PAN ``(B, 1, H, W)``.
        fused: Fused image ``(B, C, H, W)``.
        ratio: PAN/MS ratio (a power of two: the 23-tap interpolator).
        block_size: ``S`` (32).
        q: Exponent (1).

    Reference:
        Toolbox ``D_s.m`` with ``flag_orig_paper = 0`` (toolbox 1.0 option). Argument order:
        the toolbox has ``D_s(I_F, I_MS, I_MS_LR, I_PAN, ...)``; ours is MS, PAN, fused.
        Differences: partial edge blocks as in :func:`d_lambda`; the PAN reduction is
        :func:`tta.physics.pan_downsample` (equal to ``imresize`` away from the borders).
    """
    ref, f, batched = pair(ms_up, fused, ("ms_up", "fused"))
    _, p, _ = _image_and_pan(f, pan)
    q_high = _band_vs_q(f, p, block_size)
    q_low = _band_vs_q(ref, _pan_low(p, ratio), block_size)
    value = ((q_high - q_low).abs() ** q).mean(dim=1) ** (1.0 / q)
    return finish(value, batched)


def qnr(ms_up: Any, pan: Any, fused: Any, ratio: int, block_size: int = 32,
        alpha: float = 1.0, beta: float = 1.0) -> tuple[Tensor, Tensor, Tensor]:
    """Quality with No Reference: ``(1 - D_lambda)^alpha (1 - D_s)^beta``.

    Returns:
        ``(QNR, D_lambda, D_s)``.

    Reference:
        Toolbox ``QNR.m`` (``p = q = alpha = beta = 1``, ``S = 32``). No further difference.
    """
    dl = d_lambda(ms_up, fused, block_size)
    ds = d_s(ms_up, pan, fused, ratio, block_size)
    return (1.0 - dl) ** alpha * (1.0 - ds) ** beta, dl, ds


def d_lambda_k(ms_up: Any, fused: Any, gnyq: Gains, ratio: int, block_size: int = 32, *,
               dn_cast: bool = True) -> Tensor:
    """Khan's spectral distortion: ``1 - Q2n(MS_up, MTF(fused))`` at PAN scale.

    The fused image is low-passed with the MS MTF filters (no decimation) and compared
    with the upsampled MS by Q2n (``block_size`` blocks and step, ``uint16`` cast).

    Args:
        ms_up: MS upsampled to the PAN grid (``interp23tap``), in DN.
        fused: Fused image in DN.
        gnyq: MS Nyquist gains (one per band, or one scalar).
        ratio: PAN/MS ratio.
        block_size: ``S`` (32).
        dn_cast: See :func:`~tta.metrics.q2n`.

    Reference:
        Toolbox ``D_lambda_K.m`` (Khan et al., IEEE TGRS 2009): ``MTF(fused, sensor,
        ratio)`` then ``q2n(msexp, fused_degraded, S, S)``. Differences: the toolbox refuses
        sizes that are not block multiples (we pad as ``q2n.m`` does); MTF kernels of
        :func:`tta.physics.mtf_filter` (renormalised to unit DC gain).
    """
    ref, f, batched = pair(ms_up, fused, ("ms_up", "fused"))
    low = _physics().mtf_filter(f, check_gains(gnyq, f.shape[1]), ratio)
    return finish(1.0 - q2n(ref, low, block_size, block_size, dn_cast=dn_cast), batched)


def hqnr(ms_up: Any, pan: Any, fused: Any, gnyq: Gains, ratio: int, block_size: int = 32,
         *, dn_cast: bool = True) -> tuple[Tensor, Tensor, Tensor]:
    """Hybrid QNR: ``(1 - D_lambda_K)(1 - D_s)``.

    Returns:
        ``(HQNR, D_lambda_K, D_s)``.

    Reference:
        Toolbox ``HQNR.m`` (Aiazzi et al., SPIE 2014): ``D_lambda_K`` and ``D_s(..., S, 1)``.
    """
    dl = d_lambda_k(ms_up, fused, gnyq, ratio, block_size, dn_cast=dn_cast)
    ds = d_s(ms_up, pan, fused, ratio, block_size)
    return (1.0 - dl) * (1.0 - ds), dl, ds


# ----------------------------------------------------------------------------- reprojection
def xcorr_field(x: Tensor, y: Tensor, half_width: float) -> Tensor:
    """The field of :func:`local_cross_correlation` in the inputs' own dtype (no float64
    conversion, no checks): for losses, where float32 speed matters more than the last
    digits. ``x`` is ``(B, C, H, W)``, ``y`` the same or ``(B, 1, H, W)`` (broadcast)."""
    return _xcorr(x, y, half_width)


def _xcorr(x: Tensor, y: Tensor, half_width: float) -> Tensor:
    """Cross-correlation field of ``local_cross_correlation.m`` on float64 tensors.

    ``y`` may have one channel where ``x`` has ``C``: its window statistics are then computed
    once and broadcast (the same numbers as on ``y`` repeated ``C`` times, ``C`` times less
    work)."""
    w = math.ceil(half_width)
    if w < 1:
        raise ValueError(f"half_width must be > 0, got {half_width}")
    ep = 1e-20
    k = 2 * w

    def window_sum(t: Tensor) -> Tensor:
        # Window of output i: rows i-w+1 .. i+w (zeros outside), i.e. 2w samples.
        return box_sum(F.pad(t, (w - 1, w, w - 1, w)), k)

    x = x - window_sum(x) / (k * k)
    y = y - window_sum(y) / (k * k)
    sig_xy = window_sum(x * y)
    sig_x = window_sum(x * x).clamp_min(ep)
    sig_y = window_sum(y * y).clamp_min(ep)
    return sig_xy / (torch.sqrt(sig_x * sig_y) + ep)


def local_cross_correlation(x: Any, y: Any, half_width: float) -> Tensor:
    """Cross-correlation field of fr-pansh-eval-tool (``local_cross_correlation.m``).

    With ``w = ceil(half_width)`` and windows of ``2w x 2w`` pixels (rows ``i-w+1 .. i+w``,
    columns alike, zeros outside the image): each image minus its window mean at every
    pixel gives ``x~``, ``y~``; then ``rho = S(x~ y~) / (sqrt(max(eps, S(x~^2))
    max(eps, S(y~^2))) + eps)`` with ``S`` the window sum and ``eps = 1e-20``. Note that
    ``x~`` at each pixel of a window is centred on *that pixel's* window mean, so ``rho``
    is not exactly the Pearson correlation of the window.

    Args:
        x: ``(B, C, H, W)``.
        y: ``(B, C, H, W)`` or ``(B, 1, H, W)`` (broadcast over the bands).
        half_width: Semi-size of the window (``ratio / 2`` for ``D_rho``).

    Returns:
        ``(B, C, H, W)`` map (same size as the input), not clipped.

    Reference:
        fr-pansh-eval-tool ``MATLAB/local_cross_correlation.m`` (Scarpa & Ciotola 2022).
        Difference: float64 instead of MATLAB single. :func:`tta.physics.local_correlation`
        (exact windowed Pearson, valid positions) is a different quantity.
    """
    a, batched = as_bchw(x, "x")
    b, _ = as_bchw(y, "y", device=a.device)
    if b.shape[0] != a.shape[0] or b.shape[1] not in (1, a.shape[1]) or (
            b.shape[-2:] != a.shape[-2:]):
        raise ValueError(f"y {tuple(b.shape)} does not match x {tuple(a.shape)}")
    return finish(_xcorr(a, b, half_width), batched)


def d_rho(pan: Any, fused: Any, ratio: int) -> Tensor:
    """Spatial consistency ``D_rho``: mean over pixels and bands of ``1 - rho``.

    ``rho`` is the :func:`local_cross_correlation` field between each fused band and the PAN
    with ``half_width = ratio / 2`` (``2*ceil(ratio/2)``-pixel windows: 4 x 4 for ratio 4),
    clipped to [-1, 1]. 0 for a perfect local correlation with the PAN, up to 2.

    Reference:
        fr-pansh-eval-tool ``MATLAB/D_rho.m``, called as ``D_rho(P, I_PAN, ratio/2)`` in its
        ``main.m`` (Scarpa & Ciotola, "Full-resolution quality assessment for
        pansharpening", Remote Sensing 2022). Argument order: PAN first (the field is
        symmetric). Difference: float64 instead of single.
    """
    f, p, batched = _image_and_pan(fused, pan)
    rho = _xcorr(f, p, ratio / 2.0).clamp(-1.0, 1.0)
    return finish((1.0 - rho).mean(dim=(1, 2, 3)), batched)


def _check_ms_pan(ms: Tensor, pan: Tensor, ratio: int) -> None:
    h, w = ms.shape[-2:]
    if pan.shape[0] != ms.shape[0] or pan.shape[1] != 1 or tuple(pan.shape[-2:]) != (
            ratio * h, ratio * w):
        raise ValueError(f"pan {tuple(pan.shape)} does not match MS {tuple(ms.shape)} at "
                         f"ratio {ratio}")


def reprojection_phases(ms: Any, pan: Any, gnyq: Gains, ratio: int, *,
                        method: str = "toolbox", return_scores: bool = False
                        ) -> Tensor | tuple[Tensor, Tensor]:
    """Per band, the decimation phase ``(dy, dx)`` that aligns the fused image with the MS.

    ``method="toolbox"``: the PAN is low-passed with the *first* band's MTF filter, decimated
    at each of the ``ratio x ratio`` phases, and each MS band is scored by the mean of its
    :func:`local_cross_correlation` field (half width 2) with the decimated PAN; the best
    phase wins (ties: MATLAB's column-major first maximum). ``method="pearson"``:
    :func:`tta.physics.coregistration_phases` (each band's own filter, global Pearson).

    Returns:
        LongTensor ``(B, C, 2)`` of 0-based ``(dy, dx)``; with ``return_scores`` also the
        scores ``(B, C, ratio, ratio)`` (toolbox method only; ``None`` otherwise).

    Reference:
        fr-pansh-eval-tool ``MATLAB/generate_MTF_variables.m`` (``r``, ``c`` there are these
        phases plus one). Difference: MTF kernels of :func:`tta.physics.mtf_filter`.
    """
    m, batched = as_bchw(ms, "ms")
    p, _ = as_bchw(pan, "pan", device=m.device)
    _check_ms_pan(m, p, ratio)
    b, c, h, w = m.shape
    gains = check_gains(gnyq, c)
    ph = _physics()
    if method == "pearson":
        phases = ph.coregistration_phases(m, p, gains, ratio)
        phases = finish(phases, batched)
        return (phases, None) if return_scores else phases
    if method != "toolbox":
        raise ValueError(f"unknown phase method {method!r}")
    low = ph.mtf_filter(p, gains[0], ratio)  # imfilter(PAN, h(:,:,1), 'replicate')
    cand = low.reshape(b, 1, h, ratio, w, ratio).permute(0, 3, 5, 1, 2, 4)
    cand = cand.reshape(b * ratio * ratio, 1, h, w)
    target = m[:, None, None].expand(b, ratio, ratio, c, h, w).reshape(b * ratio * ratio, c,
                                                                       h, w)
    scores = _xcorr(target, cand, 2).mean(dim=(-2, -1))
    scores = scores.reshape(b, ratio, ratio, c).permute(0, 3, 1, 2)  # (B, C, dy, dx)
    flat = scores.transpose(-1, -2).reshape(b, c, ratio * ratio)  # column-major like x(:)
    best = flat.argmax(dim=-1)
    phases = torch.stack([best % ratio, best // ratio], dim=-1)
    phases = finish(phases, batched)
    if return_scores:
        return phases, finish(scores, batched)
    return phases


def reproject(fused: Any, ms: Any, pan: Any, gnyq: Gains, ratio: int, *,
              phases: Tensor | None = None, phase_method: str = "toolbox") -> Tensor:
    """Bring the fused image to the MS grid: MTF low-pass, then per-band phase decimation.

    Args:
        fused: ``(B, C, H, W)``.
        ms: Original MS ``(B, C, H/ratio, W/ratio)`` (for the phase search).
        pan: PAN ``(B, 1, H, W)`` (for the phase search).
        gnyq: MS Nyquist gains.
        ratio: PAN/MS ratio.
        phases: Phases ``(B, C, 2)``, ``(C, 2)`` or ``(2,)`` to use instead of searching.
        phase_method: See :func:`reprojection_phases`.

    Returns:
        ``(B, C, H/ratio, W/ratio)`` float64.

    Reference:
        fr-pansh-eval-tool ``MATLAB/resize_w_mtf.m`` (``imfilter(F(:,:,b), h(:,:,b),
        'replicate')`` then ``F(r:ratio:end, c:ratio:end, b)``; the MATLAB file steps by a
        hard-coded 4, its NumPy twin by ``ratio``: we step by ``ratio``).
    """
    f, batched = as_bchw(fused, "fused")
    ph = _physics()
    low = ph.mtf_filter(f, check_gains(gnyq, f.shape[1]), ratio)
    if phases is None:
        m, _ = as_bchw(ms, "ms", device=f.device)
        p, _ = as_bchw(pan, "pan", device=f.device)
        phases = reprojection_phases(m, p, gnyq, ratio, method=phase_method)
    return finish(ph.decimate(low, ratio, torch.as_tensor(phases, device=f.device)), batched)


def reprojection_metrics(ms: Any, pan: Any, fused: Any, gnyq: Gains, ratio: int, *,
                         block_size: int = 32, border: int = 0, phases: Tensor | None = None,
                         phase_method: str = "toolbox", dn_cast: bool = True
                         ) -> dict[str, Tensor]:
    """R-Q2n, R-Q, R-SAM, R-ERGAS: the RR indexes of the :func:`reproject`-ed fused image
    against the original MS (the MS is the reference).

    Args:
        ms: Original MS ``(B, C, h, w)`` in DN.
        pan: PAN ``(B, 1, ratio*h, ratio*w)``.
        fused: Fused image ``(B, C, ratio*h, ratio*w)`` in DN.
        gnyq: MS Nyquist gains.
        ratio: PAN/MS ratio.
        block_size: Q2n block (and step) and Q window (32).
        border: Toolbox border cut ``I(border:end-border, ...)`` of both images; 0 = none,
            as fr-pansh-eval-tool's ``main.m`` (``flag_cut_bounds = 0``).
        phases, phase_method: See :func:`reproject`.
        dn_cast: ``uint16`` cast of R-Q2n.

    Returns:
        ``{"R-Q2n", "R-Q", "R-SAM", "R-ERGAS"}`` of ``(B,)`` tensors (0-d if unbatched).

    Reference:
        fr-pansh-eval-tool ``MATLAB/main.m`` and ``consistency_metrics_evaluation.m``
        (``q2n(I_GT, I_F, 32, 32)``, ``Q`` = ``img_qi`` with 32 x 32 windows, ``SAM``,
        ``ERGAS``; the same files as the toolbox). Its NumPy twin computes R-Q with a
        reflect-padded convolution cropped by 15 pixels instead of ``img_qi``'s valid
        windows, and cuts ``dim_cut`` pixels symmetrically; we follow the MATLAB files.
    """
    f, batched = as_bchw(fused, "fused")
    m, _ = as_bchw(ms, "ms", device=f.device)
    repro = reproject(f, m, pan, gnyq, ratio, phases=phases, phase_method=phase_method)
    repro, m = toolbox_cut(repro, border), toolbox_cut(m, border)
    out = {
        "R-Q2n": q2n(m, repro, block_size, block_size, dn_cast=dn_cast),
        "R-Q": q_index(m, repro, block_size),
        "R-SAM": sam(m, repro),
        "R-ERGAS": ergas(m, repro, ratio),
    }
    return {k: finish(v, batched) for k, v in out.items()}


# ----------------------------------------------------------------------------- wrapper
def _sensor_args(sensor: Sensor | str | tuple[Gains, int]) -> tuple[Gains, int]:
    if isinstance(sensor, tuple):
        gnyq, ratio = sensor
        return gnyq, int(ratio)
    s = get_sensor(sensor)
    return s.mtf_ms, s.ratio


def fr_metrics(ms: Any, pan: Any, fused: Any, sensor: Sensor | str | tuple[Gains, int],
               max_value: float | None = None, *, ms_up: Any = None, block_size: int = 32,
               border: int = 0, phases: Tensor | None = None, phase_method: str = "toolbox",
               dn_cast: bool = True, clip: bool = False) -> dict[str, Any]:
    """All full-resolution indexes of one (batch of) fused image(s).

    Args:
        ms: Original MS ``(B, C, h, w)`` in DN.
        pan: PAN ``(B, 1, ratio*h, ratio*w)`` in DN.
        fused: Fused image ``(B, C, ratio*h, ratio*w)`` in DN.
        sensor: A :class:`~tta.sensors.Sensor`, a preset name, or ``(gnyq_ms, ratio)``.
        max_value: Nominal maximum DN; only used by ``clip``.
        ms_up: Upsampled MS for the QNR family; default ``interp23tap(ms, ratio)`` as the
            toolbox demos compute ``I_MS``.
        block_size: ``S`` of the QNR family and block/window of R-Q2n / R-Q (32).
        border: Border cut (toolbox convention, see :func:`rr_metrics`) applied to the
            reprojected image and the MS before the R-indexes; 0 as in fr-pansh-eval-tool's
            ``main.m`` (``flag_cut_bounds = 0``).
        phases: Decimation phases for :func:`reproject` (default: searched).
        phase_method: See :func:`reprojection_phases`.
        dn_cast: ``uint16`` cast of the Q2n-based indexes.
        clip: Clip the fused image to ``[0, max_value]`` first (toolbox ``th_values``).

    Returns:
        ``{"D_lambda", "D_s", "QNR", "D_lambda_K", "HQNR", "R-Q2n", "R-Q", "R-SAM",
        "R-ERGAS", "D_rho"}``: floats for unbatched inputs, ``(B,)`` tensors otherwise.

    Reference:
        Toolbox ``Tools/indexes_evaluation_FS.m`` (``QNR.m`` and ``HQNR.m``, ``S = 32``) and
        fr-pansh-eval-tool ``MATLAB/main.m``.
    """
    gnyq, ratio = _sensor_args(sensor)
    f, batched = as_bchw(fused, "fused")
    m, _ = as_bchw(ms, "ms", device=f.device)
    p, _ = as_bchw(pan, "pan", device=f.device)
    _check_ms_pan(m, p, ratio)
    if m.shape[:2] != f.shape[:2] or f.shape[-2:] != p.shape[-2:]:
        raise ValueError(f"fused {tuple(f.shape)} does not match MS {tuple(m.shape)} and PAN "
                         f"{tuple(p.shape)}")
    if clip:
        if max_value is None:
            raise ValueError("clip=True needs max_value")
        f = f.clamp(0.0, float(max_value))
    gains = check_gains(gnyq, f.shape[1])
    if ms_up is None:
        up = _physics().interp23tap(m, ratio)
    else:
        up, _ = as_bchw(ms_up, "ms_up", device=f.device)
    qnr_v, dl, ds = qnr(up, p, f, ratio, block_size)
    dlk = d_lambda_k(up, f, gains, ratio, block_size, dn_cast=dn_cast)
    out = {
        "D_lambda": dl,
        "D_s": ds,
        "QNR": qnr_v,
        "D_lambda_K": dlk,
        "HQNR": (1.0 - dlk) * (1.0 - ds),
        **reprojection_metrics(m, p, f, gains, ratio, block_size=block_size, border=border,
                               phases=phases, phase_method=phase_method, dn_cast=dn_cast),
        "D_rho": d_rho(p, f, ratio),
    }
    if batched:
        return out
    return {k: float(v[0]) for k, v in out.items()}
