"""Score every classical method on every shared scene, both protocols, with timings.

Usage::

    python benchmarks/bench_classical.py [--data ../shared/data] [--device cpu] [--threads 2]

For each h5 file under ``--data`` (all samples): reduced-resolution files (with ``gt``) are
scored against their ``gt``; full-resolution files are Wald-degraded first
(:func:`tta.physics.degrade_scene`) and the reduced copy is scored against the original MS.
Every scene is also scored at full resolution (HQNR family and reprojection family) on its
own inputs. Multi-sample files report the mean over samples. Writes
``benchmarks/results/<date>-<device>/classical.{json,md,csv}``.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import device_name, result_folder, sync, write_results  # noqa: E402

from tta.classical import fuse_scene, list_methods  # noqa: E402
from tta.evaluation import evaluate  # noqa: E402
from tta.io import iter_scenes  # noqa: E402
from tta.physics import degrade_scene  # noqa: E402

RR_COLS = ("Q2n", "SAM", "ERGAS", "SCC")
FR_COLS = ("HQNR", "D_lambda_K", "D_s", "R-Q2n", "R-SAM", "D_rho")


def timed_fuse(scene, method: str, device: torch.device):
    sync(device)
    t0 = time.perf_counter()
    fused = fuse_scene(scene, method, device=device)
    sync(device)
    return fused, time.perf_counter() - t0


def bench_file(path: Path, methods: list[str], device: torch.device) -> list[dict]:
    acc: dict[str, list[dict]] = defaultdict(list)
    for scene in iter_scenes(path):
        reduced = scene if scene.is_reduced else degrade_scene(scene)
        for method in methods:
            fused_rr, t_rr = timed_fuse(reduced, method, device)
            row = {"time_s": t_rr}
            row.update(evaluate(reduced, fused_rr, "rr", str(device))["rr"])
            if scene.is_reduced:  # FR indexes on the (degraded) inputs of an RR set
                row.update(evaluate(scene, fused_rr, "fr", str(device))["fr"])
            else:
                fused_fr, _ = timed_fuse(scene, method, device)
                row.update(evaluate(scene, fused_fr, "fr", str(device))["fr"])
            acc[method].append(row)
    rows = []
    for method, samples in acc.items():
        mean = {k: statistics.fmean(s[k] for s in samples) for k in samples[0]}
        rows.append({"scene": str(path.relative_to(path.parents[1])), "method": method,
                     "samples": len(samples), **mean})
    return rows


def markdown(rows: list[dict], header: str) -> list[str]:
    cols = ("scene", "method", *RR_COLS, *FR_COLS, "time_s")
    lines = [header, "",
             "RR: Wald protocol (reduced resolution vs the original MS, 21-px border cut). "
             "FR: full resolution on the scene's own inputs; HQNR family and reprojection "
             "family (R-*, D_rho). Higher is better for Q2n, SCC, HQNR, R-Q2n; lower for "
             "the rest. Time: one fusion at reduced scale.", "",
             "| " + " | ".join(cols) + " |", "|" + " --- |" * len(cols)]
    for r in rows:
        vals = [r["scene"], r["method"]] + [f"{r[c]:.4f}" for c in (*RR_COLS, *FR_COLS)]
        vals.append(f"{r['time_s'] * 1000:.0f} ms")
        lines.append("| " + " | ".join(vals) + " |")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared/data"))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--methods", nargs="+", default=None)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    methods = args.methods or list_methods()
    files = sorted(Path(args.data).rglob("*.h5"))
    if not files:
        sys.exit(f"no .h5 scenes under {args.data}")
    rows = []
    for path in files:
        print(f"{path.name} ...", flush=True)
        rows += bench_file(path, methods, device)
    today = dt.date.today().isoformat()
    name = device_name(device)
    folder = result_folder(device, Path(args.out))
    with open(folder / "classical.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    meta = {"date": today, "device": name, "torch": torch.__version__, "rows": rows}
    write_results(folder, "classical", meta,
                  markdown(rows, f"Classical methods — {name}, torch {torch.__version__}, "
                                 f"{today}"))


if __name__ == "__main__":
    main()
