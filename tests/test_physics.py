"""Tests of tta.physics: MTF filters, decimation, Wald degradation, interpolation, correlation.

Run on GPU with ``pytest tests/test_physics.py --device cuda``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tta.physics import (
    CDF23,
    MTFFilter,
    WaldDegrade,
    bicubic_upsample,
    coregistration_phases,
    decimate,
    degrade_scene,
    depthwise_filter,
    interp23tap,
    interp23tap_kernel,
    local_correlation,
    mtf_filter,
    mtf_filter_ms,
    mtf_filter_pan,
    mtf_kernels,
    pan_downsample,
    wald_degrade,
)
from tta.sensors import get_sensor

F64 = torch.float64
WV3 = get_sensor("WV3")


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _rand(*shape: int, seed: int = 0, device="cpu", dtype=F64) -> torch.Tensor:
    return torch.rand(*shape, generator=_gen(seed), dtype=F64).to(device=device, dtype=dtype)


def _periodic_smooth(n: int, device, dtype=F64) -> torch.Tensor:
    """A smooth periodic test image (low-frequency sinusoids), (1, 1, n, n), values in [1, 5]."""
    t = torch.arange(n, dtype=F64)
    yy, xx = torch.meshgrid(t, t, indexing="ij")
    w = 2 * math.pi / n
    img = torch.sin(2 * w * yy) + torch.cos(3 * w * xx) + 0.5 * torch.sin(w * (xx + yy)) + 3
    return img[None, None].to(device=device, dtype=dtype)


def _toolbox_kernel_raw(g: float, ratio: int, n: int = 41) -> np.ndarray:
    """genMTF.m for one band, odd N form (``real(fftshift(ifft2(ifftshift(Hd)))) .* w``)."""
    alpha = math.sqrt(((n - 1) * (1 / ratio / 2)) ** 2 / (-2 * math.log(g)))
    t = np.arange(n) - (n - 1) / 2
    h = np.exp(-(t[:, None] ** 2 + t[None, :] ** 2) / (2 * alpha**2))
    hd = h / h.max()
    fs = np.real(np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(hd))))
    tt = np.linspace(-1, 1, n)
    rad = np.sqrt(tt[:, None] ** 2 + tt[None, :] ** 2)
    win = np.where(rad > 1, 0.0, np.interp(rad, tt, np.kaiser(n, 0.5)))
    return fs * win


def _nyquist_response(kernel: torch.Tensor, ratio: int, nfft: int = 1024) -> torch.Tensor:
    """|FFT| of each zero-padded kernel at 1/(2*ratio) cycles/pixel along both axes."""
    spec = torch.fft.fft2(kernel, s=(nfft, nfft)).abs()
    f = nfft // (2 * ratio)
    return torch.stack([spec[..., 0, f], spec[..., f, 0]], dim=-1)


# ----------------------------------------------------------------------------- MTF kernels
GAINS = [0.1, 0.15, 0.29, 0.35, 0.45]


@pytest.mark.parametrize("ratio", [2, 4])
def test_kernels_sum_to_one_symmetric_peaked(device, ratio):
    k = mtf_kernels(GAINS, ratio, device=device, dtype=F64)
    assert k.shape == (len(GAINS), 41, 41) and k.device.type == device.type and k.dtype == F64
    torch.testing.assert_close(k.sum(dim=(-2, -1)), torch.ones(len(GAINS), dtype=F64,
                                                               device=device), rtol=0, atol=1e-14)
    torch.testing.assert_close(k, k.transpose(-2, -1), rtol=0, atol=1e-15)
    torch.testing.assert_close(k, k.flip(-1), rtol=0, atol=1e-15)
    torch.testing.assert_close(k, k.flip(-2), rtol=0, atol=1e-15)
    flat = k.reshape(len(GAINS), -1)
    assert (flat.argmax(dim=1) == 20 * 41 + 20).all()


@pytest.mark.parametrize("ratio", [2, 4])
def test_kernels_match_toolbox_up_to_normalisation(ratio):
    k = mtf_kernels(GAINS, ratio, dtype=F64).numpy()
    worst = 0.0
    for g, kern in zip(GAINS, k, strict=True):
        raw = _toolbox_kernel_raw(g, ratio)
        np.testing.assert_allclose(kern, raw / raw.sum(), rtol=0, atol=1e-15)
        worst = max(worst, abs(raw.sum() - 1))
    # documented in mtf_kernels: the toolbox kernels sum to 1 within 2.4e-3
    assert 1e-4 < worst < 2.5e-3


@pytest.mark.parametrize("ratio", [2, 4])
def test_kernel_response_at_nyquist_is_the_gain(device, ratio):
    gains = torch.tensor(GAINS, dtype=F64)
    k = mtf_kernels(gains, ratio, device=device, dtype=F64)
    resp = _nyquist_response(k, ratio).cpu()
    err = resp - gains[:, None]
    # measured: the windowed FIR sits 0.010-0.018 below the design gain (toolbox alike)
    assert err.abs().max() < 0.02
    assert (err < 0).all()
    # isotropic enough: both axes agree
    torch.testing.assert_close(resp[:, 0], resp[:, 1], rtol=0, atol=1e-12)


def test_smaller_gain_gives_wider_kernel(device):
    k = mtf_kernels([0.1, 0.2, 0.3, 0.4], 4, device=device, dtype=F64)
    t = torch.arange(41, dtype=F64, device=device) - 20
    r2 = t[:, None] ** 2 + t[None, :] ** 2
    moments = (k * r2).sum(dim=(-2, -1))
    assert (moments[:-1] > moments[1:]).all()
    assert (k[:, 20, 20][:-1] < k[:, 20, 20][1:]).all()  # and a lower peak


def test_kernels_scalar_dtype_and_cache_isolation(device):
    a = mtf_kernels(0.3, 4, device=device)
    assert a.shape == (1, 41, 41) and a.dtype == torch.get_default_dtype()
    b = mtf_kernels([0.3], 4, size=21, dtype=F64)
    assert b.shape == (1, 21, 21)
    torch.testing.assert_close(b.sum(), torch.tensor(1.0, dtype=F64))
    a.zero_()  # mutating a returned bank must not corrupt the cache
    c = mtf_kernels(0.3, 4, device=device)
    torch.testing.assert_close(c.sum(), torch.tensor(1.0, device=device))


@pytest.mark.parametrize(
    "kwargs",
    [dict(gnyq=[0.3, 1.2], ratio=4), dict(gnyq=[0.0], ratio=4), dict(gnyq=0.3, ratio=0),
     dict(gnyq=0.3, ratio=4, size=40), dict(gnyq=0.3, ratio=4, size=1)],
)
def test_kernels_reject_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        mtf_kernels(**kwargs)


# ----------------------------------------------------------------------------- MTF filter
@pytest.mark.parametrize("dtype", [F64, torch.float32])
def test_filter_constant_image_is_constant(device, dtype):
    x = torch.full((2, 3, 23, 17), 517.25, dtype=dtype, device=device)
    tol = 1e-10 if dtype == F64 else 2e-3
    for method in ("direct", "fft"):
        y = mtf_filter(x, [0.29, 0.3, 0.35], 4, method=method)
        assert y.dtype == dtype and y.shape == x.shape
        torch.testing.assert_close(y, x, rtol=0, atol=tol)


def test_filter_border_is_replicate_padding_by_hand(device):
    x = _rand(1, 2, 9, 12, seed=1, device=device)
    gains = [0.3, 0.2]
    y = mtf_filter(x, gains, 4).cpu().numpy()
    k = mtf_kernels(gains, 4, dtype=F64).numpy()
    xn = x.cpu().numpy()
    for c in range(2):
        padded = np.pad(xn[0, c], 20, mode="edge")
        for i, j in [(0, 0), (8, 11), (4, 0), (3, 7)]:
            expected = (padded[i : i + 41, j : j + 41] * k[c]).sum()
            assert y[0, c, i, j] == pytest.approx(expected, rel=1e-12, abs=1e-13)


def test_filter_fft_equals_direct(device):
    x = _rand(2, 3, 30, 37, seed=2, device=device)
    k = mtf_kernels([0.3, 0.35, 0.15], 4, device=device, dtype=F64)
    a = depthwise_filter(x, k, method="fft")
    b = depthwise_filter(x, k, method="direct")
    torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
    # one channel through several kernels (the PAN-to-C-bands case)
    p = x[:, :1]
    torch.testing.assert_close(depthwise_filter(p, k), depthwise_filter(p.expand(-1, 3, -1, -1), k),
                               rtol=0, atol=1e-12)


def test_filter_commutes_with_band_permutation(device):
    x = _rand(2, 4, 24, 20, seed=3, device=device)
    gains = torch.tensor([0.1, 0.25, 0.35, 0.45], dtype=F64)
    perm = torch.tensor([2, 0, 3, 1])
    y = mtf_filter(x, gains, 4)
    torch.testing.assert_close(mtf_filter(x[:, perm.to(device)], gains[perm], 4),
                               y[:, perm.to(device)], rtol=0, atol=1e-12)
    # per-band kernels follow the bands: band 2 alone with its gain gives the same result
    torch.testing.assert_close(mtf_filter(x[:, 2:3], 0.35, 4), y[:, 2:3], rtol=0, atol=1e-12)
    # and different gains really filter differently
    assert (mtf_filter(x[:, 2:3], 0.1, 4) - y[:, 2:3]).abs().max() > 1e-3


def test_filter_sensor_forms_and_module(device):
    x = _rand(1, 8, 16, 16, seed=4, device=device)
    torch.testing.assert_close(mtf_filter_ms(x, "WV3"), mtf_filter(x, WV3.mtf_ms, 4))
    torch.testing.assert_close(mtf_filter_pan(x[:, :1], WV3), mtf_filter(x[:, :1], 0.14, 4))
    module = MTFFilter.from_sensor("WV3").to(device)
    torch.testing.assert_close(module(x), mtf_filter(x, WV3.mtf_ms, 4))
    torch.testing.assert_close(module.float()(x.float()), mtf_filter(x, WV3.mtf_ms, 4).float())
    with pytest.raises(ValueError):
        mtf_filter(x, [0.3, 0.3], 4)
    with pytest.raises(ValueError):
        module(x[:, :3])


def test_filter_lowers_high_frequencies_and_keeps_low_ones(device):
    n = 64
    t = torch.arange(n, dtype=F64, device=device)
    nyq_ms = torch.cos(2 * math.pi * t / 8).expand(n, n)[None, None]  # MS Nyquist along x
    low = torch.cos(2 * math.pi * t / 64).expand(n, n)[None, None]
    g = 0.3
    centre = (slice(None), slice(None), slice(24, 40), slice(24, 40))  # two periods of 8

    def gain(img):
        y = mtf_filter(img, g, 4)[centre]
        return ((y * img[centre]).sum() / (img[centre] ** 2).sum()).item()

    assert gain(nyq_ms) == pytest.approx(g, abs=0.02)  # measured 0.283
    assert gain(low) > 0.97  # Gaussian model: 0.3 ** (1/64) = 0.981


# ----------------------------------------------------------------------------- decimation
def _arange_image(b: int, c: int, h: int, w: int, device) -> torch.Tensor:
    """x[b, c, i, j] = 10000*b + 1000*c + 100*i + j (as float64)."""
    i = torch.arange(h, dtype=F64)[:, None]
    j = torch.arange(w, dtype=F64)[None, :]
    base = 100 * i + j
    bc = 10000 * torch.arange(b, dtype=F64)[:, None] + 1000 * torch.arange(c, dtype=F64)[None]
    return (bc[:, :, None, None] + base).to(device)


def test_decimate_default_indices(device):
    x = _arange_image(1, 1, 12, 8, device)
    y = decimate(x, 4)
    expected = torch.tensor([[100 * r + c for c in (2, 6)] for r in (2, 6, 10)], dtype=F64)
    torch.testing.assert_close(y[0, 0].cpu(), expected, rtol=0, atol=0)
    y2 = decimate(x, 2)
    assert y2.shape == (1, 1, 6, 4)
    assert y2[0, 0, 0].tolist() == [1 * 100 + 1, 103, 105, 107]
    assert y2[0, 0, :, 0].tolist() == [100 * r + 1 for r in (1, 3, 5, 7, 9, 11)]


def test_decimate_explicit_and_per_band_phases(device):
    x = _arange_image(2, 3, 8, 12, device)
    y = decimate(x, 4, (1, 3))
    assert y[1, 2, 1, 2].item() == 10000 + 2000 + 100 * 5 + 11
    phases = np.array([[0, 0], [3, 1], [2, 2]])
    for ph in (phases, torch.tensor(phases, device=device)):
        y = decimate(x, 4, ph)
        assert y.shape == (2, 3, 2, 3)
        for c, (dy, dx) in enumerate(phases):
            torch.testing.assert_close(y[:, c], x[:, c, dy::4, dx::4], rtol=0, atol=0)
    per_sample = torch.tensor([[[0, 1], [1, 2], [3, 3]], [[2, 0], [0, 3], [1, 1]]],
                              device=device)
    y = decimate(x, 4, per_sample)
    for b in range(2):
        for c in range(3):
            dy, dx = per_sample[b, c].tolist()
            torch.testing.assert_close(y[b, c], x[b, c, dy::4, dx::4], rtol=0, atol=0)
    # a (2,) tensor phase means the same for every band
    torch.testing.assert_close(decimate(x, 4, torch.tensor([1, 3])), decimate(x, 4, (1, 3)))


@pytest.mark.parametrize("phase", [(4, 0), (0, -1), np.zeros((2, 2), int), (0.5, 1)])
def test_decimate_rejects_bad_phases(phase):
    x = torch.zeros(1, 3, 8, 8, dtype=F64)
    with pytest.raises(ValueError):
        decimate(x, 4, phase)


def test_decimate_rejects_indivisible_size():
    with pytest.raises(ValueError):
        decimate(torch.zeros(1, 1, 10, 8), 4)


# ----------------------------------------------------------------------------- interp23tap
def test_interp23tap_kernel_values():
    taps = interp23tap_kernel(dtype=F64)
    assert taps.shape == (23,)
    assert taps[11] == 1.0 and taps[12] == pytest.approx(0.61066818237, abs=1e-12)
    torch.testing.assert_close(taps, taps.flip(0), rtol=0, atol=0)
    assert (taps[13::2] == 0).all() and (taps[1:10:2] == 0).all()  # zero at even offsets
    assert taps.sum().item() == pytest.approx(2.0, abs=1e-9)


def test_interp23tap_impulse_x2(device):
    x = torch.zeros(1, 1, 16, 16, dtype=F64, device=device)
    x[0, 0, 5, 7] = 1.0
    y = interp23tap(x, 2)[0, 0].cpu()
    taps = interp23tap_kernel(dtype=F64)
    expected = torch.zeros(32, 32, dtype=F64)
    # LR (5, 7) lands on HR (11, 15); the response is the outer product of the taps
    expected[0:23, 4:27] = taps[:, None] * taps[None, :]
    torch.testing.assert_close(y, expected, rtol=0, atol=1e-15)
    assert y[11, 15] == 1.0
    assert y[11, 16] == pytest.approx(CDF23[1]) and y[12, 15] == pytest.approx(CDF23[1])


def _interp23tap_matlab(img: np.ndarray, ratio: int) -> np.ndarray:
    """Direct transcription of interp23tap.m for one 2-D band (ratio 2 or 4)."""
    half = np.array(CDF23)
    taps = np.concatenate([half[:0:-1], half])
    out = img
    for z in range(1, ratio // 2 + 1):
        r, c = out.shape
        up = np.zeros((2 * r, 2 * c))
        if z == 1:
            up[1::2, 1::2] = out
        else:
            up[0::2, 0::2] = out
        for axis in (0, 1):
            n = up.shape[axis]
            padded = np.take(up, np.arange(-11, n + 11) % n, axis=axis)
            up = sum(
                taps[k] * np.take(padded, np.arange(k, k + n), axis=axis) for k in range(23)
            )
        out = up
    return out


@pytest.mark.parametrize("ratio", [2, 4])
def test_interp23tap_matches_toolbox_transcription(device, ratio):
    x = _rand(1, 2, 7, 9, seed=5, device=device)
    y = interp23tap(x, ratio).cpu().numpy()
    for c in range(2):
        ref = _interp23tap_matlab(x[0, c].cpu().numpy(), ratio)
        np.testing.assert_allclose(y[0, c], ref, rtol=0, atol=1e-13)


@pytest.mark.parametrize("ratio", [2, 4, 8])
def test_interp23tap_is_interpolating(device, ratio):
    x = _rand(2, 3, 6, 5, seed=6, device=device) * 1000 + 10
    y = interp23tap(x, ratio)
    assert y.shape == (2, 3, 6 * ratio, 5 * ratio)
    torch.testing.assert_close(decimate(y, ratio), x, rtol=0, atol=0)  # exact by construction
    xf = x.float()
    torch.testing.assert_close(decimate(interp23tap(xf, ratio), ratio), xf, rtol=0, atol=0)


def test_interp23tap_reconstructs_smooth_images(device):
    img = _periodic_smooth(64, device)
    rec = interp23tap(decimate(img, 4), 4)
    rel = ((rec - img).abs().max() / img.abs().max()).item()
    assert rel < 2e-4  # measured 4.2e-5
    t = torch.arange(64, dtype=F64)
    yy, xx = torch.meshgrid(t, t, indexing="ij")
    blob = sum(
        torch.exp(-((yy - 32 + 64 * a) ** 2 + (xx - 32 + 64 * b) ** 2) / (2 * 8.0**2))
        for a in (-1, 0, 1)
        for b in (-1, 0, 1)
    )[None, None].to(device)
    rec = interp23tap(decimate(blob, 4), 4)
    assert ((rec - blob).abs().max() / blob.abs().max()).item() < 2e-4  # measured 8.6e-5


def test_interp23tap_linear_and_constant(device):
    a = _rand(1, 2, 5, 6, seed=7, device=device)
    b = _rand(1, 2, 5, 6, seed=8, device=device)
    torch.testing.assert_close(interp23tap(2 * a - 3 * b, 4),
                               2 * interp23tap(a, 4) - 3 * interp23tap(b, 4), rtol=0, atol=1e-12)
    c = torch.full((1, 1, 4, 4), 3.5, dtype=F64, device=device)
    torch.testing.assert_close(interp23tap(c, 4), torch.full((1, 1, 16, 16), 3.5, dtype=F64,
                                                             device=device), rtol=0, atol=1e-7)
    with pytest.raises(ValueError):
        interp23tap(a, 3)


def test_bicubic_upsample(device):
    x = torch.arange(8, dtype=F64, device=device).expand(1, 1, 8, 8).contiguous()
    y = bicubic_upsample(x, 4)
    assert y.shape == (1, 1, 32, 32)
    # cubic convolution reproduces a ramp away from the borders: HR j <-> LR (j + 0.5)/4 - 0.5
    j = torch.arange(8, 24, dtype=F64, device=device)
    torch.testing.assert_close(y[0, 0, 10, 8:24], (j + 0.5) / 4 - 0.5, rtol=0, atol=1e-12)


# ----------------------------------------------------------------------------- PAN / Wald
def test_pan_downsample_matches_matlab_interior(device):
    # MATLAB imresize(I, 1/4) bicubic: weights cubic((u - j)/4)/4, u = 4*i + 2.5 (1-based)
    x = _rand(1, 1, 32, 32, seed=9, device=device)
    y = pan_downsample(x, 4)[0, 0].cpu().numpy()

    def cubic(s):
        s = abs(s)
        if s <= 1:
            return 1.5 * s**3 - 2.5 * s**2 + 1
        if s <= 2:
            return -0.5 * s**3 + 2.5 * s**2 - 4 * s + 2
        return 0.0

    w = np.array([cubic((1.5 - k) / 4) for k in range(-8, 12)])  # 0-based centre 1.5 + 4i
    w /= w.sum()
    xn = x[0, 0].cpu().numpy()
    i, j = 3, 4
    rows = np.arange(-8, 12) + 4 * i
    cols = np.arange(-8, 12) + 4 * j
    expected = w @ xn[np.ix_(rows, cols)] @ w
    assert y[i, j] == pytest.approx(expected, rel=1e-10)


def test_wald_degrade_constant_and_shapes(device):
    ms = torch.full((2, 8, 12, 16), 250.0, dtype=F64, device=device)
    pan = torch.full((2, 1, 48, 64), 400.0, dtype=F64, device=device)
    ms_lr, pan_lr = wald_degrade(ms, pan, "WV3")
    assert ms_lr.shape == (2, 8, 3, 4) and pan_lr.shape == (2, 1, 12, 16)
    torch.testing.assert_close(ms_lr, torch.full_like(ms_lr, 250.0), rtol=0, atol=1e-9)
    torch.testing.assert_close(pan_lr, torch.full_like(pan_lr, 400.0), rtol=0, atol=1e-9)
    module = WaldDegrade(WV3).to(device)
    x = _rand(2, 8, 12, 16, seed=10, device=device)
    p = _rand(2, 1, 48, 64, seed=11, device=device)
    for got, want in zip(module(x, p), wald_degrade(x, p, WV3.mtf_ms, 4), strict=True):
        torch.testing.assert_close(got, want)
    with pytest.raises(ValueError):
        wald_degrade(x, p[..., :40], WV3)
    with pytest.raises(ValueError):
        wald_degrade(x, p, WV3.mtf_ms)  # ratio required with plain gains


def test_wald_degrade_clip(device):
    ms = torch.zeros(1, 1, 8, 8, dtype=F64, device=device)
    pan = torch.zeros(1, 1, 32, 32, dtype=F64, device=device)
    pan[..., 12:20, 12:20] = 1000.0  # a bright square: bicubic undershoots beside it
    _, raw = wald_degrade(ms, pan, 0.3, 4)
    _, clipped = wald_degrade(ms, pan, 0.3, 4, clip_min=0.0)
    assert raw.min() < 0 and clipped.min() == 0
    torch.testing.assert_close(clipped, raw.clamp_min(0))


def _small_scene(seed: int = 0, h: int = 8, w: int = 8, **kwargs):
    from tta.io import Scene

    rng = np.random.default_rng(seed)
    ms = rng.uniform(100, 2000, size=(8, h, w)).astype(np.float32)
    pan = rng.uniform(100, 2000, size=(4 * h, 4 * w)).astype(np.float32)
    return Scene(ms=ms, pan=pan, sensor=WV3, source="gen", meta={"note": "x"}, **kwargs)


def test_degrade_scene_small_hand_check(device):
    pytest.importorskip("tta.io")
    scene = _small_scene()
    out = degrade_scene(scene, device=device)
    assert out.ms.shape == (8, 2, 2) and out.pan.shape == (8, 8) and out.gt.shape == (8, 8, 8)
    np.testing.assert_array_equal(out.gt, scene.ms)
    k = mtf_kernels(WV3.mtf_ms, 4, dtype=F64).numpy()
    for c in (0, 5):
        padded = np.pad(scene.ms[c].astype(np.float64), 20, mode="edge")
        for i, j in [(0, 0), (1, 0), (1, 1)]:
            y, x = 4 * i + 2, 4 * j + 2  # decimation keeps the filtered value at index 2 (+4k)
            expected = (padded[y : y + 41, x : x + 41] * k[c]).sum()
            assert out.ms[c, i, j] == pytest.approx(expected, rel=1e-6)
    expected_pan = pan_downsample(torch.from_numpy(scene.pan).double()[None, None], 4)
    np.testing.assert_allclose(out.pan, expected_pan[0, 0].clamp_min(0).numpy(), rtol=1e-6)
    assert out.sensor is WV3 and out.ratio == 4 and out.max_value == scene.max_value
    assert out.band_names == scene.band_names and out.is_reduced
    assert out.source == "gen (Wald-degraded)" and out.meta["degraded_from"] == "gen"
    assert out.meta["note"] == "x" and "crop" not in out.meta
    assert out.nodata is None and out.transform is None


def test_degrade_scene_constant_crop_transform_nodata():
    pytest.importorskip("tta.io")
    from affine import Affine

    scene = _small_scene(h=9, w=10, transform=Affine(0.5, 0, 100, 0, -0.5, 200), crs="EPSG:32651")
    scene = scene.with_(ms=np.full_like(scene.ms, 321.0), pan=np.full_like(scene.pan, 456.0))
    out = degrade_scene(scene)
    assert out.ms.shape == (8, 2, 2) and out.pan.shape == (8, 8)
    np.testing.assert_allclose(out.ms, 321.0, rtol=1e-6)
    np.testing.assert_allclose(out.pan, 456.0, rtol=1e-6)
    assert out.meta["crop"]["ms_shape_before"] == [9, 10]
    assert out.meta["crop"]["ms_shape_after"] == [8, 8]
    assert out.transform == Affine(2.0, 0, 100, 0, -2.0, 200) and out.crs == "EPSG:32651"
    # nodata: one PAN pixel masked -> its MS pixel becomes a nodata pixel of the new PAN grid
    nodata = np.zeros(scene.pan.shape, bool)
    nodata[13, 22] = True  # MS pixel (3, 5)
    masked = scene.with_(nodata=nodata, pan=np.where(nodata, 0, scene.pan).astype(np.float32))
    out = degrade_scene(masked)
    expected = np.zeros((8, 8), bool)
    expected[3, 5] = True
    np.testing.assert_array_equal(out.nodata, expected)
    assert out.pan[3, 5] == 0 and (out.gt[:, 3, 5] == 0).all()
    assert (out.ms[:, 0, 1] == 0).all() and (out.ms[:, 1, 1] > 0).all()
    # a mask outside the kept crop leaves no nodata at all
    nodata = np.zeros(scene.pan.shape, bool)
    nodata[35, 39] = True
    assert degrade_scene(scene.with_(nodata=nodata)).nodata is None


@pytest.fixture(scope="module")
def wv3_full(real_file):
    io = pytest.importorskip("tta.io")
    return io.read_h5(real_file("wv3/wv3_shanghai_fr.h5"), sensor="WV3")


def test_degrade_scene_real_wv3(wv3_full, device):
    scene = wv3_full
    assert scene.ms.shape == (8, 325, 325)
    out = degrade_scene(scene, device=device)
    assert out.ms.shape == (8, 81, 81) and out.pan.shape == (324, 324)
    assert out.gt.shape == (8, 324, 324)
    np.testing.assert_array_equal(out.gt, scene.ms[:, :324, :324])
    assert out.ms.min() >= 0 and out.pan.min() >= 0
    band_ratio = out.ms.mean(axis=(1, 2)) / out.gt.mean(axis=(1, 2))
    np.testing.assert_allclose(band_ratio, 1.0, atol=0.01)  # measured within 2e-4
    assert out.pan.mean() / scene.pan[:1296, :1296].mean() == pytest.approx(1.0, abs=0.01)
    assert out.meta["crop"]["ms_shape_after"] == [324, 324]
    assert out.source.endswith(" (Wald-degraded)") and out.meta["degraded_from"] == scene.source
    # the degraded PAN still correlates with the degraded MS on the new grid
    pan_block = out.pan.reshape(81, 4, 81, 4).mean(axis=(1, 3))
    assert np.corrcoef(pan_block.ravel(), out.ms.mean(axis=0).ravel())[0, 1] > 0.8


# ----------------------------------------------------------------------------- correlation
def test_local_correlation_identities(device):
    x = _rand(2, 3, 12, 10, seed=12, device=device) * 1000 + 500
    one = torch.ones(2, 3, 8, 6, dtype=F64, device=device)
    torch.testing.assert_close(local_correlation(x, x, 5), one, rtol=0, atol=1e-12)
    torch.testing.assert_close(local_correlation(x, -x, 5), -one, rtol=0, atol=1e-12)
    torch.testing.assert_close(local_correlation(x, 2.5 * x + 7, 5), one, rtol=0, atol=1e-10)
    xf = x.float()
    torch.testing.assert_close(local_correlation(xf, 0.1 * xf + 3, 5), one.float(), rtol=0,
                               atol=1e-4)
    # constant boxes give 0, not NaN
    flat = torch.full_like(x, 4.0)
    r = local_correlation(x, flat, 5)
    assert torch.isfinite(r).all() and r.abs().max() < 1e-6


def test_local_correlation_hand_check_with_corrcoef(device):
    x = _rand(1, 2, 3, 4, seed=13, device=device)
    y = _rand(1, 1, 3, 4, seed=14, device=device)  # one channel, broadcast to both
    r = local_correlation(x, y, 2).cpu().numpy()
    assert r.shape == (1, 2, 2, 3)
    xn, yn = x.cpu().numpy(), y.cpu().numpy()
    for c in range(2):
        for i in range(2):
            for j in range(3):
                a = xn[0, c, i : i + 2, j : j + 2].ravel()
                b = yn[0, 0, i : i + 2, j : j + 2].ravel()
                assert r[0, c, i, j] == pytest.approx(np.corrcoef(a, b)[0, 1], abs=1e-12)
    with pytest.raises(ValueError):
        local_correlation(x, y, 4)


def test_coregistration_synthetic_phase(device):
    pan = _rand(2, 1, 64, 64, seed=15, device=device) * 1000
    gains = WV3.mtf_ms
    low = mtf_filter(pan.expand(-1, 8, -1, -1), gains, 4)
    ms = decimate(low, 4, (1, 3))
    phases = coregistration_phases(ms, pan, gains, 4)
    assert phases.dtype == torch.long and phases.shape == (2, 8, 2)
    assert (phases.cpu() == torch.tensor([1, 3])).all()
    # one phase per band, then decimating with the result reproduces the MS exactly
    per_band = torch.tensor([[0, 0], [1, 2], [2, 2], [3, 1], [0, 3], [2, 0], [1, 1], [3, 3]])
    ms = decimate(low, 4, per_band)
    phases, scores = coregistration_phases(ms, pan, gains, 4, return_scores=True)
    assert (phases.cpu() == per_band).all()
    assert scores.shape == (2, 8, 4, 4)
    assert scores.max(dim=-1).values.max(dim=-1).values.min() == pytest.approx(1.0, abs=1e-12)
    torch.testing.assert_close(decimate(low, 4, phases), ms, rtol=0, atol=0)


@pytest.mark.parametrize("shift,expected", [((0, 0), (2, 2)), ((1, -2), (3, 0)),
                                            ((-1, 1), (1, 3)), ((-2, 0), (0, 2))])
def test_coregistration_real_ms_shifted_pan(wv3_full, device, shift, expected):
    ms = torch.from_numpy(wv3_full.ms[:, 100:164, 100:164].copy()).to(device, F64)[None]
    hr = torch.roll(interp23tap(ms, 4), shift, dims=(-2, -1))  # PAN px shift, down/right > 0
    # each band as its own sample with a PAN made from that band: every band finds the shift
    phases = coregistration_phases(ms.transpose(0, 1), hr.transpose(0, 1), 0.34, 4)
    assert (phases[:, 0].cpu() == torch.tensor(expected)).all()
    # a PAN made of the visible bands (blue..red) recovers the shift for those bands
    pan_vis = hr[:, 1:5].mean(dim=1, keepdim=True)
    phases = coregistration_phases(ms, pan_vis, WV3.mtf_ms, 4)
    assert (phases[0, 1:5].cpu() == torch.tensor(expected)).all()


def test_coregistration_real_pair_sees_pan_displaced_down(wv3_full, device):
    # the data README reports the PAN content ~2.75 PAN px below the MS (block-mean grid)
    ms = torch.from_numpy(wv3_full.ms).to(device, F64)[None]
    pan = torch.from_numpy(wv3_full.pan).to(device, F64)[None, None]
    phases = coregistration_phases(ms, pan, WV3.mtf_ms, 4)
    assert (phases[0, :, 0] == 3).all()


# ----------------------------------------------------------------------------- gradients
def test_gradcheck(device):
    def inp(*shape, seed):
        return _rand(*shape, seed=seed, device=device).requires_grad_(True)

    def gradcheck(fn, inputs):
        # CUDA backward of padding/indexing/resampling accumulates with atomics: allow the
        # last-bit nondeterminism between two backward passes
        return torch.autograd.gradcheck(fn, inputs, nondet_tol=1e-12)

    x = inp(1, 2, 6, 7, seed=20)
    assert gradcheck(lambda t: mtf_filter(t, [0.3, 0.2], 4, size=41), (x,))
    assert gradcheck(
        lambda t: mtf_filter(t, [0.3, 0.2], 2, size=9, method="direct"), (x,))
    s = inp(1, 2, 3, 2, seed=21)
    assert gradcheck(lambda t: interp23tap(t, 4), (s,))
    d = inp(2, 2, 8, 4, seed=22)
    assert gradcheck(lambda t: decimate(t, 4), (d,))
    per_band = torch.tensor([[1, 3], [0, 2]])
    assert gradcheck(lambda t: decimate(t, 4, per_band), (d,))
    a, b = inp(1, 2, 5, 6, seed=23), inp(1, 1, 5, 6, seed=24)
    assert gradcheck(lambda u, v: local_correlation(u, v, 3), (a, b))
    p = inp(1, 1, 8, 8, seed=25)
    assert gradcheck(lambda t: pan_downsample(t, 4), (p,))


# ----------------------------------------------------------------------------- CPU vs CUDA
@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA not available")
def test_cuda_matches_cpu():
    cuda = torch.device("cuda")
    pan = _rand(2, 1, 64, 64, seed=31, dtype=torch.float32) * 1000
    phases = torch.tensor([[0, 0], [1, 2], [2, 2], [3, 1], [0, 3], [2, 0], [1, 1], [3, 3]])
    ms = decimate(mtf_filter(pan.expand(-1, 8, -1, -1), WV3.mtf_ms, 4), 4, phases)
    ops = {
        "mtf_filter": lambda m, p: mtf_filter(m, WV3.mtf_ms, 4),
        "mtf_direct": lambda m, p: mtf_filter(m, WV3.mtf_ms, 4, method="direct"),
        "interp23tap": lambda m, p: interp23tap(m, 4),
        "bicubic": lambda m, p: bicubic_upsample(m, 4),
        "decimate": lambda m, p: decimate(p.expand(-1, 8, -1, -1), 4, phases.to(p.device)),
        "pan_downsample": lambda m, p: pan_downsample(p, 4),
        "wald_ms": lambda m, p: wald_degrade(m, p[..., :64, :64], WV3)[0],
        "local_corr": lambda m, p: local_correlation(m, m[:, :1] + m[:, 3:4], 5),
        "coreg": lambda m, p: coregistration_phases(m, p, WV3.mtf_ms, 4).float(),
    }
    for name, op in ops.items():
        ref = op(ms, pan)
        got = op(ms.to(cuda), pan.to(cuda))
        assert got.device.type == "cuda", name
        scale = ref.abs().max().clamp_min(1.0)
        assert ((got.cpu() - ref).abs().max() / scale) < 1e-5, name
