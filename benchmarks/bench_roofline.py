"""Roofline of the zoo on this machine: each network's inference throughput against a dense
3x3 convolution of the network's width, measured in the same run.

Usage::

    python benchmarks/bench_roofline.py [--device cpu|cuda] [--threads 2] [--sizes 512 2048]
        [--models lagconv diffusion_student fose fusionnet] [--tile 512] [--repeats 5]

Per network (the shipped WV3 zoo weights; ``fusionnet`` and other architectures without
shipped weights run with seeded random weights, which cost the same):

* **FLOPs** of one forward on an inference tile (``torch.utils.flop_counter``: conv and
  matmul, 2 per multiply-add), per PAN pixel, counted on the reference (autograd) form;
* **reference**: a dense 3x3 convolution ``width -> width`` (``width`` = the input channels of
  the network's channel mapper, 32 for every network here) on the same tile shape,
  channels-last, the layout the tiled inference hands the networks; GFLOP/s;
* **tile**: the network's forward on one tile, channels-last, under ``torch.inference_mode``,
  GFLOP/s and the ratio to the reference;
* **scene** (per ``--sizes``): the whole-scene inference of ``tta adapt --adapter none``
  (:func:`tta.adapt_scene`: receptive-field probe, overlapping tiles, blending) on a
  generated scene of that size; the useful GFLOP/s (per-pixel FLOPs x scene pixels / time)
  counts the tile overlap as overhead, and the ratio to the reference.

Reference and tile forward alternate ``--repeats`` times (medians; the ratio is the median
of the per-round ratios), and the reference is timed again around every scene run, so that
load from other processes shifts both sides of each ratio alike; the load average is
recorded. Writes ``roofline.{json,md}`` (``--stem``) in ``benchmarks/results/<date>-<device>/``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
from _common import device_name, result_folder, sync, write_results  # noqa: E402

#: Networks timed by default: the shipped WV3 zoo (teacher excepted: 50 student-sized UNet
#: passes per forward) and the DLPan FusionNet architecture.
DEFAULT_MODELS = ("lagconv", "diffusion_student", "fose", "fusionnet")


def load_network(name: str) -> torch.nn.Module:
    """The shipped zoo network ``name`` (WV3), else the architecture with seeded weights."""
    import pretrained
    from pretrained.zoo import load_zoo
    from tta.errors import InputError

    try:
        return load_zoo(name).eval()
    except InputError:  # no shipped weights for this architecture
        torch.manual_seed(0)
        return pretrained.create_model(name, n_bands=8).eval()


def network_width(model: torch.nn.Module) -> int:
    """Input channels of the network's channel mapper (its feature width)."""
    mapper = model.get_submodule(model.channel_mappers[0])
    return int(mapper.in_channels)


