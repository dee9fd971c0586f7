"""Every GPU measurement of the project in one prepared run (about 8 minutes on one H100).

Two steps::

    python benchmarks/gpu_suite.py --stage        # here: copy scenes and weights into .gpu-data/
    python benchmarks/gpu_suite.py                # on the GPU machine, from the checkout alone

``--stage`` copies what the run reads from ``../shared`` (``--shared``) into ``.gpu-data/``
inside the repository (git-ignored, research-licensed data: never committed), with a
``manifest.json`` of sha256 sums; that folder travels with the checkout (name it in the
device tool's ``carry``). The run imports the repository from its own folder (no install
needed), reads only ``.gpu-data/`` (``--data``) and the shipped zoo weights, and does, in this
order, while its time budget (``--budget``, 480 s) lasts:

1. ``adapt``: adapt + fuse timings (:func:`tta.adapt_scene`, default settings, no comparison)
   on the real WV2 scene cropped or mirror-extended to 512² and 4000² (PAN grid), for the DLPan
   FusionNet (WV3 checkpoint) and our shipped Fose, adapters ``ft``, ``cat``, ``mapper``,
   ``swift``, ``full``, eager and with the training step compiled (``default``,
   ``reduce-overhead`` = CUDA graphs, ``max-autotune``). Each configuration runs twice: the
   first run pays the warm-up and compilation, the second is the timing. The headline rows
   (``ft`` with FusionNet, every mode, both sizes; ``ft`` with Fose, eager) come first;
   bf16 autocast and fused AdamW are the CUDA defaults these runs exercise;
2. ``pytest``: the test suite with ``--device cuda`` (real data from ``.gpu-data``), its
   outcome counts and failures;
3. ``metrics``: the RR and FR metric sets at 4000² (as ``benchmarks/bench_metrics.py``);
4. ``zoo``: the zoo's inference at 512² and 4000² against a dense convolution of the same
   width (``benchmarks/bench_roofline.py``);
5. ``faiss``: the exact kNN graph of :func:`tta.sampling.knn.knn_graph` on the GPU index
   against the CPU index (whether faiss has GPU support, times, agreement);
6. ``oom``: the tiled inference's CUDA batch probe and its out-of-memory back-off, forced by
   a network whose memory grows with the square of the batch;
7. the remaining ``adapt`` rows (other adapters, Fose compiled, ``max-autotune``).

A stage that the budget does not reach is listed as skipped. Writes ``gpu_suite.json``,
``gpu_suite.md`` and ``pytest.log`` in ``benchmarks/results/<date>-<gpu>/`` (``--out``).
``--device cpu --tiny`` runs every stage at toy sizes in tens of seconds, on generated data
when ``.gpu-data`` is absent, with no compilation and a single test file (CI runs it so).
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the checkout itself: no install needed on the GPU machine
sys.path.insert(0, str(Path(__file__).parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from _common import device_name, write_results  # noqa: E402

#: Where ``--stage`` puts the copies (git-ignored).
DATA = ROOT / ".gpu-data"
#: What ``--stage`` copies from ``--shared``: data files and folders, weight folders. The
#: GeoTIFF and Landsat-8 scenes stay behind (size; rasterio is not on the GPU image).
STAGE_DATA = ("README.md", "SHA256SUMS", "wv2", "wv3", "qb", "gf2")
STAGE_WEIGHTS = ("README.md", "dlpan")
#: The adaptation target and the FusionNet checkpoint, relative to the staged folders.
TARGET = "wv2/wv2_grip_top_fr.h5"
FUSIONNET = "dlpan/wv3/fusionnet.pth"
ADAPTERS = ("ft", "cat", "mapper", "swift", "full")
#: Compile modes of the training step; ``swift`` and ``full`` always run eagerly.
MODES = ("eager", "default", "reduce-overhead", "max-autotune")
FAST_PATH = ("ft", "cat", "mapper")
#: The issue's targets for ``ft`` with FusionNet on an H100: adapt + fuse seconds per size.
TARGETS = {512: 0.05, 4000: 0.5}


# ----------------------------------------------------------------------------- staging
def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def stage(shared: Path, dest: Path = DATA) -> dict:
    """Copy :data:`STAGE_DATA` and :data:`STAGE_WEIGHTS` from ``shared`` into ``dest``.

    ``dest`` is replaced; ``dest/manifest.json`` lists every file with its size and sha256.
    """
    wanted = [("data", n) for n in STAGE_DATA] + [("weights", n) for n in STAGE_WEIGHTS]
    missing = [f"{shared / kind / name}" for kind, name in wanted
               if not (shared / kind / name).exists()]
    if missing:
        sys.exit(f"Error: not found: {', '.join(missing)} (point --shared at the shared folder)")
    if dest.exists():
        shutil.rmtree(dest)
    files = {}
    for kind, name in wanted:
        src, out = shared / kind / name, dest / kind / name
        if src.is_dir():
            shutil.copytree(src, out)
        else:
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, out)
        for f in ([out] if out.is_file() else sorted(p for p in out.rglob("*") if p.is_file())):
            files[str(f.relative_to(dest))] = {"bytes": f.stat().st_size, "sha256": _sha256(f)}
    manifest = {"source": str(shared.resolve()), "date": dt.date.today().isoformat(),
                "files": files}
    (dest / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


# ----------------------------------------------------------------------------- plumbing
class Budget:
    """Wall-clock budget of the run; stages ask :meth:`left` before they start."""

    def __init__(self, seconds: float) -> None:
        self.end = time.perf_counter() + seconds

    def left(self) -> float:
        return self.end - time.perf_counter()


@dataclass
class Settings:
    """What one run measures (full or ``--tiny``)."""

    device: torch.device
    sizes: tuple[int, ...]
    steps: int
    tile: int
    modes: tuple[str, ...]
    metric_size: int
    zoo_sizes: tuple[int, ...]
    zoo_models: tuple[str, ...]
    faiss_rows: int
    pytest_args: tuple[str, ...]
    pytest_cap: float
    tiny: bool


def settings(device: torch.device, tiny: bool) -> Settings:
    if tiny:
        return Settings(device, (64,), 2, 128, ("eager",), 64, (64,), ("fusionnet",), 2000,
                        ("tests/test_sensors.py",), 120.0, True)
    return Settings(device, (512, 4000), 100, 256, MODES, 4000, (512, 4000),
                    ("lagconv", "diffusion_student", "fose", "fusionnet"), 200_000, (), 180.0,
                    False)


def say(message: str) -> None:
    print(message, flush=True)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ----------------------------------------------------------------------------- inputs
def target_scene(data: Path, tiny: bool):
    """The staged WV2 scene, or (``tiny`` without staged data) a generated one."""
    from tta.io import read_scene

    path = data / "data" / TARGET
    if path.is_file():
        return read_scene(path), f"{TARGET} (staged)"
    if not tiny:
        sys.exit(f"Error: {path} not found; run `python benchmarks/gpu_suite.py --stage` first")
    from bench_roofline import generated_scene

    return generated_scene(256, 8, "WV2"), "generated 256² WV2-like scene (nothing staged)"


def scene_at(scene, size: int):
    """``scene`` mirror-extended (bottom/right) as needed, then centre-cropped to ``size``²."""
    from tta.bench import centre_crop

    r, m = scene.ratio, size // scene.ratio
    h, w = scene.ms.shape[1:]
    ph, pw = max(0, m - h), max(0, m - w)
    if ph or pw:
        scene = scene.with_(ms=np.pad(scene.ms, ((0, 0), (0, ph), (0, pw)), mode="symmetric"),
                            pan=np.pad(scene.pan, ((0, r * ph), (0, r * pw)), mode="symmetric"),
                            gt=None, nodata=None, transform=None)
    return centre_crop(scene, size)


def source_models(data: Path, tiny: bool) -> tuple[dict[str, torch.nn.Module], dict[str, str]]:
    """FusionNet (the staged DLPan WV3 checkpoint; seeded random weights in ``tiny`` runs
    without one) and the shipped Fose."""
    import pretrained

    ckpt = data / "weights" / FUSIONNET
    if ckpt.is_file():
        fusionnet, note = pretrained.load("fusionnet", weights=ckpt), f"{FUSIONNET} (staged)"
    elif tiny:
        torch.manual_seed(0)
        fusionnet, note = pretrained.create_model("fusionnet", n_bands=8), "random weights"
    else:
        sys.exit(f"Error: {ckpt} not found; run `python benchmarks/gpu_suite.py --stage` first")
    return ({"fusionnet": fusionnet.eval(), "fose": pretrained.load_zoo("fose")},
            {"fusionnet": note, "fose": "shipped fose_wv3"})


# ----------------------------------------------------------------------------- stages
def adapt_plan(s: Settings) -> tuple[list[tuple], list[tuple]]:
    """``(model, adapter, mode, size)`` runs: the headline ones (``ft``: FusionNet in every
    mode but ``max-autotune``, Fose eager); then the other adapters eager at the first size,
    ``max-autotune`` once (it autotunes for minutes), the other adapters eager at the other
    sizes and the other compiled runs. ``--tiny``: Fose runs ``ft`` only."""
    first = [r for size in s.sizes
             for r in [("fusionnet", "ft", mode, size) for mode in s.modes
                       if mode != "max-autotune"] + [("fose", "ft", "eager", size)]]
    models = ("fusionnet",) if s.tiny else ("fusionnet", "fose")
    eager = [(m, a, "eager", size) for size in s.sizes for m in models for a in ADAPTERS]
    compiled = [(m, a, mode, size) for mode in s.modes[1:] if mode != "max-autotune"
                for size in s.sizes for m in models for a in FAST_PATH]
    tune = [("fusionnet", "ft", "max-autotune", s.sizes[0])] if "max-autotune" in s.modes else []
    order = ([r for r in eager if r[3] == s.sizes[0]] + tune
             + [r for r in eager if r[3] != s.sizes[0]] + compiled)
    return first, [r for r in order if r not in first]


def adapt_run(model: torch.nn.Module, scene, adapter: str, mode: str, s: Settings) -> dict:
    """Two runs of one configuration (one with ``--tiny``): the first (warm-up, compilation)
    and the timed one."""
    from tta import AdaptConfig, adapt_scene

    cfg = AdaptConfig(adapter=adapter, steps=s.steps, tile=s.tile,
                      compile=None if mode == "eager" else mode)
    walls, reports = [], []
    for _ in range(1 if s.tiny else 2):
        sync(s.device)
        t0 = time.perf_counter()
        res = adapt_scene(model, scene, config=cfg, device=s.device)
        sync(s.device)
        walls.append(time.perf_counter() - t0)
        reports.append(res.report)
        del res
    t = reports[-1]["timings"]
    return {"first_wall_s": walls[0], "wall_s": walls[-1], "adapt_s": t["adapt"],
            "train_s": t.get("train", 0.0), "infer_s": t["infer"],
            "adapt_and_infer_s": t["adapt_and_infer"],
            "stages": {k: v for k, v in t.items() if k not in ("adapt", "adapt_and_infer")},
            "patches": reports[-1]["sampling"].get("selected"),
            "amp": bool(cfg.amp and s.device.type == "cuda")}


def adapt_stage(runs: list[tuple], models: dict, base_scene, s: Settings, budget: Budget,
                reserve: float) -> list[dict]:
    rows, scenes = [], {}
    for name, adapter, mode, size in runs:
        row = {"model": name, "adapter": adapter, "mode": mode, "size": size}
        if budget.left() < reserve:
            rows.append({**row, "skipped": "time budget"})
            continue
        if size not in scenes:
            scenes[size] = scene_at(base_scene, size)
        try:
            row.update(adapt_run(models[name], scenes[size], adapter, mode, s))
            say(f"adapt {name} {adapter} {mode} {size}²: adapt+infer "
                f"{row['adapt_and_infer_s']:.3f} s (first run {row['first_wall_s']:.1f} s)")
        except Exception as err:  # noqa: BLE001 - a failing configuration is a result
            row["error"] = f"{type(err).__name__}: {err}"[:500]
            say(f"adapt {name} {adapter} {mode} {size}²: {row['error']}")
        rows.append(row)
    return rows


def pytest_stage(s: Settings, data: Path, folder: Path, seconds: float) -> dict:
    """The test suite on the run's device; counts from the verbose log."""
    log = folder / "pytest.log"
    cmd = [sys.executable, "-m", "pytest", "-v", "-p", "no:cacheprovider",
           "--continue-on-collection-errors", "--device", str(s.device), *s.pytest_args]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    if (data / "data").is_dir():
        env["TTA_SHARED_DATA"] = str(data / "data")
    if (data / "weights").is_dir():
        env["TTA_SHARED_WEIGHTS"] = str(data / "weights")
    t0 = time.perf_counter()
    with open(log, "w") as fh:
        try:
            rc = subprocess.run(cmd, cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT,
                                timeout=seconds).returncode
        except subprocess.TimeoutExpired:
            rc = None
    text = log.read_text()
    counts = {k: len(re.findall(rf" {k.upper()}( |$)", text, re.M))
              for k in ("passed", "failed", "skipped", "error", "xfailed")}
    failed = re.findall(r"^(\S+::\S+) (?:FAILED|ERROR)", text, re.M)
    errors = re.findall(r"^ERROR collecting (\S+)", text, re.M)
    out = {"command": " ".join(cmd[1:]), "seconds": time.perf_counter() - t0,
           "returncode": rc, "timed_out": rc is None, **counts,
           "failures": failed[:50], "collection_errors": errors}
    say(f"pytest: {counts['passed']} passed, {counts['failed']} failed, "
        f"{counts['skipped']} skipped, {counts['error']} errors"
        + (" (stopped at the time limit)" if rc is None else ""))
    return out


