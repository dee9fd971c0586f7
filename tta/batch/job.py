"""One scene of a batch: adapt, fuse, write the product and its report (runs in a worker).

The work is the one ``tta adapt`` does (:func:`tta.io.read_scene`,
:func:`tta.models.resolve_model`, :func:`tta.engine.adapt_scene`,
:func:`tta.io.write_fused`), with the same recipe and options. The product is written first
and the report last, both atomically, so a report on disk marks a finished scene. A job
never raises for a problem of its scene: it returns a failed result with a one-line error.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

__all__ = ["SceneJob", "failed_result", "run_scene_job"]


@dataclass(frozen=True)
class SceneJob:
    """Everything one scene's task needs (plain data, picklable).

    Attributes:
        name: Output name of the scene.
        spec: Scene spec.
        product: Product path (``.h5`` or ``.tif``).
        report: Report path (JSON).
        model: ``--model`` of ``tta adapt``; ``weights``, ``sensor``, ``max_value``,
            ``config_path``, ``interface``, ``compare``, ``dtype``, ``device`` likewise.
        overrides: AdaptConfig fields given for this scene or the batch.
        batch: Provenance stored in the report under ``"batch"`` (input digest, options
            digest), checked by :func:`tta.batch.verify.verify_outputs` on a rerun.
    """

    name: str
    spec: str
    product: str
    report: str
    model: str
    weights: str | None = None
    sensor: str | None = None
    max_value: float | None = None
    config_path: str | None = None
    interface: str | None = None
    compare: bool = True
    dtype: str = "uint16"
    device: str = "auto"
    overrides: dict[str, Any] = field(default_factory=dict)
    batch: dict[str, Any] = field(default_factory=dict)


def _one_line(exc: BaseException) -> str:
    from tta.errors import TtaError
    from tta.memory import is_out_of_memory, out_of_memory_error

    if isinstance(exc, TtaError):
        text = str(exc)
    elif is_out_of_memory(exc):
        text = str(out_of_memory_error())
    else:
        text = f"internal error: {type(exc).__name__}: {exc}"
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[0] if lines else type(exc).__name__


def failed_result(job: SceneJob, exc: BaseException | str, wall: float = 0.0) -> dict[str, Any]:
    """The result of a scene that failed with ``exc`` (an exception or a message)."""
    error = exc if isinstance(exc, str) else _one_line(exc)
    return {"name": job.name, "scene": job.spec, "status": "failed", "error": error,
            "wall_s": wall, "product": job.product, "report": None}


def run_scene_job(job: SceneJob) -> dict[str, Any]:
    """Adapt and fuse one scene; returns ``{"status": "done", "report": {...}}`` or a failed
    result (:func:`failed_result`)."""
    t0 = time.perf_counter()
    try:
        return _run(job, t0)
    except Exception as exc:  # the scene's problem: reported, the batch goes on
        return failed_result(job, exc, time.perf_counter() - t0)


def _run(job: SceneJob, t0: float) -> dict[str, Any]:
    import torch

    from tta.checks import check_adapt_config, check_adapt_scene
    from tta.engine import AdaptConfig, adapt_scene
    from tta.io import parse_spec, read_scene, write_fused
    from tta.io.product import write_json
    from tta.memory import guard_memory
    from tta.models import model_files, resolve_model

    cfg = AdaptConfig.from_yaml(job.config_path) if job.config_path else AdaptConfig()
    cfg = cfg.replace(**job.overrides)
    check_adapt_config(cfg)
    inputs = [str(p) for p in (*parse_spec(job.spec).files,
                               *model_files(job.model, job.weights))]
    scene = read_scene(job.spec, sensor=job.sensor, max_value=job.max_value)
    check_adapt_scene(cfg, scene)
    model = resolve_model(job.model, weights=job.weights, sensor=scene.sensor)
    t_load = time.perf_counter() - t0
    with guard_memory(scene, None if job.device == "auto" else job.device):
        result = adapt_scene(model, scene, config=cfg, device=job.device,
                             interface=job.interface, compare=job.compare)
        report = result.report
        if not report.get("metrics"):  # no-reference indexes of the product for the summary
            from tta.evaluation import evaluate

            report["metrics"] = {"adapted": evaluate(scene, result.fused, "fr", job.device)}
        t1 = time.perf_counter()
        write_fused(job.product, scene, result.fused, dtype=job.dtype, overwrite=True)
    report["timings"]["load"] = t_load
    report["timings"]["write"] = time.perf_counter() - t1
    report["output"] = job.product
    report["batch"] = {**job.batch, "name": job.name, "scene": job.spec,
                       "threads": torch.get_num_threads()}
    report["timings"]["wall"] = time.perf_counter() - t0
    write_json(job.report, report, inputs=inputs, overwrite=True)
    return {"name": job.name, "scene": job.spec, "status": "done", "error": None,
            "wall_s": report["timings"]["wall"], "product": job.product,
            "report": report}
