"""Tests of tta.classical: API, properties of the toolbox formulas, real reduced-resolution
scores, CPU/CUDA agreement (on the first GPU whenever one is present, or ``--device cuda:N``).

Agreement with the toolbox MATLAB files themselves is in ``test_classical_toolbox.py``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_classical_toolbox import synthetic

from tta.classical import METHODS, fuse_scene, list_methods, pansharpen
from tta.errors import InputError
from tta.io import Scene, read_scene
from tta.metrics import rr_metrics
from tta.physics import interp23tap
from tta.sensors import get_sensor

F64 = torch.float64
ALL = ["exp", "bt-h", "gsa", "bdsd-pc", "mtf-glp-fs", "mtf-glp-hpm", "awlp"]
FUSING = [m for m in ALL if m != "exp"]


def rel_max(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


# ----------------------------------------------------------------------------- API
def test_registry_and_list():
    assert list_methods() == ALL
    assert list(METHODS) == ALL
    assert all(callable(f) for f in METHODS.values())


@pytest.mark.parametrize("method", ALL)
@pytest.mark.parametrize("sensor_name", ["WV3", "QB"])
def test_shape_dtype_finite(method, sensor_name):
    ms, pan = synthetic(sensor_name, h=8, seed=5, batch=2)
    out = pansharpen(method, ms, pan, sensor=sensor_name)
    assert out.shape == (2, ms.shape[1], *pan.shape[-2:])
    assert out.dtype == F64 and torch.isfinite(out).all()
    # float32 in -> float32 out, computed in float64 internally
    out32 = pansharpen(method, ms.float(), pan.float(), sensor=get_sensor(sensor_name))
    assert out32.dtype == torch.float32
    ref = pansharpen(method, ms.float().double(), pan.float().double(), sensor=sensor_name)
    assert rel_max(out32.double(), ref) < 1e-7


def test_method_key_normalisation():
    ms, pan = synthetic("GF2", h=8)
    a = pansharpen("mtf-glp-fs", ms, pan, sensor="GF2")
    b = pansharpen(" MTF_GLP_FS", ms, pan, sensor="gf2")
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_unknown_method_lists_known_ones():
    ms, pan = synthetic("GF2", h=8)
    with pytest.raises(InputError) as info:
        pansharpen("brovey", ms, pan, sensor="GF2")
    msg = str(info.value)
    assert "\n" not in msg and "'brovey'" in msg
    assert all(m in msg for m in ALL)
    with pytest.raises(InputError):
        fuse_scene(_scene(), "nope")


def test_input_errors():
    ms, pan = synthetic("GF2", h=8)
    with pytest.raises(InputError, match="does not match"):
        pansharpen("gsa", ms, pan[..., :-4, :], sensor="GF2")
    with pytest.raises(InputError, match="4 bands but sensor WV3 has 8"):
        pansharpen("gsa", ms, pan, sensor="WV3")
    with pytest.raises(InputError, match="power of two"):
        pansharpen("exp", ms[..., :6, :6], pan[..., :18, :18], sensor="GF2", ratio=3)
    with pytest.raises(InputError, match=r"\(B, C, H, W\)"):
        pansharpen("exp", ms[0], pan, sensor="GF2")
    with pytest.raises(InputError, match="torch.Tensor"):
        pansharpen("exp", ms.numpy(), pan, sensor="GF2")


@pytest.mark.parametrize("method", ALL)
def test_batch_equals_single(method):
    ms, pan = synthetic("QB", h=8, seed=11, batch=2)
    both = pansharpen(method, ms, pan, sensor="QB")
    for i in range(2):
        one = pansharpen(method, ms[i : i + 1], pan[i : i + 1], sensor="QB")
        torch.testing.assert_close(both[i : i + 1], one, rtol=1e-10, atol=1e-9)


# ----------------------------------------------------------------------------- properties
def test_exp_is_interp23tap():
    ms, pan = synthetic("WV3", h=8)
    torch.testing.assert_close(pansharpen("exp", ms, pan, sensor="WV3"), interp23tap(ms, 4),
                               rtol=0, atol=0)


@pytest.mark.parametrize("method", ALL)
def test_equivariant_to_common_scaling(method):
    """Every toolbox formula here is homogeneous of degree 1 in (MS, PAN) jointly."""
    ms, pan = synthetic("GF2", h=8, seed=2)
    base = pansharpen(method, ms, pan, sensor="GF2")
    for s in (1.0 / 1023.0, 8.0):
        scaled = pansharpen(method, s * ms, s * pan, sensor="GF2")
        assert rel_max(scaled, s * base) < 1e-10, s


@pytest.mark.parametrize("method", ["gsa", "mtf-glp-fs", "mtf-glp-hpm", "awlp"])
def test_invariant_to_affine_pan_change(method):
    """GSA removes PAN's mean and regresses on it; FS/HPM/AWLP match or regress PAN."""
    ms, pan = synthetic("WV3", h=8, seed=4)
    base = pansharpen(method, ms, pan, sensor="WV3")
    other = pansharpen(method, ms, 1.7 * pan + 55.0, sensor="WV3")
    assert rel_max(other, base) < 1e-10


