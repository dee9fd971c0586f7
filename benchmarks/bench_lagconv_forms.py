"""LAGConv's layer against what library ops allow: the parts of its inference form, and the
other forms of its per-pixel tap weighting, each against a dense 3x3 convolution.

Usage::

    python benchmarks/bench_lagconv_forms.py [--threads 2] [--tile 512] [--repeats 7] [--compile]

Times are per *block*: ``LAGConv2d.block_pixels x threads`` pixels, the unit the inference
form (:meth:`pretrained.lagconv.LAGConv2d._forward_taps`) works in; each also as a multiple
of the dense 3x3 convolution ``32 -> 32`` (channels-last, on a ``tile``² input, scaled to a
block's pixels), measured alternately with it:

* **layer**: the shipped layer as the network runs it (``lagconv_wv3``, block 0's second
  LAGConv, with its residual and ReLU) on a ``tile``² input of real features, per block;
* **parts**, each alone with its operands in cache (one block, repeated): the weighted
  operands (per tap, its shifted input times its LCA weight: 9 ``mul`` into a
  ``(pixels, 3c)`` buffer per kernel row), the row matmuls (3 ``addmm``, ``K = 3c``, into the
  block), both interleaved as shipped, the GH term with bias, residual and ReLU (``mm`` and
  3 passes), and, on the whole tile and scaled, the LCA generator (3x3 conv with its ReLU,
  1x1 with its sigmoid: oneDNN post-ops on CPU float32) and the GH box mean (depthwise 3x3);
* **other forms** of the weighting plus matmuls (same sums): the tap products (per kernel
  row one ``mm`` with ``K = c``, ``N = 3 out`` for all its taps, then 9 ``addcmul`` of the
  shifted products: the form before 2026-12-07), the same transposed (pixels innermost, one
  transposed add back), and with ``--compile`` the products' weighting and the epilogue
  fused by ``torch.compile`` (Inductor); and the LCA generator unfused (each activation a
  pass of its own, the form before 2026-12-07).

*Bound*: the layer's FLOPs (its autograd ``unfold`` form, ``torch.utils.flop_counter``) over
the time of its shipped parts from cache (weighting + matmuls, GH, LCA generator, box mean), as
a fraction of the dense rate: the roofline ratio the layer would reach if nothing were lost to
memory traffic between its parts; *measured* is the same with the layer's time. Writes
``lagconv_forms.{json,md}`` in ``benchmarks/results/<date>-<device>/``.
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

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
from _common import device_name, result_folder, write_results  # noqa: E402
from bench_roofline import DenseReference, load_network, tile_inputs  # noqa: E402

from pretrained.lagconv import _conv_act  # noqa: E402


def per_call(fn: Callable[[], object], calls: int) -> float:
    """Seconds per call of ``fn`` over ``calls`` back-to-back calls (after one warm-up)."""
    fn()
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - t0) / calls


def layer_flops_per_pixel(layer: torch.nn.Module, x: torch.Tensor) -> float:
    """FLOPs of the layer's autograd (``unfold``) form on ``x``, per pixel."""
    from torch.utils.flop_counter import FlopCounterMode

    xg = x.detach().clone().requires_grad_()
    with torch.enable_grad(), FlopCounterMode(display=False) as counter:
        layer(xg)
    return counter.get_total_flops() / (x.shape[-2] * x.shape[-1])


