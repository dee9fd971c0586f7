"""Tests of tta.engine.tiling: tile layout, blend windows and seamless tiled inference.

Run on GPU with ``pytest tests/test_tiling.py --device cuda``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from tta.engine import blend_window, tile_corners, tiled_fuse
from tta.engine.tiling import CPU_BATCH_PIXELS, MAX_AUTO_BATCH, _batch_from_memory

TOL = 1e-5


# ---------------------------------------------------------------------------- helpers
def _scene(c: int, big_h: int, big_w: int, ratio: int, seed: int = 0):
    """Random float32 numpy ms (C, h, w), pan (H, W), lms (C, H, W) in [0, 1)."""
    rng = np.random.default_rng(seed)
    ms = rng.random((c, big_h // ratio, big_w // ratio), dtype=np.float32)
    pan = rng.random((big_h, big_w), dtype=np.float32)
    lms = rng.random((c, big_h, big_w), dtype=np.float32)
    return ms, pan, lms


def _smooth_scene(c: int, big_h: int, big_w: int, ratio: int):
    """Low-frequency sinusoids (values in [1, 5]) for ms, pan and lms."""
    def wave(h: int, w: int, phase: float) -> np.ndarray:
        y, x = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
        return (3 + np.sin(2 * math.pi * y / 97 + phase) + np.cos(2 * math.pi * x / 83 + phase)
                + 0.5 * np.sin(2 * math.pi * (x + y) / 131)).astype(np.float32)

    ms = np.stack([wave(big_h // ratio, big_w // ratio, k) for k in range(c)])
    lms = np.stack([wave(big_h, big_w, k) for k in range(c)])
    return ms, wave(big_h, big_w, 0.5), lms


class _ConvNet(nn.Module):
    """``layers`` zero-padded 3x3 convolutions on cat(lms, pan): receptive radius ``layers``."""

    def __init__(self, bands: int, layers: int = 3, width: int = 8, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        chans = [bands + 1] + [width] * (layers - 1) + [bands]
        pairs = zip(chans[:-1], chans[1:], strict=True)
        self.convs = nn.ModuleList(nn.Conv2d(a, b, 3, padding=1) for a, b in pairs)

    def forward(self, ms: torch.Tensor, pan: torch.Tensor, lms: torch.Tensor) -> torch.Tensor:
        x = torch.cat([lms, pan], dim=1)
        for k, conv in enumerate(self.convs):
            x = conv(x)
            if k < len(self.convs) - 1:
                x = torch.tanh(x)
        return x + lms


def _net(bands: int, device, layers: int = 3) -> _ConvNet:
    return _ConvNet(bands, layers).to(device).eval()


def _untiled(fn, ms, pan, lms, device) -> np.ndarray:
    """``fn`` on the whole scene (a batch of one), as float32 numpy (C, H, W)."""
    def t(a):
        return torch.as_tensor(np.asarray(a), dtype=torch.float32, device=device)

    with torch.inference_mode():
        return fn(t(ms)[None], t(pan)[None, None], t(lms)[None])[0].cpu().numpy()


def _identity(ms, pan, lms):
    return lms.clone()


# ---------------------------------------------------------------------------- tile_corners
@pytest.mark.parametrize(
    ("height", "width", "tile", "overlap", "ratio"),
    [(256, 256, 64, 16, 4), (200, 132, 64, 16, 4), (90, 62, 32, 10, 2), (100, 44, 32, 10, 4),
     (64, 64, 64, 16, 4), (68, 300, 64, 0, 4), (512, 96, 96, 24, 2)],
)
def test_tile_corners_cover_flush_multiple_of_ratio(height, width, tile, overlap, ratio):
    corners = tile_corners(height, width, tile, overlap, ratio)
    assert corners.dtype == torch.long and corners.ndim == 2 and corners.shape[1] == 2
    assert (corners % ratio == 0).all()
    rows, cols = corners[:, 0].unique(), corners[:, 1].unique()
    # a full row-major grid
    assert corners.shape[0] == rows.numel() * cols.numel()
    assert torch.equal(corners[:, 0], rows.repeat_interleave(cols.numel()))
    assert torch.equal(corners[:, 1], cols.repeat(rows.numel()))
    for starts, length in ((rows, height), (cols, width)):
        assert starts[0] == 0 and starts[-1] == length - tile  # flush with both borders
        gaps = starts.diff()
        assert (gaps > 0).all() and (gaps <= tile - overlap).all()  # overlap never shrinks
        covered = torch.zeros(length, dtype=torch.bool)
        for s in starts.tolist():
            covered[s:s + tile] = True
        assert covered.all()


def test_tile_corners_stride_and_small_scene():
    # stride 64 - 16 = 48 exactly: 0, 48, 96, 144, then flush 192 (= 256 - 64)
    assert tile_corners(256, 64, 64, 16, 4)[:, 0].tolist() == [0, 48, 96, 144, 192]
    # overlap 10 with ratio 4: stride 22 rounded down to 20
    assert tile_corners(92, 32, 32, 10, 4)[:, 0].tolist() == [0, 20, 40, 60]
    # a scene smaller than the tile (or equal): a single tile at the origin
    assert tile_corners(20, 12, 32, 8, 4).tolist() == [[0, 0]]
    assert tile_corners(32, 100, 32, 8, 4)[:, 0].unique().tolist() == [0]


@pytest.mark.parametrize(
    ("args", "match"),
    [((64, 64, 30, 8, 4), "multiple of ratio"),
     ((64, 64, 32, 29, 4), "overlap"),
     ((66, 64, 32, 8, 4), "height"),
     ((64, 62, 32, 8, 4), "width"),
     ((64, 64, 32, -1, 4), "overlap"),
     ((0, 64, 32, 8, 4), "height"),
     ((64, 64, 32, 8, 0), "ratio")],
)
def test_tile_corners_bad_arguments(args, match):
    with pytest.raises(ValueError, match=match):
        tile_corners(*args)


# ---------------------------------------------------------------------------- blend_window
def test_blend_window_margins_ramp_interior():
    tile, margin, ramp = 32, 3, 6
    w = blend_window(tile, margin, ramp, dtype=torch.float64)
    assert w.shape == (tile, tile) and w.dtype == torch.float64
    assert (w[:margin] == 0).all() and (w[-margin:] == 0).all()
    assert (w[:, :margin] == 0).all() and (w[:, -margin:] == 0).all()
    inner = slice(margin + ramp, tile - margin - ramp)
    assert (w[inner, inner] == 1).all()
    prof = w[tile // 2]  # the column profile (the middle row weighs 1)
    rise = prof[margin:margin + ramp]
    assert ((rise > 0) & (rise < 1)).all() and (rise.diff() > 0).all()
    expected = 0.5 - 0.5 * torch.cos(math.pi * torch.arange(1, ramp + 1) / (ramp + 1))
    torch.testing.assert_close(rise, expected.double())
    assert torch.equal(w, w.flip(0)) and torch.equal(w, w.T)  # symmetric
    # smooth: no step larger than the raised cosine's maximum slope
    assert prof.diff().abs().max() <= math.pi / (2 * (ramp + 1)) + 1e-12


def test_blend_window_partition_of_unity():
    tile, overlap, margin = 40, 14, 3
    ramp, stride = overlap - 2 * margin, tile - overlap
    prof = blend_window(tile, margin, ramp, dtype=torch.float64)[tile // 2]
    # two tiles `stride` apart: weights add up to 1 over their overlap
    total = prof[stride:] + prof[:tile - stride]
    torch.testing.assert_close(total, torch.ones_like(total), atol=1e-12, rtol=0)


def test_blend_window_border_flags(device):
    tile, margin, ramp = 24, 2, 5
    plain = blend_window(tile, margin, ramp, device=device)
    assert plain.device.type == device.type and plain.dtype == torch.get_default_dtype()
    top = blend_window(tile, margin, ramp, top=True, device=device)
    prof = plain[tile // 2]
    # the top side weighs 1 up to the edge, the bottom keeps its margin and ramp
    torch.testing.assert_close(top[0], prof)
    torch.testing.assert_close(top[: tile // 2], prof.expand(tile // 2, tile))
    torch.testing.assert_close(top[tile // 2:], plain[tile // 2:])
    left_right = blend_window(tile, margin, ramp, left=True, right=True, device=device)
    torch.testing.assert_close(left_right, plain[:, tile // 2:tile // 2 + 1].expand(tile, tile))
    everywhere = blend_window(tile, margin, ramp, top=True, bottom=True, left=True, right=True)
    assert (everywhere == 1).all()


def test_blend_window_ramps_meet_and_bad_arguments():
    w = blend_window(10, 2, 8)  # ramps of opposite sides meet: min of the two, still symmetric
    assert torch.equal(w, w.flip(1)) and w.max() < 1 and w[5, 5] > 0
    assert (blend_window(8, 0, 0) == 1).all()
    for args, match in (((8, 4, 1), "margin"), ((8, -1, 1), "margin"), ((8, 1, -1), "ramp"),
                        ((0, 0, 0), "tile")):
        with pytest.raises(ValueError, match=match):
            blend_window(*args)


# ---------------------------------------------------------------------------- seamless
def test_constant_input_gives_the_constant(device):
    ms, pan, lms = _scene(4, 136, 200, 4)
    lms[:] = 0.37
    fused = tiled_fuse(_identity, ms, pan, lms, ratio=4, tile=48, overlap=16, margin=3,
                       batch_size=5, device=device)
    assert fused.dtype == np.float32 and fused.shape == lms.shape
    np.testing.assert_allclose(fused, 0.37, rtol=1e-6, atol=0)


def test_smooth_input_has_no_seams(device):
    ms, pan, lms = _smooth_scene(4, 200, 168, 4)
    for fn in (_identity, _net(4, device)):
        fused = tiled_fuse(fn, ms, pan, lms, ratio=4, tile=64, batch_size=3, device=device)
        np.testing.assert_allclose(fused, _untiled(fn, ms, pan, lms, device), atol=TOL, rtol=0)


def test_blend_hides_tile_dependent_artifacts():
    """A network that is not translation-equivariant: blending removes the seams' jumps."""
    tile = 32

    def biased(ms, pan, lms):  # adds 0.1 * (column within the tile) / tile
        x = torch.arange(tile, dtype=lms.dtype, device=lms.device)
        return lms + 0.1 * x / tile

    ms, pan, lms = _scene(1, 32, 160, 4)
    lms[:] = 0.5

    def max_jump(overlap, margin):
        fused = tiled_fuse(biased, ms, pan, lms, ratio=4, tile=tile, overlap=overlap,
                           margin=margin)
        return np.abs(np.diff(fused[0], axis=1)).max()

    hard = max_jump(0, 0)  # plain tiling: jumps of ~0.1 at the seams
    soft = max_jump(16, 2)
    assert hard > 0.09
    assert soft < 0.3 * hard


