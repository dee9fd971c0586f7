"""MTF-matched low-pass filters (Gaussian model of the sensor MTF, Kaiser-windowed FIR).

The filter of one band is a Gaussian whose frequency response equals the band's gain at the
Nyquist frequency of the MS grid (``GNyq``), turned into a ``size x size`` FIR filter with
MATLAB's ``fwind1`` and a Kaiser window, as in the Vivone et al. pansharpening toolbox
(``genMTF.m``, ``MTF.m``, ``MTF_PAN.m``).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tta.checks import check_bchw, check_gains, check_ratio
from tta.physics._pad import pad2d
from tta.sensors import Sensor, get_sensor

__all__ = [
    "MTFFilter",
    "depthwise_filter",
    "mtf_filter",
    "mtf_filter_ms",
    "mtf_filter_pan",
    "mtf_kernels",
]

Gains = Sequence[float] | Tensor | float

#: Kernel size above which :func:`depthwise_filter` uses FFT convolution in ``"auto"`` mode.
FFT_MIN_SIZE = 15


@contextmanager
def _full_fp32(device: torch.device) -> Iterator[None]:
    """Disable TF32 in cuDNN convolutions for the block (float32 filters stay float32-exact)."""
    if device.type != "cuda" or not torch.backends.cudnn.allow_tf32:
        yield
        return
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32 = True


def _check_size(size: int) -> int:
    if isinstance(size, bool) or int(size) != size or size < 3 or size % 2 == 0:
        raise ValueError(f"kernel size must be an odd integer >= 3, got {size!r}")
    return int(size)


def _rot180(a: np.ndarray) -> np.ndarray:
    return a[::-1, ::-1]


@lru_cache(maxsize=256)
def _kernel_f64(gain: float, ratio: int, size: int) -> Tensor:
    """One MTF kernel ``(size, size)`` in float64 on the CPU (cached; never hand out as is)."""
    n = size
    fcut = 1.0 / ratio
    alpha = math.sqrt(((n - 1) * (fcut / 2.0)) ** 2 / (-2.0 * math.log(gain)))
    # fspecial('gaussian', N, alpha), including its cut of values below eps * max.
    t = np.arange(n, dtype=np.float64) - (n - 1) / 2.0
    gauss = np.exp(-(t[:, None] ** 2 + t[None, :] ** 2) / (2.0 * alpha**2))
    gauss[gauss < np.finfo(np.float64).eps * gauss.max()] = 0.0
    gauss /= gauss.sum()
    hd = gauss / gauss.max()
    # fsamp2(Hd) = rot90(fftshift(ifft2(rot90(fftshift(rot90(Hd, 2)), 2))), 2)
    h = _rot180(np.fft.fftshift(np.fft.ifft2(_rot180(np.fft.fftshift(_rot180(hd))))))
    # fwind1 with a 1-D window: Huang's rotation of kaiser(N) (MATLAB default beta 0.5).
    win1 = np.kaiser(n, 0.5)
    tt = np.linspace(-1.0, 1.0, n)
    radius = np.hypot(tt[:, None], tt[None, :])
    win2 = np.interp(radius, tt, win1)
    win2[radius > 1.0] = 0.0
    kernel = np.real(h * win2)
    kernel = kernel / kernel.sum()  # deliberate: exact unit DC gain (see mtf_kernels)
    out = torch.from_numpy(np.ascontiguousarray(kernel))
    out.requires_grad_(False)
    return out


def mtf_kernels(
    gnyq: Gains,
    ratio: int,
    size: int = 41,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> Tensor:
    """MTF-matched FIR low-pass kernels, one per band.

    For each gain ``g``: ``alpha = sqrt(((N-1) * fcut/2)**2 / (-2 ln g))`` with ``fcut = 1/ratio``
    and ``N = size``; ``H = fspecial('gaussian', N, alpha)``; ``Hd = H / max(H)``; the kernel is
    ``real(fwind1(Hd, kaiser(N)))`` (frequency sampling ``fsamp2`` times a circularly symmetric
    window obtained by rotating the 1-D Kaiser window, beta 0.5). The Kaiser window and the
    truncation pull the response at the MS Nyquist frequency ``1/(2*ratio)`` cycles/pixel
    slightly below the design gain: measured ``g - 0.019 < response < g - 0.010`` for
    gains 0.1-0.7 at ratios 2 and 4 with ``size=41`` (the toolbox kernels do the same).
    Kernels are built once in float64 and cached per ``(gain, ratio, size)``.

    Args:
        gnyq: MTF gain at the MS Nyquist frequency per band (sequence or 1-D tensor of length
            C), or one scalar (giving one kernel). Values must lie in (0, 1).
        ratio: PAN/MS resolution ratio (the filter cuts at ``1/ratio`` of the PAN band).
        size: Odd kernel side ``N`` (toolbox default 41).
        device: Device of the returned tensor (default CPU).
        dtype: Dtype of the returned tensor (default ``torch.get_default_dtype()``).

    Returns:
        Tensor ``(C, size, size)``, each kernel symmetric, peaked at the centre, summing to 1.

    Raises:
        ValueError: A gain outside (0, 1), a ratio < 1 or an even/too small size.

    Reference:
        Vivone et al. pansharpening toolbox, ``genMTF.m`` / ``MTF.m`` / ``MTF_PAN.m``
        (Aiazzi et al., "MTF-tailored multiscale fusion of high-resolution MS and Pan
        imagery", PE&RS 2006). Deliberate difference: every kernel is renormalised to sum
        exactly 1, so a constant image is filtered to itself. The toolbox kernels sum to
        slightly less than 1: measured deviation at most 2.4e-3 (gains 0.1-0.7, ratios 2 and
        4, ``size=41``; 2.0e-3 for the WV3 MS and PAN gains), i.e. the toolbox darkens the
        filtered image by up to 0.24 %. Otherwise the kernels equal the toolbox's.
    """
    ratio = check_ratio(ratio)
    size = _check_size(size)
    gains = check_gains(gnyq)
    bank = torch.stack([_kernel_f64(g, ratio, size) for g in gains])
    return bank.to(device=device, dtype=dtype or torch.get_default_dtype())


def depthwise_filter(x: Tensor, kernels: Tensor, *, padding: str = "replicate",
                     method: str = "auto") -> Tensor:
    """Filter each channel with its own odd-sized 2-D kernel (correlation, like ``imfilter``).

    Args:
        x: Tensor ``(B, C, H, W)``.
        kernels: Tensor ``(K, k, k)``, ``k`` odd, cast to ``x``'s dtype and device. Either
            ``K = C`` (kernel ``i`` filters channel ``i``), ``K = 1`` (one kernel for all
            channels) or, when ``C = 1``, any ``K`` (the single channel filtered by every
            kernel, giving ``K`` output channels).
        padding: ``"replicate"`` or ``"circular"`` border handling.
        method: ``"direct"`` (``conv2d`` with ``groups=C``), ``"fft"`` (FFT convolution of the
            padded image; same result up to rounding, much faster for large kernels, notably
            in float64 on the CPU) or ``"auto"`` (FFT for ``k >= 15``). The direct path
            disables TF32 for its cuDNN call, so float32 stays float32-accurate on GPUs.

    Returns:
        Tensor ``(B, max(C, K), H, W)`` in ``x``'s dtype (half precision is computed in
        float32).

    Raises:
        ValueError: Bad shapes, an even kernel or an unknown method.

    Reference:
        MATLAB ``imfilter(I, h, 'replicate')`` (correlation, kernel centre at
        ``(k+1)/2``), applied band by band as in the toolbox ``MTF.m``.
    """
    check_bchw(x)
    if kernels.ndim != 3 or kernels.shape[-1] != kernels.shape[-2] or kernels.shape[-1] % 2 == 0:
        raise ValueError(f"kernels must be (C, k, k) with k odd, got {tuple(kernels.shape)}")
    b, c, h, w = x.shape
    n_k = kernels.shape[0]
    if n_k not in (1, c) and c != 1:
        raise ValueError(f"{n_k} kernels for {c} channels")
    if method not in ("auto", "direct", "fft"):
        raise ValueError(f"unknown filtering method {method!r}")
    out_dtype = x.dtype
    work = torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype
    x = x.to(work)
    k = kernels.shape[-1]
    out_c = max(c, n_k)
    kernels = kernels.to(device=x.device, dtype=work).expand(out_c, k, k)
    p = k // 2
    xp = pad2d(x, p, padding)
    if method == "direct" or (method == "auto" and k < FFT_MIN_SIZE):
        with _full_fp32(x.device):
            y = F.conv2d(xp, kernels.unsqueeze(1), groups=c)
    else:  # broadcasting also covers one channel x K kernels (the PAN spectrum is shared)
        hp, wp = xp.shape[-2:]
        spec = torch.fft.rfft2(xp, s=(hp, wp))
        kspec = torch.fft.rfft2(kernels.flip(-2, -1), s=(hp, wp))
        y = torch.fft.irfft2(spec * kspec, s=(hp, wp))[..., 2 * p : 2 * p + h, 2 * p : 2 * p + w]
    return y.to(out_dtype)


def mtf_filter(x: Tensor, gnyq: Gains, ratio: int, size: int = 41, *,
               method: str = "auto") -> Tensor:
    """Low-pass each band with its MTF-matched kernel (replicate borders).

    Args:
        x: Tensor ``(B, C, H, W)``.
        gnyq: Nyquist gain per band (length C) or one scalar for all bands.
        ratio: PAN/MS resolution ratio.
        size: Odd kernel side (toolbox default 41).
        method: See :func:`depthwise_filter`.

    Returns:
        Tensor ``(B, C, H, W)``, same dtype and device as ``x``; differentiable in ``x``.

    Raises:
        ValueError: Wrong number of gains, gains outside (0, 1), bad shapes.

    Reference:
        Toolbox ``MTF.m``: ``imfilter(I(:,:,b), real(h_b), 'replicate')`` per band; our
        kernels sum exactly to 1 (see :func:`mtf_kernels`).
    """
    check_bchw(x)
    gains = check_gains(gnyq, x.shape[1])
    kernels = mtf_kernels(gains, ratio, size, device=x.device, dtype=torch.float64)
    return depthwise_filter(x, kernels, padding="replicate", method=method)


def mtf_filter_ms(x: Tensor, sensor: Sensor | str, size: int = 41) -> Tensor:
    """:func:`mtf_filter` with a sensor's MS gains and ratio (``x`` has the sensor's bands).

    Args:
        x: Tensor ``(B, C, H, W)``, ``C = sensor.n_bands``.
        sensor: :class:`~tta.sensors.Sensor` or a preset name.
        size: Odd kernel side.

    Returns:
        Tensor ``(B, C, H, W)``.

    Raises:
        ValueError: ``x`` does not have the sensor's band count.

    Reference:
        Toolbox ``MTF.m`` (``GNyq`` from ``sensor.mtf_ms``).
    """
    sensor = get_sensor(sensor)
    return mtf_filter(x, sensor.mtf_ms, sensor.ratio, size)


def mtf_filter_pan(x: Tensor, sensor: Sensor | str, size: int = 41) -> Tensor:
    """:func:`mtf_filter` with a sensor's PAN gain (every channel of ``x`` gets it).

    Args:
        x: Tensor ``(B, C, H, W)``, usually ``C = 1``.
        sensor: :class:`~tta.sensors.Sensor` or a preset name.
        size: Odd kernel side.

    Returns:
        Tensor ``(B, C, H, W)``.

    Reference:
        Toolbox ``MTF_PAN.m`` (``GNyq`` from ``sensor.mtf_pan``).
    """
    sensor = get_sensor(sensor)
    return mtf_filter(x, sensor.mtf_pan, sensor.ratio, size)


class MTFFilter(nn.Module):
    """Module form of :func:`mtf_filter` holding its kernels as a (non-persistent) buffer.

    Useful in training loops: the kernels are built once and move with ``.to(device)``.

    Args:
        gnyq: Nyquist gain per band, or one scalar applied to any number of channels.
        ratio: PAN/MS resolution ratio.
        size: Odd kernel side.
        method: See :func:`depthwise_filter`.

    Reference:
        Toolbox ``MTF.m`` / ``MTF_PAN.m``; kernels as in :func:`mtf_kernels`.
    """

    kernels: Tensor

    def __init__(self, gnyq: Gains, ratio: int, size: int = 41, method: str = "auto"):
        super().__init__()
        self.gains = check_gains(gnyq)
        self.ratio = check_ratio(ratio)
        self.method = method
        self.register_buffer("kernels", mtf_kernels(self.gains, ratio, size,
                                                    dtype=torch.float64), persistent=False)

    @classmethod
    def from_sensor(cls, sensor: Sensor | str, *, pan: bool = False, size: int = 41) -> MTFFilter:
        """The MS (default) or PAN filter of a sensor."""
        sensor = get_sensor(sensor)
        return cls(sensor.mtf_pan if pan else sensor.mtf_ms, sensor.ratio, size)

    def forward(self, x: Tensor) -> Tensor:
        """Filter ``x`` ``(B, C, H, W)``; returns the same shape."""
        check_bchw(x)
        if len(self.gains) not in (1, x.shape[1]):
            raise ValueError(f"filter has {len(self.gains)} gains, input {x.shape[1]} channels")
        return depthwise_filter(x, self.kernels, method=self.method)

    def extra_repr(self) -> str:
        return f"gains={self.gains}, ratio={self.ratio}, size={self.kernels.shape[-1]}"