def metrics_stage(s: Settings) -> dict:
    from functools import partial

    from _common import median_time
    from bench_metrics import scene as metric_scene

    from tta.metrics import fr_metrics, rr_metrics
    from tta.sensors import get_sensor

    ms, pan, fused, gt = metric_scene(s.metric_size, s.device)
    with torch.inference_mode():
        rr = median_time(partial(rr_metrics, gt, fused, 4, 2047.0), s.device, 1)
        fr = median_time(partial(fr_metrics, ms, pan, fused, get_sensor("WV3"), 2047.0),
                         s.device, 1)
    say(f"metrics {s.metric_size}²: RR {rr:.3f} s, FR {fr:.3f} s")
    return {"size": s.metric_size, "rr_s": rr, "fr_s": fr}


def zoo_stage(s: Settings, budget: Budget) -> list[dict]:
    from bench_roofline import measure

    rows = []
    for name in s.zoo_models:
        if budget.left() < 30:
            rows.append({"model": name, "skipped": "time budget"})
            continue
        rows.append(measure(name, list(s.zoo_sizes), min(s.tile, 256), s.device, 3, say))
    return rows


def faiss_stage(s: Settings) -> dict:
    """kNN graph (K = 10) of random 64-d rows on the requested device and on the CPU."""
    from tta.sampling.knn import knn_graph

    try:
        import faiss
    except ImportError:
        return {"faiss": None, "note": "faiss not installed: knn_graph uses its torch fallback"}
    gpu_build = hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0
    x = torch.randn(s.faiss_rows, 64, generator=torch.Generator().manual_seed(0))

    def timed(device: str) -> tuple[float, torch.Tensor, list[str]]:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            knn_graph(x[:100], 10, device=device)  # warm-up (GPU resources)
            t0 = time.perf_counter()
            _, idx = knn_graph(x, 10, device=device)
            return time.perf_counter() - t0, idx, [str(w.message) for w in caught]

    t_cpu, idx_cpu, _ = timed("cpu")
    row = {"faiss": faiss.__version__, "gpu_build": gpu_build, "rows": s.faiss_rows,
           "cpu_s": t_cpu}
    if s.device.type == "cuda":
        t_gpu, idx_gpu, notes = timed(str(s.device))
        row.update(gpu_s=t_gpu, gpu_index_used=gpu_build and not notes, warnings=notes,
                   same_neighbours=float((idx_gpu == idx_cpu).float().mean()))
    say(f"faiss {row['faiss']}: " + ", ".join(f"{k} {v}" for k, v in row.items()
                                             if k.endswith("_s") or k == "gpu_index_used"))
    return row