# ---------------------------------------------------------------------------- exactness
@pytest.mark.parametrize(
    ("big_h", "big_w", "ratio", "tile", "overlap", "margin", "batch_size"),
    [
        (100, 76, 4, 32, 8, 3, 1),
        (132, 200, 4, 64, 16, None, 5),  # default margin 16 // 4 = 4
        (90, 62, 2, 32, 12, 3, 3),
        (50, 46, 2, 24, 8, 3, 64),  # every tile in one batch
        (92, 120, 4, 32, 10, 3, 2),  # stride 22 rounded down to 20
        (144, 96, 4, 48, None, None, 4),  # defaults: overlap 12, margin 3
        (96, 96, 2, 32, 6, 3, 7),  # ramp 0: hard cut in the overlap, still exact
    ],
)
def test_tiled_equals_untiled_conv_net(device, big_h, big_w, ratio, tile, overlap, margin,
                                       batch_size):
    ms, pan, lms = _scene(4, big_h, big_w, ratio, seed=big_h + big_w)
    net = _net(4, device)
    fused = tiled_fuse(net, ms, pan, lms, ratio=ratio, tile=tile, overlap=overlap,
                       margin=margin, batch_size=batch_size, device=device)
    np.testing.assert_allclose(fused, _untiled(net, ms, pan, lms, device), atol=TOL, rtol=0)


