"""Our trained architectures (LAGConv, diffusion teacher/student, Fose) and the zoo registry.

Registry-driven checks for the new architectures at tiny sizes (forward shape, no NaN, every
parameter gets a gradient, the channel mapper makes the output, state_dict round trip),
decomposition of each, the teacher's DDIM sampler, and ``load_zoo``/``list_zoo``/``tta models``.
"""

from __future__ import annotations

import json
from functools import partial

import pytest
import torch
import torch.nn.functional as F
from _inputs import random_inputs
from click.testing import CliRunner

import pretrained
from pretrained.diffusion import (
    DiffusionTeacher,
    OneStepStudent,
    cosine_alpha_bar,
    ddim_timesteps,
)
from pretrained.fose import Fose
from pretrained.lagconv import LAGConv2d, LAGConvNet
from pretrained.zoo import (
    CARDS_DIR,
    WEIGHTS_DIR,
    list_zoo,
    load_zoo,
    model_from_weights,
    read_card,
    read_weights,
    save_weights,
)
from tta.decomposition import decompose, probe_inputs
from tta.errors import InputError, SensorError

NEW = ("diffusion_student", "diffusion_teacher", "fose", "lagconv")
CLASSES = {"diffusion_student": OneStepStudent, "diffusion_teacher": DiffusionTeacher,
           "fose": Fose, "lagconv": LAGConvNet}


_rand = partial(random_inputs, h=4)


def _model(name: str, n_bands: int = 4, seed: int = 0, **kw):
    torch.manual_seed(seed)
    if name == "diffusion_teacher":
        kw.setdefault("steps", 3)
    return pretrained.create_model(name, n_bands=n_bands, **kw)


# ----------------------------------------------------------------------------- registry
def test_new_architectures_are_registered():
    assert set(NEW) <= set(pretrained.list_models())
    for name, cls in CLASSES.items():
        assert pretrained.model_class(name) is cls
        assert cls.arch == name


@pytest.mark.parametrize("n_bands", [4, 8])
@pytest.mark.parametrize("name", NEW)
def test_forward_shape_and_finite(name, n_bands):
    net = _model(name, n_bands).eval()
    assert isinstance(net, pretrained.PansharpeningNet) and net.n_bands == n_bands
    ms, pan, lms = _rand(n_bands)
    with torch.no_grad():
        out = net(ms, pan, lms)
    assert out.shape == lms.shape and out.dtype == lms.dtype
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", NEW)
def test_every_parameter_gets_a_gradient(name):
    net = _model(name, 4, seed=1).double()
    ms, pan, lms = _rand(4, dtype=torch.float64, grad=True)
    net(ms, pan, lms).square().mean().backward()
    for pname, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
        assert p.grad.abs().sum() > 0, pname
    for tname in ("pan", "lms"):
        t = {"pan": pan, "lms": lms}[tname]
        assert t.grad is not None and t.grad.abs().sum() > 0, tname


@pytest.mark.parametrize("name", NEW)
def test_declared_mapper_makes_the_output(name):
    """``lms + mapper(f)`` (+ the branches' average for Fose), captured with hooks."""
    net = _model(name, 4, seed=2).double().eval()
    ms, pan, lms = _rand(4, dtype=torch.float64)
    watch = {"head": net.channel_mappers[0]}
    if name == "fose":
        watch.update(rs="student.unet.out_conv", re="e2e.conv_out")
    seen, handles = {}, []
    for key, mod_name in watch.items():
        mod = net.get_submodule(mod_name)
        assert isinstance(mod, torch.nn.Conv2d) and mod.out_channels == 4
        handles.append(mod.register_forward_hook(
            lambda m, i, o, key=key: seen.__setitem__(key, o)))
    with torch.no_grad():
        out = net(ms, pan, lms)
    for h in handles:
        h.remove()
    expected = lms + seen["head"]
    if name == "fose":
        expected = expected + 0.5 * (seen["rs"] + (lms + seen["re"] - lms))
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", NEW)
def test_state_dict_round_trip_and_band_inference(name):
    net = _model(name, 5)
    cls = pretrained.model_class(name)
    sd = net.state_dict()
    assert cls.bands_in(sd) == 5
    other = _model(name, 5, seed=9)
    pretrained.load_state_dict(other, sd)
    for k, v in other.state_dict().items():
        assert torch.equal(v, sd[k]), k


@pytest.mark.parametrize("name", NEW)
def test_input_shape_errors(name):
    net = _model(name, 4)
    ms, pan, lms = _rand(4)
    with pytest.raises(InputError, match="pan must be"):
        net(ms, pan.expand(-1, 2, -1, -1), lms)
    with pytest.raises(InputError, match="lms must be"):
        net(ms, pan, lms[:, :3])