def oom_stage(s: Settings) -> dict:
    """Tiled inference whose network needs ``batch² x 10 %`` of the GPU: the probe plans too
    large a batch, the back-off halves it until it fits, and the fusion stays exact."""
    from tta.engine.tiling import tiled_fuse

    if s.device.type != "cuda":
        return {"skipped": "CUDA only"}
    unit = int(0.1 * torch.cuda.mem_get_info(s.device)[1]) // 4  # float32 elements
    seen: list[int] = []

    def greedy(ms_t, pan_t, lms_t):
        b = ms_t.shape[0]
        seen.append(b)
        block = torch.empty(b * b * unit, dtype=torch.float32, device=ms_t.device)
        del block
        return lms_t * pan_t

    g = torch.Generator().manual_seed(0)
    ms, pan = torch.rand(4, 64, 64, generator=g), torch.rand(256, 256, generator=g)
    lms = torch.rand(4, 256, 256, generator=g)
    fused = tiled_fuse(greedy, ms, pan, lms, ratio=4, tile=32, device=s.device)
    torch.cuda.empty_cache()
    exact = bool(np.allclose(fused, (lms * pan).numpy(), atol=1e-6))
    say(f"oom back-off: batch sizes {seen[:8]}..., exact {exact}")
    return {"batch_sizes": seen[:20], "backed_off": len(set(seen)) > 2, "exact": exact}


