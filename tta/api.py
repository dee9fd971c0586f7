"""The public Python API of tta, in one place.

``import tta`` exposes these names lazily (heavy dependencies load on first use)::

    import tta
    scene = tta.read_scene("wv2.h5", sensor="WV2")
    reduced = tta.degrade_scene(scene)          # Wald protocol, gt = original MS
"""

from __future__ import annotations

from tta.classical import fuse_scene, list_methods, pansharpen
from tta.errors import InputError, OutputError, SensorError, TtaError
from tta.evaluation import evaluate
from tta.io import (
    Scene,
    iter_scenes,
    read_scene,
    write_fused,
    write_geotiff,
    write_h5,
)
from tta.physics import (
    coregistration_phases,
    decimate,
    degrade_scene,
    interp23tap,
    local_correlation,
    mtf_filter,
    mtf_kernels,
    pan_downsample,
)
from tta.sensors import Sensor, get_sensor, list_sensors

__all__ = [
    "InputError",
    "OutputError",
    "Scene",
    "Sensor",
    "SensorError",
    "TtaError",
    "coregistration_phases",
    "decimate",
    "degrade_scene",
    "evaluate",
    "fuse_scene",
    "get_sensor",
    "interp23tap",
    "iter_scenes",
    "list_methods",
    "list_sensors",
    "local_correlation",
    "mtf_filter",
    "mtf_kernels",
    "pan_downsample",
    "pansharpen",
    "read_scene",
    "write_fused",
    "write_geotiff",
    "write_h5",
]
