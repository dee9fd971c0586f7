"""Seamless whole-scene inference by batched, overlapping tiles.

A pansharpening network adapted on a few patches must then fuse the whole scene, which may be
far larger than GPU (or even host) memory. :func:`tiled_fuse` cuts the PAN grid into square
tiles laid out by :func:`tile_corners`, runs the network on batches of tiles on the compute
device and stitches the outputs with the separable weights of :func:`blend_window`.

Geometry (all sizes in PAN pixels):

* ``tile`` is a multiple of ``ratio`` (each tile's MS window is ``tile // ratio`` pixels);
* consecutive tiles advance by ``stride = tile - overlap`` rounded *down* to a multiple of
  ``ratio`` (so the real overlap is ``>= overlap``), the last row/column of tiles is flush with
  the scene border, and every corner is a multiple of ``ratio``;
* each tile's weight is ``0`` on its ``margin`` outermost pixels, rises along a raised-cosine
  ramp of ``ramp = overlap - 2*margin`` pixels and is ``1`` inside; sides on the scene border
  weigh ``1`` up to the edge. With ``0 <= 2*margin <= overlap <= tile - ratio`` the non-zero
  parts of neighbouring tiles meet or overlap, so every pixel has a positive total weight;
  ``ramp >= 1`` (``overlap >= 2*margin + 1``) gives a smooth cross-fade, ``ramp = 0`` a hard
  cut in the middle of the overlap.

Exactness: let ``fn`` be translation-equivariant with receptive-field radius ``r`` (e.g. a
stack of ``r`` zero-padded 3x3 convolutions on ``lms`` and ``pan``) and ``margin >= r``. A pixel
with non-zero weight in a tile lies at least ``r`` pixels from every tile side that is not on
the scene border, so the tile holds all the pixels it depends on; on a side flush with the
scene border the network pads the tile exactly as it pads the whole image. Every tile thus
reproduces ``fn(whole scene)`` wherever its weight is non-zero, and the normalised blend equals
``fn`` on the untiled scene to float rounding, borders included. The flush last tile is what
makes the border case hold. The same holds for an ``fn`` that also reads ``ms`` when ``margin``
covers its receptive field on the PAN grid. Exceptions: scene axes shorter than ``tile``
(padded, see :func:`tiled_fuse`), where pixels within ``r`` of the padded (bottom/right) border
see the padding instead; and networks that are not translation-equivariant (global pooling,
normalisation over the image), for which the blend only hides the seams.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from tta.checks import check_int
from tta.device import resolve_device
from tta.errors import InputError

__all__ = ["blend_geometry", "blend_window", "fit_tiles", "fitted_tile", "receptive_radius",
           "tile_corners", "tiled_fuse"]

#: ``fn(ms_t, pan_t, lms_t) -> fused_t`` on batched tiles, see :func:`tiled_fuse`.
FuseFn = Callable[[Tensor, Tensor, Tensor], Tensor]

#: Pixels per batch on devices other than CUDA when ``batch_size`` is ``None``: one 256² tile
#: (at least one tile). A CPU convolution already spreads one tile over every core, and one
#: tile's activations (a few MB per layer) are reused from the allocator's heap and the caches;
#: a batch of 8 such tiles allocates fresh pages for every layer and was 1.2-1.4x slower for
#: the zoo networks (1 thread).
CPU_BATCH_PIXELS = 256 * 256
#: Upper bound of the automatic CUDA batch size.
MAX_AUTO_BATCH = 64
#: Fraction of the free CUDA memory the automatic batch size plans to use.
MEMORY_FRACTION = 0.7
#: Padding modes of scene axes shorter than the tile.
PAD_MODES = ("reflect", "replicate")


# ---------------------------------------------------------------------------- validation
def _check_tiling(tile: int, overlap: int, ratio: int) -> int:
    """Validate the tile geometry and return the stride (a multiple of ``ratio``)."""
    ratio = check_int(ratio, "ratio", 1)
    tile = check_int(tile, "tile", 1)
    overlap = check_int(overlap, "overlap", 0)
    if tile % ratio:
        raise ValueError(
            f"tile ({tile}) must be a multiple of ratio ({ratio}) so that each tile holds whole "
            f"MS pixels; try tile={max(ratio, tile - tile % ratio)}"
        )
    if tile - overlap < ratio:
        raise ValueError(
            f"overlap ({overlap}) must be at most tile - ratio ({tile - ratio}) so that tiles "
            f"advance by at least one MS pixel"
        )
    return (tile - overlap) // ratio * ratio


def _check_margin(margin: int, overlap: int) -> int:
    """Validate ``margin`` against ``overlap`` (``0 <= 2*margin <= overlap``)."""
    margin = check_int(margin, "margin", 0)
    if 2 * margin > overlap:
        raise ValueError(
            f"margin ({margin}) must be at most overlap // 2 ({overlap // 2}): the zero-weight "
            f"margins of two neighbouring tiles must not leave pixels with no weight; "
            f"raise overlap to at least {2 * margin + 1} or lower margin"
        )
    return margin


# ---------------------------------------------------------------------------- geometry
def _axis_starts(length: int, tile: int, stride: int) -> np.ndarray:
    """Tile starts along one axis: ``0, stride, 2*stride, ...`` and ``length - tile`` (flush)."""
    if length <= tile:
        return np.zeros(1, dtype=np.int64)
    return np.append(np.arange(0, length - tile, stride, dtype=np.int64), length - tile)


def fitted_tile(height: int, width: int, max_tile: int, overlap: int, ratio: int) -> int:
    """The tile side, at most ``max_tile``, that computes the fewest pixels on this scene.

    Tiles overlap, and a scene axis shorter than the tile is padded to it, so a fixed tile
    computes more pixels than the scene has (a 512² scene with 256² tiles and an overlap of
    64 runs nine tiles, 2.3x its pixels). Among the multiples of ``ratio`` in
    ``(overlap, max_tile]`` this picks the side minimising ``rows * cols * tile²`` for
    :func:`tile_corners`' grid (the largest side on ties: fewer, larger tiles), so a scene
    that fits in one tile runs as one tile.

    Example:
        >>> fitted_tile(512, 512, 512, 64, 4), fitted_tile(640, 1280, 512, 104, 4)
        (512, 400)
    """
    _check_tiling(max_tile, overlap, ratio)  # validates max_tile, overlap and ratio
    best, best_cost = max_tile, None
    for tile in range(max_tile, overlap, -ratio):
        if tile - overlap < ratio:
            break
        stride = (tile - overlap) // ratio * ratio
        n_rows = len(_axis_starts(int(height), tile, stride))
        n_cols = len(_axis_starts(int(width), tile, stride))
        cost = n_rows * n_cols * tile * tile
        if best_cost is None or cost < best_cost:
            best, best_cost = tile, cost
    return best


def tile_corners(height: int, width: int, tile: int, overlap: int, ratio: int) -> Tensor:
    """Top-left corners of the tiles covering a scene (PAN grid), row-major.

    Along each axis the starts are ``0, s, 2s, ...`` below ``length - tile`` followed by
    ``length - tile`` (the last tile is flush with the border), where the stride
    ``s = tile - overlap`` is rounded down to a multiple of ``ratio`` (the real overlap is
    never smaller than ``overlap``). An axis not longer than ``tile`` has the single start 0:
    :func:`tiled_fuse` pads such scenes to the tile size.

    Args:
        height: Scene height ``H`` in PAN pixels, a multiple of ``ratio``.
        width: Scene width ``W`` in PAN pixels, a multiple of ``ratio``.
        tile: Tile size in PAN pixels, a multiple of ``ratio``.
        overlap: Minimum overlap of neighbouring tiles, ``0 <= overlap <= tile - ratio``.
        ratio: PAN/MS scale ratio (every corner is a multiple of it).

    Returns:
        LongTensor ``(N, 2)`` of ``(row, col)`` corners on the CPU, ``N = n_rows * n_cols``,
        ordered row by row.

    Raises:
        ValueError: A size is not a positive integer, ``height``/``width``/``tile`` is not a
            multiple of ``ratio`` or ``overlap`` is out of range.

    Example:
        >>> tile_corners(40, 24, 16, 4, 4).tolist()
        [[0, 0], [0, 8], [12, 0], [12, 8], [24, 0], [24, 8]]
    """
    stride = _check_tiling(tile, overlap, ratio)
    for name, value in (("height", height), ("width", width)):
        if check_int(value, name, 1) % ratio:
            raise ValueError(f"{name} ({value}) must be a multiple of ratio ({ratio})")
    rows = torch.from_numpy(_axis_starts(int(height), int(tile), stride))
    cols = torch.from_numpy(_axis_starts(int(width), int(tile), stride))
    grid = torch.meshgrid(rows, cols, indexing="ij")
    return torch.stack([g.reshape(-1) for g in grid], dim=1)


# ---------------------------------------------------------------------- overlap policy
#: Side (PAN pixels) of the receptive-field probe; a radius reaching its border means the
#: network sees the whole input.
PROBE_SIZE = 128


def receptive_radius(fn: FuseFn, n_bands: int, ratio: int, *, device: torch.device,
                     dtype: torch.dtype = torch.float32, size: int = 128) -> int:
    """Measured receptive radius (PAN pixels) of ``fn``: how far an impulse in the inputs moves
    the output. Probes a ``size`` square with a bump at the centre of PAN, MS and LMS (a
    batch of two: the base and the bumped inputs; ``fn`` must treat samples independently,
    as every network the engine tiles does)."""
    from tta.decomposition import probe_inputs

    ms, pan, lms = (t.repeat(2, 1, 1, 1) for t in
                    probe_inputs(n_bands, ratio, size, device=device, dtype=dtype))
    c = size // 2
    pan[1, :, c, c] += 0.5  # sample 1 carries the bumps, sample 0 is the base
    lms[1, :, c, c] += 0.5
    ms[1, :, c // ratio, c // ratio] += 0.5
    lms[1, :, (c // ratio) * ratio:(c // ratio + 1) * ratio,
        (c // ratio) * ratio:(c // ratio + 1) * ratio] += 0.25
    with torch.inference_mode():  # one call, in the layout the tiled inference feeds
        out = fn(*(t.contiguous(memory_format=torch.channels_last) for t in (ms, pan, lms)))
        moved = (out[1] - out[0]).abs().amax(dim=0) > 1e-6
    ys, xs = torch.nonzero(moved, as_tuple=True)
    if ys.numel() == 0:
        return 0
    r = int(torch.stack([(ys - c).abs().max(), (xs - c).abs().max()]).max())
    if r >= c - 1:  # reaches the probe's border: as large as we can tell
        return size
    return r + ratio  # the MS bump sits up to ratio pixels off the centre


def fit_tiles(fn: FuseFn, height: int, width: int, max_tile: int, overlap: int | None,
              n_bands: int, ratio: int, device: torch.device) -> tuple[int, int, int]:
    """The whole tiling policy of a fusion ``fn`` on a ``height`` x ``width`` PAN grid:
    ``(tile, overlap, margin)`` from :func:`blend_geometry` (at ``max_tile``) and
    :func:`fitted_tile`."""
    overlap, margin = blend_geometry(fn, max_tile, overlap, n_bands, ratio, device)
    return fitted_tile(height, width, max_tile, overlap, ratio), overlap, margin


def blend_geometry(fn: FuseFn, tile: int, overlap: int | None, n_bands: int, ratio: int,
                   device: torch.device) -> tuple[int, int]:
    """The overlap policy: ``(overlap, margin)`` of the inference tiles of ``fn``.

    The margin (tile-edge pixels given zero weight) is the measured receptive radius rounded
    up to the ratio, so for a translation-equivariant network the tiled fusion equals the
    untiled one; the overlap adds a cross-fade ramp of ``4 * ratio`` pixels. A network whose
    output depends on the whole input (the radius reaches the probe's border, e.g. KSDiff's
    image-wide prior) cannot be tiled exactly at any size: its tiles overlap by half a tile.
    A configured ``overlap`` is used as given (margin a quarter of it).

    Raises:
        InputError: ``tile`` too small for the measured radius (names the smallest tile).
    """
    if overlap is not None:
        return overlap, overlap // 4
    r = receptive_radius(fn, n_bands, ratio, device=device, size=PROBE_SIZE)
    if r >= PROBE_SIZE:  # image-wide context: no tile is exact
        overlap = ratio * (tile // 2 // ratio)
        return overlap, overlap // 4
    margin = ratio * math.ceil(max(r, 1) / ratio)
    overlap = 2 * margin + 4 * ratio
    if overlap > tile - ratio:
        raise InputError(f"tile {tile} is too small for this model's receptive radius "
                         f"({r} px, overlap {overlap}); use a tile of at least "
                         f"{overlap + ratio}")
    return overlap, margin


def _profile(tile: int, margin: int, ramp: int, low: bool, high: bool) -> Tensor:
    """1-D blend weights ``(tile,)`` in float64: ``min`` of the two sides' ramps.

    A side at distance ``d`` (0 = outermost pixel) weighs ``0`` for ``d < margin``, then
    ``0.5 - 0.5*cos(pi*(d - margin + 1)/(ramp + 1))`` (strictly inside (0, 1)) for ``ramp``
    pixels, then ``1``; a border side (``low``/``high``) weighs ``1`` everywhere.
    """
    d = torch.arange(tile, dtype=torch.float64)

    def side(dist: Tensor) -> Tensor:
        phase = ((dist - margin + 1) / (ramp + 1)).clamp(0.0, 1.0)
        return 0.5 - 0.5 * torch.cos(math.pi * phase)

    ones = torch.ones(tile, dtype=torch.float64)
    lo = ones if low else side(d)
    hi = ones if high else side(tile - 1 - d)
    return torch.minimum(lo, hi)


def blend_window(
    tile: int,
    margin: int,
    ramp: int,
    *,
    top: bool = False,
    bottom: bool = False,
    left: bool = False,
    right: bool = False,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> Tensor:
    """Separable blending weights of one tile.

    Along each axis the weight is ``0`` on the ``margin`` outermost pixels (where a
    convolutional network sees the tile padding), then rises along a raised-cosine ramp of
    ``ramp`` pixels, ``0.5 - 0.5*cos(pi*k/(ramp + 1))`` for ``k = 1..ramp`` (strictly between
    0 and 1, increasing), to ``1`` in the interior. A side flagged as lying on the scene border
    weighs ``1`` up to the edge (no margin, no ramp). Where the ramps of opposite sides meet
    (``2*(margin + ramp) > tile``) the smaller weight is kept.

    With ``ramp = overlap - 2*margin``, the windows of two tiles ``tile - overlap`` apart add
    up to exactly 1 (up to rounding) across their overlap: a partition of unity.

    Args:
        tile: Tile size in pixels.
        margin: Zero-weight pixels on each non-border side, ``0 <= 2*margin < tile``.
        ramp: Ramp width in pixels, ``>= 0`` (0: a hard step from 0 to 1).
        top: The first row lies on the scene border.
        bottom: The last row lies on the scene border.
        left: The first column lies on the scene border.
        right: The last column lies on the scene border.
        device: Device of the result (default CPU).
        dtype: Dtype of the result (default ``torch.get_default_dtype()``).

    Returns:
        Tensor ``(tile, tile)``, the outer product of the row and column profiles, in [0, 1].

    Raises:
        ValueError: ``tile``, ``margin`` or ``ramp`` out of range.

    Reference:
        Raised-cosine (Hann) cross-fading of overlapping windows, as in overlap-add synthesis.

    Example:
        >>> w = blend_window(16, 2, 4)
        >>> float(w[0, 8]), float(w[8, 8])
        (0.0, 1.0)
    """
    tile = check_int(tile, "tile", 1)
    margin = check_int(margin, "margin", 0)
    ramp = check_int(ramp, "ramp", 0)
    if 2 * margin >= tile:
        raise ValueError(f"2*margin ({2 * margin}) must be smaller than tile ({tile})")
    rows = _profile(tile, margin, ramp, top, bottom)
    cols = _profile(tile, margin, ramp, left, right)
    window = rows[:, None] * cols[None, :]
    return window.to(device=device, dtype=dtype or torch.get_default_dtype())


# ---------------------------------------------------------------------------- planning
def _pad_index(idx: np.ndarray, length: int, mode: str) -> np.ndarray:
    """Map indices ``>= length`` into ``[0, length)``: mirror about the last pixel (numpy's
    ``reflect``, periodically, so pads of any size work) or repeat it (``replicate``)."""
    if mode == "replicate" or length == 1:
        return np.minimum(idx, length - 1)
    period = 2 * (length - 1)
    m = idx % period
    return np.where(m >= length, period - m, m)


@dataclass(frozen=True)
class _Axis:
    """The tiling of one scene axis.

    Attributes:
        starts: ``(n,)`` tile starts (PAN pixels).
        valid: ``(n,)`` number of a tile's pixels inside the scene (``< tile`` only if padded).
        pan_idx: ``(n, tile)`` source PAN indices of each tile (padding mapped in-bounds).
        ms_idx: ``(n, tile // ratio)`` source MS indices of each tile.
        weights: ``(n, tile)`` float32 profiles divided by their sum over all tiles, so that
            the outer products of the two axes' weights sum to 1 at every scene pixel.
    """

    starts: np.ndarray
    valid: np.ndarray
    pan_idx: np.ndarray
    ms_idx: np.ndarray
    weights: Tensor

    @classmethod
    def plan(cls, length: int, tile: int, stride: int, ratio: int, margin: int, ramp: int,
             pad_mode: str) -> _Axis:
        starts = _axis_starts(length, tile, stride)
        span = max(length, tile)
        prof = torch.stack([_profile(tile, margin, ramp, s == 0, s + tile >= span)
                            for s in starts.tolist()]).numpy()
        pix = starts[:, None] + np.arange(tile)
        total = np.zeros(span)
        np.add.at(total, pix, prof)
        if not (total[:length] > 0).all():  # excluded by _check_margin
            raise RuntimeError("tiling leaves pixels with zero total weight (internal error)")
        weights = torch.from_numpy((prof / total[pix]).astype(np.float32))
        ms_pix = starts[:, None] // ratio + np.arange(tile // ratio)
        return cls(
            starts=starts,
            valid=np.minimum(tile, length - starts),
            pan_idx=_pad_index(pix, length, pad_mode),
            ms_idx=_pad_index(ms_pix, length // ratio, pad_mode),
            weights=weights,
        )


def _batch_from_memory(peak_per_tile: int, available: int) -> int:
    """Automatic CUDA batch size: ``MEMORY_FRACTION * available // peak_per_tile``, clipped.

    Args:
        peak_per_tile: Peak device bytes one tile took (inputs, activations, output).
        available: Device bytes that can still be allocated (driver-free plus the caching
            allocator's reserved but unused memory).

    Returns:
        An integer in ``[1, MAX_AUTO_BATCH]``.
    """
    fit = int(MEMORY_FRACTION * available) // max(int(peak_per_tile), 1)
    return max(1, min(MAX_AUTO_BATCH, fit))


def _cuda_available_bytes(device: torch.device) -> int:
    free, _ = torch.cuda.mem_get_info(device)
    unused_cache = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    return int(free + max(unused_cache, 0))


# ---------------------------------------------------------------------------- inputs
Image = np.ndarray | Tensor


def _as_image(x: object, name: str) -> Image:
    """``x`` as a numpy array or a detached tensor; ``ValueError`` unless it holds real numbers."""
    if isinstance(x, Tensor):
        x = x.detach()
        real = x.dtype != torch.bool and not x.is_complex()
    else:
        x = x if isinstance(x, np.ndarray) else np.asarray(x)
        real = np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating)
    if not real:
        raise ValueError(f"{name} must hold real numbers, got dtype {x.dtype}")
    return x


def _check_inputs(ms: object, pan: object, lms: object, ratio: int) -> tuple[Image, Image, Image]:
    """Validate shapes; return ``ms (C, h, w)``, ``pan (1, H, W)``, ``lms (C, H, W)``."""
    ms, pan, lms = _as_image(ms, "ms"), _as_image(pan, "pan"), _as_image(lms, "lms")
    if ms.ndim != 3:
        raise ValueError(f"ms must be (C, h, w), got shape {tuple(ms.shape)}")
    if pan.ndim == 3 and pan.shape[0] == 1:
        pan = pan[0]
    if pan.ndim != 2:
        raise ValueError(f"pan must be (H, W), got shape {tuple(pan.shape)}")
    if lms.ndim != 3:
        raise ValueError(f"lms must be (C, H, W), got shape {tuple(lms.shape)}")
    c, h, w = ms.shape
    big_h, big_w = pan.shape
    if min(c, h, w) == 0:
        raise ValueError(f"ms is empty, shape {tuple(ms.shape)}")
    if (big_h, big_w) != (ratio * h, ratio * w):
        raise ValueError(
            f"pan {big_h}x{big_w} is not ratio {ratio} x ms {h}x{w} "
            f"(expected {ratio * h}x{ratio * w})"
        )
    if tuple(lms.shape) != (c, big_h, big_w):
        raise ValueError(f"lms must be {(c, big_h, big_w)} (ms bands on the pan grid), "
                         f"got {tuple(lms.shape)}")
    return ms, pan[None], lms


def _prepare_out(out: np.ndarray | None, shape: tuple[int, int, int]) -> np.ndarray:
    if out is None:
        return np.zeros(shape, dtype=np.float32)
    if not isinstance(out, np.ndarray):
        raise ValueError(f"out must be a numpy array (or np.memmap), got {type(out).__name__}")
    if out.shape != shape or out.dtype != np.float32:
        raise ValueError(f"out must be float32 {shape}, got {out.dtype} {out.shape}")
    if not out.flags.writeable:
        raise ValueError("out is read-only (open a memmap with mode 'w+' or 'r+')")
    out[...] = 0.0
    return out


def _is_range(idx: np.ndarray) -> bool:
    """True when every row of ``idx (B, n)`` is a run of consecutive indices."""
    return idx.shape[1] < 2 or bool((np.diff(idx, axis=1) == 1).all())


def _gather(x: Image, rows: np.ndarray, cols: np.ndarray) -> Tensor:
    """Windows ``x[:, rows[b]][:, :, cols[b]]`` of ``x (C, H, W)`` as float32 ``(B, C, n, n)``.

    Reads only the windows (also from an np.memmap). Unpadded windows (runs of consecutive
    indices, the usual case) are copied as blocks into one preallocated batch (about 5x faster
    than advanced indexing and contiguous reads for memmaps); padded ones use one
    advanced-indexing gather for the whole batch. The result lies on ``x``'s device (the CPU
    for numpy inputs).
    """
    b, n = rows.shape
    blocks = _is_range(rows) and _is_range(cols)
    if isinstance(x, Tensor):
        if blocks:
            batch = torch.empty((b, x.shape[0], n, n), dtype=torch.float32, device=x.device)
            for k, (r, c) in enumerate(zip(rows[:, 0].tolist(), cols[:, 0].tolist(),
                                           strict=True)):
                batch[k] = x[:, r:r + n, c:c + n]
            return batch
        r = torch.from_numpy(rows).to(x.device)[:, None, :, None]
        c = torch.from_numpy(cols).to(x.device)[:, None, None, :]
        bands = torch.arange(x.shape[0], device=x.device)[None, :, None, None]
        return x[bands, r, c].to(torch.float32)
    if blocks:
        batch = np.empty((b, x.shape[0], n, n), dtype=np.float32)
        for k, (r, c) in enumerate(zip(rows[:, 0].tolist(), cols[:, 0].tolist(), strict=True)):
            batch[k] = x[:, r:r + n, c:c + n]
    else:
        bands = np.arange(x.shape[0])[None, :, None, None]
        batch = x[bands, rows[:, None, :, None], cols[:, None, None, :]]
    return torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))


# ---------------------------------------------------------------------------- main entry
def tiled_fuse(
    fn: FuseFn,
    ms: Image,
    pan: Image,
    lms: Image,
    *,
    ratio: int,
    tile: int = 256,
    overlap: int | None = None,
    margin: int | None = None,
    batch_size: int | None = None,
    device: torch.device | str = "cpu",
    out: np.ndarray | None = None,
    progress: bool = False,
    amp_dtype: torch.dtype | None = None,
    pad_mode: str = "reflect",
    channels_last: bool = True,
    out_bands: int | None = None,
) -> np.ndarray:
    """Fuse a whole scene with ``fn`` by batched tile inference and seamless blending.

    The PAN grid is cut into ``tile x tile`` tiles (:func:`tile_corners`). Batches of tiles are
    gathered from the inputs (numpy arrays, np.memmaps or tensors; only the batch's windows are
    read and moved to ``device``), run through ``fn`` under ``torch.inference_mode()`` (and
    ``torch.autocast(device.type, amp_dtype)`` if ``amp_dtype`` is given), weighted with
    :func:`blend_window` (``ramp = overlap - 2*margin``) and added into a CPU float32
    accumulator, ``out`` if given. The weights are normalised *before* accumulation: the total
    weight is separable (a product of a row and a column sum, since the corners form a grid
    and the windows are separable), so each tile's weights are divided by it up front, no
    weight image is stored and no final pass is needed. See the module docstring for the
    exactness guarantee (``margin >=`` the network's receptive-field radius).

    A scene axis shorter than ``tile`` is padded at its end (bottom/right) to ``tile``
    (``pad_mode``; MS by ``pad / ratio`` pixels) by index mapping at gather time (the inputs
    are never copied) and the result is cropped; that axis then has a single tile of weight 1.

    Automatic batch size: on CPU (and non-CUDA devices) ``CPU_BATCH_PIXELS // tile**2`` tiles,
    at least 1 (one 256² tile). On CUDA the first batch is a single tile, whose peak memory
    (``torch.cuda.max_memory_allocated`` growth, inputs, activations and output included; the
    peak statistics are reset) is the cost of one tile; the batch size is then
    ``0.7 * available // peak`` clipped to ``[1, 64]``, where ``available`` is
    ``torch.cuda.mem_get_info``'s free memory plus the memory the caching allocator holds
    unused. Fixed overheads (cuDNN workspaces) make the linear estimate conservative; if a
    batch still runs out of memory it is halved and retried (only with the automatic batch
    size).

    Args:
        fn: Network ``fn(ms_t, pan_t, lms_t) -> fused_t`` with ``ms_t (B, C, t/ratio, t/ratio)``,
            ``pan_t (B, 1, t, t)``, ``lms_t (B, C, t, t)`` float32 on ``device`` and
            ``fused_t (B, C, t, t)`` (``t = tile``).
        ms: LRMS ``(C, h, w)``, normalised (divided by the max DN).
        pan: PAN ``(H, W)`` (or ``(1, H, W)``) with ``H = ratio*h``, ``W = ratio*w``.
        lms: MS upsampled to the PAN grid ``(C, H, W)``.
        ratio: PAN/MS scale ratio.
        tile: Tile size in PAN pixels, a multiple of ``ratio``.
        overlap: Minimum overlap of neighbouring tiles (default ``tile // 4``);
            ``2*margin <= overlap <= tile - ratio``.
        margin: Zero-weight border of each tile (default ``overlap // 4``); make it at least the
            network's receptive-field radius for exact results.
        batch_size: Tiles per batch, ``>= 1``; ``None`` chooses it (see above).
        device: Compute device (``"cpu"``, ``"cuda[:N]"``, ``"auto"`` or a ``torch.device``).
        out: Optional float32 ``(C, H, W)`` array to write into (e.g. an ``np.memmap`` for
            scenes larger than memory); its content is overwritten.
        progress: Show a tqdm bar counting tiles, updated after every batch.
        amp_dtype: Run ``fn`` under autocast to this dtype (e.g. ``torch.bfloat16``).
        pad_mode: ``"reflect"`` or ``"replicate"``, for axes shorter than ``tile``.
        channels_last: Hand ``fn`` channels-last tiles (``torch.channels_last``: same shapes,
            channels innermost in memory). Convolutions keep that layout and run faster on it
            (oneDNN, cuDNN); an ``fn`` that calls ``.view`` on its inputs needs ``False``.
        out_bands: Channels of ``fn``'s output when not the MS band count (e.g. ``2 * C``: two
            networks' outputs side by side, blended alike).

    Returns:
        The fused image, float32 numpy ``(C, H, W)`` (``(out_bands, H, W)``; ``out`` itself
        when given).

    Raises:
        ValueError: Bad geometry (with the constraint that failed), inconsistent input shapes,
            a wrong ``out`` or an ``fn`` output that is not ``(B, C, t, t)``.

    Example:
        >>> ms = np.random.rand(4, 32, 32).astype(np.float32)
        >>> pan = np.random.rand(128, 128).astype(np.float32)
        >>> lms = np.repeat(np.repeat(ms, 4, axis=1), 4, axis=2)
        >>> fused = tiled_fuse(lambda m, p, l: l * p, ms, pan, lms, ratio=4, tile=64)
        >>> fused.shape
        (4, 128, 128)
    """
    ratio = check_int(ratio, "ratio", 1)
    tile = check_int(tile, "tile", 1)
    overlap = tile // 4 if overlap is None else check_int(overlap, "overlap", 0)
    margin = overlap // 4 if margin is None else margin
    stride = _check_tiling(tile, overlap, ratio)
    margin = _check_margin(margin, overlap)
    ramp = overlap - 2 * margin
    auto = batch_size is None
    if not auto:
        batch_size = check_int(batch_size, "batch_size", 1)
    if pad_mode not in PAD_MODES:
        raise ValueError(f"pad_mode must be one of {', '.join(PAD_MODES)}, got {pad_mode!r}")
    if amp_dtype is not None and not (isinstance(amp_dtype, torch.dtype)
                                      and amp_dtype.is_floating_point):
        raise ValueError(f"amp_dtype must be a floating torch dtype, got {amp_dtype!r}")
    ms, pan, lms = _check_inputs(ms, pan, lms, ratio)
    n_bands, big_h, big_w = lms.shape
    if out_bands is not None:
        n_bands = check_int(out_bands, "out_bands", 1)
    device = resolve_device(device)
    out = _prepare_out(out, (n_bands, big_h, big_w))

    rows = _Axis.plan(big_h, tile, stride, ratio, margin, ramp, pad_mode)
    cols = _Axis.plan(big_w, tile, stride, ratio, margin, ramp, pad_mode)
    n_cols = len(cols.starts)
    n_tiles = len(rows.starts) * n_cols
    w_rows, w_cols = rows.weights.to(device), cols.weights.to(device)

    def gather(start: int, size: int) -> tuple[slice, Tensor, Tensor, Tensor]:
        sl = slice(start, min(start + size, n_tiles))
        k = np.arange(sl.start, sl.stop)
        i, j = k // n_cols, k % n_cols
        return (sl, _gather(ms, rows.ms_idx[i], cols.ms_idx[j]),
                _gather(pan, rows.pan_idx[i], cols.pan_idx[j]),
                _gather(lms, rows.pan_idx[i], cols.pan_idx[j]))

    layout = torch.channels_last if channels_last else torch.contiguous_format

    def launch(sl: slice, ms_t: Tensor, pan_t: Tensor, lms_t: Tensor) -> Tensor:
        ms_t, pan_t, lms_t = (t.to(device, memory_format=layout) for t in (ms_t, pan_t, lms_t))
        amp = (torch.autocast(device.type, dtype=amp_dtype) if amp_dtype is not None
               else contextlib.nullcontext())
        with amp:
            fused = fn(ms_t, pan_t, lms_t)
        expected = (sl.stop - sl.start, n_bands, tile, tile)
        if not isinstance(fused, Tensor) or tuple(fused.shape) != expected:
            got = tuple(fused.shape) if isinstance(fused, Tensor) else type(fused).__name__
            raise ValueError(f"fn must return a (B, C, tile, tile) = {expected} tensor, got {got}")
        k = torch.arange(sl.start, sl.stop, device=device)
        wts = w_rows[k // n_cols][:, :, None] * w_cols[k % n_cols][:, None, :]
        return fused.float() * wts[:, None]

    def scatter(sl: slice, weighted: np.ndarray) -> None:
        # Tiles of a batch overlap each other: add them one by one (block adds).
        for b, k in enumerate(range(sl.start, sl.stop)):
            i, j = divmod(k, n_cols)
            y0, x0 = rows.starts[i], cols.starts[j]
            hy, wx = rows.valid[i], cols.valid[j]
            out[:, y0:y0 + hy, x0:x0 + wx] += weighted[b, :, :hy, :wx]

    probe = auto and device.type == "cuda"
    size = 1 if probe else (max(1, CPU_BATCH_PIXELS // tile ** 2) if auto else batch_size)
    with torch.inference_mode(), tqdm(total=n_tiles, disable=not progress, unit="tile",
                                      desc="tiled fuse") as bar:
        if probe:
            base = torch.cuda.memory_allocated(device)
            torch.cuda.reset_peak_memory_stats(device)
        batch = gather(0, size)
        while batch is not None:
            sl = batch[0]
            try:
                result = launch(*batch)
            except torch.cuda.OutOfMemoryError:
                if not auto or sl.stop - sl.start == 1:
                    raise
                result = None
            if result is None:  # out of memory: retry with half the batch
                torch.cuda.empty_cache()
                size = max(1, (sl.stop - sl.start) // 2)
                batch = gather(sl.start, size)
                continue
            if probe:
                peak = torch.cuda.max_memory_allocated(device) - base
                size = _batch_from_memory(peak, _cuda_available_bytes(device))
                probe = False
            # Gather the next batch on the CPU while the device computes this one.
            batch = gather(sl.stop, size) if sl.stop < n_tiles else None
            weighted = result.cpu().contiguous().numpy()
            del result
            scatter(sl, weighted)
            bar.update(sl.stop - sl.start)
    if isinstance(out, np.memmap):
        out.flush()
    return out
