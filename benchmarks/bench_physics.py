"""Time the physics operators (MTF filter, Wald degradation, interp23tap, coregistration).

Usage::

    python benchmarks/bench_physics.py [--device cpu|cuda] [--threads 2] [--sizes 512 2048]

Writes ``benchmarks/results/<date>-<device>/physics.{json,md}``. Times are medians over
repeats after a warm-up; CUDA timings synchronise before reading the clock. Inputs are random
DN-like images (the operators are data-independent in cost).
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import device_name, median_time, result_folder, write_results  # noqa: E402

from tta.physics import coregistration_phases, decimate, interp23tap, mtf_filter, pan_downsample
from tta.sensors import get_sensor


def _cases(hrms, pan, lrms, gains, r) -> dict[str, Callable[[], object]]:
    return {
        "mtf_filter (8 bands, 41x41)": lambda: mtf_filter(hrms, gains, r),
        "Wald degradation MS+PAN": lambda: (decimate(mtf_filter(hrms, gains, r), r),
                                            pan_downsample(pan, r)),
        "interp23tap x4 (8 bands)": lambda: interp23tap(lrms, r),
        "coregistration phases": lambda: coregistration_phases(lrms, pan, gains, r),
    }


def run(device: torch.device, sizes: list[int], repeats: int) -> list[dict]:
    sensor = get_sensor("WV3")
    r = sensor.ratio
    rows = []
    for size in sizes:
        g = torch.Generator().manual_seed(0)
        hrms = (torch.rand(1, 8, size, size, generator=g) * 2047).to(device)
        pan = (torch.rand(1, 1, size, size, generator=g) * 2047).to(device)
        lrms = (torch.rand(1, 8, size // r, size // r, generator=g) * 2047).to(device)
        cases = _cases(hrms, pan, lrms, sensor.mtf_ms, r)
        with torch.inference_mode():
            for name, fn in cases.items():
                t = median_time(fn, device, repeats)
                rows.append({"op": name, "size": f"{size}x{size}x8", "seconds": t})
                print(f"{name:32s} {size:5d}^2  {t * 1000:9.2f} ms", flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--sizes", type=int, nargs="+", default=[512, 2048])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    rows = run(device, args.sizes, args.repeats)
    today = dt.date.today().isoformat()
    name = device_name(device)
    meta = {"date": today, "device": name, "torch": torch.__version__, "rows": rows}
    lines = [f"Physics operators — {name}, torch {torch.__version__}, {today}", "",
             "| operator | size (PAN scale) | median time |", "| --- | --- | --- |"]
    lines += [f"| {r['op']} | {r['size']} | {r['seconds'] * 1000:.1f} ms |" for r in rows]
    write_results(result_folder(device, Path(args.out)), "physics", meta, lines)

if __name__ == "__main__":
    main()
