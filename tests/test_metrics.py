"""tta.metrics: hand-derived golden values, properties (hypothesis), FR behaviour, devices.

The loop-based restatements of the toolbox code, and the agreement of the fast indexes with
them, are in ``test_metrics_toolbox.py``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tta.physics as ph
from tta.metrics import (
    d_lambda,
    d_lambda_k,
    d_rho,
    d_s,
    ergas,
    fr_metrics,
    hqnr,
    psnr,
    q2n,
    q_index,
    qnr,
    reproject,
    reprojection_metrics,
    rr_metrics,
    sam,
    scc,
)
from tta.metrics._common import toolbox_cut, uint16_cast
from tta.sensors import get_sensor

PROPS = settings(max_examples=40, deadline=None,
                 suppress_health_check=[HealthCheck.function_scoped_fixture])


def rand_dn(seed, shape, low=50.0, high=2000.0):
    rng = np.random.default_rng(seed)
    return torch.from_numpy(rng.uniform(low, high, size=shape))


def checkerboard(values_a, values_b, h, w):
    """(C, h, w): band c is values_a[c] where (i + j) is even, values_b[c] elsewhere."""
    ii, jj = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    even = ((ii + jj) % 2 == 0)[None]
    a = np.asarray(values_a, dtype=np.float64)[:, None, None]
    b = np.asarray(values_b, dtype=np.float64)[:, None, None]
    return torch.from_numpy(np.where(even, a, b))


# ============================================================================ golden values
def test_identical_images(device):
    x = rand_dn(0, (2, 4, 96, 80)).round().to(device)
    assert torch.all(sam(x, x).abs() < 1e-5)
    assert torch.all(ergas(x, x, 4) == 0)
    assert torch.allclose(q_index(x, x), torch.ones(2, dtype=torch.float64, device=device))
    assert torch.allclose(q2n(x, x), torch.ones(2, dtype=torch.float64, device=device))
    assert torch.allclose(scc(x, x), torch.ones(2, dtype=torch.float64, device=device))
    assert torch.all(torch.isinf(psnr(x, x, 2047)))
    m = rr_metrics(x[0], x[0], 4, 2047)
    assert m["SAM"] < 1e-5 and m["ERGAS"] == 0 and m["PSNR"] == math.inf
    assert m["Q"] == pytest.approx(1) and m["Q2n"] == pytest.approx(1)
    assert m["SCC"] == pytest.approx(1)


@pytest.mark.parametrize("k", [0.8, 1.25, 2.0])
def test_pure_gain(k, device):
    gt = rand_dn(1, (3, 40, 40)).to(device)
    fused = k * gt
    assert float(sam(gt, fused)) < 1e-5
    mu2 = gt.mean(dim=(-2, -1)) ** 2
    ms2 = (gt**2).mean(dim=(-2, -1))
    expected = 100 / 4 * abs(k - 1) * math.sqrt(float((ms2 / mu2).mean()))
    assert float(ergas(gt, fused, 4)) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("theta_deg", [0.5, 10.0, 30.0])
def test_constant_spectral_rotation(theta_deg, device):
    rng = np.random.default_rng(2)
    phi = rng.uniform(0.1, 0.6, size=(20, 30))
    theta = math.radians(theta_deg)
    r1, r2 = rng.uniform(1, 9, size=(2, 20, 30))
    gt = torch.from_numpy(np.stack([r1 * np.cos(phi), r1 * np.sin(phi)]))
    fused = torch.from_numpy(np.stack([r2 * np.cos(phi + theta), r2 * np.sin(phi + theta)]))
    assert float(sam(gt.to(device), fused.to(device))) == pytest.approx(theta_deg, abs=1e-9)


def test_one_pixel_shift_of_a_checkerboard(device):
    """Hand values: a two-value checkerboard shifted by one pixel swaps the values.

    Every 32x32 window holds 512 pixels of each value, so for each band m_x = m_y = (a+b)/2,
    s_x^2 = s_y^2 = -s_xy: Q = -1 exactly. The error is |a-b| everywhere:
    ERGAS = 100/ratio sqrt(mean_b((a_b-b_b)^2 / ((a_b+b_b)/2)^2)). Both pixel kinds make
    the same spectral angle. Q2n: the normalised fused block is 2 - (normalised reference),
    so the hypercomplex covariance is -|x - m|^2 (real) and its norm gives exactly 1: Q2n
    does not see the sign of the correlation.
    """
    a, b = [300.0, 500.0, 900.0], [700.0, 400.0, 1000.0]
    gt = checkerboard(a, b, 64, 64)
    fused = torch.roll(gt, 1, dims=-1)
    assert torch.equal(fused, checkerboard(b, a, 64, 64))
    gt, fused = gt.to(device), fused.to(device)
    assert float(q_index(gt, fused)) == -1.0
    ratio = 4
    expected = 100 / ratio * math.sqrt(np.mean([(x - y) ** 2 / ((x + y) / 2) ** 2
                                                for x, y in zip(a, b, strict=True)]))
    assert float(ergas(gt, fused, ratio)) == pytest.approx(expected, rel=1e-13)
    va, vb = np.array(a), np.array(b)
    angle = math.degrees(math.acos(va @ vb / np.linalg.norm(va) / np.linalg.norm(vb)))
    assert float(sam(gt, fused)) == pytest.approx(angle, rel=1e-12)
    assert float(q2n(gt, fused)) == pytest.approx(1.0, abs=1e-12)
    mse = np.mean((va - vb) ** 2)
    assert float(psnr(gt, fused, 2047)) == pytest.approx(10 * math.log10(2047**2 / mse))


def test_q_of_flat_windows_by_hand(device):
    """img_qi special cases: flat windows give 2 m_x m_y / (m_x^2 + m_y^2); 0/0 gives 1."""
    x = torch.full((1, 33, 33), 2.0, dtype=torch.float64, device=device)
    assert float(q_index(x, 2 * x)) == pytest.approx(2 * 2 * 4 / (4 + 16))
    assert float(q_index(0 * x, 0 * x)) == 1.0


def test_scc_of_two_impulses_by_hand(device):
    """5x5 images, cut to their 3x3 interior, Sobel with zero padding.

    An impulse at the interior's centre has gradient magnitudes [[r2, 2, r2], [2, 0, 2],
    [r2, 2, r2]]; one at the interior's corner [[0, 2, 0], [2, r2, 0], [0, 0, 0]]. Their
    uncentred correlation is 8 / sqrt(24 * 10) = 2 / sqrt(15).
    """
    a = torch.zeros(1, 5, 5, dtype=torch.float64)
    b = torch.zeros(1, 5, 5, dtype=torch.float64)
    a[0, 2, 2] = 3.0
    b[0, 1, 1] = 5.0
    assert float(scc(a.to(device), b.to(device))) == pytest.approx(2 / math.sqrt(15), rel=1e-14)


def test_psnr_of_a_constant_offset(device):
    gt = rand_dn(3, (2, 3, 10, 10)).to(device)
    np.testing.assert_allclose(psnr(gt, gt + 4.0, 2047).cpu().numpy(),
                               20 * math.log10(2047 / 4.0), rtol=1e-12)


def test_uint16_cast_is_matlabs():
    x = torch.tensor([-3.0, -0.4, 0.49, 0.5, 1.5, 2.5, 65534.5, 65535.6, 1e9, math.nan,
                      math.inf, -math.inf], dtype=torch.float64)
    want = [0, 0, 0, 1, 2, 3, 65535, 65535, 65535, 0, 65535, 0]
    assert uint16_cast(x).tolist() == want


def test_q2n_uses_the_dn_cast():
    gt = rand_dn(4, (4, 40, 40), 0.0, 1.0)  # normalised data: the cast leaves 0s and 1s
    fused = gt + 0.01
    assert float(q2n(gt, fused, dn_cast=False)) > 0.99
    assert float(q2n(gt, fused)) == pytest.approx(
        float(q2n(uint16_cast(gt), uint16_cast(fused), dn_cast=False)))


def test_toolbox_border_cut_is_asymmetric(device):
    x = torch.arange(256.0, dtype=torch.float64).expand(1, 256, 256)
    cut = toolbox_cut(x, 21)  # MATLAB x(21:end-21): rows 21..235 (1-based)
    assert cut.shape[-2:] == (215, 215)
    assert float(cut[0, 0, 0]) == 20 and float(cut[0, 0, -1]) == 234
    gt = rand_dn(5, (4, 96, 96)).to(device)
    fused = gt + rand_dn(6, (4, 96, 96), -80, 80).to(device)
    m = rr_metrics(gt, fused, 4, 2047)
    g, f = gt[:, 20:75, 20:75], fused[:, 20:75, 20:75]
    assert m["Q2n"] == pytest.approx(float(q2n(g, f)), abs=1e-15)
    assert m["ERGAS"] == pytest.approx(float(ergas(g, f, 4)), abs=1e-15)
    assert m["SCC"] == pytest.approx(float(scc(g, f)), abs=1e-15)
    assert m["Q"] == pytest.approx(float(q_index(g, f)), abs=1e-15)
    m0 = rr_metrics(gt, fused, 4, 2047, border=0)
    assert m0["SAM"] == pytest.approx(float(sam(gt, fused)), abs=1e-12)


def test_batch_equals_items(device):
    gt = rand_dn(7, (3, 4, 56, 48)).to(device)
    fused = gt + rand_dn(8, (3, 4, 56, 48), -100, 100).to(device)
    batch = rr_metrics(gt, fused, 4, 2047, border=5)
    for i in range(3):
        one = rr_metrics(gt[i], fused[i], 4, 2047, border=5)
        for key, value in one.items():
            assert float(batch[key][i]) == pytest.approx(value, rel=1e-12, abs=1e-12), key


def test_shape_errors():
    with pytest.raises(ValueError, match="differ in shape"):
        sam(torch.ones(3, 8, 8), torch.ones(3, 8, 9))
    with pytest.raises(ValueError, match="shift"):
        q2n(torch.ones(3, 8, 8), torch.ones(3, 8, 8), 32, 64)
    assert math.isnan(float(q_index(torch.ones(2, 8, 8), torch.ones(2, 8, 8))))


# ============================================================================ properties
images = st.tuples(st.integers(0, 2**32 - 1), st.integers(1, 5), st.integers(33, 48),
                   st.integers(33, 48))


def pair_from(params, device, noise=200.0):
    seed, c, h, w = params
    rng = np.random.default_rng(seed)
    x = rng.uniform(1, 2047, size=(c, h, w))
    y = x * rng.uniform(0.5, 1.5) + rng.normal(0, noise, size=(c, h, w))
    return torch.from_numpy(x).to(device), torch.from_numpy(np.abs(y) + 1).to(device)


@PROPS
@given(images)
def test_sam_properties(device, params):
    x, y = pair_from(params, device)
    v = float(sam(x, y))
    assert 0.0 <= v <= 180.0
    assert v == pytest.approx(float(sam(y, x)), abs=1e-9)
    scale = torch.from_numpy(np.random.default_rng(params[0]).uniform(0.1, 10, x.shape[-2:]))
    assert float(sam(x, y * scale.to(device))) == pytest.approx(v, abs=1e-6)


@PROPS
@given(images, st.floats(0.01, 100.0))
def test_q_properties(device, params, a):
    x, y = pair_from(params, device)
    v = float(q_index(x, y))
    assert -1.0 <= v <= 1.0
    assert v == pytest.approx(float(q_index(y, x)), abs=1e-12)
    assert float(q_index(a * x, a * y)) == pytest.approx(v, abs=1e-9)


@PROPS
@given(images)
def test_q2n_properties(device, params):
    x, y = pair_from(params, device)
    qmap = q2n(x, y, return_map=True)[1]
    assert torch.all((qmap >= 0) & (qmap <= 1 + 1e-12))
    # invariance to a per-band positive affine change of both images (no DN cast)
    rng = np.random.default_rng(params[0] + 1)
    gain = torch.from_numpy(rng.uniform(0.2, 5, (x.shape[0], 1, 1))).to(device)
    offset = torch.from_numpy(rng.uniform(-500, 500, (x.shape[0], 1, 1))).to(device)
    base = float(q2n(x, y, dn_cast=False))
    moved = float(q2n(gain * x + offset, gain * y + offset, dn_cast=False))
    assert moved == pytest.approx(base, abs=1e-9)


def test_q2n_is_not_symmetric():
    """The blocks are normalised with the reference's statistics only."""
    x = rand_dn(9, (4, 32, 32))
    y = 0.3 * x + rand_dn(10, (4, 32, 32), 0, 600)
    assert abs(float(q2n(x, y)) - float(q2n(y, x))) > 1e-3