def test_two_networks_side_by_side(device):
    """``out_bands``: an ``fn`` giving two networks' outputs at once is tiled and blended like
    each alone (both halves equal their own untiled fusion)."""
    ms, pan, lms = _scene(4, 100, 76, 4, seed=7)
    a, b = _net(4, device), _net(4, device, layers=2)

    def both(m, p, u):
        return torch.cat([a(m, p, u), b(m, p, u)], dim=1)

    fused = tiled_fuse(both, ms, pan, lms, ratio=4, tile=32, overlap=12, margin=3, batch_size=3,
                       device=device, out_bands=8)
    assert fused.shape == (8, 100, 76)
    np.testing.assert_allclose(fused[:4], _untiled(a, ms, pan, lms, device), atol=TOL, rtol=0)
    np.testing.assert_allclose(fused[4:], _untiled(b, ms, pan, lms, device), atol=TOL, rtol=0)
    with pytest.raises(ValueError, match=r"fn must return a \(B, C, tile, tile\)"):
        tiled_fuse(both, ms, pan, lms, ratio=4, tile=32, overlap=12, margin=3, device=device)


@settings(max_examples=12, deadline=None)
@given(
    ratio=st.sampled_from([2, 4]),
    tile_px=st.sampled_from([16, 24, 32]),
    extra_overlap=st.integers(0, 4),
    hh=st.integers(1, 30),
    ww=st.integers(1, 30),
    batch_size=st.integers(1, 9),
)
def test_tiled_equals_untiled_any_size(ratio, tile_px, extra_overlap, hh, ww, batch_size):
    big_h, big_w = ratio * hh, ratio * ww
    if min(big_h, big_w) < tile_px:  # padded scenes are tested separately
        big_h, big_w = max(big_h, tile_px), max(big_w, tile_px)
    ms, pan, lms = _scene(2, big_h, big_w, ratio, seed=hh * 31 + ww)
    net = _net(2, "cpu", layers=2)
    fused = tiled_fuse(net, ms, pan, lms, ratio=ratio, tile=tile_px, overlap=4 + extra_overlap,
                       margin=2, batch_size=batch_size)
    np.testing.assert_allclose(fused, _untiled(net, ms, pan, lms, "cpu"), atol=TOL, rtol=0)


