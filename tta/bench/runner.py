"""Running a :class:`~tta.bench.matrix.BenchMatrix`: every cell adapted, fused and scored.

Protocols (Vivone et al. 2021 conventions, as :func:`tta.evaluation.evaluate`):

* ``rr`` - reduced resolution (Wald): a full-resolution target is degraded with
  :func:`tta.physics.degrade_scene` (sensor MTF + decimation), adapted and fused at the reduced
  scale and scored against the original MS (Q2n, Q, SAM, ERGAS, SCC, PSNR) - plus the FR
  indexes of the reduced inputs. A file that already holds a ``gt`` is used as is.
* ``fr`` - full resolution: the scene as it is, both FR families (toolbox HQNR/D_lambda,K/D_s/
  QNR/D_lambda and the reprojection family R-Q2n/R-SAM/R-ERGAS/D_rho).

Rows: the classical methods, then per compatible source ``direct`` (adapter ``none``), the
``in-sensor`` reference (same architecture trained on the target's sensor, run directly) and
every method × sampler × seed. Scores of a multi-sample target are means over its samples.
"""

from __future__ import annotations

import datetime as dt
import itertools
import math
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tta.bench.matrix import BenchMatrix, Method, Source, Target
from tta.device import device_label
from tta.errors import InputError

__all__ = ["BenchResult", "centre_crop", "device_label", "prepare_target", "run_bench"]

TIME_KEYS = ("adapt", "train", "infer", "adapt_and_infer")
Log = Callable[[str], None]


@dataclass
class BenchResult:
    """What :func:`run_bench` measured.

    Attributes:
        runs: One dict per run (identifiers, every index, times, adaptation facts).
        skipped: One line per cell that could not run, with the reason.
        products: ``(target, protocol) -> {"scene": Scene, "fused": {label: array}}`` for the
            quick-look figures (first sample, seed 0, first sampler, first compatible source).
        speed: One dict per (size, method) of the timing part.
        meta: Device, date, torch version, threads, load, wall time, the matrix.
        models: Source networks loaded during the run (emptied when it ends).
    """

    runs: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    products: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    speed: list[dict[str, Any]] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)
    models: dict[tuple[str, str | None], Any] = field(default_factory=dict, repr=False)


def _shown_path(path: Path | None) -> str | None:
    """A path relative to the working directory or the package when it lies below them."""
    if path is None:
        return None
    for base in (Path.cwd(), Path(__file__).resolve().parents[2]):
        try:
            return str(path.resolve().relative_to(base.resolve()))
        except ValueError:
            continue
    return str(path)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ----------------------------------------------------------------------------- scenes