# ----------------------------------------------------------------------------- report
def _fmt(x: object, unit: str = "") -> str:
    return f"{x:.3f}{unit}" if isinstance(x, float) else ("—" if x is None else str(x))


def markdown(meta: dict) -> list[str]:
    from bench_roofline import table as roofline_table

    lines = [f"# GPU suite — {meta['device']}, torch {meta['torch']}, {meta['date']}", "",
             f"Run: `{meta['command']}`; {meta['seconds']:.0f} s of a {meta['budget']:.0f} s "
             f"budget. Target scene: {meta['scene']}. FusionNet: {meta['weights']['fusionnet']}"
             f"; Fose: {meta['weights']['fose']}. Steps: {meta['steps']}.", ""]
    targets = meta.get("targets", [])
    if targets:
        lines += ["Targets (adapt + fuse, `ft`, FusionNet, best mode):", ""]
        lines += [f"- {t['size']}²: {_fmt(t['seconds'], ' s')} (target {t['target']} s, "
                  f"{t['mode']}): {'met' if t['met'] else 'not met'}" for t in targets]
        lines.append("")
    lines += ["## Adapt + fuse", "", "The second run of each configuration (`--tiny`: the "
              "only one); the first, with warm-up and compilation, in the last column.", "",
              "| model | adapter | mode | size | adapt (s) | train (s) | infer (s) | "
              "adapt + infer (s) | first run wall (s) |", "|---" * 9 + "|"]
    for r in meta["adapt"]:
        cells = [r["model"], r["adapter"], r["mode"], f"{r['size']}²"]
        if "adapt_s" in r:
            cells += [_fmt(r[k]) for k in ("adapt_s", "train_s", "infer_s",
                                           "adapt_and_infer_s", "first_wall_s")]
        else:
            cells += [r.get("skipped") or r.get("error", "")] + [""] * 4
        lines.append("| " + " | ".join(cells) + " |")
    p = meta.get("pytest") or {}
    lines += ["", "## Tests", ""]
    if "passed" in p:
        lines.append(f"`{p['command']}`: {p['passed']} passed, {p['failed']} failed, "
                     f"{p['skipped']} skipped, {p['error']} errors in {p['seconds']:.0f} s"
                     + (" (stopped at its time limit)" if p["timed_out"] else "") + ".")
        lines += [f"- failed: `{f}`" for f in p["failures"]]
        lines += [f"- not collected: `{f}`" for f in p["collection_errors"]]
    else:
        lines.append(p.get("skipped", "not run"))
    m = meta.get("metrics") or {}
    lines += ["", "## Metric set", "",
              (f"{m['size']}²×8: RR {m['rr_s']:.3f} s, FR (both families) {m['fr_s']:.3f} s."
               if "rr_s" in m else m.get("skipped", "not run"))]
    zoo = [r for r in meta.get("zoo", []) if "scenes" in r]
    lines += ["", "## Zoo inference", "", f"Reference: dense 3x3 conv width→width on one "
              f"{meta['zoo_tile']}² tile (see `benchmarks/bench_roofline.py`).", ""]
    lines += roofline_table(zoo, meta["zoo_sizes"]) if zoo else ["not run"]
    lines += ["", "## faiss", "", json.dumps(meta.get("faiss")), "", "## OOM back-off", "",
              json.dumps(meta.get("oom"))]
    return lines


