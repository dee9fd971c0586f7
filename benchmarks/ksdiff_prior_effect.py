"""How much does KSDiff's prior change its output? Held-out scores of a KSDiff file with three
priors: the training encoder's ``PLFE1(pan, lms, gt)`` (an oracle: it sees the reference), the
inference prior (PLFE2 + DDIM), and a zero core (``W = 1``: the plain FusionNet backbone).

Usage::

    python benchmarks/ksdiff_prior_effect.py WEIGHTS.safetensors LOG.json [...] [--threads 1]

Each file is scored on the rows its training run held out (``LOG.json``'s config, re-read with
:func:`tta.training.held_out_pairs`), RR indexes in DN without border cut, mean over images.
Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def scores(weights: str, log: str, data_root: str) -> dict[str, dict[str, float]]:
    from pretrained.zoo import model_from_weights
    from tta.metrics import rr_metrics
    from tta.training import held_out_pairs

    net = model_from_weights(weights, "ksdiff").eval()
    pairs = held_out_pairs(json.loads(Path(log).read_text())["config"], data_root)
    rows: dict[str, list[dict[str, float]]] = {"oracle PLFE1(gt)": [], "PLFE2 + DDIM": [],
                                               "zero core (backbone)": []}
    with torch.no_grad():
        for p in pairs:
            b = p.batch()
            outs = {"oracle PLFE1(gt)": net.fuse(b["pan"], b["lms"],
                                                 net.encode(b["pan"], b["lms"], p.gt[None])),
                    "PLFE2 + DDIM": net(b["ms"], b["pan"], b["lms"]),
                    "zero core (backbone)": net.net(b["ms"], b["pan"], b["lms"])}
            for key, out in outs.items():
                s = rr_metrics(p.gt.double() * p.max_value, out[0].double() * p.max_value,
                               p.ratio, p.max_value, border=0)
                rows[key].append({k: float(s[k]) for k in ("Q2n", "SAM", "ERGAS")})
    return {k: {m: sum(r[m] for r in v) / len(v) for m in v[0]} for k, v in rows.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="+", help="WEIGHTS LOG pairs")
    ap.add_argument("--data-root", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print("| file | prior | Q2n | SAM | ERGAS |\n|---|---|---|---|---|")
    for weights, log in zip(args.files[::2], args.files[1::2], strict=True):
        for prior, s in scores(weights, log, args.data_root).items():
            print(f"| {Path(weights).name} | {prior} | {s['Q2n']:.4f} | {s['SAM']:.3f} | "
                  f"{s['ERGAS']:.3f} |")


if __name__ == "__main__":
    main()
