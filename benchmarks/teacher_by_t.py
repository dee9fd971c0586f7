"""Diagnostic: the diffusion teacher's x0 (residual) prediction error by timestep, on held-out rows.

For each of a few timesteps ``t`` the held-out residual ``x0 = gt - lms`` is noised with
``q_sample`` (seeded noise) and the UNet's prediction is compared with ``x0`` (mean absolute
error, in ``/ max_value`` units) and with the zero prediction (``|x0|``), which is what a
network ignoring its condition at that noise level would be worth.

Usage::

    python benchmarks/teacher_by_t.py WEIGHTS.safetensors LOG.json [--t 0 250 500 750 999]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    from pretrained.zoo import model_from_weights
    from tta.training import held_out_pairs

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("weights")
    ap.add_argument("log")
    ap.add_argument("--t", type=int, nargs="+", default=[0, 100, 250, 500, 750, 900, 999])
    ap.add_argument("--data-root", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    net = model_from_weights(args.weights, "diffusion_teacher").eval()
    pairs = held_out_pairs(json.loads(Path(args.log).read_text())["config"], args.data_root)
    print(f"| t | alpha_bar | L1(x0_pred, x0) | L1(0, x0) | ratio |  ({Path(args.weights).name})")
    print("|---|---|---|---|---|")
    with torch.no_grad():
        for t in args.t:
            err = zero = 0.0
            for p in pairs:
                b = p.batch()
                x0 = b["gt"] - b["lms"]
                g = torch.Generator().manual_seed(t)
                noise = torch.randn(x0.shape, generator=g)
                x_t = net.q_sample(x0, torch.full((1,), t), noise)
                pred = net.denoise(x_t, t, b["lms"], b["pan"])
                err += float((pred - x0).abs().mean()) / len(pairs)
                zero += float(x0.abs().mean()) / len(pairs)
            print(f"| {t} | {net.alpha_bar[t]:.4f} | {err:.5f} | {zero:.5f} | {err / zero:.3f} |")


if __name__ == "__main__":
    main()