# ----------------------------------------------------------------------------- decomposition
@pytest.mark.parametrize("name", NEW)
def test_decompose_at_the_declared_mapper(name):
    net = _model(name, 4).eval()
    if name == "diffusion_teacher":
        net.steps = 10  # 10 UNet passes, the mapper called once (50: tests/test_decompose.py)
    dec = decompose(net, probe_size=32)
    assert dec.mapper_name == net.channel_mappers[0]
    assert dec.tail == "add" and "the search agrees" in dec.reason
    assert dec.feature_channels == dec.mapper.in_channels > 4
    assert dec.output_shape == (1, 4, 32, 32)
    names = [c.name for c in dec.candidates]
    if name == "diffusion_teacher":
        assert names == ["head"]  # unet.out_conv runs 49 times: never a candidate
    if name == "fose":
        effects = {c.name: c.effect for c in dec.candidates}
        assert effects == {"student.unet.out_conv": "nonlinear", "e2e.conv_out": "nonlinear",
                           "head": "add"}


def test_teacher_mapper_adapter_changes_the_last_step_only():
    from adapters import create_adapter

    net = _model("diffusion_teacher", 4, steps=2).eval()
    before = {n: p.detach().clone() for n, p in net.named_parameters()}
    ms, pan, lms = probe_inputs(4, 4, 32, seed=1)
    adapter = create_adapter("mapper").attach(decompose(net, probe_size=32))
    opt = torch.optim.Adam(adapter.trainable_parameters(), lr=1e-2)
    for _ in range(2):
        opt.zero_grad()
        (net(ms, pan, lms) - 1.1 * lms).abs().mean().backward()
        opt.step()
    moved = {n for n, p in net.named_parameters() if not torch.equal(p, before[n])}
    assert moved == {"head.weight", "head.bias"}


# ----------------------------------------------------------------------------- diffusion
def test_cosine_schedule_and_ddim_timesteps():
    ab = cosine_alpha_bar(1000)
    assert ab.shape == (1000,) and ab.dtype == torch.float64
    assert (ab[1:] < ab[:-1]).all() and ab[0] > 0.999 and ab[-1] < 1e-3
    ts = ddim_timesteps(1000, 50)
    assert len(ts) == 50 and ts[0] == 999 and ts[-1] == 0
    assert all(a > b for a, b in zip(ts, ts[1:], strict=False))
    assert ddim_timesteps(1000, 1) == [999]
    with pytest.raises(InputError, match="DDIM steps"):
        ddim_timesteps(1000, 0)


def test_teacher_ddim_one_and_fifty_steps():
    net = _model("diffusion_teacher", 4).eval()
    ms, pan, lms = _rand(4, b=1)
    calls = []
    hook = net.unet.up0.register_forward_hook(lambda *a: calls.append(1))
    with torch.no_grad():
        one = net(ms, pan, lms, steps=1)
        n_one = len(calls)
        fifty = net(ms, pan, lms, steps=50)
    hook.remove()
    assert n_one == 1 and len(calls) == 51
    assert torch.isfinite(one).all() and torch.isfinite(fifty).all()
    assert not torch.allclose(one, fifty)
    with torch.no_grad():  # the single step is the x0 prediction from x_T at t = T-1
        x_t = net.initial_noise(lms)
        torch.testing.assert_close(one, lms + net.denoise(x_t, 999, lms, pan))
        assert torch.equal(net(ms, pan, lms, steps=3), net(ms, pan, lms, steps=3))
    with pytest.raises(InputError, match="DDIM steps"):
        net(ms, pan, lms, steps=1001)


def test_teacher_noise_is_shared_across_the_batch_and_zeros_init():
    net = _model("diffusion_teacher", 4).eval()
    ms, pan, lms = _rand(4, b=1)
    with torch.no_grad():
        single = net(ms, pan, lms)
        pair = net(ms.expand(2, -1, -1, -1), pan.expand(2, -1, -1, -1),
                   lms.expand(2, -1, -1, -1))
        torch.testing.assert_close(pair[0], single[0])
        torch.testing.assert_close(pair[1], single[0])
        zeros = _model("diffusion_teacher", 4, init="zeros").eval()
        assert torch.equal(zeros.initial_noise(lms), torch.zeros_like(lms))
        assert torch.isfinite(zeros(ms, pan, lms)).all()
    with pytest.raises(InputError, match="init"):
        DiffusionTeacher(4, init="gauss")


