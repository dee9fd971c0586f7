"""Tests of tta.physics.reproject: MTF filtering and decimation as one operator (the physics
losses' projection onto the MS grid), against the two-step reference form."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tta.io import read_scene
from tta.losses import PhysicsLoss, spectral_loss
from tta.physics import (
    MTFDecimation,
    coregistration_phases,
    decimate,
    depthwise_filter,
    interp23tap,
    mtf_decimate,
    mtf_kernels,
)
from tta.physics.reproject import SEPARABLE_MAX_SIDE, separable_factors
from tta.sensors import list_sensors

F64 = torch.float64


def _reference(x: torch.Tensor, kernels: torch.Tensor, ratio: int, phase=None) -> torch.Tensor:
    return decimate(depthwise_filter(x.double(), kernels.double()), ratio, phase)


def _phases(b: int, c: int, ratio: int, seed: int = 0) -> list:
    g = torch.Generator().manual_seed(seed)
    return [None, (ratio - 1, 0), np.array([[i % ratio, (2 * i + 1) % ratio] for i in range(c)]),
            torch.randint(0, ratio, (c, 2), generator=g),
            torch.randint(0, ratio, (b, c, 2), generator=g)]


@pytest.mark.parametrize("b,c,h,w,ratio,n_kernels", [
    (3, 8, 64, 48, 4, 8), (2, 4, 32, 32, 2, 4), (1, 3, 20, 28, 4, 1), (2, 4, 128, 64, 4, 4)])
def test_equals_filter_then_decimate(b, c, h, w, ratio, n_kernels):
    gains = np.linspace(0.15, 0.4, n_kernels).tolist()
    kernels = mtf_kernels(gains, ratio, 41, dtype=F64)
    x = torch.rand(b, c, h, w, generator=torch.Generator().manual_seed(1))
    project = MTFDecimation(kernels, ratio)
    assert project.separable(x)
    for phase in _phases(b, c, ratio):
        ref = _reference(x, kernels, ratio, phase)
        got = project(x, phase)
        assert got.dtype == torch.float32 and got.shape == ref.shape == (b, c, h // ratio,
                                                                          w // ratio)
        # float32 rounding only: the FFT form of the same filter is as far from float64
        assert (got.double() - ref).abs().max() < 1e-6
        fft = decimate(depthwise_filter(x, kernels.float()), ratio, phase).double()
        assert (fft - ref).abs().max() < 1e-6


def test_float64_and_large_images_take_the_reference_form():
    kernels = mtf_kernels([0.3] * 4, 4, dtype=F64)
    project = MTFDecimation(kernels, 4)
    x = torch.rand(1, 4, 32, 32, dtype=F64)
    assert not project.separable(x)
    assert torch.equal(project(x), _reference(x, kernels, 4))
    big = torch.rand(1, 4, 8, SEPARABLE_MAX_SIDE + 4)
    assert not project.separable(big)
    assert torch.equal(project(big), decimate(depthwise_filter(big, kernels), 4))


def test_half_precision_is_computed_in_float32():
    kernels = mtf_kernels([0.3] * 4, 4, dtype=F64)
    x = torch.rand(2, 4, 32, 32)
    got = mtf_decimate(x.bfloat16(), kernels, 4)
    assert got.dtype == torch.bfloat16
    assert (got.double() - _reference(x.bfloat16().float(), kernels, 4)).abs().max() < 4e-3


def test_gradient_matches_the_reference_form():
    kernels = mtf_kernels([0.2, 0.3, 0.35, 0.25], 4, dtype=F64)
    phase = torch.tensor([[0, 1], [2, 2], [3, 0], [1, 3]])
    x = torch.rand(2, 4, 32, 32, requires_grad=True)
    weights = torch.rand(2, 4, 8, 8)
    g_new, = torch.autograd.grad((mtf_decimate(x, kernels, 4, phase) * weights).sum(), x)
    x64 = x.detach().double().requires_grad_(True)
    g_ref, = torch.autograd.grad((_reference(x64, kernels, 4, phase) * weights).sum(), x64)
    assert (g_new.double() - g_ref).abs().max() < 1e-6 * g_ref.abs().max()


def test_operators_are_cached_per_shape_and_phase():
    kernels = mtf_kernels([0.3] * 4, 4, dtype=F64)
    project = MTFDecimation(kernels, 4)
    x = torch.rand(2, 4, 32, 32)
    phase = torch.tensor([[0, 1], [2, 2], [3, 0], [1, 3]])
    first = project(x, phase)
    assert torch.equal(project(x, phase), first) and len(project._cache) == 1
    project(torch.rand(5, 4, 32, 32), phase)          # per-band phase: batch size not a key
    assert len(project._cache) == 1
    project(torch.rand(2, 4, 16, 32), phase)
    assert len(project._cache) == 2
    phase[0, 0] = 3                                    # changed in place: rebuilt
    assert torch.allclose(project(x, phase), _reference(x, kernels, 4, phase).float(),
                          atol=1e-6)
    for _ in range(20):                                # bounded
        project(x, (int(torch.randint(0, 4, ())), int(torch.randint(0, 4, ()))))
    assert len(project._cache) <= 8


@pytest.mark.parametrize("phase,message", [
    ((4, 0), "phase offsets must lie in"), (np.zeros((3, 2), dtype=int), "phase must be"),
    ((1.5, 0), "phase must hold integers")])
def test_bad_phase_raises_like_decimate(phase, message):
    kernels = mtf_kernels([0.3] * 8, 4, dtype=F64)
    with pytest.raises(ValueError, match=message):
        mtf_decimate(torch.rand(1, 8, 16, 16), kernels, 4, phase)


def test_size_not_divisible_raises():
    kernels = mtf_kernels([0.3] * 8, 4, dtype=F64)
    with pytest.raises(ValueError, match="not divisible by ratio 4"):
        mtf_decimate(torch.rand(1, 8, 18, 16), kernels, 4)


def test_preset_kernels_are_numerically_separable():
    """Every preset sensor's kernels: a few rank-one terms rebuild them to float32 rounding."""
    for s in list_sensors():
        kernels = mtf_kernels(s.mtf_ms, s.ratio, 41, dtype=F64)
        col, row = separable_factors(kernels)
        rank = col.shape[1]
        assert 1 <= rank <= 16, (s.name, rank)
        rebuilt = torch.einsum("crk,crl->ckl", col, row)
        assert (rebuilt - kernels).abs().max() < 1e-8 * kernels.abs().max(), s.name


