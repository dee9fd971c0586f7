"""One scene of a batch: adapt, fuse, write the product and its report (runs in a worker).

The work is the one ``tta adapt`` does, through the same function
(:func:`tta.engine.files.adapt_file`), with the same recipe and options. The product is
written first and the report last, both atomically, so a report on disk marks a finished
scene. A job never raises for a problem of its scene: it returns a failed result with a
one-line error.
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
        model: ``--model`` of ``tta adapt``; ``weights``, ``sensor``, ``bands``, ``max_value``,
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
    bands: str | None = None
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

    from tta.engine import AdaptConfig
    from tta.engine.files import adapt_file
    from tta.io import parse_spec
    from tta.io.product import write_json
    from tta.models import model_files

    cfg = AdaptConfig.from_yaml(job.config_path) if job.config_path else AdaptConfig()
    cfg = cfg.replace(**job.overrides)
    cfg.validate()  # every setting, before the scene is read
    inputs = [str(p) for p in (*parse_spec(job.spec).files,
                               *model_files(job.model, job.weights))]
    result, _plan = adapt_file(job.spec, job.product, model=job.model, weights=job.weights,
                           config=cfg, sensor=job.sensor, bands=job.bands,
                           max_value=job.max_value,
                           interface=job.interface, compare=job.compare, device=job.device,
                           dtype=job.dtype, overwrite=True, nr_metrics=True)
    report = result.report.to_json()  # plain data: written as JSON, sent back from workers
    report["batch"] = {**job.batch, "name": job.name, "scene": job.spec,
                       "threads": torch.get_num_threads()}
    report["timings"]["wall"] = time.perf_counter() - t0
    write_json(job.report, report, inputs=inputs, overwrite=True)
    return {"name": job.name, "scene": job.spec, "status": "done", "error": None,
            "wall_s": report["timings"]["wall"], "product": job.product,
            "report": report}
