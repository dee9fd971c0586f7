"""KSDiff (pretrained/ksdiff.py): shapes, the kernel modulation against a per-image reference,
seeded determinism, the decomposition, adapters' identity at start, one step of each training
stage, and the shipped weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from _inputs import random_inputs

import pretrained
from pretrained.ksdiff import KSDiff, LinearCrossAttention
from pretrained.zoo import load_zoo
from tta.decomposition import decompose, probe_inputs
from tta.errors import InputError


def _model(n_bands: int = 4, seed: int = 0, **kw) -> KSDiff:
    torch.manual_seed(seed)
    return pretrained.create_model("ksdiff", n_bands=n_bands, **kw).eval()


def _modulating(net: KSDiff, seed: int = 5) -> KSDiff:
    """Give the core MLP's (zero-initialised) last layer random weights: W != 1."""
    g = torch.Generator().manual_seed(seed)
    last = net.kgen.core_mlp[2]
    with torch.no_grad():
        last.weight.copy_(torch.randn(last.weight.shape, generator=g) * 10)
        last.bias.copy_(torch.randn(last.bias.shape, generator=g) * 10)
    return net


@pytest.mark.parametrize("n_bands", [4, 8])
def test_shapes_parts_and_hparams(n_bands):
    net = _model(n_bands)
    ms, pan, lms = random_inputs(n_bands, h=8)
    with torch.no_grad():
        out = net(ms, pan, lms)
        z = net.prior(pan, lms)
        mods = net.kgen(z, pan - lms)
    assert out.shape == lms.shape and torch.isfinite(out).all()
    assert z.shape == (2, 16, 64)
    assert mods.shape == (8, 2, 32, 32, 3, 3)  # 8 modulated convs, per image
    assert net.kgen.core(z).shape == (2, 8, 4, 4, 2, 2)
    assert pretrained.model_class("ksdiff") is KSDiff
    rebuilt = pretrained.create_model("ksdiff", n_bands=n_bands, **net.hparams())
    assert rebuilt.hparams() == net.hparams()
    with pytest.raises(InputError, match="rank"):
        KSDiff(4, rank=(4, 4, 2))
    with pytest.raises(InputError, match="DDIM steps"):
        KSDiff(4, timesteps=5, sample_steps=6)


def test_zero_core_is_the_plain_backbone():
    """At initialisation the core is 0, W = 1: KSDiff is its FusionNet exactly."""
    net = _model(4)
    ms, pan, lms = random_inputs(4, h=8)
    with torch.no_grad():
        torch.testing.assert_close(net(ms, pan, lms), net.net(ms, pan, lms), rtol=0, atol=1e-6)


def test_modulation_matches_a_per_image_reference():
    """The grouped convolution equals a per-image conv2d with kernel W0 * W, and W is the
    Tucker product 1 + G x1 U_out x2 U_in x3 U_h x4 U_w (explicit mode products)."""
    net = _modulating(_model(4)).double()
    _, pan, lms = random_inputs(4, h=6, dtype=torch.float64)
    with torch.no_grad():
        z = net.prior(pan, lms)
        d = pan - lms
        mods = net.kgen(z, d)
        core = net.kgen.core(z)
        u = net.kgen.factors(d)
        for b in range(2):
            w = core[b, 0]
            for mode in range(4):  # mode-m product with U_m (rows x rank)
                w = torch.movedim(torch.tensordot(u[mode][b, 0], w, dims=([1], [mode])), 0,
                                  mode)
            torch.testing.assert_close(mods[0, b], 1 + w)
        assert (mods - 1).abs().amax() > 1e-3
        conv = net.convs()[0]
        x = torch.randn(2, 32, 10, 10, dtype=torch.float64)
        got = net._modulated(conv, x, mods[0])
        for b in range(2):
            ref = F.conv2d(x[b:b + 1], conv.weight * mods[0, b], conv.bias, padding=1)
            torch.testing.assert_close(got[b:b + 1], ref)


def test_linear_attention_matches_its_formula():
    torch.manual_seed(0)
    att = LinearCrossAttention(8, heads=2).double()
    x, ctx = torch.randn(3, 5, 8, dtype=torch.float64), torch.randn(3, 7, 8, dtype=torch.float64)
    q = att.q(x).view(3, 5, 2, 4).transpose(1, 2)
    k, v = att.kv(ctx).view(3, 7, 2, 2, 4).permute(2, 0, 3, 1, 4)
    ref = q.softmax(-1) @ (k.softmax(-2).transpose(-1, -2) @ v)
    torch.testing.assert_close(att(x, ctx), att.out(ref.transpose(1, 2).reshape(3, 5, 8)))