@PROPS
@given(images, st.floats(0.01, 100.0))
def test_ergas_properties(device, params, a):
    x, y = pair_from(params, device)
    v = float(ergas(x, y, 4))
    assert v >= 0
    assert float(ergas(a * x, a * y, 4)) == pytest.approx(v, rel=1e-9)
    assert float(ergas(x, y, 2)) == pytest.approx(2 * v, rel=1e-12)


def test_ergas_is_not_symmetric():
    x = rand_dn(11, (3, 16, 16))
    assert float(ergas(x, 2 * x, 4)) != pytest.approx(float(ergas(2 * x, x, 4)))


@PROPS
@given(images, st.floats(0.01, 100.0), st.floats(0.01, 100.0))
def test_scc_properties(device, params, a, b):
    x, y = pair_from(params, device)
    v = float(scc(x, y))
    assert 0.0 <= v <= 1.0 + 1e-12
    assert v == pytest.approx(float(scc(y, x)), abs=1e-12)
    assert float(scc(a * x, b * y)) == pytest.approx(v, abs=1e-9)


@PROPS
@given(images)
def test_d_rho_properties(device, params):
    seed, c, h, w = params
    x, y = pair_from(params, device)
    pan = y[:1][None]
    v = float(d_rho(pan, x[None], 4)[0])
    assert 0.0 <= v <= 2.0
    assert float(d_rho(pan, pan.expand(1, c, h, w), 4)[0]) == pytest.approx(0.0, abs=1e-12)