def targets(rows: list[dict]) -> list[dict]:
    out = []
    for size, target in TARGETS.items():
        hits = [r for r in rows if r["model"] == "fusionnet" and r["adapter"] == "ft"
                and r["size"] == size and "adapt_and_infer_s" in r]
        if hits:
            best = min(hits, key=lambda r: r["adapt_and_infer_s"])
            out.append({"size": size, "target": target, "mode": best["mode"],
                        "seconds": best["adapt_and_infer_s"],
                        "met": best["adapt_and_infer_s"] <= target})
    return out


def folder_for(device: torch.device, out: Path) -> Path:
    label = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    slug = re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-")
    folder = out / f"{dt.date.today().isoformat()}-{slug}"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def run(args: argparse.Namespace) -> dict:
    t_start = time.perf_counter()
    budget = Budget(args.budget)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("Error: --device cuda but torch sees no GPU here")
    if args.threads:
        torch.set_num_threads(args.threads)
    s = settings(device, args.tiny)
    folder = folder_for(device, args.out)
    base_scene, scene_note = target_scene(args.data, args.tiny)
    models, weights = source_models(args.data, args.tiny)
    first, rest = adapt_plan(s)
    meta: dict = {"date": dt.date.today().isoformat(), "device": device_name(device),
                  "torch": torch.__version__, "cuda": torch.version.cuda,
                  "command": " ".join(sys.argv), "budget": args.budget, "tiny": args.tiny,
                  "scene": scene_note, "weights": weights, "steps": s.steps,
                  "zoo_sizes": list(s.zoo_sizes), "zoo_tile": min(s.tile, 256)}
    stages: list[tuple[str, Callable[[], object], float]] = [
        ("adapt", lambda: adapt_stage(first, models, base_scene, s, budget, 20), 0),
        ("pytest", lambda: pytest_stage(s, args.data, folder,
                                        min(s.pytest_cap, budget.left() - 60)), 90),
        ("metrics", lambda: metrics_stage(s), 30),
        ("zoo", lambda: zoo_stage(s, budget), 30),
        ("faiss", lambda: faiss_stage(s), 15),
        ("oom", lambda: oom_stage(s), 15),
        ("adapt_rest", lambda: adapt_stage(rest, models, base_scene, s, budget, 15), 0),
    ]
    for name, fn, needs in stages:
        if budget.left() < needs:
            meta[name] = {"skipped": "time budget"}
            say(f"{name}: skipped (time budget)")
            continue
        try:
            meta[name] = fn()
        except Exception as err:  # noqa: BLE001 - record it, run the other stages
            meta[name] = {"error": f"{type(err).__name__}: {err}"[:500]}
            say(f"{name}: {meta[name]['error']}")
    meta["adapt"] = list(meta.pop("adapt", [])) + list(meta.pop("adapt_rest", []))
    meta["adapt"] = [r for r in meta["adapt"] if isinstance(r, dict) and "model" in r]
    meta["targets"] = targets(meta["adapt"])
    meta["seconds"] = time.perf_counter() - t_start
    write_results(folder, "gpu_suite", meta, markdown(meta))
    return meta


def main(argv: list[str] | None = None) -> dict | None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stage", action="store_true",
                    help="copy the scenes and weights the run needs into --data, then stop")
    ap.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--tiny", action="store_true", help="toy sizes, no compilation (CI)")
    ap.add_argument("--budget", type=float, default=480.0, help="seconds for the whole run")
    ap.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = ap.parse_args(argv)
    if args.stage:
        manifest = stage(args.shared, args.data)
        total = sum(f["bytes"] for f in manifest["files"].values())
        say(f"staged {len(manifest['files'])} files ({total / 1e6:.1f} MB) in {args.data}")
        return None
    return run(args)


if __name__ == "__main__":
    main()