def test_spectral_loss_unchanged_on_a_real_scene(real_file):
    """The loss of a real WV2 scene's EXP fusion: the operator and the FFT form agree."""
    scene = read_scene(real_file("wv2/wv2_grip_top_fr.h5"))
    ms = torch.from_numpy(scene.ms[:, :64, :64].astype(np.float32))[None] / scene.max_value
    pan = torch.from_numpy(scene.pan[:256, :256].astype(np.float32))[None, None] / scene.max_value
    lms = interp23tap(ms, 4)
    fused = lms + 0.5 * (pan - pan.mean())
    phase = coregistration_phases(ms.double(), pan.double(), scene.sensor.mtf_ms, 4)[0]
    patches = fused.unfold(2, 64, 64).unfold(3, 64, 64).permute(0, 2, 3, 1, 4, 5)
    patches = patches.reshape(-1, 8, 64, 64).contiguous()
    ms_p = ms.unfold(2, 16, 16).unfold(3, 16, 16).permute(0, 2, 3, 1, 4, 5).reshape(-1, 8, 16, 16)
    loss = PhysicsLoss.from_sensor(scene.sensor)
    got = loss.projector(patches, phase)
    ref = _reference(patches, loss.kernels, 4, phase)
    assert (got.double() - ref).abs().max() < 1e-6
    new = spectral_loss(patches, ms_p, None, 4, phase=phase, kernels=loss.kernels, border=2,
                        projector=loss.projector)
    old = (decimate(depthwise_filter(patches.double(), loss.kernels), 4, phase)
           - ms_p.double())[..., 2:-2, 2:-2].abs().mean()
    assert float(new) == pytest.approx(float(old), rel=1e-5)
    assert float(old) > 1e-3  # a real misfit, not a trivial zero