def test_inputs_as_tensors_and_memmaps(device, tmp_path):
    ms, pan, lms = _scene(4, 96, 128, 4)
    net = _net(4, device)
    kw = dict(ratio=4, tile=32, overlap=12, margin=3, batch_size=4, device=device)
    ref = tiled_fuse(net, ms, pan, lms, **kw)
    from_tensors = tiled_fuse(net, torch.from_numpy(ms), torch.from_numpy(pan)[None],
                              torch.from_numpy(lms), **kw)
    np.testing.assert_array_equal(from_tensors, ref)
    maps = []
    for name, a in (("ms", ms), ("pan", pan), ("lms", lms.astype(np.float64))):
        m = np.memmap(tmp_path / f"{name}.dat", dtype=a.dtype, mode="w+", shape=a.shape)
        m[:] = a
        maps.append(m)
    np.testing.assert_array_equal(tiled_fuse(net, *maps, **kw), ref)


def test_out_memmap_is_filled(device, tmp_path):
    ms, pan, lms = _scene(4, 80, 112, 4)
    net = _net(4, device)
    out = np.memmap(tmp_path / "fused.dat", dtype=np.float32, mode="w+", shape=lms.shape)
    out[:] = np.nan  # stale content must be overwritten
    res = tiled_fuse(net, ms, pan, lms, ratio=4, tile=32, overlap=8, margin=3, batch_size=3,
                     device=device, out=out)
    assert res is out
    del out, res
    back = np.memmap(tmp_path / "fused.dat", dtype=np.float32, mode="r", shape=lms.shape)
    np.testing.assert_allclose(back, _untiled(net, ms, pan, lms, device), atol=TOL, rtol=0)