def test_inference_is_deterministic_for_a_seed():
    net = _modulating(_model(4))
    ms, pan, lms = random_inputs(4, b=3, h=8)
    with torch.no_grad():
        a = net(ms, pan, lms)
        torch.manual_seed(123)  # the global generator plays no part
        b = net(ms, pan, lms)
        alone = net(ms[1:2], pan[1:2], lms[1:2])  # the noise is shared by the batch
        net.seed = 1
        other = net(ms, pan, lms)
    assert torch.equal(a, b)
    torch.testing.assert_close(alone, a[1:2], rtol=0, atol=1e-5)
    assert (other - a).abs().amax() > 1e-6, "another seed samples another prior"


def test_ddim_one_step_is_the_denoiser_at_the_last_timestep():
    net = _model(4, sample_steps=1)
    _, pan, lms = random_inputs(4, h=8)
    with torch.no_grad():
        c = net.plfe2(torch.cat([pan, lms], 1))
        noise = net.initial_noise(2, c)
        ref = net.denoiser(noise, torch.full((2,), net.timesteps - 1), c)
        torch.testing.assert_close(net.sample(c), ref, rtol=0, atol=0)


def test_decomposition_finds_the_backbone_mapper():
    net = _modulating(_model(8))
    dec = decompose(net, probe_size=64)
    assert dec.mapper_name == "net.conv3" and dec.tail == "add"
    assert dec.feature_channels == 32
    assert dec.output_shape == (1, 8, 64, 64)


@pytest.mark.parametrize("kind", ["ft", "cat", "swift"])
def test_adapters_start_as_identity(kind):
    from adapters import create_adapter

    net = _modulating(_model(8))
    ms, pan, lms = probe_inputs(8, 4, 32, seed=1)
    with torch.no_grad():
        before = net(ms, pan, lms)
        adapter = create_adapter(kind).attach(decompose(net, probe_size=32))
        adapter.set_condition(ms, pan, lms)
        assert torch.equal(net(ms, pan, lms), before)


@pytest.fixture
def rr_file(tmp_path):
    from tta.io import Scene, write_h5
    from tta.sensors import get_sensor

    g = np.random.default_rng(0)
    yy, xx = np.mgrid[0:64, 0:64] / 64
    gt = np.stack([600 + 200 * np.sin(2 * np.pi * (b + 1) * xx) * np.cos(3 * yy)
                   + g.normal(0, 10, (64, 64)) for b in range(4)]).clip(1, None)
    ms = gt.reshape(4, 16, 4, 16, 4).mean(axis=(2, 4))
    path = tmp_path / "qb_rr.h5"
    write_h5(path, Scene(ms=ms, pan=gt.mean(0), gt=gt, sensor=get_sensor("QB")))
    return str(path)


def test_one_step_of_each_training_stage(tmp_path, rr_file):
    from pretrained.zoo import read_weights
    from tta.training import train

    run = {"epochs": 1, "steps_per_epoch": 1, "patch": 16, "batch": 2, "device": "cpu",
           "sensor": "QB", "val_fraction": 0.0, "out": tmp_path}
    pre = train("ksdiff", [rr_file], name="pre", **run)  # default stage: pretrain
    assert pre.card_data["stage"] == "pretrain"
    fresh = _model(4)
    sd, _ = read_weights(pre.weights)
    moved = {k.split(".")[0] for k, v in sd.items() if not torch.equal(v, fresh.state_dict()[k])}
    assert moved == {"net", "kgen", "plfe1"}, "stage 1 trains PLFE1, the generator, the net"
    dif = train("ksdiff", [rr_file], stage="diffuse", init=str(pre.weights), name="dif", **run)
    assert dif.card_data["training"]["init"]["init"]["sha256"] == pre.card_data["weights"][
        "sha256"]
    sd2, _ = read_weights(dif.weights)
    moved = {k.split(".")[0] for k, v in sd2.items() if not torch.equal(v, sd[k])}
    assert moved == {"net", "kgen", "plfe2", "denoiser"}, "stage 2 keeps PLFE1 frozen"
    with pytest.raises(InputError, match="needs --init"):
        train("ksdiff", [rr_file], stage="diffuse", name="x", **run)
    with pytest.raises(InputError, match="trains --arch ksdiff"):
        train("fusionnet", [rr_file], stage="pretrain", name="x", **run)
    with pytest.raises(InputError, match="trains in stage 'pretrain'"):
        train("ksdiff", [rr_file], stage="e2e", name="x", **run)