def test_teacher_training_helpers_and_head_sync():
    net = _model("diffusion_teacher", 4)
    x0 = torch.rand(2, 4, 16, 16) - 0.5
    noise = torch.randn_like(x0)
    t = torch.tensor([0, 999])
    x_t = net.q_sample(x0, t, noise)
    ab = cosine_alpha_bar(1000)
    s = net.residual_scale
    assert s == 20.0
    torch.testing.assert_close(x_t[1], (ab[999].sqrt() * s * x0[1] + (1 - ab[999]).sqrt()
                                        * noise[1]).float())
    torch.testing.assert_close(x_t[0], (ab[0].sqrt() * s * x0[0] + (1 - ab[0]).sqrt()
                                        * noise[0]).float())
    assert net.denoise(x_t, t, torch.rand(2, 4, 16, 16), torch.rand(2, 1, 16, 16)).shape == \
        x0.shape
    assert torch.equal(net.head.weight, net.unet.out_conv.weight)
    with torch.no_grad():
        net.unet.out_conv.weight.add_(1.0)
    net.sync_head()
    assert torch.equal(net.head.weight, net.unet.out_conv.weight)


def test_student_starts_from_the_teacher_unet():
    teacher = _model("diffusion_teacher", 4, base=8)
    student = pretrained.create_model("diffusion_student", n_bands=4, base=8)
    student.init_from_teacher(teacher)
    for k, v in teacher.unet.state_dict().items():
        assert torch.equal(student.unet.state_dict()[k], v)
    with pytest.raises(InputError, match="does not match"):
        pretrained.create_model("diffusion_student", n_bands=4).init_from_teacher(teacher)


def test_unet_handles_odd_sizes():
    net = _model("diffusion_student", 4).eval()
    ms, pan, lms = torch.rand(1, 4, 5, 5), torch.rand(1, 1, 10, 10), torch.rand(1, 4, 10, 10)
    net.check_inputs = lambda *a: None  # any PAN-grid size (e.g. ratio 2 data)
    with torch.no_grad():
        assert net(ms, pan, lms).shape == (1, 4, 10, 10)
        assert net.unet.features(torch.zeros(1, 4, 9, 7), torch.tensor(3), torch.rand(1, 4, 9, 7),
                                 torch.rand(1, 1, 9, 7)).shape == (1, 32, 9, 7)


@pytest.mark.parametrize(("name", "kwargs", "finite"), [
    ("lagconv", {}, True), ("diffusion_student", {}, True), ("fose", {}, True),
    ("lagconv", {"gh": "global"}, False),
])
def test_receptive_field_is_local(name, kwargs, finite):
    """No image-wide statistics: tiled fusion in ``tta adapt`` equals whole-image fusion."""
    from tta.engine.adapt import receptive_radius

    net = _model(name, 4, **kwargs).eval()
    r = receptive_radius(lambda ms, pan, lms: net(ms, pan, lms), 4, 4,
                         device=torch.device("cpu"))
    assert (r < 40) if finite else (r == 128), r


# ----------------------------------------------------------------------------- LAGConv, Fose
def test_lagconv_is_a_plain_conv_with_neutral_context():
    torch.manual_seed(3)
    conv = LAGConv2d(6, 5).double()
    with torch.no_grad():
        conv.lca2.weight.zero_()
        conv.lca2.bias.zero_()  # 2 sigmoid(0) = 1 on every tap
        conv.gh.weight.zero_()
    x = torch.rand(2, 6, 9, 11, dtype=torch.float64)
    torch.testing.assert_close(conv(x), F.conv2d(x, conv.weight, conv.bias, padding=1))
    with torch.no_grad():
        conv.lca2.bias.fill_(3.0)  # a uniform modulation scales the kernel
    m = 2 * torch.sigmoid(torch.tensor(3.0, dtype=torch.float64))
    torch.testing.assert_close(conv(x), F.conv2d(x, conv.weight * m, conv.bias, padding=1))
    with pytest.raises(ValueError, match="odd"):
        LAGConv2d(4, 4, kernel_size=2)
    glob = LAGConv2d(6, 5, gh="global").double()
    with torch.no_grad():  # the paper's GH: one bias shift per image from the global mean
        glob.lca2.weight.zero_()
        glob.lca2.bias.zero_()
        glob.gh.weight.fill_(0.1)
    shift = 0.1 * x.mean(dim=(2, 3)).sum(1)
    expected = F.conv2d(x, glob.weight, glob.bias, padding=1) + shift[:, None, None, None]
    torch.testing.assert_close(glob(x), expected)
    with pytest.raises(InputError, match="gh must be"):
        LAGConvNet(4, gh="both")