class Block:
    """Operands of one block of ``m`` pixels of a layer on a ``w``-wide input, in cache."""

    def __init__(self, layer: torch.nn.Module, m: int, w: int) -> None:
        g = torch.Generator().manual_seed(2)
        k, c, o = layer.kernel_size, layer.in_channels, layer.out_channels
        self.k, self.c, self.o, self.m, self.w = k, c, o, m, w
        self.x = torch.rand(m + (k - 1) * w + k - 1, c, generator=g)
        weight = 2.0 * layer.weight.detach()
        # shipped: per kernel row (k * c, out), taps stacked; products: (c, k * out)
        self.kernel = weight.permute(2, 3, 1, 0).reshape(k, k * c, o).contiguous()
        self.products_kernel = weight.permute(2, 1, 3, 0).reshape(k, c, k * o).contiguous()
        self.gh = layer.gh.weight.detach().view(o, c).t().contiguous()
        self.bias = (layer.bias + layer.gh.bias).detach()
        self.pooled = torch.rand(m, c, generator=g)
        self.residual = torch.rand(m, o, generator=g)
        self.wts = torch.rand(m, k * k, generator=g)
        self.acc = torch.empty(m, o)
        self.operand = torch.empty(m, k * c)
        self.taps = torch.empty(k, m + k - 1, k * o)

    def window(self, dy: int) -> torch.Tensor:
        return self.x[dy * self.w:dy * self.w + self.m + self.k - 1]

    def weigh_row(self, dy: int) -> None:
        """Kernel row ``dy``'s shifted inputs times their LCA weights, side by side."""
        m, c, k, win = self.m, self.c, self.k, self.window(dy)
        for dx in range(k):
            torch.mul(win[dx:dx + m], self.wts[:, dy * k + dx:dy * k + dx + 1],
                      out=self.operand[:, dx * c:(dx + 1) * c])

    def weighting(self) -> None:
        """All rows' weighted operands (into the one buffer the shipped form reuses)."""
        for dy in range(self.k):
            self.weigh_row(dy)

    def gemms(self) -> None:
        """The shipped row matmuls (``K = k c``), accumulating into the block."""
        for dy in range(self.k):
            self.acc.addmm_(self.operand, self.kernel[dy])

    def shipped(self) -> None:
        """Weighting and matmuls interleaved as the shipped form runs them."""
        for dy in range(self.k):
            self.weigh_row(dy)
            self.acc.addmm_(self.operand, self.kernel[dy])

    def gh_term(self) -> None:
        """GH matmul into the block, biases, residual, then (when the block is done) ReLU."""
        torch.mm(self.pooled, self.gh, out=self.acc)
        self.acc.add_(self.bias).add_(self.residual).relu_()

    def product_gemms(self, buffers: int = 1) -> None:
        """The products form's matmuls (``K = c``, ``N = k out``: every tap of a kernel row
        for the row's shifted input), into one reused buffer or one per row."""
        for dy in range(self.k):
            torch.mm(self.window(dy), self.products_kernel[dy], out=self.taps[dy % buffers])

    def weigh_products(self, dy: int, taps: torch.Tensor) -> None:
        """Kernel row ``dy`` of the products form: one ``addcmul`` per tap into the block."""
        m, o, k = self.m, self.o, self.k
        for dx in range(k):
            self.acc.addcmul_(taps[dx:dx + m, dx * o:(dx + 1) * o],
                              self.wts[:, dy * k + dx:dy * k + dx + 1])


def tap_products(blk: Block) -> Callable[[], None]:
    """Per kernel row, the products of its ``k`` taps by one matmul, then one weighted add
    per tap into the block (the inference form before 2026-12-07)."""
    def run() -> None:
        for dy in range(blk.k):
            torch.mm(blk.window(dy), blk.products_kernel[dy], out=blk.taps[0])
            blk.weigh_products(dy, blk.taps[0])
    return run


def channels_first(blk: Block) -> Callable[[], None]:
    """The products form transposed: matmuls ``kernel^T x^T`` (pixels innermost), the
    weighting along pixels, the block added back transposed onto the residual."""
    k, o, m = blk.k, blk.o, blk.m
    kernel_t = blk.products_kernel.transpose(1, 2).contiguous()
    wts_t = blk.wts.t().contiguous()
    taps_t = torch.empty(k * o, m + k - 1)
    acc_t = torch.empty(o, m)

    def run() -> None:
        acc_t.zero_()
        for dy in range(k):
            torch.mm(kernel_t[dy], blk.window(dy).t(), out=taps_t)
            for dx in range(k):
                acc_t.addcmul_(taps_t[dx * o:(dx + 1) * o, dx:dx + m], wts_t[dy * k + dx])
        torch.add(acc_t.t(), blk.residual, out=blk.acc)
    return run