def tile_inputs(n_bands: int, tile: int, device: torch.device, ratio: int = 4
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Seeded ``(ms, pan, lms)`` of one tile, channels-last, on ``device``."""
    g = torch.Generator().manual_seed(0)
    ms = torch.rand(1, n_bands, tile // ratio, tile // ratio, generator=g)
    pan = torch.rand(1, 1, tile, tile, generator=g)
    lms = torch.rand(1, n_bands, tile, tile, generator=g)
    return tuple(t.to(device, memory_format=torch.channels_last) for t in (ms, pan, lms))


def flops_per_pixel(model: torch.nn.Module, tile: int, device: torch.device) -> float:
    """FLOPs of one forward on a ``tile``² input, divided by its PAN pixels.

    Counted on the network's reference form (autograd on, as in training: LAGConv's
    ``unfold`` form), so that a faster inference computation (LAGConv's blocked taps and box
    sums) does not change the count of useful FLOPs."""
    from torch.utils.flop_counter import FlopCounterMode

    inputs = [t.requires_grad_() for t in tile_inputs(model.n_bands, tile, device)]
    with torch.enable_grad(), FlopCounterMode(display=False) as counter:
        model(*inputs)
    return counter.get_total_flops() / tile ** 2


def timed(fn: Callable[[], object], device: torch.device, calls: int = 1) -> float:
    """Seconds per call of ``fn`` over ``calls`` calls (after the caller's warm-up)."""
    sync(device)
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    sync(device)
    return (time.perf_counter() - t0) / calls


class DenseReference:
    """A dense 3x3 convolution ``width -> width`` on ``(1, width, tile, tile)``, channels-last.

    :meth:`rate` times a few calls and returns GFLOP/s.
    """

    def __init__(self, width: int, tile: int, device: torch.device) -> None:
        g = torch.Generator().manual_seed(1)
        self.x = torch.rand(1, width, tile, tile, generator=g).to(
            device, memory_format=torch.channels_last)
        self.w = (torch.rand(width, width, 3, 3, generator=g) - 0.5).to(device)
        self.b = torch.zeros(width, device=device)
        self.flops = 2 * width * width * 9 * tile * tile
        self.device = device
        self.rate()  # warm-up

    def run(self) -> torch.Tensor:
        return F.conv2d(self.x, self.w, self.b, padding=1)

    def rate(self, calls: int = 4) -> float:
        with torch.inference_mode():
            return self.flops / timed(self.run, self.device, calls) / 1e9


def generated_scene(size: int, n_bands: int = 8, sensor: str = "WV3"):
    """A seeded ``size``² scene (PAN grid, ratio 4) of smooth random DN."""
    from tta.io.scene import Scene
    from tta.sensors import get_sensor

    rng = np.random.default_rng(0)
    h = size // 4
    ms = rng.uniform(100, 1500, (n_bands, h, h)).astype(np.float32)
    pan = np.repeat(np.repeat(ms.mean(0), 4, 0), 4, 1) + rng.normal(0, 30, (size, size))
    return Scene(ms=ms, pan=np.clip(pan, 1, 2047).astype(np.float32), sensor=get_sensor(sensor))


def scene_inference(model: torch.nn.Module, size: int, device: torch.device, tile: int
                    ) -> dict[str, float]:
    """Whole-scene inference of ``tta adapt --adapter none`` on a generated ``size``² scene."""
    from tta import adapt_scene

    scene = generated_scene(size, model.n_bands)
    res = adapt_scene(model, scene, adapter="none", device=device, tile=tile)
    return {"infer_s": float(res.report["timings"]["infer"]),
            "overlap": int(res.report["inference"]["overlap"]),
            "margin": int(res.report["inference"]["margin"])}


def measure(name: str, sizes: list[int], tile: int, device: torch.device, repeats: int,
            say: Callable[[str], None]) -> dict:
    """One network's row: FLOPs, reference, tile forward and whole-scene throughputs."""
    model = load_network(name).to(device)
    width = network_width(model)
    fpp = flops_per_pixel(model, tile, device)
    ref = DenseReference(width, tile, device)
    inputs = tile_inputs(model.n_bands, tile, device)

    def forward() -> None:
        with torch.inference_mode():
            model(*inputs)

    forward()  # warm-up
    refs, rates = [], []
    for _ in range(repeats):
        refs.append(ref.rate())
        rates.append(fpp * tile ** 2 / timed(forward, device) / 1e9)
    row = {"model": name, "width": width, "gflops_per_mpx": fpp / 1e3,
           "gflops_512": fpp * 512 ** 2 / 1e9,
           "reference_gflops_s": statistics.median(refs),
           "tile_gflops_s": statistics.median(rates),
           "tile_ratio": statistics.median(r / d for r, d in zip(rates, refs, strict=True)),
           "scenes": []}
    say(f"{name}: {fpp * 512 ** 2 / 1e9:.1f} GFLOPs at 512², reference "
        f"{row['reference_gflops_s']:.1f} GFLOP/s, tile {row['tile_gflops_s']:.1f} GFLOP/s "
        f"({row['tile_ratio']:.0%})")
    for size in sizes:
        before = ref.rate()
        run = scene_inference(model, size, device, tile)
        after = ref.rate()
        useful = fpp * size ** 2 / run["infer_s"] / 1e9
        reference = (before + after) / 2
        row["scenes"].append({"size": size, **run, "gflops_s": useful,
                              "reference_gflops_s": reference, "ratio": useful / reference})
        say(f"  {size}²: infer {run['infer_s']:.2f} s, {useful:.1f} GFLOP/s "
            f"({useful / reference:.0%} of {reference:.1f})")
    return row


def table(rows: list[dict], sizes: list[int]) -> list[str]:
    """Markdown table of :func:`measure` rows."""
    lines = ["| model | width | GFLOPs at 512² | reference GFLOP/s | tile GFLOP/s | tile ratio | "
             + " | ".join(f"{s}² infer (s) | {s}² ratio" for s in sizes) + " |",
             "|---" * (6 + 2 * len(sizes)) + "|"]
    for r in rows:
        cells = [r["model"], str(r["width"]), f"{r['gflops_512']:.1f}",
                 f"{r['reference_gflops_s']:.1f}", f"{r['tile_gflops_s']:.1f}",
                 f"{r['tile_ratio']:.0%}"]
        for s in sizes:
            hit = [x for x in r["scenes"] if x["size"] == s]
            cells += ([f"{hit[0]['infer_s']:.2f}", f"{hit[0]['ratio']:.0%}"] if hit
                      else ["—", "—"])
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def markdown(meta: dict) -> list[str]:
    return [f"# Roofline — {meta['device']}, torch {meta['torch']}, {meta['date']}", "",
            f"Threads: {meta['threads']}. Load average (1 min) at start / end: "
            f"{meta['load_start']} / {meta['load_end']}. Reference: dense 3x3 conv "
            f"width→width on one {meta['tile']}² tile, channels-last. *tile*: the network's "
            "forward on that tile; *scene*: whole-scene inference of `tta adapt --adapter "
            "none` (tiles with receptive-field overlap, blending), useful FLOPs of the scene "
            "over its time. Ratios are to the reference measured alongside. Freed memory "
            f"retained for reuse (`tta.allocator`, as the `tta` command): "
            f"{'yes' if meta.get('retain_freed_memory') else 'no'}.", "",
            *table(meta["rows"], meta["sizes"])]


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--sizes", type=int, nargs="*", default=[512, 2048])
    ap.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS))
    ap.add_argument("--tile", type=int, default=512,
                    help="tile side of the reference and the tile forward, and the scenes' "
                         "largest tile (default: tta adapt's)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    ap.add_argument("--stem", default="roofline", help="name of the result files")
    args = ap.parse_args(argv)
    from tta.allocator import retain_freed_memory

    retained = retain_freed_memory(respect_env=True)  # as the tta command does
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    load_start = round(os.getloadavg()[0], 2)
    rows = [measure(name, args.sizes, args.tile, device, args.repeats,
                    lambda m: print(m, flush=True)) for name in args.models]
    meta = {"date": dt.date.today().isoformat(), "device": device_name(device),
            "torch": torch.__version__, "threads": torch.get_num_threads(),
            "tile": args.tile, "sizes": args.sizes, "load_start": load_start,
            "retain_freed_memory": retained,
            "load_end": round(os.getloadavg()[0], 2), "rows": rows}
    write_results(result_folder(device, args.out), args.stem, meta, markdown(meta))
    return meta


if __name__ == "__main__":
    main()
