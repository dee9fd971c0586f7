"""Wall time of the two `make demo` jobs, per source tree, alternated in one run.

Usage::

    python benchmarks/bench_demo.py [--trees DIR ...] [--rounds 2] [--scene S.h5]
        [--model fose] [--adapter ft] [--threads 2]

Per round and tree (``--trees``: checkouts to compare, default this one; each runs its own
``tta`` package): the reduced-resolution job (`tta adapt` on the Wald-degraded scene, made
once by this tree's `tta degrade`) and the full-resolution job (`tta adapt` on the scene,
with `--report`), as `make demo` runs them (`--compare` on: the CLI's default). Trees
alternate within each round so that machine load shifts every tree alike. Records each
job's wall time, its report's stage timings and decision, each tree named by its commit;
writes ``demo.{json,md}`` (``--stem``) in ``benchmarks/results/<date>-cpu/``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import device_name, result_folder, write_results  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SCENE = ROOT.parent / "shared" / "data" / "wv2" / "wv2_grip_top_fr.h5"


def tta(tree: Path, args: list[str], threads: int) -> float:
    """Run ``python -m tta ARGS`` with ``tree``'s package; wall seconds (raises on failure)."""
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": str(threads)}
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "tta", *args], cwd=tree, env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return time.perf_counter() - t0


def tree_label(tree: Path) -> str:
    """The tree's commit (``+changes`` when tracked files differ from it), else its folder
    name: results name what ran, not where it sat on this machine."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(tree), *args], capture_output=True, text=True,
                              check=True).stdout.strip()

    try:
        commit = git("rev-parse", "--short", "HEAD")
        return commit + ("+changes" if git("status", "--porcelain", "--untracked-files=no")
                         else "")
    except (OSError, subprocess.CalledProcessError):
        return tree.name


def scene_label(scene: Path) -> str:
    """``scene`` relative to the repository (``../shared/data/...``) when it lies beside it,
    else its file name."""
    scene = scene.resolve()
    return (os.path.relpath(scene, ROOT) if scene.is_relative_to(ROOT.parent)
            else scene.name)


def measure(trees: dict[Path, str], rounds: int, scene: Path, model: str, adapter: str,
            threads: int) -> list[dict]:
    """One row per tree (folder: label), round and job."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        reduced = Path(tmp) / "reduced.h5"
        tta(next(iter(trees)), ["degrade", str(scene), "-o", str(reduced), "--overwrite"], threads)
        for rnd in range(1, rounds + 1):
            for i, (tree, label) in enumerate(trees.items()):
                for job, target in (("reduced", reduced), ("full", scene)):
                    out, report = Path(tmp) / f"{i}_{job}.h5", Path(tmp) / f"{i}_{job}.json"
                    wall = tta(tree, ["adapt", "--model", model, "--adapter", adapter,
                                      "--target", str(target), "-o", str(out), "--overwrite",
                                      "--report", str(report)], threads)
                    rep = json.loads(report.read_text())
                    rows.append({"tree": label, "round": rnd, "job": job, "wall_s": wall,
                                 "timings": rep["timings"],
                                 "choice": (rep.get("decision") or {}).get("choice")})
                    print(f"round {rnd} {label} {job}: {wall:.2f} s", flush=True)
    return rows


def markdown(meta: dict) -> list[str]:
    lines = [f"# `make demo` jobs — {meta['device']}, torch {meta['torch']}, {meta['date']}", "",
             f"Threads: {meta['threads']}. Scene: `{meta['scene']}`; `tta adapt --model "
             f"{meta['model']} --adapter {meta['adapter']}` (compare on). Load average (1 min) at "
             f"start / end: {meta['load_start']} / {meta['load_end']}.", "",
             "| tree | job | wall (s) per round | median | infer | direct_infer | decide |",
             "|---|---|---|---|---|---|---|"]
    for tree in meta["trees"]:
        for job in ("reduced", "full"):
            runs = [r for r in meta["rows"] if r["tree"] == tree and r["job"] == job]
            walls = [r["wall_s"] for r in runs]

            def stage(name: str, runs: list[dict] = runs) -> str:
                vals = [r["timings"].get(name) for r in runs]
                return " / ".join("—" if v is None else f"{v:.2f}" for v in vals)

            lines.append(f"| `{tree}` | {job} | {' / '.join(f'{w:.2f}' for w in walls)} | "
                         f"{statistics.median(walls):.2f} | {stage('infer')} | "
                         f"{stage('direct_infer')} | {stage('decide')} |")
    return lines


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trees", type=Path, nargs="+", default=[ROOT])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--scene", type=Path, default=SCENE)
    ap.add_argument("--model", default="fose")
    ap.add_argument("--adapter", default="ft")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    ap.add_argument("--stem", default="demo", help="name of the result files")
    args = ap.parse_args(argv)
    if not args.scene.is_file():
        raise SystemExit(f"Error: scene {args.scene} not found (--scene)")
    torch.set_num_threads(args.threads)  # for the device label
    load_start = round(os.getloadavg()[0], 2)
    trees = {t.resolve(): tree_label(t.resolve()) for t in args.trees}
    rows = measure(trees, args.rounds, args.scene, args.model, args.adapter, args.threads)
    meta = {"date": dt.date.today().isoformat(), "device": device_name(torch.device("cpu")),
            "torch": torch.__version__, "threads": args.threads, "scene": scene_label(args.scene),
            "model": args.model, "adapter": args.adapter,
            "trees": list(trees.values()), "load_start": load_start,
            "load_end": round(os.getloadavg()[0], 2), "rows": rows}
    write_results(result_folder(torch.device("cpu"), args.out), args.stem, meta, markdown(meta))
    return meta


if __name__ == "__main__":
    main()
