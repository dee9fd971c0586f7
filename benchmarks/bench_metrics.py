"""Time the full reduced- plus full-resolution metric set (what `tta eval --protocol both` runs).

Usage::

    python benchmarks/bench_metrics.py [--device cpu|cuda] [--threads 2] [--sizes 512]

Per size: an 8-band WV3-like scene (random smooth MS, PAN, a fused image = MS upsampled plus
PAN detail, all in DN), timed for ``rr_metrics`` (Q2n, Q, SAM, ERGAS, SCC, PSNR) and
``fr_metrics`` (D_lambda, D_s, QNR, D_lambda_K, HQNR, R-Q2n, R-Q, R-SAM, R-ERGAS, D_rho).
Writes ``benchmarks/results/<date>-<device>/metrics.{json,md}``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
from _common import device_name, median_time, result_folder, write_results  # noqa: E402

from tta.metrics import fr_metrics, rr_metrics  # noqa: E402
from tta.physics import interp23tap  # noqa: E402
from tta.sensors import get_sensor  # noqa: E402


def scene(size: int, device: torch.device):
    """Smooth random MS (h = size/4), PAN and a plausible fused image, float64 DN."""
    g = torch.Generator().manual_seed(0)
    h = size // 4
    ms = F.avg_pool2d(torch.rand(1, 8, h + 3, h + 3, generator=g, dtype=torch.float64),
                      4, 1) * 1500 + 100
    up = interp23tap(ms, 4)
    detail = torch.randn(1, 1, size, size, generator=g, dtype=torch.float64) * 30
    pan = up.mean(1, keepdim=True) + detail
    fused = up + detail
    gt = up + 0.8 * detail
    return [t.to(device) for t in (ms, pan, fused, gt)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--sizes", type=int, nargs="+", default=[512])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    sensor = get_sensor("WV3")
    rows = []
    for size in args.sizes:
        ms, pan, fused, gt = scene(size, device)
        with torch.inference_mode():
            t_rr = median_time(partial(rr_metrics, gt, fused, 4, 2047.0), device,
                               args.repeats)
            t_fr = median_time(partial(fr_metrics, ms, pan, fused, sensor, 2047.0), device,
                               args.repeats)
        rows.append({"size": f"{size}x{size}x8", "rr_seconds": t_rr, "fr_seconds": t_fr})
        print(f"{size}^2x8: RR {t_rr:.3f} s, FR {t_fr:.3f} s", flush=True)
    today = dt.date.today().isoformat()
    name = device_name(device)
    meta = {"date": today, "device": name, "torch": torch.__version__, "rows": rows}
    lines = [f"Metric set — {name}, torch {torch.__version__}, {today}", "",
             "| size (PAN scale) | RR set | FR set (both families) | total |",
             "| --- | --- | --- | --- |"]
    lines += [f"| {r['size']} | {r['rr_seconds']:.3f} s | {r['fr_seconds']:.3f} s | "
              f"{r['rr_seconds'] + r['fr_seconds']:.3f} s |" for r in rows]
    write_results(result_folder(device, Path(args.out)), "metrics", meta, lines)


if __name__ == "__main__":
    main()