# ============================================================================ full resolution
def toy_fr(seed, c=4, h=16, w=24, ratio=4):
    rng = np.random.default_rng(seed)
    pan = torch.from_numpy(rng.uniform(100, 1900, size=(1, 1, ratio * h, ratio * w)))
    pan = ph.mtf_filter(pan, 0.3, 2)
    ms = ph.decimate(ph.mtf_filter(pan.expand(1, c, -1, -1), 0.3, ratio), ratio)
    ms = ms * torch.from_numpy(rng.uniform(0.5, 1.5, size=(1, c, 1, 1)))
    return ms, pan


def test_d_lambda_is_zero_for_the_upsampled_ms(device):
    ms, pan = toy_fr(0)
    up = ph.interp23tap(ms, 4).to(device)
    assert float(d_lambda(up, up)[0]) == 0.0
    m = fr_metrics(ms[0].to(device), pan[0].to(device), up[0], (0.3, 4))
    assert m["D_lambda"] == 0.0
    assert isinstance(m["QNR"], float)


def test_qnr_and_hqnr_compose(device):
    ms, pan = toy_fr(1)
    ms, pan = ms.to(device), pan.to(device)
    up = ph.interp23tap(ms, 4)
    fused = up + 0.2 * (pan - ph.interp23tap(ph.pan_downsample(pan, 4), 4))
    q, dl, ds = qnr(up, pan, fused, 4)
    assert torch.allclose(q, (1 - d_lambda(up, fused)) * (1 - d_s(up, pan, fused, 4)))
    h, dlk, ds2 = hqnr(up, pan, fused, 0.3, 4)
    assert torch.allclose(ds2, ds)
    assert torch.allclose(dlk, d_lambda_k(up, fused, [0.3] * 4, 4))
    assert torch.allclose(h, (1 - dlk) * (1 - ds))
    low = ph.mtf_filter(fused, 0.3, 4)
    assert torch.allclose(dlk, 1 - q2n(up, low))


