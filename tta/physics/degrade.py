"""Decimation and Wald-protocol degradation (reduced-resolution pairs from real pairs)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tta.checks import check_bchw, check_gains, check_ratio
from tta.physics.mtf import Gains, MTFFilter, mtf_filter
from tta.sensors import Sensor, get_sensor

if TYPE_CHECKING:
    from tta.io.scene import Scene

__all__ = ["WaldDegrade", "decimate", "degrade_scene", "pan_downsample", "wald_degrade"]

Phase = tuple[int, int] | Tensor | np.ndarray


def _check_divisible(x: Tensor, ratio: int, what: str) -> tuple[int, int]:
    big_h, big_w = x.shape[-2:]
    if big_h % ratio or big_w % ratio:
        raise ValueError(f"{what} size {big_h}x{big_w} is not divisible by ratio {ratio}")
    return big_h // ratio, big_w // ratio


def decimate(x: Tensor, ratio: int, phase: Phase | None = None) -> Tensor:
    """Keep one pixel of every ``ratio x ratio`` block (nearest-neighbour decimation).

    Args:
        x: Tensor ``(B, C, H, W)`` with ``H`` and ``W`` divisible by ``ratio``.
        ratio: Decimation factor.
        phase: Offset ``(dy, dx)`` of the kept pixel inside each block, each in
            ``[0, ratio)``. Default ``(ratio//2, ratio//2)``: 0-based rows/columns 2, 6, 10, ...
            for ratio 4 and 1, 3, 5, ... for ratio 2. Also accepted: a per-band integer
            tensor/array ``(C, 2)`` or a per-sample-and-band ``(B, C, 2)`` one (e.g. the output
            of :func:`~tta.physics.coregistration_phases`), applied with one gather.

    Returns:
        Tensor ``(B, C, H/ratio, W/ratio)``; differentiable in ``x``.

    Raises:
        ValueError: Sizes not divisible by ``ratio``, a phase outside ``[0, ratio)`` (checked
            for Python/NumPy phases and CPU tensors) or of the wrong shape.

    Reference:
        Toolbox ``resize_images.m``: ``imresize(I_LP, 1/ratio, 'nearest')``, whose samples
        are the 1-based indices ``ratio/2 + 1 + ratio*k`` (0-based ``ratio//2 + ratio*k``).
    """
    check_bchw(x)
    ratio = check_ratio(ratio)
    b, c = x.shape[:2]
    h, w = _check_divisible(x, ratio, "input")
    if phase is None:
        phase = (ratio // 2, ratio // 2)
    if not isinstance(phase, Tensor):
        arr = np.asarray(phase)
        if arr.dtype.kind not in "iu":
            raise ValueError(f"phase must hold integers, got {arr.dtype}")
        if arr.size and (arr.min() < 0 or arr.max() >= ratio):
            raise ValueError(f"phase offsets must lie in [0, {ratio}), got {arr.tolist()}")
        if arr.shape == (2,):
            dy, dx = int(arr[0]), int(arr[1])
            return x[..., dy::ratio, dx::ratio]
        phase = torch.as_tensor(arr, dtype=torch.long, device=x.device)
    phase = phase.to(device=x.device, dtype=torch.long)
    # Checked on CPU in eager mode only (a GPU check would synchronise; a compiled graph
    # would break on the data-dependent branch).
    if phase.device.type == "cpu" and phase.numel() and not torch.compiler.is_compiling() and (
        bool(phase.min() < 0) or bool(phase.max() >= ratio)
    ):
        raise ValueError(f"phase offsets must lie in [0, {ratio}), got {phase.tolist()}")
    if phase.shape == (2,):
        phase = phase.expand(c, 2)
    blocks = x.reshape(b, c, h, ratio, w, ratio).permute(0, 1, 3, 5, 2, 4)  # (B,C,r,r,h,w)
    chan = torch.arange(c, device=x.device)
    if phase.shape == (c, 2):
        return blocks[:, chan, phase[:, 0], phase[:, 1]]
    if phase.shape == (b, c, 2):
        batch = torch.arange(b, device=x.device)[:, None]
        return blocks[batch, chan[None, :], phase[..., 0], phase[..., 1]]
    raise ValueError(f"phase must be (2,), ({c}, 2) or ({b}, {c}, 2), got {tuple(phase.shape)}")


def pan_downsample(pan: Tensor, ratio: int) -> Tensor:
    """Bicubic, antialiased downsampling by ``ratio`` (the Wald-protocol PAN degradation).

    Args:
        pan: Tensor ``(B, C, H, W)`` (usually ``C = 1``), ``H`` and ``W`` divisible by
            ``ratio``.
        ratio: Downsampling factor.

    Returns:
        Tensor ``(B, C, H/ratio, W/ratio)``, same dtype (half precision is computed in
        float32); differentiable in ``pan``. May undershoot below the input's minimum near
        sharp edges (cubic kernel lobes).

    Raises:
        ValueError: Sizes not divisible by ``ratio``.

    Reference:
        MATLAB ``imresize(I, 1/ratio)`` (bicubic, ``a = -0.5``, kernel stretched by ``ratio``
        for antialiasing), as used for PAN by the toolbox ``resize_images.m``; implemented
        with ``F.interpolate(mode="bicubic", antialias=True, align_corners=False)``, which
        uses the same kernel and pixel-centre convention. Difference: only at the borders,
        where MATLAB mirrors the out-of-image indices and torch drops them and renormalises
        the remaining weights.
    """
    check_bchw(pan, "pan")
    ratio = check_ratio(ratio)
    h, w = _check_divisible(pan, ratio, "PAN")
    if ratio == 1:
        return pan
    work = torch.float32 if pan.dtype in (torch.float16, torch.bfloat16) else pan.dtype
    out = F.interpolate(pan.to(work), size=(h, w), mode="bicubic", antialias=True,
                        align_corners=False)
    return out.to(pan.dtype)


def _sensor_gains(gnyq_ms: Gains | Sensor | str, ratio: int | None) -> tuple[Gains, int]:
    if isinstance(gnyq_ms, Sensor | str):
        sensor = get_sensor(gnyq_ms)
        return sensor.mtf_ms, int(ratio if ratio is not None else sensor.ratio)
    if ratio is None:
        raise ValueError("ratio is required when MTF gains (not a sensor) are given")
    return gnyq_ms, int(ratio)


def wald_degrade(
    ms: Tensor,
    pan: Tensor,
    gnyq_ms: Gains | Sensor | str,
    ratio: int | None = None,
    *,
    size: int = 41,
    clip_min: float | None = None,
) -> tuple[Tensor, Tensor]:
    """Wald-protocol degradation of a PAN/MS pair by the resolution ratio.

    MS: MTF-matched low-pass (:func:`~tta.physics.mtf_filter`, replicate borders) then
    :func:`decimate` at the default phase; PAN: :func:`pan_downsample`.

    Args:
        ms: Tensor ``(B, C, h, w)``, ``h`` and ``w`` divisible by ``ratio``.
        pan: Tensor ``(B, P, ratio*h, ratio*w)`` (usually ``P = 1``).
        gnyq_ms: MS Nyquist gains (per band or one scalar), or a sensor / preset name (its
            ``mtf_ms`` and, unless ``ratio`` is given, its ``ratio``).
        ratio: Resolution ratio (required with plain gains).
        size: Odd MTF kernel side.
        clip_min: Lower bound applied to both outputs (``0.0`` keeps DN non-negative: the
            bicubic PAN kernel and the MTF kernels' small negative lobes can undershoot);
            ``None`` (default) keeps the linear operator.

    Returns:
        ``(ms_lr, pan_lr)``: tensors ``(B, C, h/ratio, w/ratio)`` and ``(B, P, h, w)``.

    Raises:
        ValueError: Inconsistent shapes, gains or ratio.

    Reference:
        Toolbox ``resize_images.m`` with its defaults (``flag_resize_new = 2``,
        ``flag_PAN_MTF = 0``): ``imresize(MTF(I_MS), 1/ratio, 'nearest')`` and
        ``imresize(I_PAN, 1/ratio)``; Wald et al., "Fusion of satellite images of different
        spatial resolutions: assessing the quality of resulting images", PE&RS 1997.
    """
    check_bchw(ms, "ms")
    check_bchw(pan, "pan")
    gains, ratio = _sensor_gains(gnyq_ms, ratio)
    ratio = check_ratio(ratio)
    h, w = ms.shape[-2:]
    if pan.shape[0] != ms.shape[0] or tuple(pan.shape[-2:]) != (ratio * h, ratio * w):
        raise ValueError(
            f"PAN {tuple(pan.shape)} does not match MS {tuple(ms.shape)} at ratio {ratio}"
        )
    ms_lr = decimate(mtf_filter(ms, gains, ratio, size), ratio)
    pan_lr = pan_downsample(pan, ratio)
    if clip_min is not None:
        ms_lr, pan_lr = ms_lr.clamp_min(clip_min), pan_lr.clamp_min(clip_min)
    return ms_lr, pan_lr


class WaldDegrade(nn.Module):
    """Module form of :func:`wald_degrade` (MTF kernels held as a buffer).

    Args:
        gnyq_ms: MS Nyquist gains, or a sensor / preset name.
        ratio: Resolution ratio (default: the sensor's).
        size: Odd MTF kernel side.
        clip_min: See :func:`wald_degrade`.

    Reference:
        Toolbox ``resize_images.m`` (see :func:`wald_degrade`).
    """

    def __init__(self, gnyq_ms: Gains | Sensor | str, ratio: int | None = None,
                 size: int = 41, clip_min: float | None = None):
        super().__init__()
        gains, ratio = _sensor_gains(gnyq_ms, ratio)
        self.ratio = check_ratio(ratio)
        self.clip_min = clip_min
        self.mtf = MTFFilter(check_gains(gains), self.ratio, size)

    def forward(self, ms: Tensor, pan: Tensor) -> tuple[Tensor, Tensor]:
        """Degrade ``ms`` ``(B, C, h, w)`` and ``pan`` ``(B, P, r*h, r*w)``."""
        h, w = ms.shape[-2:]
        if tuple(pan.shape[-2:]) != (self.ratio * h, self.ratio * w):
            raise ValueError(f"PAN {tuple(pan.shape)} does not match MS {tuple(ms.shape)}")
        ms_lr = decimate(self.mtf(ms), self.ratio)
        pan_lr = pan_downsample(pan, self.ratio)
        if self.clip_min is not None:
            ms_lr, pan_lr = ms_lr.clamp_min(self.clip_min), pan_lr.clamp_min(self.clip_min)
        return ms_lr, pan_lr


def degrade_scene(
    scene: Scene,
    *,
    size: int = 41,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float64,
) -> Scene:
    """A reduced-resolution (Wald) scene from a full-resolution one.

    The new scene has ``ms = decimate(MTF_ms(scene.ms))``, ``pan = pan_downsample(scene.pan)``
    and ``gt = scene.ms``; sensor, ratio, max value, band names, ``nodata_value`` and CRS are
    kept; the geotransform is scaled by the ratio (the new PAN grid is the old MS grid). Both
    inputs are clipped at 0 after filtering: DN must stay non-negative and the bicubic PAN
    kernel (and the MTF kernels' small negative lobes) can undershoot near sharp dark edges.

    If the MS height or width is not a multiple of the ratio, the scene is first cropped at
    the bottom/right to the largest multiple (the PAN to ``ratio`` times that; the top-left
    corner, hence the geotransform origin, is kept) and ``meta["crop"]`` records it.

    Nodata: the new PAN-grid mask is the old MS-grid invalidity (``~scene.ms_valid()``), or
    None when nothing is masked; values under the new masks are set to 0 (the storage
    convention of :class:`~tta.io.Scene`). Valid pixels within the filter support of a nodata
    area are mixed with those zeros, as in any filtering of a masked scene.

    Args:
        scene: Full-resolution scene (a reduced one is degraded once more; its ``gt`` is
            dropped).
        size: Odd MTF kernel side.
        device: Torch device to compute on (default CPU).
        dtype: Computation dtype (default float64; results are stored as float32).

    Returns:
        A new validated :class:`~tta.io.Scene` with ``ms`` ``(C, h'/r, w'/r)``, ``pan``
        ``(h', w')`` and ``gt`` ``(C, h', w')`` where ``h', w'`` are the (cropped) MS sizes;
        ``source`` gets the suffix ``" (Wald-degraded)"`` and ``meta`` gains
        ``"degraded_from"`` (the old source) and ``"degradation"`` (what was done).

    Raises:
        tta.errors.InputError: The MS is smaller than ``ratio`` pixels in a dimension.

    Reference:
        Toolbox ``resize_images.m`` defaults (see :func:`wald_degrade`).
    """
    from tta.errors import InputError

    r = int(scene.ratio)
    c, h, w = scene.ms.shape
    h2, w2 = h - h % r, w - w % r
    if h2 == 0 or w2 == 0:
        raise InputError(
            f"{scene.source}: MS {h}x{w} is too small to degrade by ratio {r} "
            f"(need at least {r}x{r} MS pixels)"
        )
    meta = dict(scene.meta)
    ms = scene.ms[:, :h2, :w2]
    pan = scene.pan[: r * h2, : r * w2]
    nodata = None if scene.nodata is None else scene.nodata[: r * h2, : r * w2]
    if (h2, w2) != (h, w):
        meta["crop"] = {
            "ms_shape_before": [h, w],
            "ms_shape_after": [h2, w2],
            "pan_shape_after": [r * h2, r * w2],
            "anchor": "top-left",
        }
    if nodata is not None:
        new_nodata = nodata.reshape(h2, r, w2, r).any(axis=(1, 3))
        if not new_nodata.any():
            new_nodata = None
    else:
        new_nodata = None

    ms_t = torch.from_numpy(np.ascontiguousarray(ms)).to(device=device, dtype=dtype)[None]
    pan_t = torch.from_numpy(np.ascontiguousarray(pan)).to(device=device, dtype=dtype)[None, None]
    with torch.no_grad():
        ms_lr_t, pan_lr_t = wald_degrade(ms_t, pan_t, scene.sensor.mtf_ms, r, size=size,
                                         clip_min=0.0)
    ms_lr = ms_lr_t[0].cpu().numpy().astype(np.float32)
    pan_lr = pan_lr_t[0, 0].cpu().numpy().astype(np.float32)
    gt = np.array(ms, dtype=np.float32, copy=True)
    if new_nodata is not None:
        pan_lr[new_nodata] = 0.0
        gt[:, new_nodata] = 0.0
        ms_invalid = new_nodata.reshape(h2 // r, r, w2 // r, r).any(axis=(1, 3))
        ms_lr[:, ms_invalid] = 0.0

    transform = scene.transform
    if transform is not None:
        from affine import Affine

        scale = Affine.scale(r)
        # affine >= 2.4 composes with @ (``*`` is deprecated there); older versions use ``*``
        transform = transform @ scale if hasattr(transform, "__matmul__") else transform * scale
    meta["degraded_from"] = scene.source
    meta["degradation"] = {
        "protocol": "Wald",
        "ms": f"MTF low-pass (GNyq {list(scene.sensor.mtf_ms)}, {size}x{size}, replicate) "
              f"+ decimation at phase ({r // 2}, {r // 2})",
        "pan": f"bicubic antialiased downsampling by {r}",
        "clip_min": 0.0,
    }
    return scene.with_(
        ms=ms_lr,
        pan=pan_lr,
        gt=gt,
        nodata=new_nodata,
        transform=transform,
        source=f"{scene.source} (Wald-degraded)",
        meta=meta,
    )