def centre_crop(scene: Any, side: int) -> Any:
    """The centre ``side``-square of a scene on the PAN grid (MS, PAN, gt, nodata).

    ``side`` is rounded down to a multiple of the ratio; a scene smaller than ``side`` in a
    direction keeps its extent there. The geotransform is dropped (benchmarks write no maps).
    """
    r = scene.ratio
    h, w = scene.ms.shape[1:]
    m = max(1, side // r)
    mh, mw = min(m, h), min(m, w)
    y, x = (h - mh) // 2, (w - mw) // 2
    ys, xs = slice(r * y, r * (y + mh)), slice(r * x, r * (x + mw))
    return scene.with_(ms=scene.ms[:, y:y + mh, x:x + mw].copy(), pan=scene.pan[ys, xs].copy(),
                       gt=None if scene.gt is None else scene.gt[:, ys, xs].copy(),
                       nodata=None if scene.nodata is None else scene.nodata[ys, xs].copy(),
                       transform=None,
                       source=f"{scene.source} [centre {r * mh}x{r * mw}]")


def prepare_target(matrix: BenchMatrix, target: Target) -> dict[str, list[Any]]:
    """The scenes of each of the target's protocols (``{"rr": [...], "fr": [...]}``).

    Raises:
        InputError: Missing or unreadable file, or too small for the reduced protocol.
    """
    from tta.io import iter_scenes
    from tta.physics import degrade_scene

    spec = matrix.scene_path(target)
    scenes = list(itertools.islice(iter_scenes(spec, sensor=target.sensor), target.samples))
    if target.crop:
        scenes = [centre_crop(s, target.crop) for s in scenes]
    out: dict[str, list[Any]] = {}
    for protocol in target.protocols:
        if protocol == "rr":
            rr = [s if s.is_reduced else degrade_scene(s) for s in scenes]
            small = [s for s in rr if min(s.pan.shape) < 64]
            if small:
                raise InputError(f"{target.name}: reduced-resolution PAN "
                                 f"{small[0].pan.shape} is smaller than 64 px")
            out["rr"] = rr
        else:
            out["fr"] = [s.with_(gt=None) if s.is_reduced else s for s in scenes]
    return out


# ----------------------------------------------------------------------------- scoring
def _score(scene: Any, fused: np.ndarray, device: torch.device) -> dict[str, float]:
    from tta.evaluation import evaluate

    res = evaluate(scene, fused, "both" if scene.is_reduced else "fr", str(device))
    flat: dict[str, float] = {}
    for family in ("rr", "fr"):
        flat.update(res.get(family, {}))
    return flat


def _mean_over_samples(parts: list[dict[str, Any]]) -> dict[str, Any]:
    out = dict(parts[0])
    for k, v in parts[0].items():
        if isinstance(v, int | float) and not isinstance(v, bool):
            vals = [p[k] for p in parts if isinstance(p.get(k), int | float)]
            out[k] = statistics.fmean(vals) if vals else math.nan
    return out


def _adapt_run(model: torch.nn.Module, scenes: list[Any], cfg: Any, device: torch.device
               ) -> tuple[dict[str, Any], np.ndarray]:
    from tta.engine.adapt import adapt_scene

    parts, first = [], None
    for scene in scenes:
        _sync(device)
        t0 = time.perf_counter()
        res = adapt_scene(model, scene, config=cfg, device=device)
        _sync(device)
        wall = time.perf_counter() - t0
        rep = res.report
        part = _score(scene, res.fused, device)
        part.update({f"t_{k}": float(rep.timings.get(k, 0.0)) for k in TIME_KEYS})
        part["t_wall"] = wall
        curve = rep.loss.curve
        part.update({
            "trainable": rep.adapter.trainable,
            "patches": rep.sampling["selected"],
            "loss_first": curve[0] if curve else math.nan,
            "loss_last": curve[-1] if curve else math.nan,
            "mapper": rep.decomposition.get("mapper"),
        })
        parts.append(part)
        if first is None:
            first = res.fused
    return _mean_over_samples(parts), first


def _classical_run(method: str, scenes: list[Any], device: torch.device
                   ) -> tuple[dict[str, Any], np.ndarray]:
    from tta.classical import fuse_scene

    parts, first = [], None
    for scene in scenes:
        _sync(device)
        t0 = time.perf_counter()
        fused = fuse_scene(scene, method, device=device)
        _sync(device)
        t = time.perf_counter() - t0
        part = _score(scene, fused, device)
        part.update({"t_adapt": 0.0, "t_train": 0.0, "t_infer": t, "t_adapt_and_infer": t,
                     "t_wall": t})
        parts.append(part)
        if first is None:
            first = fused
    return _mean_over_samples(parts), first


def _load(matrix: BenchMatrix, spec: str, weights: str | None, sensor: Any,
          device: torch.device, cache: dict[tuple[str, str | None], Any] | None = None
          ) -> torch.nn.Module:
    """The source network, read once per run when a ``cache`` is given (adaptation works on
    a copy, so the cached model is never modified); a failure is cached and raised again."""
    from tta.models import resolve_model

    key = (spec, weights)
    if cache is not None and key in cache:
        hit = cache[key]
        if isinstance(hit, Exception):
            raise hit
        return hit
    try:
        w = matrix.weights_path(weights)
        if w is not None and not Path(w.split("#")[0]).is_file():
            raise InputError(f"{w} not found")
        model = resolve_model(spec, weights=w, sensor=sensor).to(device).eval()
    except (InputError, OSError) as exc:
        if cache is not None:
            cache[key] = exc
        raise
    if cache is not None:
        cache[key] = model
    return model


def _bands(source_model: torch.nn.Module) -> int | None:
    n = getattr(source_model, "n_bands", None)
    return int(n) if n is not None else None


# ----------------------------------------------------------------------------- main loop
def run_bench(matrix: BenchMatrix, *, device: str | torch.device = "cpu",
              log: Log | None = None, speed: bool = True) -> BenchResult:
    """Run every cell of ``matrix`` on ``device``; cells that cannot run are listed, not fatal.

    Args:
        matrix: What to run.
        device: Torch device for adaptation, inference and scoring.
        log: Called with one progress line per run (default: silent).
        speed: Also run the matrix's timing part.
    """
    from tta.device import resolve_device

    dev = resolve_device(str(device))
    say = log or (lambda _msg: None)
    result = BenchResult()
    t_start = time.perf_counter()
    load = os.getloadavg()
    for target in matrix.targets:
        try:
            per_protocol = prepare_target(matrix, target)
        except (InputError, OSError) as exc:
            _skip(result, say, f"{target.name}: skipped ({exc})")
            continue
        for protocol, scenes in per_protocol.items():
            _run_target(matrix, target, protocol, scenes, dev, result, say)
    if speed and matrix.speed is not None:
        _run_speed(matrix, dev, result, say)
    result.models.clear()
    result.meta = {
        "matrix": matrix.name, "matrix_file": _shown_path(matrix.path),
        "date": dt.date.today().isoformat(), "device": device_label(dev),
        "device_type": dev.type, "torch": torch.__version__,
        "threads": torch.get_num_threads(), "load_average_start": list(load),
        "wall_s": time.perf_counter() - t_start, "seeds": matrix.seeds,
        "samplers": matrix.samplers, "methods": [m.name for m in matrix.methods],
        "config": dict(matrix.config), "skipped": result.skipped,
    }
    return result


def _skip(result: BenchResult, say: Log, msg: str) -> None:
    result.skipped.append(msg)
    say(msg)


def _row(target: Target, protocol: str, scenes: list[Any], **ids: Any) -> dict[str, Any]:
    s = scenes[0]
    return {"target": target.name, "protocol": protocol, "sensor": s.sensor.name,
            "pan_shape": "x".join(map(str, s.pan.shape)), "samples": len(scenes), **ids}


def _run_target(matrix: BenchMatrix, target: Target, protocol: str, scenes: list[Any],
                dev: torch.device, result: BenchResult, say: Log) -> None:
    key = (target.name, protocol)
    first = scenes[0]
    say(f"== {target.name} [{protocol}]: {len(scenes)} scene(s), {first.sensor.name}, "
        f"PAN {first.pan.shape[0]}x{first.pan.shape[1]}")
    shown = set(matrix.quicklook) if matrix.quicklook else None
    products: dict[str, np.ndarray] = {}
    result.products[key] = {"scene": first, "fused": products, "source": None}

    def add(row: dict[str, Any]) -> None:
        result.runs.append(row)
        primary = "Q2n" if protocol == "rr" else "HQNR"
        say(f"  {row['source']:>16} {row['method']:>10} {row['sampler']:>7} seed "
            f"{row['seed']}: {primary} {row.get(primary, math.nan):.4f}, adapt+infer "
            f"{row['t_adapt_and_infer']:.2f} s")

    for name in matrix.classical:
        scores, fused = _classical_run(name, scenes, dev)
        add({**_row(target, protocol, scenes, source="-", method=name.upper(), sampler="-",
                    seed="-", kind="classical"), **scores})
        products[name.upper()] = fused
    quick_source = None
    for source in matrix.sources:
        try:
            model = _load(matrix, source.model, source.weights, None, dev, result.models)
        except (InputError, OSError) as exc:
            _skip(result, say, f"{target.name}/{protocol}/{source.name}: skipped ({exc})")
            continue
        n = _bands(model)
        if n is not None and n != first.n_bands:
            continue  # a source for another band count: not a cell of this target
        if quick_source is None:
            quick_source = source.name
            result.products[key]["source"] = source.name
        _run_source(matrix, target, protocol, scenes, source, model, dev, result, add,
                    products if quick_source == source.name else None, shown, say)
        del model


def _run_source(matrix: BenchMatrix, target: Target, protocol: str, scenes: list[Any],
                source: Source, model: torch.nn.Module, dev: torch.device,
                result: BenchResult, add: Callable[[dict[str, Any]], None],
                products: dict[str, np.ndarray] | None, shown: set[str] | None,
                say: Log) -> None:
    ref_weights = source.in_sensor.get(scenes[0].sensor.name.upper())
    if ref_weights is not None:
        try:
            ref = _load(matrix, source.model, ref_weights, None, dev, result.models)
        except (InputError, OSError) as exc:
            _skip(result, say, f"{target.name}/{protocol}/{source.name}: no in-sensor row "
                               f"({exc})")
        else:
            cfg = matrix.method_config(Method("none", "none"), matrix.samplers[0],
                                       matrix.seeds[0])
            scores, fused = _adapt_run(ref, scenes, cfg, dev)
            add({**_row(target, protocol, scenes, source=source.name, method="in-sensor",
                        sampler="-", seed="-", kind="reference"), **scores})
            if products is not None:
                products["in-sensor"] = fused
    for method in matrix.methods:
        samplers = matrix.samplers_of(method)
        seeds = matrix.seeds_of(method)
        for sampler, seed in itertools.product(samplers, seeds):
            cfg = matrix.method_config(method, sampler, seed)
            try:
                scores, fused = _adapt_run(model, scenes, cfg, dev)
            except InputError as exc:
                _skip(result, say, f"{target.name}/{protocol}/{source.name}/{method.name}: "
                                   f"failed ({exc})")
                break
            label = method.label
            add({**_row(target, protocol, scenes, source=source.name, method=label,
                        sampler="-" if method.adapter == "none" else sampler,
                        seed="-" if method.adapter == "none" else seed,
                        kind="direct" if method.adapter == "none" else "adapted",
                        adapter=method.adapter, steps=cfg.steps, lr=cfg.learning_rate),
                 **scores})
            if (products is not None and seed == seeds[0]
                    and sampler == samplers[0]
                    and (shown is None or method.name in shown or label == "direct")):
                products[label] = fused


# ----------------------------------------------------------------------------- speed
def _speed_scene(scene: Any, size: int) -> tuple[Any, str]:
    """A ``size``-square PAN-grid scene: centre crop, or mirror-extended then cropped."""
    r = scene.ratio
    m = size // r
    ms, pan = scene.ms, scene.pan
    h, w = ms.shape[1:]
    how = "centre crop"
    if m > h or m > w:  # mirror at the bottom/right; PAN by ratio x the MS padding
        ph, pw = max(0, m - h), max(0, m - w)
        ms = np.pad(ms, ((0, 0), (0, ph), (0, pw)), mode="symmetric")
        pan = np.pad(pan, ((0, r * ph), (0, r * pw)), mode="symmetric")
        how = "mirror-extended then cropped"
    big = scene.with_(ms=ms, pan=pan, gt=None, nodata=None, transform=None)
    return centre_crop(big, size), how


def _run_speed(matrix: BenchMatrix, dev: torch.device, result: BenchResult,
               say: Log) -> None:
    from tta.engine.adapt import adapt_scene

    spec = matrix.speed
    assert spec is not None
    target = next(t for t in matrix.targets if t.name == spec.target)
    source = next(s for s in matrix.sources if s.name == spec.source)
    try:
        from tta.io import read_scene

        full = read_scene(matrix.scene_path(target), sensor=target.sensor)
        full = full.with_(gt=None) if full.is_reduced else full
        model = _load(matrix, source.model, source.weights, full.sensor, dev)
    except (InputError, OSError) as exc:
        _skip(result, say, f"speed: skipped ({exc})")
        return
    methods = [m for m in matrix.methods if not spec.methods or m.name in spec.methods]
    for size in spec.sizes:
        scene, how = _speed_scene(full, size)
        say(f"== speed {size}x{size} ({how}) on {device_label(dev)}")
        for method in methods:
            cfg = matrix.method_config(method, matrix.samplers_of(method)[0], 0)
            walls, reports = [], []
            for _ in range(spec.repeats + 1):  # the first run is the warm-up
                _sync(dev)
                t0 = time.perf_counter()
                res = adapt_scene(model, scene, config=cfg, device=dev)
                _sync(dev)
                walls.append(time.perf_counter() - t0)
                reports.append(res.report)
                del res
            walls, reports = walls[1:], reports[1:]
            row: dict[str, Any] = {
                "size": size, "method": method.label, "scene": how, "steps": cfg.steps,
                "patches": reports[0].sampling["selected"],
                "trainable": reports[0].adapter.trainable, "repeats": spec.repeats,
                "wall_s": statistics.median(walls), "wall_min_s": min(walls),
                "device": device_label(dev)}
            for k in ("prepare", "sample", "decompose", "cache", "calibrate", "train",
                      "infer", "adapt", "adapt_and_infer"):
                row[k] = statistics.median(float(r.timings.get(k, 0.0)) for r in reports)
            result.speed.append(row)
            say(f"  {method.label:>10}: wall {row['wall_s']:.3f} s (adapt {row['adapt']:.3f}, "
                f"infer {row['infer']:.3f})")