@pytest.mark.parametrize("method", ["bt-h", "bdsd-pc"])
def test_invariant_to_pan_gain_only(method):
    """BT-H and BDSD-PC regress without a constant: PAN's gain cancels, its offset does not."""
    ms, pan = synthetic("QB", h=8, seed=6)
    base = pansharpen(method, ms, pan, sensor="QB")
    assert rel_max(pansharpen(method, ms, 1.7 * pan, sensor="QB"), base) < 1e-10
    assert rel_max(pansharpen(method, ms, pan + 200.0, sensor="QB"), base) > 1e-4


def _smooth_ms(c: int, h: int = 32, seed: int = 0) -> torch.Tensor:
    """LR MS made of the lowest periodic frequencies (little touched by the low-pass filters)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:h] * 2 * np.pi / h
    patterns = np.stack([np.cos(xx + 1.0), np.sin(yy + 2.0), np.cos(xx + yy), np.sin(xx - yy)])
    mix = rng.uniform(0.2, 1.0, size=(c, len(patterns)))
    return torch.from_numpy(500.0 + 100.0 * np.tensordot(mix, patterns, axes=1))[None]


@pytest.mark.parametrize("method", ["gsa", "bt-h"])
@pytest.mark.parametrize("sensor_name", ["GF2", "WV3"])
def test_cs_returns_ms_when_pan_is_the_intensity(method, sensor_name):
    """PAN = a positive combination of the upsampled bands (hence its own matched intensity):
    component substitution injects (almost) nothing. Not exact: the regression is fitted on
    low-passed PAN (``LPfilterPlusDec`` / ``LPfilterGauss``), which attenuates even these
    lowest frequencies by ~0.5 %."""
    c = get_sensor(sensor_name).n_bands
    ms = _smooth_ms(c)
    lms = interp23tap(ms, 4)
    w = torch.linspace(0.5, 1.5, c, dtype=F64)
    pan = (lms * (w / w.sum())[:, None, None]).sum(dim=1, keepdim=True)
    out = pansharpen(method, ms, pan, sensor=sensor_name)
    assert rel_max(out, lms) < 0.025
    # control: a PAN with its own high-resolution detail changes the output far more
    detail = torch.from_numpy(np.random.default_rng(1).normal(size=pan.shape)) * 30.0
    control = pansharpen(method, ms, pan + detail, sensor=sensor_name)
    assert rel_max(control, lms) > 4 * rel_max(out, lms)


def test_hpm_constant_ms_is_returned_unchanged():
    """MTF_GLP_HPM.m equalises PAN to each band's std: a spatially constant band gets a
    constant equalised PAN, so nothing is injected (the output is *not* MS times the PAN
    ratio; that would need the un-equalised ``I_MS .* PAN ./ PAN_LP``). Up to 1e-8: the
    toolbox's 23-tap interpolator has odd taps summing to 1 - 4e-10, so ``I_MS`` of a
    constant is not exactly constant and its std is ~1e-10 of the value, not 0."""
    _, pan = synthetic("QB", h=8, seed=3)
    ms = torch.tensor([200.0, 350.0, 300.0, 600.0], dtype=F64)[None, :, None, None]
    ms = ms.expand(1, 4, 8, 8).contiguous()
    out = pansharpen("mtf-glp-hpm", ms, pan, sensor="QB")
    torch.testing.assert_close(out, ms[..., :1, :1].expand_as(out), rtol=1e-8, atol=0)


def test_hpm_modulation_is_common_to_proportional_bands():
    """Bands proportional to one pattern (``MS_k = c_k f``) and equal MTF gains (GF2): every
    band gets the same modulation ``P / P_LP``, so the output bands stay proportional to the
    constants ``c_k`` pixel by pixel (no spectral distortion) while carrying PAN detail."""
    ms0, pan = synthetic("GF2", h=8, seed=9)
    pattern = ms0[:, :1]
    consts = torch.tensor([0.6, 0.9, 1.0, 1.7], dtype=F64)[None, :, None, None]
    out = pansharpen("mtf-glp-hpm", consts * pattern, pan, sensor="GF2")
    per_band = out / consts
    torch.testing.assert_close(per_band, per_band[:, :1].expand_as(per_band), rtol=1e-12, atol=0)
    assert rel_max(out, interp23tap(consts * pattern, 4)) > 0.05


def test_brovey_haze_levels():
    """4 bands: 0.95/0.45/0.40/0.05 of MATLAB's 1st percentile; otherwise the band minimum."""
    from tta.classical.cs import haze_levels

    rng = np.random.default_rng(0)
    x = rng.uniform(100, 900, size=(1, 4, 40, 40))
    got = haze_levels(torch.from_numpy(x))[0, :, 0, 0].numpy()
    want = [f * np.percentile(x[0, k], 1, method="hazen")
            for k, f in enumerate((0.95, 0.45, 0.40, 0.05))]
    np.testing.assert_allclose(got, want, rtol=1e-13)
    x8 = rng.uniform(100, 900, size=(2, 8, 12, 12))
    np.testing.assert_array_equal(haze_levels(torch.from_numpy(x8))[..., 0, 0].numpy(),
                                  x8.min(axis=(2, 3)))


