"""Radiometric harmonisation: shared scenes re-encoded at other bit depths, with and without it.

Usage::

    python benchmarks/bench_radiometry.py [--data ../shared/data] [--weights ../shared/weights]
        [--threads 2] [--adapt]

Each target (WV2 with the DLPan WV3 FusionNet, GF2 and QB with the DLPan QuickBird
FusionNet; reduced resolution, Wald protocol) is re-encoded as a provider would deliver it:

* ``8-bit``: stretched so that the 99.8th PAN percentile maps to 255, rounded, clipped
  (a dynamic-range-adjusted 8-bit product);
* ``12-bit x2``: DN doubled, max 4095 (a 12-bit product on a brighter gain);
* ``16-bit x32``: DN times 32, max 65535 (a 16-bit container).

Direct transfer is scored with the harmonisation off and on (``AdaptConfig.harmonise``),
and the default recipe with it on (``--adapt``). Writes
``benchmarks/results/<date>-<device>/radiometry.{json,md}``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import device_name, result_folder, write_results  # noqa: E402

import pretrained  # noqa: E402
from tta.bench.runner import centre_crop  # noqa: E402
from tta.engine import AdaptConfig, adapt_scene  # noqa: E402
from tta.evaluation import evaluate  # noqa: E402
from tta.io import read_scene  # noqa: E402
from tta.physics import degrade_scene  # noqa: E402

TARGETS = (  # name, file, crop, source checkpoint
    ("WV2", "wv2/wv2_grip_top_fr.h5", None, "wv3/fusionnet.pth"),
    ("GF2", "gf2/gf2_sfnlr_rr.h5", None, "qb/fusionnet.pth"),
    ("QB", "qb/qb_abfnet_fr.h5", 512, "qb/fusionnet.pth"),
)


def encodings(scene):
    """The scene and its re-encodings (MS, PAN and gt alike)."""
    f8 = 255.0 / float(np.percentile(scene.pan, 99.8))

    def apply(fn, max_value):
        return scene.with_(ms=fn(scene.ms), pan=fn(scene.pan), gt=fn(scene.gt),
                           max_value=max_value)

    return {
        "as delivered": scene,
        "8-bit": apply(lambda a: np.clip(np.round(a * f8), 0, 255), 255.0),
        "12-bit x2": apply(lambda a: a * 2.0, 4095.0),
        "16-bit x32": apply(lambda a: a * 32.0, 65535.0),
    }


def run(net, scene, **cfg):
    t0 = time.perf_counter()
    res = adapt_scene(net, scene, config=AdaptConfig(**cfg), device="cpu")
    t = time.perf_counter() - t0
    scores = evaluate(scene, res.fused, "both")
    return {"Q2n": scores["rr"]["Q2n"], "SAM": scores["rr"]["SAM"],
            "ERGAS": scores["rr"]["ERGAS"], "HQNR": scores["fr"]["HQNR"],
            "gain": res.report["radiometry"]["gain"], "time_s": t,
            "decision": (res.report.get("decision") or {}).get("choice")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    root = Path(__file__).resolve().parents[2] / "shared"
    ap.add_argument("--data", default=str(root / "data"))
    ap.add_argument("--weights", default=str(root / "weights"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--adapt", action="store_true", help="also run the default recipe")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for name, rel, crop, ckpt in TARGETS:
        scene = read_scene(Path(args.data) / rel)
        if crop:
            scene = centre_crop(scene, crop)
        scene = scene if scene.is_reduced else degrade_scene(scene)
        net = pretrained.load("fusionnet", weights=Path(args.weights) / "dlpan" / ckpt)
        for enc, s in encodings(scene).items():
            runs = {"direct": run(net, s, adapter="none", harmonise=False),
                    "direct, harmonised": run(net, s, adapter="none", harmonise=True)}
            if args.adapt:
                runs["default (harmonised)"] = run(net, s)
            for method, r in runs.items():
                rows.append({"target": name, "encoding": enc, "method": method, **r})
                print(f"{name:4} {enc:13} {method:22} Q2n {r['Q2n']:.4f} HQNR "
                      f"{r['HQNR']:.4f} gain {r['gain']:.3g}", flush=True)
    today = dt.date.today().isoformat()
    device = torch.device("cpu")
    dev = device_name(device)
    lines = [f"# Radiometric harmonisation — {dev}, torch {torch.__version__}, {today}", "",
             "Reduced resolution (Wald protocol; RR indexes vs the re-encoded original MS, FR "
             "HQNR on the degraded inputs). `gain`: the harmonisation gain chosen (1 = none). "
             "Direct transfer of the DLPan FusionNet (WV3 checkpoint on WV2, QB checkpoint on "
             "GF2 and QB); `default`: `tta adapt` defaults.", "",
             "| target | encoding | method | Q2n ↑ | SAM ↓ | ERGAS ↓ | HQNR ↑ | gain | "
             "decision | time s |", "|" + " --- |" * 10]
    for r in rows:
        lines.append(f"| {r['target']} | {r['encoding']} | {r['method']} | {r['Q2n']:.4f} | "
                     f"{r['SAM']:.3f} | {r['ERGAS']:.3f} | {r['HQNR']:.4f} | {r['gain']:.3g} |"
                     f" {r['decision'] or '—'} | {r['time_s']:.1f} |")
    folder = result_folder(device, Path(args.out))
    write_results(folder, "radiometry", {"date": today, "device": dev,
                                         "torch": torch.__version__,
                                         "threads": torch.get_num_threads(), "rows": rows},
                  lines)


if __name__ == "__main__":
    main()
