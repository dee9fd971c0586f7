"""``tta batch``: many scenes, one adaptation + fusion each, on an executor.

Plan (in this process): list the scenes (:func:`tta.io.scene_list.collect_scenes`), name
their outputs (:mod:`tta.batch.naming`), check the output folder and that no output is an
input, digest each scene's files and options, and skip the scenes whose outputs verify
(:mod:`tta.batch.verify`). Run: the other scenes go to the executor
(:mod:`tta.executors`: ``local`` or ``ray``) as :func:`tta.batch.job.run_scene_job` jobs; a
scene that fails is reported with its one-line error and the others go on. Finally the
summary (:mod:`tta.batch.summary`) is written.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tta.batch.job import SceneJob, failed_result, run_scene_job
from tta.batch.naming import PRODUCT_SUFFIX, REPORT_SUFFIX, scene_names
from tta.batch.summary import summary_row, write_summary
from tta.errors import InputError, OutputError, TtaError

__all__ = ["BatchResult", "run_batch"]

_CONFIG_KEYS = ("adapter", "sampler", "fraction", "steps", "lr", "patch", "seed")


@dataclass
class BatchResult:
    """What a batch did.

    Attributes:
        rows: One summary row per scene, in the order of the list
            (:data:`tta.batch.summary.COLUMNS`).
        summary_csv: Path of ``summary.csv``.
        summary_json: Path of ``summary.json``.
        executor: Description of the executor that ran the scenes (None if none ran).
        wall_s: Wall time of the whole batch, seconds.
    """

    rows: list[dict[str, Any]]
    summary_csv: Path
    summary_json: Path
    executor: dict[str, Any] | None
    wall_s: float

    @property
    def counts(self) -> dict[str, int]:
        """Scenes per status (``done``, ``skipped``, ``failed``)."""
        out = {"done": 0, "skipped": 0, "failed": 0}
        for row in self.rows:
            out[row["status"]] += 1
        return out

    @property
    def failed(self) -> int:
        return self.counts["failed"]


def _digest(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


def _spec_files(spec: str) -> list[str]:
    from tta.io import parse_spec

    files = [str(p) for p in parse_spec(spec).files]
    if spec.lower().endswith((".yaml", ".yml")):
        files.insert(0, spec)
    return files


def _same(a: str, b: str) -> bool:
    pa, pb = Path(a), Path(b)
    if pa.resolve() == pb.resolve():
        return True
    try:
        return pa.exists() and pb.exists() and pa.samefile(pb)
    except OSError:
        return False


def _own_product(spec: str, out: Path) -> bool:
    """Whether ``spec`` is a product of a batch in ``out`` (a folder or pattern that covers
    the output folder lists them; they are not scenes to adapt again)."""
    path = Path(spec.split("#")[0])
    stem = path.name.rsplit(".", 1)[0]
    return (stem.endswith(PRODUCT_SUFFIX) and path.parent.resolve() == out.resolve()
            and (out / f"{stem[:-len(PRODUCT_SUFFIX)]}{REPORT_SUFFIX}").exists())


def _options(batch: dict[str, Any], entry: dict[str, Any]) -> dict[str, Any]:
    merged = {k: v for k, v in batch.items() if v is not None}
    merged.update(entry)
    return merged


def run_batch(
    sources: Sequence[str] | str,
    output_dir: str | Path,
    *,
    model: str | None = None,
    weights: str | None = None,
    sensor: str | None = None,
    bands: str | None = None,
    max_value: float | None = None,
    config_path: str | None = None,
    interface: str | None = None,
    compare: bool = True,
    fmt: str = "h5",
    dtype: str = "uint16",
    device: str = "auto",
    executor: str = "auto",
    address: str | None = None,
    workers: int | None = None,
    threads: int = 1,
    gpus: float | None = None,
    overwrite: bool = False,
    on_result: Callable[[dict[str, Any], int, int], None] | None = None,
    **config: Any,
) -> BatchResult:
    """Adapt and fuse every scene of ``sources`` into ``output_dir``.

    Args:
        sources: Folders, glob patterns, manifests (``.txt``/``.csv``/``.yaml``) or scene
            specs (:mod:`tta.io.scene_list`); manifest entries may set per-scene options.
        output_dir: Folder of the products (``NAME_fused.h5|.tif``), reports
            (``NAME_report.json``) and ``summary.csv``/``summary.json``; created if needed.
        model, weights, sensor, bands, max_value, config_path, interface, compare, dtype, device:
            As ``tta adapt`` (``--model`` ... ``--device``), for every scene unless its
            manifest entry says otherwise.
        fmt: Product format, ``h5`` or ``tif``.
        executor: ``auto`` (Ray when installed, else ``local``), ``local`` or ``ray``.
        address: Ray cluster address (``HEAD:6379``); None starts a local Ray.
        workers: Scenes at once on a local Ray (default CPU cores // threads).
        threads: Torch CPU threads per scene.
        gpus: GPUs per scene on Ray (default 1 where the cluster has GPUs).
        overwrite: Recompute and replace outputs that exist but do not verify (without it
            such a scene fails with a message); verified outputs are always skipped.
        on_result: Called as ``on_result(row, finished, total)`` when a scene is settled.
        **config: AdaptConfig fields (``adapter``, ``sampler``, ``fraction``, ``steps``,
            ``lr``, ``patch``, ``seed``).

    Returns:
        A :class:`BatchResult`; ``result.failed`` scenes failed.

    Raises:
        InputError: Unreadable list or manifest, a scene without a model, unknown executor.
        OutputError: The output folder cannot be made, an output would replace an input, or
            two scenes map to one output.
    """
    from tta import __version__
    from tta.executors import get_executor
    from tta.io.atomic import check_output_path, plan_outputs
    from tta.io.probe import sha256_files
    from tta.io.scene_list import collect_scenes
    from tta.models import model_files

    t_start = time.perf_counter()
    unknown = set(config) - set(_CONFIG_KEYS)
    if unknown:
        raise InputError(f"unknown option(s) {', '.join(sorted(unknown))} (known: "
                         f"{', '.join(_CONFIG_KEYS)})")
    if fmt not in ("h5", "tif"):
        raise InputError(f"format {fmt!r}: use h5 or tif")
    out = Path(output_dir)
    entries = [e for e in collect_scenes(sources) if not _own_product(e.spec, out)]
    if not entries:
        raise InputError(f"no scenes to run: the sources list only products of {out}")
    base = {"model": model, "weights": weights, "sensor": sensor, "bands": bands,
            "max_value": max_value,
            "config": config_path, "interface": interface, **config}
    options = [_options(base, e.options) for e in entries]
    for e, opt in zip(entries, options, strict=True):
        if not opt.get("model"):
            raise InputError(f"{e.origin}: no model for scene {e.spec}; pass --model or give "
                             "'model' in the manifest")
    names = scene_names([e.spec for e in entries], [o.get("name") for o in options])

    # Inputs every output must differ from: all scene files, checkpoints and configs.
    inputs: list[str] = []
    model_digests: dict[tuple[str, str | None], tuple[list[str], str]] = {}
    for e, opt in zip(entries, options, strict=True):
        try:
            inputs += _spec_files(e.spec)
        except TtaError:
            pass  # reported as this scene's failure below
        key = (opt["model"], opt.get("weights"))
        if key not in model_digests:
            files = [str(p) for p in model_files(*key)]
            model_digests[key] = files, sha256_files(files)
        inputs += model_digests[key][0]
        if opt.get("config"):
            inputs.append(opt["config"])
    plan_outputs({}, inputs, folders={"-o": out})
    out.mkdir(parents=True, exist_ok=True)
    for special in ("summary.csv", "summary.json"):
        check_output_path(out / special, inputs, overwrite=True)

    rows: list[dict[str, Any] | None] = [None] * len(entries)
    jobs: list[tuple[int, SceneJob]] = []
    total = len(entries)
    settled = 0

    def settle(i: int, result: dict[str, Any], report_path: str | None) -> None:
        nonlocal settled
        rows[i] = summary_row(result, report_path)
        settled += 1
        if on_result is not None:
            on_result(rows[i], settled, total)

    from tta.batch.verify import verify_outputs

    for i, (e, opt, name) in enumerate(zip(entries, options, names, strict=True)):
        product = str(out / f"{name}{PRODUCT_SUFFIX}.{fmt}")
        report = str(out / f"{name}{REPORT_SUFFIX}")
        cfg_overrides = {k: opt[k] for k in _CONFIG_KEYS if opt.get(k) is not None}
        job = SceneJob(name=name, spec=e.spec, product=product, report=report,
                       model=opt["model"], weights=opt.get("weights"),
                       sensor=opt.get("sensor"), bands=opt.get("bands"),
                       max_value=opt.get("max_value"),
                       config_path=opt.get("config"), interface=opt.get("interface"),
                       compare=compare, dtype=dtype, device=device, overrides=cfg_overrides)
        t0 = time.perf_counter()
        try:
            for path in (product, report):
                if any(_same(path, src) for src in inputs):
                    raise OutputError(f"{path}: output path is an input file; give the scene "
                                      "another 'name' or choose another output folder")
            files = _spec_files(e.spec)
            recipe = {"model": opt["model"], "weights": opt.get("weights"),
                      "model_sha256": model_digests[(opt["model"], opt.get("weights"))][1],
                      "sensor": opt.get("sensor"), "bands": opt.get("bands"),
                      "max_value": opt.get("max_value"),
                      "config": sha256_files([opt["config"]]) if opt.get("config") else None,
                      "interface": opt.get("interface"), "compare": compare, "format": fmt,
                      "dtype": dtype if fmt == "tif" else "float32", "adapt": cfg_overrides}
            batch = {"input_sha256": sha256_files(files), "options_sha256": _digest(recipe)}
            job = SceneJob(**{f.name: getattr(job, f.name) for f in fields(job)
                              if f.name != "batch"}, batch=batch)
            done, reason = verify_outputs(product, report, batch, dtype)
        except TtaError as exc:
            settle(i, failed_result(job, exc, time.perf_counter() - t0), None)
            continue
        if done is not None:
            settle(i, {"name": name, "scene": e.spec, "status": "skipped", "error": None,
                       "wall_s": 0.0, "product": product, "report": done}, report)
            continue
        if reason is not None and not overwrite:
            settle(i, failed_result(job, f"{product}: outputs of an earlier run exist but do "
                                         f"not verify ({reason}); pass --overwrite to "
                                         "recompute"), None)
            continue
        jobs.append((i, job))

    described = None
    if jobs:
        with get_executor(executor, address=address, workers=workers, threads=threads,
                          gpus=gpus) as ex:
            described = ex.describe()
            todo = [job for _, job in jobs]
            for k, result in ex.map_unordered(run_scene_job, todo, on_error=failed_result):
                report_path = todo[k].report if result["status"] == "done" else None
                settle(jobs[k][0], result, report_path)

    final = [r for r in rows if r is not None]
    wall = time.perf_counter() - t_start
    result = BatchResult(final, out / "summary.csv", out / "summary.json", described, wall)
    meta = {"tta_version": __version__,
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "executor": described, "wall_s": wall, "counts": result.counts,
            "scenes_total": total}
    write_summary(out, final, meta)
    return result