def test_fose_branch_choice_and_freezable_parts():
    net = pretrained.create_model("fose", n_bands=4, e2e="fusionnet").eval()
    assert net.e2e.arch == "fusionnet" and set(net.branches()) == {"student", "e2e"}
    assert net.hparams()["e2e"] == "fusionnet"
    dec = decompose(net, probe_size=32)
    assert dec.mapper_name == "head" and dec.tail == "add"
    own = {id(p) for p in net.adaptor_parameters()}
    branch = {id(p) for b in net.branches().values() for p in b.parameters()}
    assert own.isdisjoint(branch)
    assert len(own) + len(branch) == len(list(net.parameters()))
    for bad in ("diffusion_student", "fose"):
        with pytest.raises(InputError, match="end-to-end"):
            pretrained.create_model("fose", n_bands=4, e2e=bad)


# ----------------------------------------------------------------------------- zoo files
def _save(tmp_path, name="lagconv", sensor="WV3", card=True, **kw):
    from tta.sensors import get_sensor

    s = get_sensor(sensor)
    net = _model(name, s.n_bands, **kw).eval()
    stem = f"{name}_{s.name.lower()}"
    hp = net.hparams()
    save_weights(net, tmp_path / f"{stem}.safetensors",
                 metadata={"arch_kwargs": hp, "sensor": s.name, "bands": ",".join(s.bands),
                           "ratio": "4", "max_value": "2047.0"})
    if card:
        (tmp_path / f"{stem}.yaml").write_text(
            f"name: {stem}\narch: {name}\nsensor: {s.name}\nparameters: 1\nstage: e2e\n"
            "training:\n  epochs: 3\n  data:\n  - {file: wv3/a_rr.h5, licence: GPL-3.0}\n"
            "held_out: {Q2n: 0.5, SAM: 4.0, ERGAS: 3.0}\n")
    return net, stem


def test_load_zoo_missing_weights_message(tmp_path):
    with pytest.raises(InputError) as err:
        load_zoo("fose", weights_dir=tmp_path)
    msg = str(err.value)
    assert msg.startswith("no shipped weights for 'fose' (sensor WV3) yet; pass --weights FILE "
                          "or train them with tta train")
    with pytest.raises(InputError, match=r"'fose' \(sensor QB\)"):
        load_zoo("fose:qb", weights_dir=tmp_path)
    with pytest.raises(InputError, match=r"'lagconv' \(sensor WV2\)"):
        load_zoo("lagconv", sensor="wv2", weights_dir=tmp_path)
    with pytest.raises(InputError, match="unknown model 'fosee'"):
        load_zoo("fosee", weights_dir=tmp_path)
    with pytest.raises(SensorError):
        load_zoo("fose:nosat", weights_dir=tmp_path)


def test_resolve_model_uses_the_zoo():
    from tta.models import resolve_model

    net = resolve_model("lagconv:qb")
    assert net.n_bands == 4 and net.weights_record.file == "lagconv_qb.safetensors"
    with pytest.raises(InputError, match="no shipped weights for 'lagconv' \\(sensor GF2\\)"):
        resolve_model("lagconv:gf2")


def test_resolve_model_reads_trained_safetensors(tmp_path):
    from tta.models import resolve_model

    net, stem = _save(tmp_path, "lagconv", card=False)
    path = tmp_path / f"{stem}.safetensors"
    ms, pan, lms = _rand(8, b=1)
    with torch.no_grad():
        want = net(ms, pan, lms)
        for loaded in (resolve_model(str(path)), resolve_model("lagconv", weights=path),
                       resolve_model(str(path), sensor="WV2")):
            assert type(loaded) is type(net) and torch.equal(loaded(ms, pan, lms), want)
    with pytest.raises(InputError, match="holds a 'lagconv' model, not 'fose'"):
        resolve_model("fose", weights=path)
    with pytest.raises(InputError, match="8-band model cannot fuse a 4-band"):
        resolve_model(str(path), sensor="QB")


@pytest.mark.parametrize("name", ["lagconv", "diffusion_teacher"])
def test_load_zoo_round_trip(tmp_path, name):
    net, stem = _save(tmp_path, name)
    loaded = load_zoo(f"{name}:wv3", weights_dir=tmp_path, cards_dir=tmp_path / "none")
    assert type(loaded) is type(net) and not loaded.training
    ms, pan, lms = _rand(8, b=1)
    with torch.no_grad():
        assert torch.equal(loaded(ms, pan, lms), net(ms, pan, lms))
    rec = loaded.weights_record
    assert rec.arch == name and rec.sensor == "WV3" and rec.n_bands == 8
    assert rec.training_data == "wv3/a_rr.h5" and rec.licence == "GPL-3.0"
    assert loaded.card["held_out"]["Q2n"] == 0.5
    sd, meta = read_weights(tmp_path / f"{stem}.safetensors")
    assert meta["arch"] == name and set(sd) == set(net.state_dict())