def test_reproject_is_filter_then_phase_decimation(device):
    ms, pan = toy_fr(2)
    ms, pan = ms.to(device), pan.to(device)
    fused = ph.interp23tap(ms, 4)
    phases = torch.tensor([[1, 2], [2, 2], [0, 3], [3, 1]])
    out = reproject(fused, ms, pan, 0.3, 4, phases=phases)
    low = ph.mtf_filter(fused, 0.3, 4)
    for b, (dy, dx) in enumerate(phases.tolist()):
        assert torch.equal(out[0, b], low[0, b, dy::4, dx::4])
    r = reprojection_metrics(ms, pan, fused, 0.3, 4, phases=phases, border=3)
    cut_ms, cut_out = ms[..., 2:-3, 2:-3], out[..., 2:-3, 2:-3]
    assert torch.allclose(r["R-SAM"], sam(cut_ms, cut_out))
    assert torch.allclose(r["R-ERGAS"], ergas(cut_ms, cut_out, 4))
    assert torch.allclose(r["R-Q2n"], q2n(cut_ms, cut_out))
    assert torch.isnan(r["R-Q"]).all()  # 11 x 19 pixels: smaller than the 32 x 32 window


@pytest.fixture(scope="module")
def wv2(real_file):
    from tta.io import read_scene

    scene = read_scene(real_file("wv2/wv2_grip_top_fr.h5"))
    ms = torch.from_numpy(scene.ms)[None, :, :64, :96].double()  # a crop keeps it fast
    pan = torch.from_numpy(scene.pan)[None, None, :256, :384].double()
    return ms, pan, scene.sensor


def test_real_scene_exp(wv2, device):
    ms, pan, sensor = wv2
    ms, pan = ms.to(device), pan.to(device)
    up = ph.interp23tap(ms, 4)
    m = fr_metrics(ms, pan, up, sensor, sensor.max_value)
    assert abs(float(m["D_lambda"][0])) < 1e-12
    assert 0 < float(m["QNR"][0]) < 1
    assert float(m["D_s"][0]) > 0
    assert 0 < float(m["HQNR"][0]) < 1
    assert float(m["D_rho"][0]) > 0.3  # EXP has none of the PAN's details
    assert float(m["R-Q2n"][0]) > 0.8


