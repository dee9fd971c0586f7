"""The zoo table: held-out quality vs EXP/GSA, parameters, FLOPs and inference time.

Usage::

    python benchmarks/bench_zoo.py [--sensor WV3] [--weights-dir pretrained/weights]
        [--data-root ../shared/data] [--device cpu] [--threads 2] [--sizes 512 1024]
        [--teacher-max-size 512] [--repeats 1]

Quality: every zoo network of ``--sensor`` (weights in ``--weights-dir``, cards and training
logs in ``--cards-dir``) is scored on the rows its training run held out, re-read from the
run's log with :func:`tta.training.held_out_pairs`, so they are exactly the rows the training
never saw. Indexes: the toolbox RR set (Q2n, SAM, ERGAS, ...) in DN with no border cut, mean
over the held-out images, as :func:`tta.training.validate` reports them; the classical rows
(``--classical``, default EXP and GSA) come from :func:`tta.training.validate_classical` on
the same rows.

Cost: parameters; FLOPs of one forward (``torch.utils.flop_counter``, 2 per multiply-add, conv
and matmul only) at ``--flops-size``² (PAN grid), the teacher as one UNet evaluation times its
DDIM steps; inference time of the whole-scene path ``tta adapt --adapter none`` uses
(:func:`tta.engine.adapt.adapt_scene`, batched tiles), on a centre crop (or mirror extension)
of the WV2 scene to each ``--sizes``: median over ``--repeats`` after a warm-up run, or the
first run alone when it takes over 20 s. The teacher is timed only up to
``--teacher-max-size`` (each of its 50 steps costs about one student forward). Writes
``zoo.{json,md,csv}`` (WV3; ``zoo_<sensor>.*`` for the others) in
``benchmarks/results/<date>-<device>/``.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import device_name, result_folder, sync, write_results  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
QUALITY = ("Q2n", "SAM", "ERGAS", "SCC", "Q", "PSNR")
ORDER = ("lagconv", "diffusion_teacher", "diffusion_student", "fose")


def zoo_models(weights_dir: Path, cards_dir: Path, sensor: str
               ) -> list[tuple[str, torch.nn.Module]]:
    """``(stem, model)`` of every zoo file of ``sensor`` with a card, in :data:`ORDER` of
    architecture, then by name; ``model.card`` is the card."""
    from pretrained.zoo import list_zoo, model_from_weights, read_card

    cards = [c for c in list_zoo(weights_dir, cards_dir)
             if c.get("weights_present") and str(c.get("sensor", "")).upper() == sensor.upper()
             and c.get("arch")]
    if not cards:
        sys.exit(f"no {sensor} zoo weights in {weights_dir}")

    def rank(card: dict) -> tuple[int, str]:
        arch = str(card.get("arch"))
        return (ORDER.index(arch) if arch in ORDER else len(ORDER), card["name"])

    out = []
    for card in sorted(cards, key=rank):
        model = model_from_weights(card["weights"], arch=str(card["arch"])).eval()
        stem = card["name"]
        path = next(p for p in (cards_dir / f"{stem}.yaml", weights_dir / f"{stem}.yaml")
                    if p.is_file())
        model.card = read_card(path)  # as written by tta train (list_zoo rewrites "weights")
        out.append((card["name"], model))
    return out


def held_out(card: dict, cards_dir: Path, data_root: Path) -> list:
    """The held-out pairs of a card's training run (its log's recorded config)."""
    from tta.training.data import held_out_pairs

    log = json.loads((cards_dir / card["log"]).read_text())
    pairs = held_out_pairs(log["config"], data_root)
    if not pairs:
        sys.exit(f"{card['name']}: its training run held nothing out")
    return pairs


def count_flops(model: torch.nn.Module, size: int, ratio: int) -> float:
    """FLOPs of one forward at ``size``² (the teacher: one UNet evaluation x its steps)."""
    from torch.utils.flop_counter import FlopCounterMode

    c = model.n_bands
    ms = torch.rand(1, c, size // ratio, size // ratio)
    pan, lms = torch.rand(1, 1, size, size), torch.rand(1, c, size, size)
    steps = 1
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        if getattr(model, "arch", "") == "diffusion_teacher":
            steps = int(model.steps)
            model(ms, pan, lms, steps=1)
        else:
            model(ms, pan, lms)
    return float(counter.get_total_flops()) * steps


def time_inference(model: torch.nn.Module, scene, device: torch.device, repeats: int,
                   slow_s: float = 20.0) -> dict[str, float]:
    """Median wall and inference time of ``repeats`` runs after a warm-up run; a first run
    slower than ``slow_s`` is itself the measurement (its start-up share is negligible)."""
    from tta.engine.adapt import adapt_scene

    walls, infers = [], []
    for i in range(repeats + 1):
        sync(device)
        t0 = time.perf_counter()
        res = adapt_scene(model, scene, adapter="none", device=device)
        sync(device)
        walls.append(time.perf_counter() - t0)
        infers.append(float(res.report["timings"]["infer"]))
        del res
        if i == 0 and walls[0] > slow_s:
            return {"wall_s": walls[0], "infer_s": infers[0], "runs": 1}
    return {"wall_s": statistics.median(walls[1:]), "infer_s": statistics.median(infers[1:]),
            "runs": repeats}


def _shown(source: str, root: Path) -> str:
    """A held-out image's name with the data root left out."""
    return source.replace(str(root.resolve()) + "/", "").replace(str(root) + "/", "")


