"""The public Python API of tta, in one place.

``import tta`` exposes these names lazily (heavy dependencies load on first use)::

    import tta
    scene = tta.read_scene("wv2.h5", sensor="WV2")
    reduced = tta.degrade_scene(scene)          # Wald protocol, gt = original MS
"""

from __future__ import annotations

from adapters import create_adapter, load_adapter, save_adapter
from tta.allocator import retain_freed_memory
from tta.batch import BatchResult, run_batch
from tta.bench import load_matrix, run_bench, write_report
from tta.classical import fuse_scene, list_methods, pansharpen
from tta.decomposition import Decomposition, decompose
from tta.engine import AdaptConfig, AdaptResult, adapt, adapt_scene, tiled_fuse
from tta.engine.bands import plan_bands
from tta.engine.reuse import fuse_with_adapter, save_adapted
from tta.errors import InputError, OutputError, SensorError, TtaError
from tta.evaluation import evaluate
from tta.executors import get_executor, list_executors
from tta.io import (
    Scene,
    iter_scenes,
    read_scene,
    write_fused,
    write_geotiff,
    write_h5,
)
from tta.io.product import conform_product, read_product
from tta.losses import PhysicsLoss
from tta.models import resolve_model
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
from tta.sampling import select_patches
from tta.sensors import Sensor, get_sensor, list_sensors

__all__ = [
    "AdaptConfig",
    "AdaptResult",
    "BatchResult",
    "Decomposition",
    "InputError",
    "OutputError",
    "PhysicsLoss",
    "Scene",
    "Sensor",
    "SensorError",
    "TtaError",
    "adapt",
    "adapt_scene",
    "conform_product",
    "coregistration_phases",
    "create_adapter",
    "decimate",
    "decompose",
    "degrade_scene",
    "evaluate",
    "fuse_scene",
    "fuse_with_adapter",
    "get_executor",
    "get_sensor",
    "interp23tap",
    "load_matrix",
    "iter_scenes",
    "list_executors",
    "list_methods",
    "list_sensors",
    "load_adapter",
    "local_correlation",
    "mtf_filter",
    "mtf_kernels",
    "pan_downsample",
    "pansharpen",
    "plan_bands",
    "read_product",
    "read_scene",
    "resolve_model",
    "retain_freed_memory",
    "run_batch",
    "run_bench",
    "save_adapted",
    "save_adapter",
    "select_patches",
    "tiled_fuse",
    "write_fused",
    "write_geotiff",
    "write_report",
    "write_h5",
]
