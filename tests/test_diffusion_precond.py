"""The diffusion teacher's optional EDM output preconditioning (``precond="edm"``).

Default networks (``precond="none"``) must behave exactly as before the option existed: their
records carry no new key and their DDIM sampling equals the original loop, written out here.
"""

from __future__ import annotations

import math

import pytest
import torch

import pretrained
from pretrained.diffusion import DiffusionTeacher, OneStepStudent, edm_coefficients
from pretrained.zoo import model_from_weights, save_weights
from tta.decomposition import decompose
from tta.errors import InputError


def _teacher(precond: str = "edm", seed: int = 0, **kw) -> DiffusionTeacher:
    torch.manual_seed(seed)
    kw.setdefault("steps", 4)
    return pretrained.create_model("diffusion_teacher", n_bands=4, base=8, precond=precond,
                                   **kw)


def _inputs(b: int = 2, size: int = 16, seed: int = 1) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    lms = torch.rand(b, 4, size, size, generator=g)
    pan = torch.rand(b, 1, size, size, generator=g)
    ms = torch.rand(b, 4, size // 4, size // 4, generator=g)
    return ms, pan, lms


def test_edm_coefficients_limits_and_v_parametrisation():
    ab = [0.999999, 0.7, 0.2, 1e-9]
    assert edm_coefficients(ab, None) == [(1.0, 0.0, 1.0)] * 4
    for a, (c_in, c_skip, c_out) in zip(ab, edm_coefficients(ab, 1.0), strict=True):
        # sigma_data = 1: unit input scale, y = sqrt(ab) x_t + sqrt(1 - ab) F
        assert c_in == pytest.approx(1.0)
        assert c_skip == pytest.approx(math.sqrt(a)) and c_out == pytest.approx(math.sqrt(1 - a))
    (_, s0, o0), *_, (_, s1, o1) = edm_coefficients(ab, 0.5)
    assert s0 == pytest.approx(1.0, abs=1e-5) and o0 < 1e-3  # t -> 0: a copy of x_t
    assert s1 < 1e-4 and o1 == pytest.approx(0.5, rel=1e-6)  # t -> T: the regression
    # Karras et al.: the F-target (y - c_skip x_t) / c_out has unit variance for var(y) = sd^2
    sd, a = 0.5, 0.3
    c_in, c_skip, c_out = edm_coefficients([a], sd)[0]
    var_x = a * sd**2 + (1 - a)
    assert ((1 - c_skip * math.sqrt(a)) ** 2 * sd**2 + c_skip**2 * (1 - a)) / c_out**2 == \
        pytest.approx(1.0)
    assert c_in**2 * var_x == pytest.approx(1.0)


def test_edm_teacher_copies_x_t_as_t_goes_to_zero():
    net = _teacher().eval()
    _, pan, lms = _inputs()
    g = torch.Generator().manual_seed(2)
    x0 = 0.05 * torch.randn(2, 4, 16, 16, generator=g)
    noise = torch.randn(2, 4, 16, 16, generator=g)
    with torch.no_grad():
        raw = net.unet(net.unet_input(net.q_sample(x0, torch.zeros(2, dtype=torch.long), noise),
                                      0), net._t(0, x0), lms, pan)
        x_t = net.q_sample(x0, torch.zeros(2, dtype=torch.long), noise)
        pred = net.denoise(x_t, 0, lms, pan)
        _, c_skip, c_out = net.coeffs[0]
        torch.testing.assert_close(pred, (c_skip * x_t + c_out * raw) / 20.0)
        # at t = 0 the untrained UNet hardly matters: the prediction is x0 up to the noise
        assert (pred - x0).abs().max() < 0.01 * x0.abs().max()
        plain = _teacher("none").eval()
        assert (plain.denoise(x_t, 0, lms, pan) - x0).abs().mean() > 10 * (pred - x0).abs().mean()
        # at t = T-1 it is the regression sigma_data / s x F (c_skip ~ 5e-5)
        t = net.timesteps - 1
        x_T = torch.randn(2, 4, 16, 16, generator=g)
        _, c_skip, c_out = net.coeffs[t]
        assert c_skip < 1e-4 and c_out == pytest.approx(1.0)
        torch.testing.assert_close(net.denoise(x_T, t, lms, pan),
                                   (c_skip * x_T + c_out * net.unet(x_T, net._t(t, x_T), lms,
                                                                    pan)) / 20.0)
    # tensor timesteps give the per-sample coefficients
    tt = torch.tensor([0, t])
    with torch.no_grad():
        both = net.denoise(torch.cat([x_t[:1], x_T[1:]]), tt, lms, pan)
        torch.testing.assert_close(both[0], pred[0])
        torch.testing.assert_close(both[1], net.denoise(x_T, t, lms, pan)[1])


def test_edm_teacher_shapes_determinism_and_record(tmp_path):
    net = _teacher(sigma_data=0.5).eval()
    ms, pan, lms = _inputs()
    with torch.no_grad():
        out = net(ms, pan, lms)
        assert out.shape == lms.shape and torch.isfinite(out).all()
        assert torch.equal(out, net(ms, pan, lms))
        single = net(ms[1:], pan[1:], lms[1:])  # same output in any batch position
        torch.testing.assert_close(single[0], out[1])
        odd = net(ms[:, :, :3, :3], pan[:, :, :13, :13], lms[:, :, :13, :13])
        assert odd.shape == (2, 4, 13, 13)
    assert net.hparams()["precond"] == "edm" and net.hparams()["sigma_data"] == 0.5
    path = tmp_path / "t.safetensors"
    save_weights(net, path, metadata={"arch_kwargs": net.hparams()})
    back = model_from_weights(path, "diffusion_teacher").eval()
    assert back.hparams() == net.hparams()
    with torch.no_grad():
        assert torch.equal(back(ms, pan, lms), out)
    with pytest.raises(InputError, match="precond"):
        DiffusionTeacher(4, precond="karras")
    with pytest.raises(InputError, match="sigma_data"):
        DiffusionTeacher(4, precond="edm", sigma_data=0)


def test_edm_teacher_head_is_an_additive_tail():
    net = _teacher(steps=10).eval()
    k = net.head_scale
    assert k == pytest.approx(net.coeffs[0][2] / 20.0)
    torch.testing.assert_close(net.head.weight, net.unet.out_conv.weight * k)
    dec = decompose(net, probe_size=32)
    assert dec.mapper_name == "head" and dec.tail == "add"
    # the DDIM loop equals denoise() step by step, the last step through head
    _, pan, lms = _inputs(b=1)
    ts = [999, 500, 0]
    with torch.no_grad():
        x = net.initial_noise(lms)
        for i, t in enumerate(ts):
            x0 = net.denoise(x, t, lms, pan)
            if i + 1 < len(ts):
                a, b = net.alpha_bar[t], net.alpha_bar[ts[i + 1]]
                eps = (x - math.sqrt(a) * 20.0 * x0) / math.sqrt(1 - a)
                x = math.sqrt(b) * 20.0 * x0 + math.sqrt(1 - b) * eps
        torch.testing.assert_close(net.sample(pan, lms, timesteps=ts), x0)


def test_student_from_an_edm_teacher_is_its_one_step_prediction():
    teacher = _teacher().eval()
    student = OneStepStudent(4, base=8).init_from_teacher(teacher).eval()
    assert "precond" not in student.hparams()
    ms, pan, lms = _inputs()
    with torch.no_grad():
        one = teacher.denoise(torch.zeros_like(lms), teacher.timesteps - 1, lms, pan)
        torch.testing.assert_close(student(ms, pan, lms), lms + one)
    with pytest.raises(TypeError):
        OneStepStudent(4, precond="edm")  # the student stays a plain UNet
    fose = pretrained.create_model("fose", n_bands=4, base=8)
    fose.student.load_state_dict(student.state_dict())
    with torch.no_grad():
        assert torch.isfinite(fose(ms, pan, lms)).all()


def test_default_teacher_is_unchanged():
    net = _teacher("none", steps=5).eval()
    assert set(net.hparams()) == {"base", "timesteps", "residual_scale", "steps", "init",
                                  "noise_seed"}
    assert torch.equal(net.head.weight, net.unet.out_conv.weight)
    _, pan, lms = _inputs()
    with torch.no_grad():
        # the original sampling loop (before the option), written out
        x = net.initial_noise(lms)
        ts = [999, 749, 500, 250, 0]
        for i, t in enumerate(ts):
            f = net.unet.features(x, net._t(t, x), lms, pan)
            if i == len(ts) - 1:
                ref = net.head(f)
                break
            x0 = net.unet.out_conv(f)
            a, b = net.alpha_bar[t], net.alpha_bar[ts[i + 1]]
            eps = (x - math.sqrt(a) * 20.0 * x0) / math.sqrt(1.0 - a)
            x = math.sqrt(b) * 20.0 * x0 + math.sqrt(1.0 - b) * eps
        assert torch.equal(net.sample(pan, lms), ref)
        x_t = torch.randn(2, 4, 16, 16)
        assert torch.equal(net.denoise(x_t, 300, lms, pan),
                           net.unet(x_t, net._t(300, x_t), lms, pan))


def test_detail_condition_option():
    net = _teacher("none", cond="detail").eval()
    assert net.hparams()["cond"] == "detail" and "precond" not in net.hparams()
    assert net.unet.cond0[0].in_channels == 9 and net.unet.in_conv.in_channels == 13
    ms, pan, lms = _inputs()
    with torch.no_grad():
        out = net(ms, pan, lms)
        assert out.shape == lms.shape and torch.equal(out, net(ms, pan, lms))
        # the condition reads the detail: changing pan by a constant moves the output
        assert not torch.allclose(net(ms, pan + 0.1, lms + 0.1), out + 0.1)
    student = OneStepStudent(4, base=8, cond="detail").init_from_teacher(net)
    assert student.hparams()["cond"] == "detail"
    with pytest.raises(InputError, match="does not match"):
        OneStepStudent(4, base=8).init_from_teacher(net)
    fose = pretrained.create_model("fose", n_bands=4, base=8, cond="detail")
    assert fose.hparams()["cond"] == "detail"
    assert "cond" not in pretrained.create_model("fose", n_bands=4, base=8).hparams()
    fose.student.load_state_dict(student.state_dict())
    with torch.no_grad():
        assert fose(ms, pan, lms).shape == lms.shape
    with pytest.raises(InputError, match="cond"):
        DiffusionTeacher(4, cond="pan")


def _rr_file(tmp_path):
    """Two smooth 64 x 64 QuickBird RR scenes (PAN = band mean, MS = 4 x 4 block mean)."""
    import numpy as np

    from tta.io import Scene, write_h5
    from tta.sensors import get_sensor

    s = get_sensor("QB")
    scenes = []
    for seed in (0, 1):
        g = np.random.default_rng(seed)
        yy, xx = np.mgrid[0:64, 0:64] / 64
        x = np.stack([700 + 250 * np.sin(2 * np.pi * (k + 1) * xx + g.uniform(0, 6))
                      * np.cos(2 * np.pi * (k + 2) * yy) + g.normal(0, 15, (64, 64))
                      for k in range(4)]).clip(1, None)
        ms = x.reshape(4, 16, 4, 16, 4).mean(axis=(2, 4))
        scenes.append(Scene(ms=ms, pan=x.mean(axis=0), gt=x, sensor=s, source=f"rr{seed}"))
    path = tmp_path / "qb_rr.h5"
    write_h5(path, scenes)
    return path


def test_options_train_through_the_chain(tmp_path):
    from tta.training import train

    data = [str(_rr_file(tmp_path))]
    common = {"epochs": 1, "steps_per_epoch": 2, "patch": 16, "batch": 2, "device": "cpu",
              "out": tmp_path / "runs", "sensor": "QB"}
    teacher = train("diffusion_teacher", data, val_steps=2, teacher_loss="edm",
                    arch_kwargs={"base": 8, "precond": "edm", "cond": "detail"}, **common)
    assert teacher.card_data["arch_kwargs"]["precond"] == "edm"
    assert "s / c_out(t)" in teacher.card_data["training"]["recipe"]["loss"]
    t = teacher.model
    torch.testing.assert_close(t.head.weight, t.unet.out_conv.weight * t.head_scale)
    student = train("diffusion_student", data, teacher=teacher.weights, teacher_steps=2,
                    **common)
    assert student.model.hparams()["cond"] == "detail"
    e2e = train("lagconv", data, arch_kwargs={"channels": 8, "n_blocks": 1}, **common)
    fused = train("fose", data, student=student.weights, e2e=e2e.weights, **common)
    assert fused.card_data["arch_kwargs"]["cond"] == "detail"
    with pytest.raises(InputError, match="precond=edm"):
        train("diffusion_teacher", data, teacher_loss="edm", name="x",
              arch_kwargs={"base": 8}, **common)