def markdown(meta: dict) -> list[str]:
    q, s = meta["quality"], meta["speed"]
    lines = [f"# Zoo ({meta['sensor']}) — {meta['device']}, torch {meta['torch']}, "
             f"{meta['date']}", "",
             f"Held-out images: {', '.join(meta['held_out'])}. RR indexes in DN, no border "
             "cut, mean over the images (higher is better for Q2n, SCC, Q, PSNR).", "",
             "| model | " + " | ".join(QUALITY) + " |", "|---" * (len(QUALITY) + 1) + "|"]
    for r in q:
        lines.append(f"| {r['model']} | " + " | ".join(f"{r[k]:.4f}" for k in QUALITY) + " |")
    sizes = sorted({t["size"] for t in s})
    lines += ["", f"Cost: parameters; GFLOPs of one forward at {meta['flops_size']}² "
              "(conv + matmul, 2 per multiply-add); inference time of the whole-scene path "
              "(`tta adapt --adapter none`, batched tiles), median of "
              f"{meta['repeats']} after a warm-up (a single run when the first takes over "
              f"20 s), on {meta['speed_scene']}.", "",
              "| model | params | GFLOPs | " + " | ".join(f"infer {n}² (s)" for n in sizes)
              + " |", "|---" * (3 + len(sizes)) + "|"]
    for r in meta["cost"]:
        times = []
        for n in sizes:
            hit = [t for t in s if t["model"] == r["model"] and t["size"] == n]
            times.append(f"{hit[0]['infer_s']:.3f}" if hit and "infer_s" in hit[0]
                         else (hit[0].get("skipped", "—") if hit else "—"))
        lines.append(f"| {r['model']} | {r['params']:,} | {r['gflops']:.1f} | "
                     + " | ".join(times) + " |")
    for note in meta.get("notes", []):
        lines += ["", note]
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sensor", default="WV3")
    ap.add_argument("--weights-dir", type=Path, default=ROOT / "pretrained" / "weights")
    ap.add_argument("--cards-dir", type=Path, default=None,
                    help="folder of the cards and training logs (default: pretrained/cards "
                         "for the shipped weights, else --weights-dir)")
    ap.add_argument("--data-root", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--speed-scene", type=Path, default=None,
                    help="scene cropped for the timings (default: the WV2 scene for 8-band "
                         "sensors, the QB full-resolution scene for 4-band ones)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--sizes", type=int, nargs="+", default=[512])
    ap.add_argument("--teacher-max-size", type=int, default=512)
    ap.add_argument("--flops-size", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--classical", default="exp,gsa")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    if args.cards_dir is None:
        shipped = args.weights_dir.resolve() == (ROOT / "pretrained" / "weights").resolve()
        args.cards_dir = ROOT / "pretrained" / "cards" if shipped else args.weights_dir

    from tta.bench.runner import _speed_scene
    from tta.io import read_scene
    from tta.training.trainer import validate, validate_classical

    models = zoo_models(args.weights_dir, args.cards_dir, args.sensor)
    pairs = held_out(models[0][1].card, args.cards_dir, args.data_root)
    quality = []
    for method in [m for m in args.classical.split(",") if m]:
        print(f"quality {method} ...", flush=True)
        scores = validate_classical(method, pairs, args.sensor)
        quality.append({"model": method.upper(), **{k: scores[k] for k in QUALITY}})
    for stem, model in models:
        print(f"quality {stem} ...", flush=True)
        scores = validate(model.to(device), pairs, device)
        quality.append({"model": stem, **{k: scores[k] for k in QUALITY}})
        model.to("cpu")

    n_bands = models[0][1].n_bands
    scene_path = args.speed_scene or args.data_root / (
        "wv2/wv2_grip_top_fr.h5" if n_bands == 8 else "qb/qb_abfnet_fr.h5")
    full = read_scene(scene_path)
    ratio = int(full.ratio)
    cost, speed = [], []
    for stem, model in models:
        params = sum(p.numel() for p in model.parameters())
        cost.append({"model": stem, "params": params,
                     "gflops": count_flops(model, args.flops_size, ratio) / 1e9})
        for size in args.sizes:
            row = {"model": stem, "size": size}
            if model.arch == "diffusion_teacher" and size > args.teacher_max_size:
                row["skipped"] = f"not run (> {args.teacher_max_size}²)"
            else:
                scene, how = _speed_scene(full, size)
                print(f"speed {stem} {size}² ...", flush=True)
                row.update(time_inference(model, scene, device, args.repeats))
            speed.append(row)
    notes = []
    for n in args.sizes:
        t = [r for r in speed if r["model"].startswith("diffusion_teacher") and r["size"] == n
             and "infer_s" in r]
        st = [r for r in speed if r["model"].startswith("diffusion_student") and r["size"] == n
              and "infer_s" in r]
        if t and st:
            notes.append(f"Student vs teacher at {n}²: {t[0]['infer_s'] / st[0]['infer_s']:.1f}×"
                         " faster.")
    today = dt.date.today().isoformat()
    meta = {"date": today, "device": device_name(device), "torch": torch.__version__,
            "sensor": args.sensor, "held_out": [_shown(p.source, args.data_root) for p in pairs],
            "flops_size": args.flops_size, "repeats": args.repeats,
            "speed_scene": f"{scene_path.name} ({_speed_scene(full, args.sizes[0])[1]})",
            "quality": quality, "cost": cost, "speed": speed, "notes": notes,
            "weights": {stem: m.card["weights"]["sha256"] for stem, m in models}}
    folder = result_folder(device, args.out)
    stem = "zoo" if args.sensor.upper() == "WV3" else f"zoo_{args.sensor.lower()}"
    with open(folder / f"{stem}.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["model", *QUALITY])
        writer.writeheader()
        writer.writerows({k: r[k] for k in ("model", *QUALITY)} for r in quality)
    write_results(folder, stem, meta, markdown(meta))


if __name__ == "__main__":
    main()
