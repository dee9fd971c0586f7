"""Shared building blocks of the classical methods (private): input checks, global image
statistics as MATLAB computes them, least squares, the toolbox's auxiliary low-pass filters.

Everything works on float64 ``(B, C, H, W)`` tensors; statistics are per sample and per band
over the whole image (MATLAB ``mean2`` / ``std2`` / ``cov`` of a single image).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import torch
from torch import Tensor

from tta.checks import check_bchw
from tta.errors import InputError
from tta.physics import interp23tap, mtf_filter
from tta.sensors import Sensor, get_sensor

#: MATLAB ``eps`` (double precision), added to denominators exactly where the toolbox does.
MATLAB_EPS = 2.220446049250313e-16

#: Kernel side of every toolbox Gaussian/MTF filter (``N = 41``).
KERNEL_SIZE = 41

#: ``LPfilterGauss.m`` designs a GNyq = 0.3 filter but computes its Gaussian width with ``N``
#: where ``genMTF.m`` uses ``N - 1``: ``alpha = sqrt((N*fcut/2)^2 / (-2 ln 0.3))``. The same
#: kernel comes from the ``genMTF`` formula with the gain ``0.3 ** ((N-1)/N)**2`` (~0.3178).
LPGAUSS_GAIN = 0.3 ** (((KERNEL_SIZE - 1) / KERNEL_SIZE) ** 2)

#: Starck-Murtagh B3-spline taps ``[1 4 6 4 1]/16`` of ``LPfilterPlusDec.m`` / ``AWLP.m``.
B3_TAPS = (1.0 / 16.0, 4.0 / 16.0, 6.0 / 16.0, 4.0 / 16.0, 1.0 / 16.0)


@dataclass
class Inputs:
    """Validated float64 inputs of one call: ``ms`` ``(B, C, h, w)``, ``pan`` ``(B, 1, H, W)``."""

    ms: Tensor
    pan: Tensor
    sensor: Sensor
    ratio: int
    dtype: torch.dtype

    @cached_property
    def lms(self) -> Tensor:
        """``I_MS``: the MS upsampled to the PAN grid with ``interp23tap`` (float64)."""
        return interp23tap(self.ms, self.ratio)

    @property
    def n_bands(self) -> int:
        return self.ms.shape[1]

    def finish(self, fused: Tensor) -> Tensor:
        """The result in the caller's dtype."""
        return fused.to(self.dtype)


def prepare(ms: Tensor, pan: Tensor, sensor: Sensor | str, ratio: int | None) -> Inputs:
    """Check shapes/dtypes/ratio and cast to float64 (one-line :class:`InputError` otherwise)."""
    sensor = get_sensor(sensor)
    check_bchw(ms, "ms")
    check_bchw(pan, "pan")
    r = int(sensor.ratio if ratio is None else ratio)
    if isinstance(ratio, bool) or r < 2 or (ratio is not None and r != ratio):
        raise InputError(f"ratio must be an integer >= 2, got {ratio!r}")
    if r & (r - 1):
        raise InputError(f"ratio must be a power of two (interp23tap), got {r}")
    b, c, h, w = ms.shape
    if pan.shape != (b, 1, r * h, r * w):
        raise InputError(
            f"PAN {tuple(pan.shape)} does not match MS {tuple(ms.shape)} at ratio {r} "
            f"(expected {(b, 1, r * h, r * w)})"
        )
    if c != sensor.n_bands:
        raise InputError(f"MS has {c} bands but sensor {sensor.name} has {sensor.n_bands}")
    if pan.device != ms.device:
        raise InputError(f"ms is on {ms.device} but pan on {pan.device}")
    return Inputs(ms.to(torch.float64), pan.to(torch.float64), sensor, r, ms.dtype)


# ----------------------------------------------------------------------------- statistics
def mean2(x: Tensor) -> Tensor:
    """MATLAB ``mean2`` per sample and band, shape ``(B, C, 1, 1)``."""
    return x.mean(dim=(-2, -1), keepdim=True)


def std2(x: Tensor) -> Tensor:
    """MATLAB ``std2`` (``N - 1`` normalisation) per sample and band, ``(B, C, 1, 1)``."""
    return x.std(dim=(-2, -1), keepdim=True, correction=1)


def cov2(a: Tensor, b: Tensor) -> Tensor:
    """Off-diagonal of MATLAB ``cov(a(:), b(:))`` (``N - 1``), broadcast over bands."""
    n = a.shape[-2] * a.shape[-1]
    return ((a - mean2(a)) * (b - mean2(b))).sum(dim=(-2, -1), keepdim=True) / (n - 1)


