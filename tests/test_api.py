"""The public API is a deliberate, small list of names."""

import tta
from tta import api

PUBLIC = {
    "InputError", "OutputError", "Scene", "Sensor", "SensorError", "TtaError",
    "coregistration_phases", "decimate", "degrade_scene", "evaluate", "fuse_scene",
    "list_methods", "pansharpen", "get_sensor", "interp23tap",
    "iter_scenes", "list_sensors", "local_correlation", "mtf_filter", "mtf_kernels",
    "pan_downsample", "read_scene", "write_fused", "write_geotiff", "write_h5",
    # adaptation
    "AdaptConfig", "AdaptResult", "Decomposition", "PhysicsLoss", "adapt", "adapt_scene",
    "create_adapter", "decompose", "load_adapter", "resolve_model", "save_adapter",
    "select_patches", "tiled_fuse",
    # band layouts, products of any tool, adapt once / apply many
    "plan_bands", "read_product", "conform_product", "save_adapted", "fuse_with_adapter",
    # benchmarks
    "load_matrix", "run_bench", "write_report",
    # many scenes
    "BatchResult", "get_executor", "list_executors", "run_batch",
    # runtime
    "retain_freed_memory",
}


def test_public_names_are_guarded():
    assert set(api.__all__) == PUBLIC


def test_lazy_top_level_access():
    for name in PUBLIC:
        assert getattr(tta, name) is getattr(api, name)


def test_api_example_from_readme(real_file):
    scene = tta.read_scene(real_file("wv2/wv2_grip_top_fr.h5"))
    reduced = tta.degrade_scene(scene)
    assert reduced.ms.shape == (8, 40, 80) and reduced.gt.shape == (8, 160, 320)
    assert (reduced.gt == scene.ms).all()
