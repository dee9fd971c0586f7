"""Wall time of one `tta batch` of six real scenes: in-process vs local Ray.

Usage::

    python benchmarks/bench_batch.py [--data ../shared/data] [--crop 128] [--steps 5]
        [--workers 2]

Writes 128 px PAN crops of six shared scenes (WV2, WV3, QB, GF2 samples 0 and 3, Landsat 8;
the test set of ``tests/test_batch.py``) to a temporary folder, then runs
:func:`tta.run_batch` on them (default recipe, ``--steps``, CPU, 1 torch thread per scene)
with the ``local`` executor (one scene after another in this process) and the ``ray``
executor (a local Ray with ``--workers`` scenes at once), each into a fresh folder. Checks
that both give identical products. Writes
``benchmarks/results/<date>-cpu/batch.{json,md}``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SCENES = [("wv2", "wv2/wv2_grip_top_fr.h5", "fose"), ("wv3", "wv3/wv3_shanghai_fr.h5", "fose"),
          ("qb", "qb/qb_abfnet_fr.h5", "fose:qb"), ("gf2_0", "gf2/gf2_psdata3_train_fr.h5#0",
                                                    "fose:qb"),
          ("gf2_3", "gf2/gf2_psdata3_train_fr.h5#3", "fose:qb"),
          ("landsat8", "landsat8/landsat8_fr.h5", "fose:qb")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared"
                                          / "data"))
    ap.add_argument("--crop", type=int, default=128)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()

    import h5py
    import torch

    import tta
    from benchmarks._common import device_name, result_folder, write_results

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        lines = []
        for name, spec, model in SCENES:
            s = tta.read_scene(str(Path(args.data) / spec))
            r, n = s.ratio, args.crop
            tta.write_h5(d / f"{name}.h5", replace(s, ms=s.ms[:, :n // r, :n // r],
                                                   pan=s.pan[:n, :n], gt=None, nodata=None))
            lines.append(f"{d / name}.h5,{model}\n")
        (d / "list.csv").write_text("scene,model\n" + "".join(lines))
        import logging

        import ray

        t0 = time.perf_counter()  # what the ray executor adds before the first scene
        ray.init(address="local", num_cpus=args.workers, include_dashboard=False,
                 log_to_driver=False, logging_level=logging.ERROR,
                 object_store_memory=128 * 1024**2)
        t1 = time.perf_counter()
        ray.shutdown()
        ray_start = {"init_s": round(t1 - t0, 2),
                     "shutdown_s": round(time.perf_counter() - t1, 2)}
        print("ray", ray_start, flush=True)
        runs = {}
        for executor in ("local", "ray"):
            load = os.getloadavg()[0]
            t0 = time.perf_counter()
            res = tta.run_batch([str(d / "list.csv")], d / executor, executor=executor,
                                workers=args.workers, threads=1, steps=args.steps,
                                device="cpu")
            wall = time.perf_counter() - t0
            assert res.counts["done"] == len(SCENES), res.rows
            runs[executor] = {"wall_s": round(wall, 2), "load_1min_before": load,
                              "executor": res.executor,
                              "scene_wall_s": {r["name"]: round(r["wall_s"], 2)
                                               for r in res.rows}}
            print(executor, f"{wall:.1f} s", flush=True)
        same = all(np.array_equal(h5py.File(d / "local" / f"{n}_fused.h5")["fused"][:],
                                  h5py.File(d / "ray" / f"{n}_fused.h5")["fused"][:])
                   for n, _, _ in SCENES)
    cpu = device_name(torch.device("cpu"))
    meta = {"date": time.strftime("%Y-%m-%d"),
            "device": f"{cpu}, {os.cpu_count()} cores shared with other jobs",
            "torch": torch.__version__,
            "threads_per_scene": 1, "crop": args.crop, "steps": args.steps,
            "scenes": [s[0] for s in SCENES], "runs": runs, "ray_start": ray_start,
            "identical_products": same}
    md = [f"# tta batch: {len(SCENES)} scenes ({args.crop} px PAN crops, --steps "
          f"{args.steps}), in-process vs local Ray", "",
          f"{meta['date']}, {meta['device']}, torch {meta['torch']}, 1 thread per scene.", "",
          "| executor | scenes at once | wall (s) | load avg before |", "|---|---|---|---|",
          f"| local | 1 | {runs['local']['wall_s']} | {runs['local']['load_1min_before']:.1f} |",
          f"| ray | {args.workers} | {runs['ray']['wall_s']} | "
          f"{runs['ray']['load_1min_before']:.1f} |", "",
          f"Identical products: {same}. A local Ray alone: `ray.init` {ray_start['init_s']} s,"
          f" `ray.shutdown` {ray_start['shutdown_s']} s.", "",
          "Command: `python benchmarks/bench_batch.py` (defaults)."]
    write_results(result_folder(torch.device("cpu")), "batch", meta, md)


if __name__ == "__main__":
    main()
