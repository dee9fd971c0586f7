"""KSDiff vs its own backbone (FusionNet on the same schedule) vs EXP/GSA: held-out quality and
inference time.

Usage::

    python benchmarks/bench_ksdiff.py [--data-root ../shared/data] [--threads 1]
        [--size 512] [--repeats 5]

Quality: for each sensor (WV3, QB) the shipped ``ksdiff_<s>`` and ``fusionnet_backbone_<s>``
are scored on the rows their training runs held out (re-read from the run's log with
:func:`tta.training.held_out_pairs`; both runs hold out the same rows), with
:func:`tta.training.validate` (RR indexes in DN, no border cut, mean over the held-out images);
EXP and GSA with :func:`tta.training.validate_classical` on the same rows.

Time: one whole-image forward at ``--size``² PAN pixels (random inputs, ``inference_mode``,
CPU, ``--threads`` threads), median of ``--repeats`` rounds that run the networks in turn
(each after its own warm-up), so a change of load on a shared machine hits them alike; KSDiff
also split into its prior (PLFE2 + DDIM) and the modulated network. Writes ``ksdiff.{json,md}`` in
``benchmarks/results/<date>-cpu/``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import device_name, median_time, result_folder, write_results  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SENSORS = ("wv3", "qb")
NETS = ("ksdiff", "fusionnet_backbone")


def _scores(row: dict) -> dict:
    return {k: row[k] for k in ("Q2n", "SAM", "ERGAS", "SCC", "PSNR")}


def quality(sensor: str, data_root: Path) -> dict:
    from pretrained.zoo import CARDS_DIR, WEIGHTS_DIR, model_from_weights, read_card
    from tta.training import held_out_pairs, validate, validate_classical

    out, splits = {}, set()
    for stem in NETS:
        name = f"{stem}_{sensor}"
        card = read_card(CARDS_DIR / f"{name}.yaml")
        log = json.loads((CARDS_DIR / card["log"]).read_text())
        pairs = held_out_pairs(log["config"], data_root)
        splits.add(tuple(p.source for p in pairs))
        model = model_from_weights(WEIGHTS_DIR / card["weights"]["file"]).eval()
        out[name] = _scores(validate(model, pairs))
    if len(splits) != 1:
        sys.exit(f"{sensor}: the two runs held out different rows")
    for method in ("exp", "gsa"):
        out[method.upper()] = _scores(validate_classical(method, pairs, sensor.upper()))
    return out


def timing(size: int, repeats: int) -> dict:
    from pretrained.zoo import WEIGHTS_DIR, model_from_weights

    ks = model_from_weights(WEIGHTS_DIR / "ksdiff_wv3.safetensors").eval()
    fn = model_from_weights(WEIGHTS_DIR / "fusionnet_backbone_wv3.safetensors").eval()
    g = torch.Generator().manual_seed(0)
    ms = torch.rand(1, 8, size // 4, size // 4, generator=g)
    pan = torch.rand(1, 1, size, size, generator=g)
    lms = torch.rand(1, 8, size, size, generator=g)
    cpu = torch.device("cpu")
    fns = {"ksdiff": lambda: ks(ms, pan, lms),
           "fusionnet_backbone": lambda: fn(ms, pan, lms),
           "ksdiff prior (PLFE2 + DDIM)": lambda: ks.prior(pan, lms),
           "ksdiff network (kernel generator + modulated FusionNet)":
               lambda: ks.fuse(pan, lms, z)}
    runs: dict[str, list[float]] = {k: [] for k in fns}
    with torch.inference_mode():
        z = ks.prior(pan, lms)
        for _ in range(repeats):  # interleaved, so a change of machine load hits all alike
            for key, f in fns.items():
                runs[key].append(median_time(f, cpu, 1))
    times = {k: statistics.median(v) for k, v in runs.items()}
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-root", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cpu = torch.device("cpu")
    data_root = Path(args.data_root)
    results = {s: quality(s, data_root) for s in SENSORS}
    times = timing(args.size, args.repeats)
    ratio = times["ksdiff"] / times["fusionnet_backbone"]
    meta = {"device": device_name(cpu), "threads": args.threads, "size": args.size,
            "repeats": args.repeats, "quality": results, "seconds": times,
            "time_ratio_ksdiff_over_backbone": ratio,
            "command": "python benchmarks/bench_ksdiff.py --threads "
                       f"{args.threads} --size {args.size} --repeats {args.repeats}"}
    md = ["# KSDiff vs its backbone (FusionNet, same schedule) vs EXP/GSA, held-out rows",
          "",
          f"Device: {device_name(cpu)}. Command: `{meta['command']}`.",
          "Quality: RR indexes (DN, no border cut) on the rows each training run held out "
          "(the same rows for both networks); mean over the held-out images. Schedules (cards "
          "and logs in pretrained/cards): KSDiff = pretrain + diffuse steps, its backbone the "
          "same total (WV3 2000 + 1000 vs 3000, QB 1000 + 500 vs 1500; batch 8 of 48² "
          "patches, seed 0, CPU, 1 thread).",
          ""]
    for s in SENSORS:
        md += [f"## {s.upper()}", "", "| method | Q2n | SAM | ERGAS | SCC | PSNR |",
               "|---|---|---|---|---|---|"]
        for name, r in results[s].items():
            md.append(f"| {name} | {r['Q2n']:.4f} | {r['SAM']:.3f} | "
                      f"{r['ERGAS']:.3f} | {r['SCC']:.4f} | {r['PSNR']:.2f} |")
        md.append("")
    md += [f"## Inference time, one {args.size}x{args.size} PAN-pixel forward (8 bands), median "
           f"of {args.repeats}", "", "| network | seconds |", "|---|---|"]
    md += [f"| {k} | {v:.3f} |" for k, v in times.items()]
    md += ["", f"KSDiff / backbone time: {ratio:.2f}x."]
    write_results(result_folder(cpu), "ksdiff", meta, md)


if __name__ == "__main__":
    main()