# ---------------------------------------------------------------------------- small scenes
@pytest.mark.parametrize("pad_mode", ["reflect", "replicate"])
@pytest.mark.parametrize(("big_h", "big_w"), [(20, 12), (8, 100), (28, 32)])
def test_scene_smaller_than_tile(device, pad_mode, big_h, big_w):
    ms, pan, lms = _scene(4, big_h, big_w, 4, seed=3)
    kw = dict(ratio=4, tile=32, overlap=8, margin=3, device=device, pad_mode=pad_mode)
    seen = {}

    def spy(ms_t, pan_t, lms_t):
        seen["shapes"] = (ms_t.shape, pan_t.shape, lms_t.shape)
        return lms_t * pan_t

    fused = tiled_fuse(spy, ms, pan, lms, **kw)
    assert fused.shape == lms.shape
    assert seen["shapes"][0][1:] == (4, 8, 8) and seen["shapes"][1][1:] == (1, 32, 32)
    np.testing.assert_allclose(fused, lms * pan, atol=TOL, rtol=0)  # pointwise: exact
    # a conv net is exact away from the padded (bottom/right) borders of the short axes
    r = 3
    net = _net(4, device, layers=r)
    fused = tiled_fuse(net, ms, pan, lms, **kw)
    ref = _untiled(net, ms, pan, lms, device)
    rows = slice(0, big_h - r) if big_h < 32 else slice(None)
    cols = slice(0, big_w - r) if big_w < 32 else slice(None)
    np.testing.assert_allclose(fused[:, rows, cols], ref[:, rows, cols], atol=TOL, rtol=0)
    assert np.isfinite(fused).all()


# ---------------------------------------------------------------------------- options
def test_amp_progress_and_auto_batch(capsys):
    ms, pan, lms = _scene(4, 64, 96, 4)
    net = _net(4, "cpu")
    ref = _untiled(net, ms, pan, lms, "cpu")
    # defaults: overlap 48 // 4 = 12, margin 3 (the net's radius); batch size 8 on CPU
    fused = tiled_fuse(net, ms, pan, lms, ratio=4, tile=48, progress=True)
    np.testing.assert_allclose(fused, ref, atol=TOL, rtol=0)
    err = capsys.readouterr().err
    n = len(tile_corners(64, 96, 48, 12, 4))
    assert "tiled fuse" in err and f"{n}/{n}" in err
    amp = tiled_fuse(net, ms, pan, lms, ratio=4, tile=48, amp_dtype=torch.bfloat16)
    assert amp.dtype == np.float32
    np.testing.assert_allclose(amp, ref, atol=0.1, rtol=0)
    assert not np.array_equal(amp, ref)  # autocast did run in bfloat16


