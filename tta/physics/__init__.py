"""Differentiable image-formation operators for pansharpening (pure, batched torch).

Every operator takes ``(B, C, H, W)`` tensors, builds its kernels on the input's device and
dtype, runs on CPU and CUDA, and follows the Vivone et al. pansharpening toolbox unless its
docstring's ``Reference:`` line says otherwise:

* :func:`mtf_kernels`, :func:`mtf_filter` (+ ``_ms``/``_pan`` sensor forms, :class:`MTFFilter`)
  - MTF-matched Gaussian low-pass filters (``genMTF.m``, ``MTF.m``, ``MTF_PAN.m``);
* :class:`MTFDecimation`, :func:`mtf_decimate` - MTF filtering and decimation as one operator
  (only the kept samples; the spectral losses' projection);
* :func:`decimate`, :func:`pan_downsample`, :func:`wald_degrade`, :func:`degrade_scene`
  (:class:`WaldDegrade`) - Wald-protocol reduced-resolution pairs (``resize_images.m``);
* :func:`interp23tap`, :func:`bicubic_upsample` - MS upsampling (``interp23tap.m``);
* :func:`local_correlation`, :func:`coregistration_phases` - correlation maps and the
  PAN decimation phase that best matches each MS band.

Pixel grid convention: MS pixel ``i`` corresponds to PAN index ``ratio*i + ratio//2``
(:func:`decimate`'s default phase and :func:`interp23tap`'s output grid).
"""

from tta.physics.correlation import coregistration_phases, local_correlation
from tta.physics.degrade import (
    WaldDegrade,
    decimate,
    degrade_scene,
    pan_downsample,
    wald_degrade,
)
from tta.physics.interp import CDF23, bicubic_upsample, interp23tap, interp23tap_kernel
from tta.physics.mtf import (
    MTFFilter,
    depthwise_filter,
    mtf_filter,
    mtf_filter_ms,
    mtf_filter_pan,
    mtf_kernels,
)
from tta.physics.reproject import MTFDecimation, mtf_decimate

__all__ = [
    "CDF23",
    "MTFDecimation",
    "MTFFilter",
    "WaldDegrade",
    "bicubic_upsample",
    "coregistration_phases",
    "decimate",
    "degrade_scene",
    "depthwise_filter",
    "interp23tap",
    "interp23tap_kernel",
    "local_correlation",
    "mtf_filter",
    "mtf_filter_ms",
    "mtf_filter_pan",
    "mtf_decimate",
    "mtf_kernels",
    "pan_downsample",
    "wald_degrade",
]