def test_model_from_weights_checks(tmp_path):
    _save(tmp_path, "lagconv", card=False)
    path = tmp_path / "lagconv_wv3.safetensors"
    with pytest.raises(InputError, match="holds a 'lagconv' model, not 'fose'"):
        model_from_weights(path, "fose")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a safetensors file")
    with pytest.raises(InputError, match="not a readable safetensors"):
        read_weights(bad)
    with pytest.raises(InputError, match="not found"):
        read_weights(tmp_path / "missing.safetensors")
    from tta.errors import OutputError

    with pytest.raises(OutputError, match="already exists"):
        save_weights(_model("lagconv", 8), path)


def test_list_zoo_and_models_command(tmp_path):
    assert list_zoo(tmp_path, tmp_path) == []
    _save(tmp_path, "lagconv")
    (tmp_path / "fose_qb.yaml").write_text("name: fose_qb\narch: fose\nsensor: QB\n")
    cards = list_zoo(tmp_path, tmp_path)
    assert [c["name"] for c in cards] == ["fose_qb", "lagconv_wv3"]
    assert [c["weights_present"] for c in cards] == [False, True]

    from tta.cli import cli

    res = CliRunner().invoke(cli, ["models"])
    assert res.exit_code == 0, res.output
    for name in pretrained.list_models():
        assert name in res.output
    assert "155,746" in res.output  # lagconv at 8 bands
    # one table of weights: the DLPan records and the shipped zoo, each with its source
    recs = pretrained.list_weights()
    assert "weights (28: 14 DLPan-Toolbox, 14 shipped zoo)" in res.output
    lines = {ln.split()[0]: ln for ln in res.output.splitlines() if ln.startswith("  ")}
    for r in recs:
        line = lines[r.file]
        assert line.split()[1:4] == [r.arch, r.sensor, str(r.n_bands)]
        assert ("shipped zoo" if r.origin == "zoo" else "DLPan-Toolbox") in line
    assert "--model lagconv:qb" in lines["lagconv_qb.safetensors"]
    assert "--model fusionnet --weights FILE" in lines["dlpan/wv3/fusionnet.pth"]
    card = read_card(CARDS_DIR / "lagconv_qb.yaml")
    assert f"Q2n {card['held_out']['Q2n']:.4f}" in lines["lagconv_qb.safetensors"]
    res = CliRunner().invoke(cli, ["models", "--json", "--bands", "4"])
    data = json.loads(res.output)
    archs = {a["name"]: a for a in data["architectures"]}
    assert set(archs) == set(pretrained.list_models())
    assert archs["fose"]["channel_mapper"] == "head"
    assert archs["fose"]["known_checkpoints"] == 4
    assert archs["diffusion_teacher"]["parameters"] == sum(
        p.numel() for p in pretrained.create_model("diffusion_teacher", 4).parameters())
    weights = {w["file"]: w for w in data["weights"]}
    assert list(weights) == [r.file for r in recs]
    assert weights["fose_qb.safetensors"]["origin"] == "zoo"
    assert weights["fose_qb.safetensors"]["path"] == str(WEIGHTS_DIR / "fose_qb.safetensors")
    assert weights["fose_qb.safetensors"]["held_out"] == card_of("fose_qb")["held_out"]
    assert weights["dlpan/qb/pnn.pth"]["origin"] == "dlpan"
    assert weights["dlpan/qb/pnn.pth"]["path"] is None


def card_of(stem: str):
    return read_card(CARDS_DIR / f"{stem}.yaml")


def test_zoo_records_are_what_load_zoo_attaches():
    """The shipped files' records are built once from the cards; loading attaches the same
    object, whose fields equal the file's own metadata and the model's band count."""
    for spec in ("fose", "fose:qb", "lagconv:wv3", "ksdiff"):
        net = load_zoo(spec)
        rec = net.weights_record
        assert pretrained.find_weights_record(rec.sha256) is rec and rec.origin == "zoo"
        meta = read_weights(WEIGHTS_DIR / rec.file)[1]
        assert rec.n_bands == net.n_bands == int(meta["n_bands"])
        assert ",".join(rec.bands) == meta["bands"] and rec.sensor == meta["sensor"]
        assert rec.max_value == float(meta["max_value"]) and rec.ratio == int(meta["ratio"])
        assert rec.training_data == ", ".join(card_of(rec.file[:-12]).training_files)