def lstsq(a: Tensor, b: Tensor) -> Tensor:
    """Least-squares solution of ``a x = b`` per sample (MATLAB ``a \\ b``, global estimation).

    Args:
        a: ``(B, N, K)`` regressors, ``N >= K``.
        b: ``(B, N, M)`` targets.

    Returns:
        ``(B, K, M)``. Computed as a thin QR of ``a`` followed by an SVD of the ``K x K``
        factor; for full-rank ``a`` this is the unique solution (MATLAB's backslash), for a
        rank-deficient one the minimum-norm solution (MATLAB warns and returns a basic one).
        The same algorithm on CPU and CUDA.
    """
    q, r = torch.linalg.qr(a)
    u, s, vh = torch.linalg.svd(r)
    tol = s[..., :1] * max(a.shape[-2:]) * torch.finfo(a.dtype).eps
    s_inv = torch.where(s > tol, 1.0 / torch.where(s > tol, s, 1.0), 0.0)
    return vh.mT @ (s_inv[..., None] * (u.mT @ (q.mT @ b)))


def flat(x: Tensor) -> Tensor:
    """``(B, C, H, W)`` -> ``(B, H*W, C)`` (pixels as rows, bands as columns)."""
    return x.flatten(2).mT


def prctile_low(x: Tensor, p: float) -> Tensor:
    """MATLAB ``prctile(x(:), p)`` per sample and band, for a small percentage ``p``.

    MATLAB takes the sorted values as the ``100 (i - 0.5) / n`` percentiles and interpolates
    linearly between them (clamping outside): NumPy's ``method="hazen"``. Only the
    ``floor(p n / 100 + 0.5) + 1`` smallest values are needed (``torch.topk``).

    Returns:
        ``(B, C, 1, 1)``.
    """
    v = x.flatten(2)
    n = v.shape[-1]
    pos = min(max(p / 100.0 * n - 0.5, 0.0), n - 1.0)
    i0 = int(math.floor(pos))
    frac = pos - i0
    k = min(i0 + 2, n)
    low = torch.topk(v, k, dim=-1, largest=False, sorted=True).values
    lo = low[..., i0]
    hi = low[..., min(i0 + 1, k - 1)]
    return (lo + frac * (hi - lo))[..., None, None]


# ----------------------------------------------------------------------------- low-pass filters
def lp_filter_gauss(x: Tensor, ratio: int) -> Tensor:
    """Toolbox ``LPfilterGauss.m``: the GNyq = 0.3 Gaussian FIR low-pass, replicate borders.

    Built with :func:`tta.physics.mtf_filter` and the equivalent gain :data:`LPGAUSS_GAIN`
    (``LPfilterGauss.m`` uses ``N`` instead of ``N - 1`` in the Gaussian width). Like every
    kernel of :mod:`tta.physics` it sums exactly to 1 (the toolbox's sums to ~0.998).
    """
    return mtf_filter(x, LPGAUSS_GAIN, ratio, KERNEL_SIZE)


def _symmetric_pad(x: Tensor, pad: int, axis: int) -> Tensor:
    """Half-point symmetric extension by ``pad`` samples on both ends of ``axis``."""
    n = x.shape[axis]
    idx = torch.arange(-pad, n + pad, device=x.device).remainder(2 * n)
    idx = torch.where(idx >= n, 2 * n - 1 - idx, idx)
    return x.index_select(axis, idx)


def _b3_valid(x: Tensor, axis: int) -> Tensor:
    """Correlation with :data:`B3_TAPS` along ``axis``, valid part only (length ``n - 4``)."""
    n = x.shape[axis] - 4
    out = B3_TAPS[0] * x.narrow(axis, 0, n)
    for k in range(1, 5):
        out = out + B3_TAPS[k] * x.narrow(axis, k, n)
    return out


def ndwt_lowpass(x: Tensor, ratio: int) -> Tensor:
    """Approximation of the toolbox's undecimated wavelet transform with all details zeroed.

    Equals ``indwt2_working(WT, 'c')`` after ``WT = ndwt2_working(x, ceil(log2(ratio)),
    {h, g, htilde, gtilde})`` with every ``WT.dec{2:end}`` set to zero, as in
    ``LPfilterPlusDec.m`` (before its decimation) and ``AWLP.m``. Per axis, with
    ``J = ceil(log2(ratio))`` levels:

    * analysis: ``J`` times, half-point symmetric extension of the current approximation
      (``ndwt2``'s ``'sym'`` mode) and filtering with ``[1 4 6 4 1]/16``; each level grows
      the support by 4 samples (``ndwt2`` keeps ``n + 4`` coefficients, no decimation);
    * synthesis: ``J`` times, filtering the (enlarged) approximation with the same taps and
      keeping the central part, back to ``n`` samples.

    The ``sqrt(2)`` scaling of the toolbox filters and the ``1/4`` of ``indwt2`` cancel, so
    the operator has unit DC gain and preserves constants. The toolbox's ``ndwt2`` does not
    dilate the filters between levels (no "holes"): in the interior this is a convolution
    with ``[1 4 6 4 1]/16`` applied ``2 J`` times (17 taps for ``J = 2``), not the a-trous
    starlet scaling function.

    Args:
        x: ``(B, C, H, W)``.
        ratio: Scale ratio (sets ``J``).

    Returns:
        ``(B, C, H, W)``.
    """
    levels = max(1, math.ceil(math.log2(ratio)))
    for axis in (-1, -2):
        for _ in range(levels):
            x = _b3_valid(_symmetric_pad(x, 4, axis), axis)
        for _ in range(levels):
            x = _b3_valid(x, axis)
    return x
