"""Any-size scenes in bounded memory: adapt on a sample of windows, fuse block by block.

:func:`adapt_stream` runs :func:`tta.engine.adapt.adapt_scene` on a *proxy*: the whole scene
when it is no larger than the sample, else a mosaic of ``windows`` windows of ``side`` PAN
pixels read from the scene (:func:`sample_windows`). The windows are chosen on a decimated
overview (block means, :meth:`tta.io.source.SceneSource.overview`): candidate windows tile
the scene, those with more than ``max_nodata`` nodata are dropped, and ``windows`` of them
are selected with the configured patch sampler (manifold-aware SWIFT by default) on the
descriptors of :func:`tta.sampling.describe_patches` computed on the overview. Everything the
default recipe reads — the training patches, the coregistration phases, the Wald-degraded
copy of the reduced-resolution term, the never-harm check windows and the radiometric level —
then comes from the proxy, so its memory is set by ``windows * side²``, not by the scene.

:func:`fuse_blocks` then fuses the scene in blocks of ``block`` PAN pixels: each block's
window is read with a halo (the network's tile margin plus 12 MS pixels for the 23-tap
interpolation's support), upsampled, fused with :func:`tta.engine.tiling.tiled_fuse` and
cropped; the halo makes each block equal to the whole-scene tiled fusion to float rounding
(the tiling exactness argument of :mod:`tta.engine.tiling`, applied to the block windows).
Finished blocks go to a :class:`tta.io.blocks.BlockStore` as they come, so an interrupted run
resumes from them.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from tta.errors import InputError
from tta.io.scene import Scene
from tta.io.source import SceneSource, Window

__all__ = ["StreamOptions", "adapt_stream", "block_grid", "fuse_blocks", "map_blocks",
           "proxy_scene", "sample_windows"]

#: MS pixels of wrap-around context for the 23-tap interpolation (its support is under 9 MS
#: pixels at ratio 4: 11 taps on the 2x grid, then 11 on the 4x grid).
LMS_HALO_MS = 12


@dataclass(frozen=True)
class StreamOptions:
    """Settings of the windowed pipeline.

    Attributes:
        block: Output block side, PAN pixels (a multiple of the ratio): memory per block and
            the unit of resume.
        windows: Windows in the adaptation sample.
        side: Their side, PAN pixels (a multiple of the patch and of the ratio).
        overview: Longer side (cells) of the decimated overview the windows are chosen on.
        max_nodata: Largest nodata share of a sample window.
    """

    block: int = 1024
    windows: int = 16
    side: int = 512
    overview: int = 1024
    max_nodata: float = 0.25

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def block_grid(height: int, width: int, block: int) -> list[tuple[int, int, int, int]]:
    """Blocks ``(y, x, h, w)`` (PAN pixels) tiling a ``height x width`` grid, row-major; the
    last row/column is cut at the border."""
    return [(y, x, min(block, height - y), min(block, width - x))
            for y in range(0, height, block) for x in range(0, width, block)]


# ---------------------------------------------------------------------------- sampling
def sample_windows(src: SceneSource, opts: StreamOptions, *, sampler: str = "swift",
                   seed: int = 0) -> tuple[list[Window], dict[str, Any]]:
    """Choose the adaptation windows (MS-pixel windows of ``opts.side`` PAN pixels) on the
    scene's overview; see the module docstring.

    Raises:
        InputError: No candidate window has little enough nodata.
    """
    from tta.sampling import describe_patches, select_patches

    r = src.ratio
    side_ms = opts.side // r
    h, w = src.ms_size
    if side_ms < 1 or min(h, w) < side_ms:
        raise InputError(f"{src.source}: the scene ({h}x{w} MS px) is smaller than one "
                         f"{opts.side}-px sample window")
    ms_o, pan_o, mask_o, f = src.overview(opts.overview)
    cell = max(3, side_ms // f)  # window side on the overview grid
    rows = np.arange(0, h - side_ms + 1, side_ms)
    cols = np.arange(0, w - side_ms + 1, side_ms)
    corners = [(int(y), int(x)) for y in rows for x in cols]
    ms_t = torch.from_numpy(ms_o)
    pan_t = torch.from_numpy(pan_o)[None]
    keep, ms_p, pan_p = [], [], []
    for y, x in corners:
        oy, ox = min(y // f, ms_o.shape[1] - cell), min(x // f, ms_o.shape[2] - cell)
        if oy < 0 or ox < 0:
            continue
        if mask_o is not None and mask_o[oy:oy + cell, ox:ox + cell].mean() > opts.max_nodata:
            continue
        keep.append((y, x))
        ms_p.append(ms_t[:, oy:oy + cell, ox:ox + cell])
        pan_p.append(pan_t[:, oy:oy + cell, ox:ox + cell])
    if not keep:
        raise InputError(f"{src.source}: every {opts.side}-px window has more than "
                         f"{opts.max_nodata:.0%} nodata; nothing to adapt on")
    k = min(opts.windows, len(keep))
    if k < len(keep):
        feats = describe_patches(torch.stack(ms_p).double(), torch.stack(pan_p).double())
        idx = sorted(select_patches(feats.float(), k, sampler, seed=seed).tolist())
    else:
        idx = list(range(len(keep)))
    chosen = [(keep[i][0], keep[i][1], side_ms, side_ms) for i in idx]
    info = {"windows": len(chosen), "candidates": len(corners), "valid": len(keep),
            "side": opts.side, "overview_factor": f * r, "sampler": sampler,
            "corners_ms": [list(c[:2]) for c in chosen]}
    return chosen, info


def proxy_scene(src: SceneSource, windows: list[Window]) -> Scene:
    """The sample windows mosaicked into one scene (a near-square grid, row-major; empty
    cells are nodata)."""
    n = len(windows)
    n_cols = math.ceil(math.sqrt(n))
    n_rows = math.ceil(n / n_cols)
    s = windows[0][2]
    r = src.ratio
    ms = np.zeros((src.n_bands, n_rows * s, n_cols * s), np.float32)
    pan = np.zeros((n_rows * s * r, n_cols * s * r), np.float32)
    mask = np.ones(pan.shape, bool)
    any_mask = n < n_rows * n_cols
    for i, win in enumerate(windows):
        a, b = divmod(i, n_cols)
        part = src.read(win)
        ms[:, a * s:(a + 1) * s, b * s:(b + 1) * s] = part.ms
        pan[a * s * r:(a + 1) * s * r, b * s * r:(b + 1) * s * r] = part.pan
        sub = mask[a * s * r:(a + 1) * s * r, b * s * r:(b + 1) * s * r]
        sub[...] = False if part.nodata is None else part.nodata
        any_mask |= part.nodata is not None
    return Scene(ms=ms, pan=pan, sensor=src.sensor, ratio=r, max_value=src.max_value,
                 band_names=src.band_names, nodata=mask if any_mask else None,
                 nodata_value=src.nodata_value,
                 source=f"{src.source} (sample of {n} windows)",
                 meta={"files": [str(p) for p in src.files], "windows": windows})


# ---------------------------------------------------------------------------- fusion
def _halo(margin: int, ratio: int) -> int:
    return ratio * math.ceil(max(margin, 1) / ratio)


def _to_dtype(x: np.ndarray, dtype: str) -> np.ndarray:
    """float32 DN to the product's dtype, in place where possible: uint16 is rounded half
    to even and clipped to [0, 65535] (non-finite values as
    :func:`tta.io.geotiff.write_geotiff` maps them), the same values as its float64 path
    since float32 to float64 is exact."""
    if dtype != "uint16":
        return x
    np.nan_to_num(x, copy=False, nan=0.0, posinf=65535.0, neginf=0.0)
    np.rint(x, out=x)
    np.clip(x, 0, 65535, out=x)
    return x.astype(np.uint16)


def _runs(idx: np.ndarray) -> list[tuple[int, int, int]]:
    """``(position in idx, start, length)`` of the runs of consecutive values of ``idx``."""
    cuts = np.flatnonzero(np.diff(idx) != 1) + 1
    starts = np.concatenate([[0], cuts])
    ends = np.concatenate([cuts, [len(idx)]])
    return [(int(a), int(idx[a]), int(b - a)) for a, b in zip(starts, ends, strict=True)]


def _ms_wrapped(src: SceneSource, row: int, col: int, h: int, w: int, pad: int) -> np.ndarray:
    """MS ``(C, h + 2 pad, w + 2 pad)`` around an MS window, indices wrapped around the
    scene (the circular border of :func:`tta.physics.interp23tap` on the whole scene)."""
    big_h, big_w = src.ms_size
    rows = np.arange(row - pad, row + h + pad) % big_h
    cols = np.arange(col - pad, col + w + pad) % big_w
    out = np.empty((src.n_bands, len(rows), len(cols)), np.float32)
    for i, r0, nr in _runs(rows):
        for j, c0, nc in _runs(cols):
            out[:, i:i + nr, j:j + nc] = src.read((r0, c0, nr, nc)).ms
    return out


def fuse_blocks(fn: Callable[[Tensor, Tensor, Tensor], Tensor], src: SceneSource, store: Any,
                *, divisor: float, gain: float = 1.0, tile: int = 256, overlap: int,
                margin: int, block: int = 1024, batch_size: int | None = None,
                device: torch.device | str = "cpu", progress: bool = False,
                on_block: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Fuse ``src`` block by block into ``store`` (blocks it holds already are skipped).

    Each block's halo window is read (the MS with :data:`LMS_HALO_MS` more pixels, wrapped
    around the scene, so that its interp23tap upsampling equals the whole scene's bit for
    bit), normalised as the whole-scene engine does (``DN / divisor * gain``), fused by
    :func:`~tta.engine.tiling.tiled_fuse` (``tile``, ``overlap``, ``margin``), cropped,
    brought back to DN (``* divisor / gain``), zeroed under nodata, converted to the store's
    dtype (uint16: rounded and clipped) and written.

    Args:
        fn: The network on normalised batched tiles ``(ms, pan, lms) -> fused``.
        src: The scene.
        store: An opened :class:`tta.io.blocks.BlockStore` of shape ``src.shape``.
        divisor, gain: Normalisation (see above).
        tile, overlap, margin, batch_size, device: As :func:`~tta.engine.tiling.tiled_fuse`
            (``tile`` is the largest tile: each window's is fitted to it,
            :func:`~tta.engine.tiling.fitted_tile`).
        block: Block side, PAN pixels (a multiple of the ratio).
        progress: tqdm bar counting tiles (stderr), with ETA.
        on_block: Called with the block id after each block is written.

    Returns:
        ``{"blocks", "computed", "resumed", "halo", "tiles", "seconds"}``.
    """
    from tqdm import tqdm

    from tta.engine.tiling import fitted_tile, tile_corners, tiled_fuse
    from tta.physics import interp23tap

    r = src.ratio
    if block % r:
        raise InputError(f"block {block} must be a multiple of the ratio {r}")
    big_h, big_w = src.pan_size
    halo = _halo(margin, r)
    blocks = block_grid(big_h, big_w, block)
    scale = divisor / gain
    dev = torch.device(device) if not isinstance(device, torch.device) else device

    def span(a: int, n: int, length: int) -> tuple[int, int]:
        # the block plus its halo, grown to a whole tile where the scene allows: a window
        # narrower than the tile would be padded, unlike the whole scene
        a0, a1 = max(0, a - halo), min(length, a + n + halo)
        need = min(tile, length)
        if a1 - a0 < need:
            a0 = max(0, a1 - need)
            a1 = min(length, a0 + need)
        return a0, a1 - a0

    def window(y: int, x: int, h: int, w: int) -> tuple[int, int, int, int]:
        (y0, wh), (x0, ww) = span(y, h, big_h), span(x, w, big_w)
        return y0, x0, wh, ww

    def fit(win: tuple[int, int, int, int]) -> int:
        return fitted_tile(win[2], win[3], tile, overlap, r)  # as the whole-scene engine

    def n_tiles(win: tuple[int, int, int, int]) -> int:
        t = fit(win)
        return int(tile_corners(max(win[2], t), max(win[3], t), t, overlap, r).shape[0])

    todo = [i for i in range(len(blocks)) if i not in store.done]
    total = sum(n_tiles(window(*blocks[i])) for i in todo)
    t0 = time.perf_counter()
    tiles_done = 0
    with tqdm(total=total, unit="tile", desc="fuse blocks", disable=not progress,
              dynamic_ncols=True) as bar:
        for i in todo:
            y, x, h, w = blocks[i]
            win = window(y, x, h, w)
            wy, wx, wh, ww = win
            part = src.read((wy // r, wx // r, wh // r, ww // r))
            p = LMS_HALO_MS
            ms_ext = torch.from_numpy(_ms_wrapped(src, wy // r, wx // r, wh // r, ww // r,
                                                  p)).to(dev) / divisor
            pan = torch.from_numpy(part.pan).to(dev) / divisor
            if gain != 1.0:
                ms_ext, pan = ms_ext * gain, pan * gain
            lms = interp23tap(ms_ext[None], r)[0, :, p * r:p * r + wh, p * r:p * r + ww]
            ms = ms_ext[:, p:p + wh // r, p:p + ww // r]
            del ms_ext
            fused = tiled_fuse(fn, ms, pan, lms, ratio=r, tile=fit(win), overlap=overlap,
                               margin=margin, batch_size=batch_size, device=dev)
            del ms, pan, lms
            out = fused[:, y - wy:y - wy + h, x - wx:x - wx + w]
            out *= scale
            if part.nodata is not None:
                out[:, part.nodata[y - wy:y - wy + h, x - wx:x - wx + w]] = 0
            store.write(i, y, x, _to_dtype(out, store.dtype.name))
            del fused, out, part
            k = n_tiles(win)
            tiles_done += k
            bar.update(k)
            if on_block is not None:
                on_block(i)
    return {"blocks": len(blocks), "computed": len(todo), "resumed": len(blocks) - len(todo),
            "halo": halo, "tiles": tiles_done, "seconds": time.perf_counter() - t0}


def map_blocks(fuse_window: Callable[[Scene], np.ndarray], src: SceneSource, store: Any, *,
               block: int = 1024, halo: int = 64, progress: bool = False,
               on_block: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Apply a whole-image method block by block: each block's window, grown by ``halo`` PAN
    pixels inside the scene, is read as a :class:`Scene`, fused by ``fuse_window`` (float32
    DN ``(C, h, w)``), cropped to the block and written to ``store`` (blocks it holds are
    skipped). A method that estimates statistics over its input (the classical CS/MRA
    methods) estimates them per window here: block products are local, not the whole-scene
    result.

    Returns:
        ``{"blocks", "computed", "resumed", "halo", "seconds"}``.
    """
    from tqdm import tqdm

    r = src.ratio
    if block % r or halo % r:
        raise InputError(f"block {block} and halo {halo} must be multiples of the ratio {r}")
    big_h, big_w = src.pan_size
    blocks = block_grid(big_h, big_w, block)
    todo = [i for i in range(len(blocks)) if i not in store.done]
    t0 = time.perf_counter()
    with tqdm(total=len(todo), unit="block", desc="fuse blocks", disable=not progress,
              dynamic_ncols=True) as bar:
        for i in todo:
            y, x, h, w = blocks[i]
            y0, x0 = max(0, y - halo), max(0, x - halo)
            y1, x1 = min(big_h, y + h + halo), min(big_w, x + w + halo)
            part = src.read((y0 // r, x0 // r, (y1 - y0) // r, (x1 - x0) // r))
            out = np.array(fuse_window(part)[:, y - y0:y - y0 + h, x - x0:x - x0 + w],
                           dtype=np.float32)
            store.write(i, y, x, _to_dtype(out, store.dtype.name))
            bar.update(1)
            if on_block is not None:
                on_block(i)
    return {"blocks": len(blocks), "computed": len(todo), "resumed": len(blocks) - len(todo),
            "halo": halo, "seconds": time.perf_counter() - t0}


# ---------------------------------------------------------------------------- adapt
def network_digest(result: Any) -> str:
    """Hash of what fuses the scene: the adapter's trainable weights, the choice and the
    gain (a resumed run reuses blocks only when its adaptation gave the same network)."""
    h = hashlib.sha256()
    for p in result.adapter.trainable_parameters():
        h.update(p.detach().cpu().contiguous().numpy().tobytes())
    report = result.report
    decision = (report.to_json() if hasattr(report, "to_json") else report).get("decision")
    decision = decision or {}
    h.update(repr((decision.get("choice"), result.extras["gain"],
                   result.extras["divisor"])).encode())
    return h.hexdigest()[:16]


def adapt_stream(model: nn.Module, src: SceneSource, store_factory: Callable[[str], Any], *,
                 config: Any = None, opts: StreamOptions | None = None,
                 device: str | torch.device = "auto", interface: str | None = None,
                 progress: bool = False, on_block: Callable[[int], None] | None = None,
                 **overrides: Any) -> tuple[Any, dict[str, Any], Any]:
    """Adapt ``model`` on a sample of ``src`` and fuse every block into a store.

    Args:
        model: As :func:`tta.engine.adapt.adapt_scene`.
        src: The scene, read by window.
        store_factory: ``stamp -> BlockStore`` (not yet opened); the stamp is
            :func:`network_digest` of the adapted network.
        config: :class:`tta.engine.AdaptConfig` (``overrides`` replace fields).
        opts: Window and block settings.
        device, interface: As :func:`tta.engine.adapt.adapt_scene`.
        progress: Progress bars.
        on_block: Called with each finished block's id.

    Returns:
        ``(result, report, store)``: the proxy's :class:`~tta.engine.adapt.AdaptResult` (no
        fused array), the report (with a ``stream`` section: sample windows, blocks, resume)
        and the store holding every block, left open: the caller finishes or closes it.
    """
    from tta.device import resolve_device
    from tta.engine.adapt import adapt_scene
    from tta.engine.config import AdaptConfig

    opts = opts or StreamOptions()
    cfg = (config or AdaptConfig()).replace(**overrides)
    dev = resolve_device(device)
    t0 = time.perf_counter()
    sample_px = opts.windows * opts.side ** 2
    if src.pixels <= sample_px:
        proxy = src.read()
        sample = {"windows": 0, "whole_scene": True}
    else:
        windows, sample = sample_windows(src, opts, sampler=cfg.sampler, seed=cfg.seed)
        proxy = proxy_scene(src, windows)
        sample["whole_scene"] = False
    t_sample = time.perf_counter() - t0
    from tta.engine.bands import plan_bands

    if plan_bands(model, proxy).split:
        raise InputError(f"{src.source}: streamed scenes need a network trained on all of "
                         "their bands; fuse this one whole (--no-stream) or subset its bands")
    result = adapt_scene(model, proxy, config=cfg, device=dev, interface=interface,
                         compare=False, progress=progress, fuse=False)
    del proxy
    ex = result.extras
    store = store_factory(network_digest(result)).open()
    try:
        fusion = fuse_blocks(ex["fuse_fn"], src, store, divisor=ex["divisor"],
                             gain=ex["gain"], tile=cfg.tile, overlap=ex["overlap"],
                             margin=ex["margin"], block=opts.block,
                             batch_size=cfg.inference_batch, device=dev,
                             progress=progress, on_block=on_block)
    except BaseException:
        store.close()
        raise
    report = result.report
    report = report.to_json() if hasattr(report, "to_json") else dict(report)
    report["scene"].update(source=src.source, shape=list(src.shape))
    report["timings"]["sample_windows"] = t_sample
    report["timings"]["infer"] = fusion["seconds"]
    report["timings"]["adapt_and_infer"] = report["timings"]["adapt"] + fusion["seconds"]
    report["stream"] = {"options": opts.to_dict(), "sample": sample, **fusion,
                        "digest": store.stamp}
    return result, report, store