# ----------------------------------------------------------------------------- fuse_scene
def _scene(nodata: bool = False) -> Scene:
    ms, pan = synthetic("GF2", h=8, seed=7)
    ms = ms[0].numpy() * 0.05  # dark MS and a noisy PAN: some fused DN fall below zero
    noise = np.random.default_rng(0).normal(size=pan.shape[-2:]) * 150.0
    pan = np.clip(pan[0, 0].numpy() + noise, 0.0, None)
    mask = None
    if nodata:
        mask = np.zeros(pan.shape[-2:], dtype=bool)
        mask[:4, :8] = True
    return Scene(ms=ms, pan=pan, sensor=get_sensor("GF2"), nodata=mask)


def test_fuse_scene_clips_negatives_and_returns_float32():
    scene = _scene()
    raw = pansharpen("gsa", torch.from_numpy(scene.ms).double()[None],
                     torch.from_numpy(scene.pan).double()[None, None], sensor="GF2")[0]
    assert float(raw.min()) < -1.0  # the case is exercised
    out = fuse_scene(scene, "gsa")
    assert out.dtype == np.float32 and out.shape == scene.shape
    assert out.min() >= 0
    np.testing.assert_allclose(out, raw.clamp_min(0).numpy(), rtol=1e-6, atol=1e-4)


def test_fuse_scene_zeroes_nodata():
    scene = _scene(nodata=True)
    out = fuse_scene(scene, "gsa", device="cpu")
    assert (out[:, scene.nodata] == 0).all()
    assert (out[:, ~scene.nodata] > 0).mean() > 0.9


# ----------------------------------------------------------------------------- real data
RR_FILES = ["wv3/wv3_cdif_rr.h5", "qb/qb_abfnet_train_rr.h5", "gf2/gf2_sfnlr_rr.h5"]


@pytest.mark.parametrize("rel", RR_FILES)
def test_real_reduced_resolution_beats_exp(real_file, rel):
    """Wald-protocol scores (toolbox ``indexes_evaluation``): every method improves on EXP in
    Q2n and ERGAS on all three sets, as in the literature (Vivone et al. 2015/2021). The QB
    set's MS is decimated with a top-left phase relative to its GT (data README): this
    penalises EXP and the fused products alike and does not change the ranking."""
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    scene = read_scene(real_file(rel))
    rows = {}
    for method in ALL:
        fused = fuse_scene(scene, method)
        assert fused.shape == scene.gt.shape and np.isfinite(fused).all()
        rows[method] = rr_metrics(scene.gt, fused, scene.ratio, scene.max_value)
    table = "\n".join(f"{rel} {m:12s} Q2n={r['Q2n']:.4f} SAM={r['SAM']:.3f} "
                      f"ERGAS={r['ERGAS']:.3f}" for m, r in rows.items())
    print("\n" + table)
    ref = rows["exp"]
    for method in FUSING:
        assert rows[method]["Q2n"] > ref["Q2n"], table
        assert rows[method]["ERGAS"] < ref["ERGAS"], table


# ----------------------------------------------------------------------------- devices
@pytest.mark.parametrize("method", ALL)
def test_cpu_and_device_agree(method, device):
    # --device cuda[:N] picks the GPU; under plain `pytest` (make test) --device is cpu and
    # the comparison uses the first CUDA device whenever one is present.
    if device.type == "cpu":
        if not torch.cuda.is_available():
            pytest.skip("no CUDA device here to compare with the CPU")
        device = torch.device("cuda")
    ms, pan = synthetic("WV3", h=16, seed=8, batch=2)
    cpu = pansharpen(method, ms, pan, sensor="WV3")
    dev = pansharpen(method, ms.to(device), pan.to(device), sensor="WV3")
    assert dev.device.type == device.type
    assert rel_max(dev.cpu(), cpu) < 1e-9