def test_real_scene_pan_injection(wv2, device):
    ms, pan, sensor = wv2
    ms, pan = ms.to(device), pan.to(device)
    up = ph.interp23tap(ms, 4)
    detail = pan - ph.interp23tap(ph.pan_downsample(pan, 4), 4)
    gain = up.std(dim=(-2, -1), keepdim=True) / pan.std()
    fused = up + gain * detail
    m = fr_metrics(ms, pan, fused, sensor)
    exp = fr_metrics(ms, pan, up, sensor)
    assert float(m["R-Q2n"][0]) > 0.8
    assert float(m["D_rho"][0]) < float(exp["D_rho"][0])
    assert float(m["D_s"][0]) < float(exp["D_s"][0])
    # D_rho of the PAN replicated in every band is 0
    rep = pan.expand(-1, ms.shape[1], -1, -1)
    assert float(d_rho(pan, rep, 4)[0]) == pytest.approx(0.0, abs=1e-12)
    pearson = fr_metrics(ms, pan, fused, sensor, phase_method="pearson")
    assert float(pearson["R-Q2n"][0]) > 0.8


def test_fr_metrics_accepts_sensor_forms(device):
    ms, pan = toy_fr(3, c=4)
    a = fr_metrics(ms.to(device), pan.to(device), ph.interp23tap(ms, 4).to(device), (0.3, 4))
    b = fr_metrics(ms.to(device), pan.to(device), ph.interp23tap(ms, 4).to(device),
                   ((0.3, 0.3, 0.3, 0.3), 4))
    assert all(torch.allclose(a[k], b[k], equal_nan=True) for k in a)
    sensor = get_sensor("QB")
    m = fr_metrics(ms[0], pan[0], ph.interp23tap(ms, 4)[0], sensor)
    assert set(m) == {"D_lambda", "D_s", "QNR", "D_lambda_K", "HQNR", "R-Q2n", "R-Q", "R-SAM",
                      "R-ERGAS", "D_rho"}
    with pytest.raises(ValueError, match="pan"):
        fr_metrics(ms, pan[..., :-4], ph.interp23tap(ms, 4), sensor)


# ============================================================================ devices
@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA not available")
def test_cpu_and_cuda_agree():
    gt = rand_dn(20, (2, 8, 128, 96))
    fused = gt + rand_dn(21, (2, 8, 128, 96), -150, 150)
    cpu = rr_metrics(gt, fused, 4, 2047)
    gpu = rr_metrics(gt.cuda(), fused.cuda(), 4, 2047)
    for k in cpu:
        np.testing.assert_allclose(gpu[k].cpu().numpy(), cpu[k].numpy(), rtol=1e-9, atol=1e-9)
    ms, pan = toy_fr(22, c=8, h=32, w=32)
    up = ph.interp23tap(ms, 4)
    fused = up + 0.3 * (pan - pan.mean())
    cpu = fr_metrics(ms, pan, fused, "WV3")
    gpu = fr_metrics(ms.cuda(), pan.cuda(), fused.cuda(), "WV3")
    for k in cpu:
        np.testing.assert_allclose(gpu[k].cpu().numpy(), cpu[k].numpy(), rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("shape, k", [((2, 3, 20, 17), 4), ((5, 9), (3, 2)), ((1, 8, 12, 12), 8)])
def test_box_sum_float32_form_equals_the_float64_sums(shape, k):
    """The float32 form (a depthwise ones-kernel convolution) gives MATLAB's
    ``filter2(ones(k), x, 'valid')`` like the float64 shifted adds, gradient included."""
    from tta.metrics._common import box_sum

    x = torch.randn(*shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    kh, kw = (k, k) if isinstance(k, int) else k
    ref = sum(x[..., i:i + x.shape[-2] - kh + 1, j:j + x.shape[-1] - kw + 1]
              for i in range(kh) for j in range(kw))
    x32 = x.float().requires_grad_(True)
    out = box_sum(x32, k)
    assert out.dtype == torch.float32 and out.shape == ref.shape
    torch.testing.assert_close(out.double(), ref, atol=1e-5, rtol=1e-6)
    torch.testing.assert_close(box_sum(x, k), ref, atol=1e-12, rtol=0)
    weights = torch.randn(out.shape, generator=torch.Generator().manual_seed(1))
    (out * weights).sum().backward()
    x64 = x.clone().requires_grad_(True)
    (box_sum(x64, k) * weights.double()).sum().backward()
    torch.testing.assert_close(x32.grad.double(), x64.grad, atol=1e-5, rtol=1e-5)