def compiled_epilogue(blk: Block) -> Callable[[], None]:
    """The products form's matmuls (a buffer per row), then the weighting, GH, bias,
    residual and ReLU as one ``torch.compile`` function (Inductor fuses the pointwise work
    into one pass)."""
    k, o, m = blk.k, blk.o, blk.m

    def epilogue(taps, wts, pooled, gh, bias, residual):
        acc = pooled @ gh + bias + residual
        for dy in range(k):
            for dx in range(k):
                acc = acc + taps[dy, dx:dx + m, dx * o:(dx + 1) * o] * wts[:, dy * k + dx,
                                                                           None]
        return acc.relu()

    fused = torch.compile(epilogue, dynamic=False)

    def run() -> None:
        blk.product_gemms(buffers=k)
        fused(blk.taps, blk.wts, blk.pooled, blk.gh, blk.bias, blk.residual)
    return run


def measure(tile: int, repeats: int, compile_: bool, say: Callable[[str], None]) -> dict:
    """All rows: ms per block and multiples of the dense convolution."""
    model = load_network("lagconv")
    layer = model.blocks[0].lag2
    ms, pan, lms = tile_inputs(model.n_bands, tile, torch.device("cpu"))
    with torch.inference_mode():
        x = torch.relu(model.conv_in(torch.cat([pan, lms], 1)))
        x = x.contiguous(memory_format=torch.channels_last)
        hidden = model.blocks[0].lag1(x, relu=True)
    fpp = layer_flops_per_pixel(layer, x)
    m = layer.block_pixels * torch.get_num_threads()
    blocks_per_tile = tile * tile / m
    ref = DenseReference(layer.in_channels, tile, torch.device("cpu"))
    blk = Block(layer, m, tile)

    def whole_layer() -> None:
        layer(hidden, residual=x, relu=True)

    def lca() -> None:  # as shipped: each convolution with its activation fused (oneDNN)
        _conv_act(_conv_act(x, layer.lca1, "relu"), layer.lca2, "sigmoid")

    def lca_unfused() -> None:  # the convolution, then the activation in place
        hidden = torch.relu_(layer.lca1(x)).contiguous(memory_format=torch.channels_last)
        F.linear(hidden.permute(0, 2, 3, 1), layer.lca2.weight.flatten(1),
                 layer.lca2.bias).sigmoid_()

    def box() -> None:
        layer._box_mean(x)

    rows: dict[str, tuple[Callable[[], object], float, str]] = {
        "layer": (whole_layer, blocks_per_tile, "the shipped layer on the tile (per block)"),
        "weighted operands": (blk.weighting, 1, "parts, in cache"),
        "row matmuls": (blk.gemms, 1, "parts, in cache"),
        "weighting + matmuls": (blk.shipped, 1, "parts, in cache, interleaved as shipped"),
        "GH, bias, residual, ReLU": (blk.gh_term, 1, "parts, in cache"),
        "LCA generator": (lca, blocks_per_tile, "parts, on the tile (per block)"),
        "GH box mean": (box, blocks_per_tile, "parts, on the tile (per block)"),
        "LCA generator, unfused": (lca_unfused, blocks_per_tile,
                                   "other form of the LCA generator (before 2026-12-07)"),
        "tap products": (tap_products(blk), 1, "other form of weighting + matmuls"),
        "channels-first products": (channels_first(blk), 1,
                                    "other form of weighting + matmuls"),
    }
    if compile_:
        rows["compiled epilogue"] = (compiled_epilogue(blk), 1,
                                     "other form of weighting + matmuls + GH, bias, "
                                     "residual, ReLU")
    times: dict[str, list[float]] = {name: [] for name in rows}
    dense: list[float] = []
    with torch.inference_mode():
        for _ in range(repeats):
            dense.append(ref.flops / (ref.rate() * 1e9) / blocks_per_tile)
            for name, (fn, per, _) in rows.items():
                times[name].append(per_call(fn, 1 if per > 1 else 20) / per)
    dense_s = statistics.median(dense)
    out = []
    for name, (_, _, kind) in rows.items():
        t = statistics.median(times[name])
        out.append({"name": name, "kind": kind, "ms_per_block": t * 1e3, "x_dense": t / dense_s})
        say(f"{name}: {t * 1e3:.3f} ms per block, {t / dense_s:.2f} x dense")
    by = {r["name"]: r["x_dense"] for r in out}
    dense_fpp = 2 * layer.in_channels * layer.out_channels * 9
    parts = sum(by[p] for p in ("weighting + matmuls", "GH, bias, residual, ReLU",
                                "LCA generator", "GH box mean"))
    return {"rows": out, "block_pixels": m, "dense_ms_per_block": dense_s * 1e3,
            "dense_gflops_s": ref.flops / (dense_s * blocks_per_tile) / 1e9,
            "flops_per_pixel": fpp, "flops_x_dense": fpp / dense_fpp,
            "parts_x_dense": parts, "bound_ratio": fpp / dense_fpp / parts,
            "measured_ratio": fpp / dense_fpp / by["layer"]}


