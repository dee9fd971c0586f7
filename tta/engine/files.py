"""Adapt a scene file and write its product: the file-to-file path of ``tta adapt``.

Shared by ``tta adapt`` (:mod:`tta.cli.adapt`) and each scene of ``tta batch``
(:mod:`tta.batch.job`), so both run the same recipe: read the scene, check the settings
against it, load the model, :func:`tta.engine.adapt_scene`, write the product atomically.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from tta.engine.adapt import AdaptResult
from tta.engine.config import AdaptConfig

__all__ = ["adapt_file"]


def adapt_file(target: str, output: str | Path, *, model: str, weights: str | None = None,
               config: AdaptConfig | None = None, sensor: Any = None,
               bands: str | None = None, max_value: float | None = None,
               interface: str | None = None,
               compare: bool = True, device: str = "auto", dtype: str = "uint16",
               overwrite: bool = False, progress: bool = False,
               nr_metrics: bool = False) -> tuple[AdaptResult, Any]:
    """Adapt ``model`` to the scene ``target`` and write the fused product to ``output``.

    Args:
        target: Scene spec (:func:`tta.io.parse_spec`).
        output: Product path, ``.h5`` or ``.tif`` (:func:`tta.io.write_fused`).
        model, weights: As :func:`tta.models.resolve_model`.
        config: Settings (checked against the scene before any work).
        nr_metrics: When the run does not ``compare``, still score the product with the
            full-resolution no-reference indexes (``report["metrics"]["adapted"]["fr"]``).
        sensor, bands, max_value, interface, compare, device, dtype, overwrite, progress: As
            ``tta adapt``.

    Returns:
        ``(result, plan)``: ``result.report`` has ``timings.load``, ``timings.write`` and
        ``output`` added; ``plan`` is the network's band layout matched to the scene's
        (:func:`tta.engine.bands.plan_bands`).
    """
    from tta.checks import check_adapt_scene
    from tta.engine.adapt import adapt_scene
    from tta.io import read_scene, write_fused
    from tta.memory import guard_memory
    from tta.models import resolve_model

    cfg = config or AdaptConfig()
    t0 = time.perf_counter()
    scene = read_scene(target, sensor=sensor, max_value=max_value, bands=bands)
    check_adapt_scene(cfg, scene)
    # the network's band layout is matched to the scene's by name (tta.engine.bands)
    net = resolve_model(model, weights=weights)
    from tta.engine.bands import plan_bands

    plan = plan_bands(net, scene)
    t_load = time.perf_counter() - t0
    with guard_memory(scene, None if device == "auto" else device):
        result = adapt_scene(net, scene, config=cfg, device=device, interface=interface,
                             compare=compare, progress=progress)
        if nr_metrics and not result.report.metrics:
            from tta.evaluation import evaluate

            result.report.metrics = {"adapted": evaluate(scene, result.fused, "fr", device)}
        t1 = time.perf_counter()
        write_fused(output, scene, result.fused, dtype=dtype, overwrite=overwrite)
    result.report.timings["load"] = t_load
    result.report.timings["write"] = time.perf_counter() - t1
    result.report.output = str(output)
    return result, plan