def test_pretrain_can_start_from_a_trained_backbone(tmp_path, rr_file):
    """``--e2e`` FusionNet: the KSDiff starts as that network (W = 1), records the file, and a
    backbone of another shape or a non-FusionNet file is refused in one line."""
    from tta.training import train
    from tta.training.stages import KSDiffPretrainStage
    from tta.training.trainer import TrainConfig

    run = {"epochs": 1, "steps_per_epoch": 2, "patch": 16, "batch": 2, "device": "cpu",
           "sensor": "QB", "val_fraction": 0.0, "out": tmp_path}
    base = train("fusionnet", [rr_file], name="base", **run)
    cfg = TrainConfig(arch="ksdiff", data=(rr_file,), e2e=str(base.weights))
    built = KSDiffPretrainStage().build(cfg, 4, None, torch.device("cpu"))
    ms, pan, lms = random_inputs(4, h=8)
    with torch.no_grad():
        assert torch.allclose(built.model.eval()(ms, pan, lms), base.model(ms, pan, lms),
                              atol=1e-6)
    assert built.inits["e2e"]["sha256"] == base.card_data["weights"]["sha256"]
    pre = train("ksdiff", [rr_file], e2e=str(base.weights), name="pre", **run)
    assert pre.card_data["training"]["init"]["e2e"]["arch"] == "fusionnet"
    wide = train("fusionnet", [rr_file], name="wide", arch_kwargs={"channels": 16}, **run)
    with pytest.raises(InputError, match="does not fit this KSDiff"):
        train("ksdiff", [rr_file], e2e=str(wide.weights), arch_kwargs={"channels": 32},
              name="x", **run)
    with pytest.raises(InputError):
        train("ksdiff", [rr_file], e2e=str(pre.weights), name="y", **run)


@pytest.mark.parametrize(("name", "bands", "sensor"), [("ksdiff", 8, "WV3"),
                                                       ("ksdiff:qb", 4, "QB")])
def test_shipped_weights_load_by_name(name, bands, sensor):
    net = load_zoo(name)
    assert isinstance(net, KSDiff) and net.n_bands == bands
    assert net.weights_record.sensor == sensor
    assert net.card["stage"] == "diffuse" and net.card["arch_kwargs"] == net.hparams()
    init = net.card["training"]["init"]["init"]
    assert init["arch"] == "ksdiff" and len(init["sha256"]) == 64
    ms, pan, lms = random_inputs(bands, b=1, h=16)
    with torch.no_grad():
        out = net(ms, pan, lms)
    assert torch.isfinite(out).all()
    # the trained core left its zero initialisation; the modulation stays small (|W - 1| of
    # order 1e-5..1e-3 in these weights: see benchmarks/results/2026-12-06-cpu/
    # ksdiff_prior_effect.md)
    assert (net.kgen(net.prior(pan, lms), pan - lms) - 1).abs().amax() > 1e-6


def test_unit_factors_scale_the_modulation():
    """``unit_factors``: every factor column has norm sqrt(rows), so W - 1 is of the order of
    the core (without it, four small factors keep it near zero); the option is recorded."""
    plain = _modulating(_model(4, seed=3))
    unit = _modulating(_model(4, seed=3, unit_factors=True))
    assert unit.hparams()["unit_factors"] is True and "unit_factors" not in plain.hparams()
    _, pan, lms = random_inputs(4, h=8)
    with torch.no_grad():
        for u, rows in zip(unit.kgen.factors(pan - lms), unit.kgen.rows, strict=True):
            torch.testing.assert_close(u.norm(dim=2), torch.full(u.norm(dim=2).shape,
                                                                 rows ** 0.5))
        z = plain.prior(pan, lms)
        small = (plain.kgen(z, pan - lms) - 1).abs().mean()
        large = (unit.kgen(z, pan - lms) - 1).abs().mean()
    assert large > 100 * small
