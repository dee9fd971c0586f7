"""Classical pansharpening methods (reference rows of every benchmark, quick methods for users).

Batched torch re-implementations of the Vivone et al. pansharpening toolbox as shipped in
DLPan-Toolbox (``02-Test-toolbox-for-traditional-and-DL(Matlab)/``), called the way its
``Demo_Reduced_Resolution.m`` / ``Demo_Full_Resolution.m`` call them: ``I_MS`` is the LR MS
upsampled with ``interp23tap``, ``I_MS_LR`` the LR MS, ``I_PAN`` the PAN, plus the sensor's
MTF gains and the ratio.

=================  =========================================  ===========================
key                toolbox file                               function
=================  =========================================  ===========================
``exp``            ``Tools/interp23tap.m``                    :func:`~.mra.exp`
``bt-h``           ``BT-H/BroveyRegHazeMin.m``                :func:`~.cs.bt_h`
``gsa``            ``GS/GSA.m``                               :func:`~.cs.gsa`
``bdsd-pc``        ``BDSD/BDSD_PC.m``                         :func:`~.cs.bdsd_pc`
``mtf-glp-fs``     ``GLP/MTF_GLP_FS.m``                       :func:`~.mra.mtf_glp_fs`
``mtf-glp-hpm``    ``GLP/MTF_GLP_HPM.m``                      :func:`~.mra.mtf_glp_hpm`
``awlp``           ``AWLP/AWLP.m``                            :func:`~.mra.awlp`
=================  =========================================  ===========================

Every method takes ``ms`` ``(B, C, h, w)`` and ``pan`` ``(B, 1, ratio*h, ratio*w)`` in DN (or
any scale common to both: all seven are equivariant to a common positive scaling), runs on the
inputs' device in float64 and returns ``(B, C, H, W)`` in ``ms``'s dtype. Global statistics and
regressions are per sample. Only BDSD-PC leaves the device: its ``(C+1) x (C+1)`` constrained
least-squares problems are solved on the host with SciPy.

Common deliberate differences from the toolbox: every Gaussian/MTF kernel sums exactly to 1
(:func:`tta.physics.mtf_kernels`; the toolbox's sum to ~0.998), MATLAB's bicubic ``imresize``
is :func:`tta.physics.pan_downsample` / :func:`tta.physics.bicubic_upsample` (borders differ).
Method-specific ones are in each function's docstring.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from tta.classical.cs import bdsd_pc, bt_h, gsa
from tta.classical.mra import awlp, exp, mtf_glp_fs, mtf_glp_hpm
from tta.errors import InputError
from tta.sensors import Sensor

__all__ = [
    "METHODS",
    "awlp",
    "bdsd_pc",
    "bt_h",
    "exp",
    "fuse_scene",
    "gsa",
    "list_methods",
    "mtf_glp_fs",
    "mtf_glp_hpm",
    "pansharpen",
]

#: Registry: method key -> function ``f(ms, pan, *, sensor, ratio=None) -> Tensor``.
METHODS: dict[str, Callable[..., Tensor]] = {
    "exp": exp,
    "bt-h": bt_h,
    "gsa": gsa,
    "bdsd-pc": bdsd_pc,
    "mtf-glp-fs": mtf_glp_fs,
    "mtf-glp-hpm": mtf_glp_hpm,
    "awlp": awlp,
}


def list_methods() -> list[str]:
    """The registered method keys, in registry order (EXP first)."""
    return list(METHODS)


def _lookup(method: str) -> Callable[..., Tensor]:
    key = str(method).strip().lower().replace("_", "-")
    if key not in METHODS:
        raise InputError(
            f"unknown pansharpening method {method!r} (known: {', '.join(METHODS)})"
        )
    return METHODS[key]


def pansharpen(method: str, ms: Tensor, pan: Tensor, *, sensor: Sensor | str,
               ratio: int | None = None) -> Tensor:
    """Fuse a batch with one classical method.

    Args:
        method: Registry key (case-insensitive, ``_`` accepted for ``-``), see
            :func:`list_methods`.
        ms: LR multispectral ``(B, C, h, w)``, floating point, DN or any scale common with PAN.
        pan: Panchromatic ``(B, 1, ratio*h, ratio*w)``, same device.
        sensor: :class:`~tta.sensors.Sensor` or preset name / YAML path (MTF gains, band count,
            default ratio).
        ratio: PAN/MS ratio, a power of two (default: the sensor's).

    Returns:
        Fused ``(B, C, H, W)`` in ``ms``'s dtype and device (not clipped).

    Raises:
        InputError: Unknown method (the message lists the known ones), or inconsistent shapes,
            band count or ratio.
        SensorError: Unknown sensor.
    """
    return _lookup(method)(ms, pan, sensor=sensor, ratio=ratio)


def fuse_scene(scene, method: str, *, device: torch.device | str = "cpu") -> np.ndarray:
    """Fuse a :class:`~tta.io.Scene` with one classical method.

    Runs :func:`pansharpen` on the scene's MS and PAN (DN, float64 on ``device``) with its
    sensor and ratio. The product is clipped below at 0 (negative DN are not physical; some
    methods undershoot near sharp dark edges) but not above (``max_value`` is nominal), and
    set to 0 under the scene's nodata mask, if any (the :class:`~tta.io.Scene` storage
    convention; the global statistics of the methods do include those pixels).

    Args:
        scene: The scene (full or reduced resolution; ``gt`` is not used).
        method: Registry key.
        device: Torch device to compute on.

    Returns:
        ``(C, H, W)`` float32 array in DN.

    Raises:
        InputError: Unknown method, or an MS too small to fit the methods' statistics.
    """
    fn = _lookup(method)
    h, w = scene.ms.shape[1:]
    if min(h, w) < 3 or h * w < scene.n_bands + 2:
        raise InputError(f"{scene.source}: MS {h}x{w} is too small for {method} (at least "
                         f"3x3 and {scene.n_bands + 2} pixels: the methods fit band statistics)")
    dev = torch.device(device)
    ms = torch.from_numpy(np.ascontiguousarray(scene.ms)).to(dev, torch.float64)[None]
    pan = torch.from_numpy(np.ascontiguousarray(scene.pan)).to(dev, torch.float64)[None, None]
    with torch.no_grad():
        fused = fn(ms, pan, sensor=scene.sensor, ratio=scene.ratio)[0].clamp_min(0.0)
    out = fused.cpu().numpy().astype(np.float32)
    if scene.nodata is not None:
        out[:, scene.nodata] = 0.0
    return out
