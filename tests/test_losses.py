"""Tests of tta.losses: spectral / spatial / anchor terms, PhysicsLoss, preset weights.

Run on GPU with ``pytest tests/test_losses.py --device cuda``.
"""

from __future__ import annotations

from importlib import resources

import numpy as np
import pytest
import torch
import yaml

from tta.losses import (
    LOSS_TERMS,
    PhysicsLoss,
    anchor_loss,
    default_border,
    ergas_loss,
    loss_weights,
    q2n_loss,
    reproject_fused,
    spatial_loss,
    spectral_loss,
    zpnn_rho_max,
)
from tta.physics import coregistration_phases, decimate, interp23tap, mtf_filter, mtf_kernels
from tta.sensors import get_sensor, list_sensors

F64 = torch.float64
WV3 = get_sensor("WV3")
GAINS = WV3.mtf_ms


def _rand(*shape: int, seed: int = 0, device="cpu", dtype=F64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(*shape, generator=g, dtype=F64).to(device=device, dtype=dtype)


def _image(b: int = 2, c: int = 8, n: int = 64, seed: int = 0, device="cpu") -> torch.Tensor:
    """A textured high-resolution image in [0, 1] (noise with a mild low-pass)."""
    return mtf_filter(_rand(b, c, n, n, seed=seed, device=device), 0.5, 2)


def _pan(b: int = 2, n: int = 64, seed: int = 1, device="cpu") -> torch.Tensor:
    return _image(b, 1, n, seed=seed, device=device)


# ----------------------------------------------------------------------------- spectral
def test_spectral_zero_for_consistent_image(device):
    x = _image(device=device)
    ms = decimate(mtf_filter(x, GAINS, 4), 4)
    assert spectral_loss(x, ms, GAINS, 4).item() < 1e-14
    assert spectral_loss(x, ms, GAINS, 4, norm="l2").item() < 1e-28
    assert spectral_loss(x, ms, GAINS, 4, border=3).item() < 1e-14
    kernels = mtf_kernels(GAINS, 4, dtype=F64)
    assert spectral_loss(x, ms, None, 4, kernels=kernels).item() < 1e-14


def test_spectral_scaled_band_golden(device):
    x = _image(device=device)
    ms = decimate(mtf_filter(x, GAINS, 4), 4)
    y = x.clone()
    y[:, 3] *= 1.2  # the filter and decimation are linear: the band's projection is 1.2 ms_3
    expected = 0.2 * ms[:, 3].abs().mean().item() / 8
    assert spectral_loss(y, ms, GAINS, 4).item() == pytest.approx(expected, rel=1e-10)
    expected_l2 = (0.2 * ms[:, 3]).square().mean().item() / 8
    assert spectral_loss(y, ms, GAINS, 4, norm="l2").item() == pytest.approx(expected_l2,
                                                                             rel=1e-10)


def test_spectral_per_band_phase_honoured(device):
    x = _image(device=device)
    phase = torch.tensor([[0, 1], [1, 2], [2, 3], [3, 0], [0, 0], [1, 1], [3, 3], [2, 0]])
    ms = decimate(mtf_filter(x, GAINS, 4), 4, phase)
    assert spectral_loss(x, ms, GAINS, 4, phase=phase).item() < 1e-14
    assert spectral_loss(x, ms, GAINS, 4).item() > 1e-3  # default (2, 2) does not fit
    per_sample = phase.expand(2, 8, 2).clone()
    per_sample[1] = 2  # second sample at the default phase
    ms2 = decimate(mtf_filter(x, GAINS, 4), 4, per_sample)
    assert spectral_loss(x, ms2, GAINS, 4, phase=per_sample).item() < 1e-14
    assert spectral_loss(x, ms2, GAINS, 4, phase=phase).item() > 1e-4


def test_default_border_removes_padding_effects():
    big = _image(n=128)
    ms = decimate(mtf_filter(big, GAINS, 4), 4)
    patch, ms_patch = big[..., 32:96, 32:96], ms[..., 8:24, 8:24]
    border = default_border(GAINS, 4)
    assert border == 2
    at_0 = spectral_loss(patch, ms_patch, GAINS, 4).item()
    at_b = spectral_loss(patch, ms_patch, GAINS, 4, border=border).item()
    assert at_0 > 1e-4  # the replicate padding of the patch edge is felt...
    assert at_b < 1e-3 * at_0  # ...not 2 MS pixels in


@pytest.mark.parametrize("sensor", list_sensors(), ids=lambda s: s.name)
def test_default_border_keeps_most_of_a_64_patch(sensor):
    b = default_border(sensor.mtf_ms, sensor.ratio)
    assert b == 2  # as documented
    assert 64 // sensor.ratio - 2 * b >= 64 // sensor.ratio // 2


def test_default_border_monotone_in_tolerance():
    assert default_border(GAINS, 4, tol=1e-6) > default_border(GAINS, 4) > default_border(
        GAINS, 4, tol=0.5)
    assert default_border(GAINS, 4, tol=0.5) == 0


def test_spectral_errors():
    x = _image(c=8)
    ms = decimate(mtf_filter(x, GAINS, 4), 4)
    with pytest.raises(ValueError, match="ms must be"):
        spectral_loss(x, ms[..., :-1], GAINS, 4)
    with pytest.raises(ValueError, match="norm"):
        spectral_loss(x, ms, GAINS, 4, norm="huber")
    with pytest.raises(ValueError, match="gains"):
        spectral_loss(x, ms, None, 4)
    with pytest.raises(ValueError, match="border"):
        spectral_loss(x, ms, GAINS, 4, border=8)
    with pytest.raises(ValueError, match="phase"):
        spectral_loss(x, ms, GAINS, 4, phase=(0, 4))
    with pytest.raises(ValueError, match="divisible"):
        spectral_loss(x[..., :63, :], ms, GAINS, 4)


# ----------------------------------------------------------------------------- spatial
def test_drho_zero_for_affine_bands_and_larger_for_noise(device):
    pan = _pan(device=device)
    gains = torch.linspace(0.5, 2.0, 8, dtype=F64, device=device)[None, :, None, None]
    fused = gains * pan + 0.1
    # the field within `window` pixels of the edges sees the zero padding: offset breaks it
    assert spatial_loss(fused, pan, 4, kind="drho", border=4).item() < 1e-9
    assert spatial_loss(fused, pan, 4, kind="drho", border=3).item() > 1e-5
    assert spatial_loss(gains * pan, pan, 4, kind="drho").item() < 1e-9  # linear: no border
    noisy = fused.clone()
    noisy[:, 2] = _rand(2, 64, 64, seed=7, device=device)
    value = spatial_loss(noisy, pan, 4, kind="drho").item()
    assert 0.08 < value < 0.17  # one band of 8 with |rho| small: about 1/8


def test_drho_matches_metric_without_border(device):
    from tta.metrics import d_rho

    pan, fused = _pan(device=device), _image(device=device)
    ours = spatial_loss(fused, pan, 4, kind="drho")
    assert ours.item() == pytest.approx(d_rho(pan, fused, 4).mean().item(), rel=1e-12)


def test_zpnn_threshold_behaviour(device):
    pan = _pan(device=device)
    ms = decimate(mtf_filter(_image(seed=3, device=device), GAINS, 4), 4)
    lms = interp23tap(ms, 4)
    affine = 1.5 * pan.expand(2, 8, 64, 64) + 0.2
    # every correlation (1 up to rounding) reaches the threshold the MS allows
    assert spatial_loss(affine, pan, 4, lms=lms, gnyq_ms=GAINS, border=4).item() == 0.0
    fused = _image(seed=4, device=device)
    rho_max = zpnn_rho_max(lms, pan, 4, gnyq_ms=GAINS)
    assert rho_max.shape == fused.shape and rho_max.abs().max() <= 1 + 1e-9
    assert spatial_loss(fused, pan, 4, rho_max=torch.full_like(fused, -2.0)).item() == 0.0
    everywhere = spatial_loss(fused, pan, 4, rho_max=torch.full_like(fused, 2.0)).item()
    drho = spatial_loss(fused, pan, 4, kind="drho").item()
    assert everywhere == pytest.approx(drho, rel=1e-12)
    partial = spatial_loss(fused, pan, 4, lms=lms, gnyq_ms=GAINS).item()
    assert 0.0 < partial < everywhere
    assert partial == pytest.approx(spatial_loss(fused, pan, 4, rho_max=rho_max).item())


def test_spatial_border_and_errors():
    pan, fused = _pan(), _image()
    full = spatial_loss(fused, pan, 4, kind="drho")
    cut = spatial_loss(fused, pan, 4, kind="drho", border=8)
    assert cut.item() != full.item()
    with pytest.raises(ValueError, match="lms"):
        spatial_loss(fused, pan, 4)
    with pytest.raises(ValueError, match="kind"):
        spatial_loss(fused, pan, 4, kind="qnr")
    with pytest.raises(ValueError, match="pan must be"):
        spatial_loss(fused, pan.expand(2, 2, 64, 64), 4, kind="drho")
    with pytest.raises(ValueError, match="border"):
        spatial_loss(fused, pan, 4, kind="drho", border=32)


# ----------------------------------------------------------------------------- anchor
def test_anchor(device):
    x = _image(device=device)
    assert anchor_loss(x, x.clone()).item() == 0.0
    y = x + 0.25
    assert anchor_loss(y, x).item() == pytest.approx(0.25)
    ref = x.clone().requires_grad_()
    fused = y.clone().requires_grad_()
    anchor_loss(fused, ref, border=4).backward()
    assert ref.grad is None and fused.grad is not None
    with pytest.raises(ValueError, match="does not match"):
        anchor_loss(x, x[:, :3])


# ----------------------------------------------------------------------------- gradients
def _tiny(seed: int) -> torch.Tensor:
    return _rand(1, 2, 8, 8, seed=seed).requires_grad_()


GRAD_CASES = {
    "spectral": lambda f: spectral_loss(f, _rand(1, 2, 4, 4, seed=9), [0.3, 0.25], 2, size=7),
    "spectral_l2": lambda f: spectral_loss(f, _rand(1, 2, 4, 4, seed=9), [0.3, 0.25], 2,
                                           size=7, norm="l2", border=1),
    "drho": lambda f: spatial_loss(f, _rand(1, 1, 8, 8, seed=10), 2, kind="drho"),
    "zpnn": lambda f: spatial_loss(f, _rand(1, 1, 8, 8, seed=10), 2,
                                   rho_max=_rand(1, 2, 8, 8, seed=11) * 1.6 - 0.6),
    "anchor": lambda f: anchor_loss(f, _rand(1, 2, 8, 8, seed=12), border=1),
}


@pytest.mark.parametrize("name", list(GRAD_CASES))
def test_gradcheck(name):
    fn = GRAD_CASES[name]
    fused = _tiny(seed=5)
    assert torch.autograd.gradcheck(fn, (fused,), eps=1e-6, atol=1e-7)
    (grad,) = torch.autograd.grad(fn(fused), fused)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_float32_follows_input(device):
    x = _image(device=device, seed=2).float().requires_grad_()
    ms = decimate(mtf_filter(_image(device=device), GAINS, 4), 4).float()
    pan = _pan(device=device).float()
    lms = interp23tap(ms, 4)
    for value in (spectral_loss(x, ms, GAINS, 4), spatial_loss(x, pan, 4, lms=lms),
                  spatial_loss(x, pan, 4, kind="drho"), anchor_loss(x, lms)):
        assert value.dtype == torch.float32 and value.device == x.device and value.ndim == 0
        (grad,) = torch.autograd.grad(value, x)
        assert torch.isfinite(grad).all()


# ----------------------------------------------------------------------------- PhysicsLoss
def _batch(device, b: int = 2):
    fused = _image(b, seed=2, device=device).requires_grad_()
    ms = decimate(mtf_filter(_image(b, device=device), GAINS, 4), 4)
    pan = _pan(b, device=device)
    lms = interp23tap(ms, 4)
    return fused, ms, pan, lms


def test_physics_loss_parts_sum_to_total(device):
    weights = {"spectral": 2.0, "spatial": 0.5, "anchor": 0.25, "ergas": 0.05, "q2n": 1.0}
    loss = PhysicsLoss(GAINS, 4, weights=weights).to(device)
    fused, ms, pan, lms = _batch(device)
    ref = lms + 0.01
    total, parts = loss(fused, ms, pan, lms, reference=ref)
    assert set(parts) == set(LOSS_TERMS)
    assert total.item() == pytest.approx(sum(weights[k] * parts[k].item() for k in parts),
                                         rel=1e-12)
    b = loss.border
    assert parts["spectral"].item() == pytest.approx(
        spectral_loss(fused, ms, GAINS, 4, border=b).item(), rel=1e-12)
    assert parts["spatial"].item() == pytest.approx(
        spatial_loss(fused, pan, 4, lms=lms, gnyq_ms=GAINS, border=4 * b).item(), rel=1e-12)
    assert parts["anchor"].item() == pytest.approx(
        anchor_loss(fused, ref, border=4 * b).item(), rel=1e-12)
    proj = reproject_fused(fused, 4, kernels=loss.kernels)
    assert parts["ergas"].item() == pytest.approx(
        ergas_loss(proj, ms, 4, border=b).item(), rel=1e-12)
    assert parts["q2n"].item() == pytest.approx(q2n_loss(proj, ms, border=b).item(), rel=1e-12)
    total.backward()
    assert torch.isfinite(fused.grad).all() and fused.grad.abs().sum() > 0


def test_physics_loss_skips_terms(device):
    fused, ms, pan, lms = _batch(device)
    loss = PhysicsLoss(GAINS, 4, weights={"spatial": 0.0}, spatial_kind="drho").to(device)
    total, parts = loss(fused, ms, pan)  # no lms, no reference: spectral only
    assert set(parts) == {"spectral"}
    assert total.item() == pytest.approx(parts["spectral"].item())
    drho = PhysicsLoss(GAINS, 4, spatial_kind="drho").to(device)
    _, parts = drho(fused, ms, pan)
    assert set(parts) == {"spectral", "spatial"}
    only_anchor = PhysicsLoss(GAINS, 4, weights={"spectral": 0, "spatial": 0})
    with pytest.raises(ValueError, match="reference"):
        only_anchor(fused, ms, pan)


def test_physics_loss_from_sensor_uses_presets():
    loss = PhysicsLoss.from_sensor("WV3")
    assert loss.weights == loss_weights("WV3")
    assert loss.gains == WV3.mtf_ms and loss.ratio == 4 and loss.border == 2
    assert tuple(loss.kernels.shape) == (8, 41, 41)
    ge1 = PhysicsLoss.from_sensor("GE1", weights={"anchor": 0.0})
    assert ge1.weights == {**loss_weights("GE1"), "anchor": 0.0}
    assert ge1.weights["spatial"] == 0.07
    assert "WV3" not in repr(ge1) and "spatial_kind='zpnn'" in repr(ge1)


def test_physics_loss_buffers_follow_to(device):
    loss = PhysicsLoss.from_sensor("WV3")
    phase = coregistration_phases(*_batch("cpu")[1:3], GAINS, 4)[0]  # (C, 2)
    loss.set_phase(phase)
    loss = loss.to(device)
    assert loss.kernels.device.type == torch.device(device).type
    assert loss.phase.device.type == torch.device(device).type
    assert loss.kernels.dtype == F64 and loss.phase.dtype == torch.long
    assert "kernels" not in loss.state_dict()
    fused, ms, pan, lms = _batch(device)
    total, parts = loss(fused, ms, pan, lms)
    assert total.device == fused.device
    expected = spectral_loss(fused, ms, GAINS, 4, phase=phase, border=2)
    assert parts["spectral"].item() == pytest.approx(expected.item(), rel=1e-12)
    # a phase given to forward wins over the stored one; clearing restores the default
    _, at_default = loss(fused, ms, pan, lms, phase=(2, 2))
    loss.set_phase(None)
    _, cleared = loss(fused, ms, pan, lms)
    assert at_default["spectral"].item() == pytest.approx(cleared["spectral"].item())


def test_physics_loss_errors():
    with pytest.raises(ValueError, match="unknown loss term"):
        PhysicsLoss(GAINS, 4, weights={"spectal": 1.0})
    with pytest.raises(ValueError, match=">= 0"):
        PhysicsLoss(GAINS, 4, weights={"spatial": -1.0})
    with pytest.raises(ValueError, match="every loss weight is 0"):
        PhysicsLoss(GAINS, 4, weights=dict.fromkeys(LOSS_TERMS, 0.0))
    with pytest.raises(ValueError, match="spatial_kind"):
        PhysicsLoss(GAINS, 4, spatial_kind="qnr")
    with pytest.raises(ValueError, match="gains"):
        PhysicsLoss([0.3, 1.2], 4)
    loss = PhysicsLoss(GAINS, 4)
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        loss.set_phase((0, 4))
    with pytest.raises(ValueError, match="bands"):
        loss.set_phase(np.zeros((3, 2), dtype=int))
    with pytest.raises(ValueError, match="integers"):
        loss.set_phase(torch.zeros(8, 2))


# ----------------------------------------------------------------------------- presets
def _preset_yaml() -> dict:
    return yaml.safe_load((resources.files("tta.losses") / "presets.yaml").read_text())


def test_loss_weights_default_and_overrides():
    default = loss_weights(None)
    assert set(default) == set(LOSS_TERMS)
    assert default == {"spectral": 1.0, "spatial": 0.1, "anchor": 0.1, "ergas": 0.0, "q2n": 0.0}
    assert loss_weights("not-a-sensor") == default
    assert loss_weights("GE1")["spatial"] == 0.07
    assert loss_weights("worldview-3") == loss_weights("WV3") == loss_weights(WV3)
    w = loss_weights("WV3")
    w["spectral"] = 5.0  # a copy: the presets are not modified
    assert loss_weights("WV3")["spectral"] == 1.0


@pytest.mark.parametrize("key", [k for k in _preset_yaml() if k != "default"])
def test_preset_entries_name_real_sensors(key):
    assert get_sensor(key).name == key  # canonical upper-case name, no typo
    assert set(_preset_yaml()[key]) <= set(LOSS_TERMS)


# ----------------------------------------------------------------------------- real data
def test_real_wv3_reduced_resolution(real_file):
    from tta.io import read_scene

    scene = read_scene(str(real_file("wv3/wv3_cdif_rr.h5")))
    assert scene.sensor.name == "WV3" and scene.ratio == 4
    r, mv = scene.ratio, scene.max_value
    ms = torch.from_numpy(scene.ms)[None].double() / mv
    pan = torch.from_numpy(scene.pan)[None, None].double() / mv
    gt = torch.from_numpy(scene.gt)[None].double() / mv
    lms = interp23tap(ms, r)
    gains = scene.sensor.mtf_ms
    border = default_border(gains, r)
    spec_gt = spectral_loss(gt, ms, gains, r, border=border).item()  # observed 1.5e-4
    spec_perm = spectral_loss(gt.flip(1), ms, gains, r, border=border).item()  # 0.049
    spec_lms = spectral_loss(lms, ms, gains, r, border=border).item()  # 0.0058
    assert spec_gt < 5e-4
    assert spec_perm > 50 * spec_gt and spec_lms > 10 * spec_gt
    drho_gt = spatial_loss(gt, pan, r, kind="drho", border=r * border).item()  # 0.36
    drho_lms = spatial_loss(lms, pan, r, kind="drho", border=r * border).item()  # 0.745
    assert drho_gt < 0.7 * drho_lms
    zpnn_gt = spatial_loss(gt, pan, r, lms=lms, gnyq_ms=gains, border=r * border).item()
    zpnn_lms = spatial_loss(lms, pan, r, lms=lms, gnyq_ms=gains, border=r * border).item()
    assert zpnn_gt < 0.7 * zpnn_lms  # observed 0.32 vs 0.72
    total_gt, _ = PhysicsLoss.from_sensor("WV3")(gt, ms, pan, lms)
    total_lms, _ = PhysicsLoss.from_sensor("WV3")(lms, ms, pan, lms)
    assert total_gt.item() < 0.6 * total_lms.item()


def test_lambda_pnn_terms_match_the_indexes(device):
    """ERGAS and 1 - Q2n terms equal the metrics' values (float Q2n, no DN cast), vanish on
    a perfect reprojection and carry a gradient."""
    from tta.metrics import ergas, q2n

    gen = torch.Generator().manual_seed(3)
    ms = (0.2 + 0.1 * torch.rand(2, 4, 32, 32, generator=gen, dtype=torch.float64)).to(device)
    proj = (ms + 0.01 * torch.randn(2, 4, 32, 32, generator=gen,
                                    dtype=torch.float64).to(device)).requires_grad_(True)
    e = ergas_loss(proj, ms, 4)
    expected = torch.stack([ergas(ms[i], proj[i].detach(), 4) for i in range(2)]).mean()
    assert e.item() == pytest.approx(float(expected), rel=1e-6)
    q = q2n_loss(proj, ms)
    assert q.item() == pytest.approx(1 - float(q2n(ms, proj.detach(), 32, dn_cast=False).mean()),
                                     rel=1e-9)
    (e + q).backward()
    assert torch.isfinite(proj.grad).all() and proj.grad.abs().sum() > 0
    assert ergas_loss(ms, ms, 4).item() < 1e-4 and abs(q2n_loss(ms, ms).item()) < 1e-9
    with pytest.raises(ValueError):
        ergas_loss(proj[:, :3], ms, 4)


def test_q2n_loss_after_q2n_in_inference_mode():
    """The Q2n structure constants are cached: a first call under inference mode (the
    never-harm decision scores with it) must not poison the differentiable loss."""
    from tta.metrics import q2n

    ms = 0.2 + 0.05 * torch.rand(1, 8, 32, 32, dtype=torch.float64)
    with torch.inference_mode():
        q2n(ms * 2047, ms * 2047)
    proj = (ms + 0.01).requires_grad_(True)
    q2n_loss(proj, ms).backward()
    assert torch.isfinite(proj.grad).all()