def markdown(meta: dict) -> list[str]:
    lines = [f"# LAGConv's layer against library ops — {meta['device']}, torch {meta['torch']}, "
             f"{meta['date']}", "",
             f"Threads: {meta['threads']}. Load average (1 min) at start / end: "
             f"{meta['load_start']} / {meta['load_end']}. Block: {meta['block_pixels']} pixels "
             f"of a {meta['tile']}² input; dense 3x3 conv 32→32 on the same pixels: "
             f"{meta['dense_ms_per_block']:.3f} ms ({meta['dense_gflops_s']:.1f} GFLOP/s). "
             f"The layer does {meta['flops_x_dense']:.2f}x the dense convolution's FLOPs.", "",
             "| row | what | ms per block | × dense |", "|---|---|---|---|"]
    lines += [f"| {r['name']} | {r['kind']} | {r['ms_per_block']:.3f} | {r['x_dense']:.2f} |"
              for r in meta["rows"]]
    lines += ["", "The shipped parts from cache (weighting + matmuls, GH, LCA generator, box mean) "
              f"sum to {meta['parts_x_dense']:.2f}x the dense convolution: "
              f"a bound of {meta['bound_ratio']:.0%} of the dense rate for the layer; measured "
              f"{meta['measured_ratio']:.0%}."]
    return lines


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--tile", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--compile", action="store_true",
                    help="also time the weighting fused by torch.compile (needs a C++ compiler)")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    ap.add_argument("--stem", default="lagconv_forms", help="name of the result files")
    args = ap.parse_args(argv)
    from tta.allocator import retain_freed_memory

    retained = retain_freed_memory(respect_env=True)  # as the tta command does
    torch.set_num_threads(args.threads)
    load_start = round(os.getloadavg()[0], 2)
    result = measure(args.tile, args.repeats, args.compile, lambda s: print(s, flush=True))
    device = torch.device("cpu")
    meta = {"date": dt.date.today().isoformat(), "device": device_name(device),
            "torch": torch.__version__, "threads": torch.get_num_threads(), "tile": args.tile,
            "retain_freed_memory": retained, "load_start": load_start,
            "load_end": round(os.getloadavg()[0], 2), **result}
    write_results(result_folder(device, args.out), args.stem, meta, markdown(meta))
    return meta


if __name__ == "__main__":
    main()