def test_batch_size_heuristic():
    gib = 2**30
    assert _batch_from_memory(gib, 10 * gib) == 7  # 0.7 * 10 GiB / 1 GiB
    assert _batch_from_memory(gib, gib // 2) == 1  # never below one
    assert _batch_from_memory(1, 80 * gib) == MAX_AUTO_BATCH
    assert _batch_from_memory(0, gib) == MAX_AUTO_BATCH


def test_out_of_memory_halves_the_automatic_batch():
    ms, pan, lms = _scene(4, 96, 112, 4)
    sizes = []

    def greedy(ms_t, pan_t, lms_t):  # "runs out of memory" above two tiles
        sizes.append(ms_t.shape[0])
        if ms_t.shape[0] > 2:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return lms_t * pan_t

    kw = dict(ratio=4, tile=32, overlap=12, margin=3)
    fused = tiled_fuse(greedy, ms, pan, lms, **kw)  # automatic: all 25 tiles, 12, 6, then 3
    np.testing.assert_allclose(fused, lms * pan, atol=TOL, rtol=0)
    assert CPU_BATCH_PIXELS // 32**2 >= 25  # the CPU batch holds the whole 5 x 5 grid
    assert sizes[:5] == [25, 12, 6, 3, 1] and max(sizes[5:]) == 1
    with pytest.raises(torch.OutOfMemoryError):  # an explicit batch size is not changed
        tiled_fuse(greedy, ms, pan, lms, batch_size=4, **kw)


def test_tiles_are_channels_last_unless_asked_otherwise(device):
    ms, pan, lms = _scene(4, 96, 112, 4)
    net = _net(4, device)
    seen = []

    def spy(ms_t, pan_t, lms_t):
        seen.append((ms_t.is_contiguous(memory_format=torch.channels_last),
                     lms_t.is_contiguous(memory_format=torch.channels_last),
                     lms_t.is_contiguous(), torch.is_inference_mode_enabled()))
        return net(ms_t, pan_t, lms_t)

    kw = dict(ratio=4, tile=32, overlap=12, margin=3, batch_size=4, device=device)
    fused = tiled_fuse(spy, ms, pan, lms, **kw)
    assert set(seen) == {(True, True, False, True)}
    seen.clear()
    plain = tiled_fuse(spy, ms, pan, lms, channels_last=False, **kw)
    assert set(seen) == {(False, False, True, True)}
    np.testing.assert_allclose(fused, plain, atol=TOL, rtol=0)
    np.testing.assert_allclose(fused, _untiled(net, ms, pan, lms, device), atol=TOL, rtol=0)


def test_cpu_batches_hold_a_fixed_number_of_pixels():
    ms, pan, lms = _scene(4, 512, 512, 4)
    for tile, per_batch in ((64, CPU_BATCH_PIXELS // 64**2), (256, 1), (512, 1)):
        sizes = []

        def count(ms_t, pan_t, lms_t, sizes=sizes):
            sizes.append(ms_t.shape[0])
            return lms_t

        fused = tiled_fuse(count, ms, pan, lms, ratio=4, tile=tile, overlap=16, margin=4)
        np.testing.assert_allclose(fused, lms, atol=TOL, rtol=0)
        assert sizes[0] == min(per_batch, sum(sizes)) and max(sizes) == sizes[0]


def test_batches_and_order_do_not_matter(device):
    ms, pan, lms = _scene(4, 96, 112, 4)
    net = _net(4, device)
    kw = dict(ratio=4, tile=32, overlap=12, margin=3, device=device)
    one = tiled_fuse(net, ms, pan, lms, batch_size=1, **kw)
    for bs in (2, 5, 100):
        np.testing.assert_allclose(tiled_fuse(net, ms, pan, lms, batch_size=bs, **kw), one,
                                   atol=TOL, rtol=0)


# ---------------------------------------------------------------------------- errors
def test_bad_arguments_raise_clear_errors(tmp_path):
    ms, pan, lms = _scene(4, 64, 64, 4)
    ok = dict(ratio=4, tile=32)
    cases = [
        (dict(ok, tile=30), "tile .30. must be a multiple of ratio"),
        (dict(ok, overlap=30), "overlap .30. must be at most tile - ratio"),
        (dict(ok, overlap=8, margin=5), "margin .5. must be at most overlap // 2"),
        (dict(ok, margin=-1), "margin must be an integer >= 0"),
        (dict(ok, batch_size=0), "batch_size must be an integer >= 1"),
        (dict(ok, ratio=2.5), "ratio must be an integer"),
        (dict(ok, pad_mode="zeros"), "pad_mode must be one of"),
        (dict(ok, amp_dtype=torch.int8), "amp_dtype"),
        (dict(ok, out=np.zeros((4, 64, 32), np.float32)), r"out must be float32 \(4, 64, 64\)"),
        (dict(ok, out=np.zeros((4, 64, 64), np.float64)), "out must be float32"),
    ]
    for kwargs, match in cases:
        with pytest.raises(ValueError, match=match):
            tiled_fuse(_identity, ms, pan, lms, **kwargs)
    with pytest.raises(ValueError, match="pan 64x64 is not ratio 2 x ms 16x16"):
        tiled_fuse(_identity, ms, pan, lms, ratio=2, tile=32)
    with pytest.raises(ValueError, match=r"lms must be \(4, 64, 64\)"):
        tiled_fuse(_identity, ms, pan, lms[:3], **ok)
    with pytest.raises(ValueError, match=r"pan must be \(H, W\)"):
        tiled_fuse(_identity, ms, pan[None, None], lms, **ok)
    with pytest.raises(ValueError, match=r"ms must be \(C, h, w\)"):
        tiled_fuse(_identity, ms[0], pan, lms, **ok)
    with pytest.raises(ValueError, match="fn must return"):
        tiled_fuse(lambda m, p, lm: lm[:, :2], ms, pan, lms, **ok)
    ro = np.memmap(tmp_path / "ro.dat", dtype=np.float32, mode="w+", shape=lms.shape)
    ro.flush()
    ro = np.memmap(tmp_path / "ro.dat", dtype=np.float32, mode="r", shape=lms.shape)
    with pytest.raises(ValueError, match="read-only"):
        tiled_fuse(_identity, ms, pan, lms, out=ro, **ok)


# ---------------------------------------------------------------------------- real data
def test_real_scene_crop_tiled_equals_untiled(real_file, device):
    from tta.io import read_scene
    from tta.physics import interp23tap

    scene = read_scene(real_file("wv2/wv2_grip_top_fr.h5"))
    r = scene.ratio
    ms = scene.ms[:, : 256 // r, : 256 // r] / scene.max_value
    pan = scene.pan[:256, :256] / scene.max_value
    lms = interp23tap(torch.from_numpy(np.ascontiguousarray(ms))[None], r)[0].numpy()
    net = _net(ms.shape[0], device)
    fused = tiled_fuse(net, ms, pan, lms, ratio=r, tile=64, overlap=16, margin=3, batch_size=6,
                       device=device)
    ref = _untiled(net, ms, pan, lms, device)
    assert fused.shape == (8, 256, 256)
    np.testing.assert_allclose(fused, ref, atol=TOL, rtol=0)


def test_fitted_tile_computes_the_fewest_pixels():
    from tta.engine.tiling import fitted_tile

    def computed(h: int, w: int, tile: int, overlap: int) -> int:
        return len(tile_corners(h, w, tile, overlap, 4)) * tile * tile

    assert fitted_tile(512, 512, 512, 64, 4) == 512  # fits: one tile, no overlap computed
    assert fitted_tile(200, 200, 512, 64, 4) == 200  # smaller than the largest tile
    for h, w, overlap in [(640, 1280, 104), (2048, 2048, 64), (1000, 300, 40)]:
        tile = fitted_tile(h, w, 512, overlap, 4)
        assert tile % 4 == 0 and overlap < tile <= 512
        best = min(computed(h, w, t, overlap) for t in range(overlap + 4, 513, 4))
        assert computed(h, w, tile, overlap) == best
        assert best < computed(h, w, 256, overlap)  # the former fixed 256² tiles
