"""The model zoo: registry-driven model tests, checkpoint loading, and agreement with the
original DLPan-Toolbox forward passes on the community checkpoints.

The checkpoints are GPL test assets read from ``../shared/weights`` (or $TTA_SHARED_WEIGHTS);
tests that need them skip with the reason when they are absent. The reference forward passes
below restate each original ``forward`` (DLPan-Toolbox ``01-DL-toolbox(Pytorch)/UDL/
pansharpening/models/<Arch>/model_<arch>.py`` plus the inputs its ``val_step`` builds) with plain
``torch.nn.functional`` calls on the raw state_dict tensors, independently of ``pretrained``.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from _inputs import random_inputs
from scipy.ndimage import uniform_filter

import pretrained
from pretrained.pannet import box_highpass
from tta.errors import InputError

REPO = Path(__file__).resolve().parents[1]
ARCHS = ("dicnn", "fusionnet", "msdcnn", "pannet", "pnn")
TOL = 1e-5


# ----------------------------------------------------------------------------- fixtures
def shared_weights_dir() -> Path:
    """$TTA_SHARED_WEIGHTS, else ../shared/weights beside the repository."""
    env = os.environ.get("TTA_SHARED_WEIGHTS")
    return Path(env) if env else REPO.parent / "shared" / "weights"


def _checkpoint_params() -> list:
    files = sorted(shared_weights_dir().glob("dlpan/*/*.pth"))
    if not files:
        return [pytest.param(None, id="no-weights")]
    return [pytest.param(f, id=f"{f.parent.name}-{f.stem}") for f in files]


@pytest.fixture(scope="session")
def weights_dir() -> Path:
    d = shared_weights_dir()
    if not (d / "dlpan").is_dir():
        pytest.skip(f"community checkpoints folder {d}/dlpan is absent "
                    "(set TTA_SHARED_WEIGHTS to the folder holding dlpan/<sensor>/<arch>.pth)")
    return d


@pytest.fixture(params=_checkpoint_params())
def checkpoint(request, weights_dir) -> Path:
    if request.param is None:
        pytest.skip(f"no checkpoint under {weights_dir}/dlpan/*/*.pth")
    return request.param


def _inputs(scene, y0: int = 0, x0: int = 0, size: int | None = None, dtype=torch.float32):
    """(ms, pan, lms, gt) of a scene (optionally a PAN-grid crop), divided by max_value."""
    from tta.physics import interp23tap

    r, mv = scene.ratio, scene.max_value
    ms = torch.from_numpy(scene.ms)[None].to(torch.float64) / mv
    pan = torch.from_numpy(scene.pan)[None, None].to(torch.float64) / mv
    gt = None if scene.gt is None else torch.from_numpy(scene.gt)[None].to(torch.float64)
    if size is not None:
        ms = ms[..., y0 // r:(y0 + size) // r, x0 // r:(x0 + size) // r]
        pan = pan[..., y0:y0 + size, x0:x0 + size]
        gt = None if gt is None else gt[..., y0:y0 + size, x0:x0 + size]
    lms = interp23tap(ms, r)
    return ms.to(dtype), pan.to(dtype), lms.to(dtype), gt


@pytest.fixture(scope="session")
def wv3_scene(data_dir):
    from tta.io import read_scene

    p = data_dir / "wv3" / "wv3_cdif_rr.h5"
    if not p.is_file():
        pytest.skip(f"real data file {p} is absent")
    return read_scene(p)


@pytest.fixture(scope="session")
def wv2_reduced(data_dir):
    from tta.io import read_scene
    from tta.physics import degrade_scene

    p = data_dir / "wv2" / "wv2_grip_top_fr.h5"
    if not p.is_file():
        pytest.skip(f"real data file {p} is absent")
    return degrade_scene(read_scene(p))


# ----------------------------------------------------------------------------- registry
def test_registry_is_the_tested_set():
    # community architectures (tested here) + our zoo's own (tested in test_zoo.py)
    zoo = ("diffusion_student", "diffusion_teacher", "fose", "ksdiff", "lagconv")  # + test_ksdiff
    assert pretrained.list_models() == sorted(ARCHS + zoo)
    assert pretrained.list_models("*net") == ["fusionnet", "pannet"]
    assert all(pretrained.is_model(a) for a in ARCHS)
    assert not pretrained.is_model("unet")


def test_unknown_model_lists_close_matches():
    with pytest.raises(InputError, match=r"unknown model 'fusionet'.*did you mean fusionnet"):
        pretrained.create_model("fusionet")
    with pytest.raises(InputError, match="unknown model"):
        pretrained.load("nope", weights="x.pth")


def test_bad_band_count():
    with pytest.raises(InputError, match="n_bands"):
        pretrained.create_model("dicnn", n_bands=0)


def test_register_twice_is_an_error():
    with pytest.raises(ValueError, match="already registered"):
        pretrained.register_model(pretrained.registry._MODELS["pnn"])


_rand = random_inputs


@pytest.mark.parametrize("n_bands", [4, 8])
@pytest.mark.parametrize("name", ARCHS)
def test_forward_shape_and_finite(name, n_bands):
    torch.manual_seed(0)
    net = pretrained.create_model(name, n_bands=n_bands)
    assert isinstance(net, pretrained.PansharpeningNet)
    assert net.arch == name and net.n_bands == n_bands
    ms, pan, lms = _rand(n_bands)
    out = net(ms, pan, lms)
    assert out.shape == lms.shape and out.dtype == lms.dtype
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", ARCHS)
def test_every_parameter_gets_a_gradient(name):
    torch.manual_seed(1)
    net = pretrained.create_model(name, n_bands=4).double()
    ms, pan, lms = _rand(4, dtype=torch.float64, grad=True)
    net(ms, pan, lms).square().mean().backward()
    for pname, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
        assert p.grad.abs().sum() > 0, pname
    for tname, t in (("pan", pan), ("lms", lms), ("ms", ms)):
        if tname in net.uses:
            assert t.grad is not None and t.grad.abs().sum() > 0, tname


@pytest.mark.parametrize("name", ARCHS)
def test_channel_mappers_and_residual(name):
    """The named mappers are C-channel convs whose outputs make the result (hook interface)."""
    torch.manual_seed(2)
    net = pretrained.create_model(name, n_bands=4).double().eval()
    ms, pan, lms = _rand(4, dtype=torch.float64)
    mods = net.mapper_modules()
    assert tuple(mods) == net.channel_mappers
    seen = {}
    handles = []
    for mname, mod in mods.items():
        assert isinstance(mod, torch.nn.Conv2d) and mod.out_channels == 4
        handles.append(mod.register_forward_hook(
            lambda m, i, o, key=mname: seen.__setitem__(key, o)))
    out = net(ms, pan, lms)
    for h in handles:
        h.remove()
    mapped = sum(seen[n] for n in net.channel_mappers)
    if name == "msdcnn":
        expected = torch.relu(mapped)
    else:
        expected = lms + mapped if net.adds_lms else mapped
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", ARCHS)
def test_band_inference_and_state_dict_roundtrip(name):
    net = pretrained.create_model(name, n_bands=5)
    cls = pretrained.model_class(name)
    assert cls is type(net)
    sd = net.state_dict()
    assert cls.bands_in(sd) == 5
    other = pretrained.create_model(name, n_bands=5)
    pretrained.load_state_dict(other, sd)
    for k, v in other.state_dict().items():
        assert torch.equal(v, sd[k]), k


@pytest.mark.parametrize("name", ARCHS)
def test_input_shape_errors(name):
    net = pretrained.create_model(name, n_bands=4)
    ms, pan, lms = _rand(4)
    with pytest.raises(InputError, match="lms must be"):
        net(ms, pan, lms[:, :3])
    with pytest.raises(InputError, match="pan must be"):
        net(ms, pan.expand(-1, 2, -1, -1), lms)


def test_pannet_needs_ratio_4():
    net = pretrained.create_model("pannet", n_bands=4)
    ms, pan, lms = _rand(4)
    with pytest.raises(InputError, match="built-in ratio 4"):
        net(ms[..., :4, :4], pan, lms)
    with pytest.raises(InputError, match="at least 3x3"):
        net(ms[..., :2, :2], pan[..., :8, :8], lms[..., :8, :8])


def test_pnn_alignment_is_centred_replicate_padding():
    """Inside, PNN equals its valid (unpadded) convs with the output shifted by blk = 8."""
    torch.manual_seed(3)
    net = pretrained.create_model("pnn", n_bands=4).double().eval()
    assert net.pad == 8
    ms, pan, lms = _rand(4, h=12, dtype=torch.float64)
    out = net(ms, pan, lms)
    x = torch.cat([lms, pan], 1)
    valid = F.conv2d(x, net.conv1.weight, net.conv1.bias).relu()
    valid = F.conv2d(valid, net.conv2.weight, net.conv2.bias).relu()
    valid = F.conv2d(valid, net.conv3.weight, net.conv3.bias)
    torch.testing.assert_close(out[..., 8:-8, 8:-8], valid, rtol=0, atol=1e-12)


def test_box_highpass_matches_reflect101_box_filter():
    g = torch.Generator().manual_seed(4)
    x = torch.rand(2, 3, 11, 9, generator=g, dtype=torch.float64)
    ref = x.numpy() - uniform_filter(x.numpy(), size=(1, 1, 5, 5), mode="mirror")
    np.testing.assert_allclose(box_highpass(x).numpy(), ref, rtol=0, atol=1e-12)


# ----------------------------------------------------------------------------- loading
def _save(tmp_path: Path, obj, name: str = "ckpt.pth") -> Path:
    p = tmp_path / name
    torch.save(obj, p)
    return p


def _original_layout(name: str, n_bands: int = 4) -> dict:
    """A random state_dict laid out as the original module saves it."""
    torch.manual_seed(5)
    sd = dict(pretrained.create_model(name, n_bands=n_bands).state_dict())
    if name in ("fusionnet", "pannet"):
        for k in list(sd):
            if k.startswith("res"):
                idx, _, rest = k[3:].partition(".")
                sd[f"backbone.{int(idx) - 1}.{rest}"] = sd[k].clone()
    return sd


@pytest.mark.parametrize("name", ARCHS)
def test_load_original_layout(tmp_path, name):
    sd = _original_layout(name, n_bands=4)
    net = pretrained.load(name, _save(tmp_path, sd))
    assert not net.training and net.n_bands == 4 and net.weights_record is None
    own = net.state_dict()
    assert set(own) == {k for k in sd if not k.startswith("backbone.")}
    for k, v in own.items():
        assert torch.equal(v, sd[k]), k


def test_load_backbone_only_and_wrapped(tmp_path):
    sd = _original_layout("fusionnet")
    only_backbone = {k: v for k, v in sd.items() if not k.startswith("res")}
    wrapped = {"epoch": 3, "state_dict": {f"module.{k}": v for k, v in only_backbone.items()}}
    net = pretrained.load("fusionnet", _save(tmp_path, wrapped))
    assert torch.equal(net.res2.conv21.weight, sd["res2.conv21.weight"])


def test_load_duplicate_mismatch(tmp_path):
    sd = _original_layout("pannet")
    sd["backbone.1.conv20.weight"] = sd["backbone.1.conv20.weight"] + 1
    with pytest.raises(InputError, match="duplicate 'backbone' copy of 'res2.conv20.weight'"):
        pretrained.load("pannet", _save(tmp_path, sd))


def test_load_missing_and_unexpected_keys(tmp_path):
    sd = _original_layout("dicnn")
    extra = dict(sd, **{"conv9.weight": torch.zeros(1)})
    with pytest.raises(InputError, match=r"not a 'dicnn' checkpoint.*unexpected keys conv9"):
        pretrained.load("dicnn", _save(tmp_path, extra, "extra.pth"))
    missing = {k: v for k, v in sd.items() if k != "conv2.bias"}
    with pytest.raises(InputError, match="missing keys conv2.bias"):
        pretrained.load("dicnn", _save(tmp_path, missing, "missing.pth"))


def test_load_wrong_architecture_names_the_right_one(tmp_path):
    p = _save(tmp_path, _original_layout("pnn"))
    with pytest.raises(InputError, match=r"not a 'fusionnet' checkpoint; it loads as 'pnn'"):
        pretrained.load("fusionnet", p)


def test_load_band_mismatch_with_sensor(tmp_path):
    p = _save(tmp_path, _original_layout("dicnn", n_bands=4))
    with pytest.raises(InputError, match="checkpoint has 4 bands but sensor WV3 has 8"):
        pretrained.load("dicnn", p, sensor="WV3")
    assert pretrained.load("dicnn", p, sensor="QB").n_bands == 4
    with pytest.raises(InputError, match="sensor 'NOPE'"):
        pretrained.load("dicnn", p, sensor="NOPE")


def test_load_file_errors(tmp_path):
    with pytest.raises(InputError, match="checkpoint file not found"):
        pretrained.load("pnn", tmp_path / "absent.pth")
    with pytest.raises(InputError, match="not a file"):
        pretrained.load("pnn", tmp_path)
    junk = tmp_path / "junk.pth"
    junk.write_text("not a checkpoint\n")
    with pytest.raises(InputError, match="not a readable PyTorch checkpoint"):
        pretrained.load("pnn", junk)
    with pytest.raises(InputError, match="not a state_dict"):
        pretrained.load("pnn", _save(tmp_path, [torch.zeros(2)], "list.pth"))
    # weights_only=True refuses arbitrary pickled objects
    evil = tmp_path / "obj.pth"
    with evil.open("wb") as fh:
        pickle.dump({"conv1.weight": Path("x")}, fh, protocol=2)
    with pytest.raises(InputError, match="not a readable PyTorch checkpoint"):
        pretrained.load("pnn", evil)
    msg = ""
    try:
        pretrained.load("pnn", junk)
    except InputError as exc:
        msg = str(exc)
    assert "\n" not in msg


#: The shipped zoo files (pretrained/weights), records of the same set as the DLPan files.
ZOO_FILES = {f"{stem}.safetensors" for stem in (
    "diffusion_student_qb", "diffusion_student_wv3", "diffusion_teacher_qb",
    "diffusion_teacher_wv3", "fose_qb", "fose_qb_fuse", "fose_wv3", "fose_wv3_fuse",
    "fusionnet_backbone_qb", "fusionnet_backbone_wv3", "ksdiff_qb", "ksdiff_wv3",
    "lagconv_qb", "lagconv_wv3")}


def test_weights_records():
    recs = pretrained.list_weights()
    dlpan = [r for r in recs if r.origin == "dlpan"]
    zoo = [r for r in recs if r.origin == "zoo"]
    assert len(recs) == len(dlpan) + len(zoo)
    assert {r.arch for r in dlpan} == set(ARCHS)
    assert len(dlpan) == 14
    assert {r.file for r in zoo} == ZOO_FILES and len(zoo) == 14
    assert recs == dlpan + zoo  # sorted by origin, then file
    for r in zoo:  # our shipped files: their card, their folder, the sensor's band count
        assert r.card == r.file.replace(".safetensors", ".yaml")
        assert (Path(pretrained.__file__).parent / "weights" / r.file).is_file()
        assert r.n_bands == {"WV3": 8, "QB": 4}[r.sensor]
        assert r.max_value == 2047.0 and r.ratio == 4
        assert pretrained.find_weights_record(r.sha256) is r
    for r in dlpan:
        assert pretrained.find_weights_record(r.sha256) is r
        assert r.file == f"dlpan/{r.sensor.lower()}/{r.arch}.pth"
        assert r.n_bands == {"WV3": 8, "WV2": 8, "QB": 4}[r.sensor]
        assert r.max_value == 2047.0 and r.ratio == 4


# ----------------------------------------------------------------------------- checkpoints
def test_checkpoint_loads_exactly(checkpoint):
    name = checkpoint.stem
    raw = torch.load(checkpoint, map_location="cpu", weights_only=True)
    net = pretrained.load(name, checkpoint)
    rec = net.weights_record
    assert rec is not None and rec.arch == name
    assert rec.sensor.lower() == checkpoint.parent.name
    in_ch = next(m for m in net.modules() if isinstance(m, torch.nn.Conv2d)).in_channels
    assert net.n_bands == rec.n_bands
    assert in_ch == rec.n_bands + (0 if name == "fusionnet" else 1)
    # documented mapping: the only dropped keys are the identical backbone copies
    own = net.state_dict()
    dropped = set(raw) - set(own)
    assert set(own) <= set(raw)
    for k in dropped:
        assert name in ("fusionnet", "pannet") and k.startswith("backbone.")
        idx, _, rest = k[len("backbone."):].partition(".")
        assert torch.equal(raw[k], raw[f"res{int(idx) + 1}.{rest}"])
    for k, v in own.items():
        assert torch.equal(v, raw[k]), k


def _conv(x, sd, key, pad):
    return F.conv2d(x, sd[f"{key}.weight"], sd[f"{key}.bias"], padding=pad)


def _res(x, sd, prefix):
    return x + _conv(F.relu(_conv(x, sd, f"{prefix}.conv20", 1)), sd, f"{prefix}.conv21", 1)


def _ref_forward(name: str, sd: dict, ms, pan, lms):
    """The original DLPan-Toolbox forward (+ the val_step input preparation) restated."""
    c = lms.shape[1]
    if name == "fusionnet":  # forward(lms, pan); val_step: sr = lms + res
        x = F.relu(_conv(pan.repeat(1, c, 1, 1) - lms, sd, "conv1", 1))
        for k in range(4):
            x = _res(x, sd, f"backbone.{k}")
        return lms + _conv(x, sd, "conv3", 1)
    if name == "pannet":  # get_edge: img - cv2.boxFilter(img, -1, (5, 5)), reflect-101
        def hp(t):
            a = t.double().numpy()
            return torch.from_numpy(a - uniform_filter(a, size=(1, 1, 5, 5), mode="mirror")
                                    ).to(t.dtype)

        up = F.conv_transpose2d(hp(ms), sd["deconv.weight"], sd["deconv.bias"],
                                stride=4, padding=2)
        x = F.relu(_conv(torch.cat([up, hp(pan)], 1), sd, "conv1", 1))
        for k in range(4):
            x = _res(x, sd, f"backbone.{k}")
        return lms + _conv(x, sd, "conv3", 1)
    if name == "pnn":  # val_step: F.pad(cat(lms, pan), (blk,)*4, 'replicate'), blk = 8
        x = F.pad(torch.cat([lms, pan], 1), (8, 8, 8, 8), mode="replicate")
        x = F.relu(_conv(x, sd, "conv1", 0))
        x = F.relu(_conv(x, sd, "conv2", 0))
        return _conv(x, sd, "conv3", 0)
    if name == "dicnn":  # forward(lms, pan) returns lms + out
        x = F.relu(_conv(torch.cat([lms, pan], 1), sd, "conv1", 1))
        x = F.relu(_conv(x, sd, "conv2", 1))
        return lms + _conv(x, sd, "conv3", 1)
    if name == "msdcnn":  # forward(lms, pan), no residual, final relu
        x = torch.cat([lms, pan], 1)
        o1 = F.relu(_conv(x, sd, "conv1", 3))
        o2 = torch.cat([_conv(o1, sd, "conv2_1", 1), _conv(o1, sd, "conv2_2", 2),
                        _conv(o1, sd, "conv2_3", 3)], 1)
        o2 = F.relu(o2 + o1)
        o3 = F.relu(_conv(o2, sd, "conv3", 1))
        o4 = torch.cat([_conv(o3, sd, "conv4_1", 1), _conv(o3, sd, "conv4_2", 2),
                        _conv(o3, sd, "conv4_3", 3)], 1)
        o4 = F.relu(o4 + o3)
        s = F.relu(_conv(x, sd, "shallow1", 4))
        s = F.relu(_conv(s, sd, "shallow2", 0))
        return F.relu(_conv(o4, sd, "conv5", 2) + _conv(s, sd, "shallow3", 2))
    raise AssertionError(name)


def test_checkpoint_matches_original_forward(checkpoint, data_dir):
    from tta.io import read_scene

    name = checkpoint.stem
    bands = {"qb": 4}.get(checkpoint.parent.name, 8)
    rel = "qb/qb_abfnet_train_rr.h5" if bands == 4 else "wv3/wv3_cdif_rr.h5"
    if not (data_dir / rel).is_file():
        pytest.skip(f"real data file {data_dir / rel} is absent")
    scene = read_scene(data_dir / rel)
    ms, pan, lms, _ = _inputs(scene, y0=96, x0=128, size=64)
    raw = torch.load(checkpoint, map_location="cpu", weights_only=True)
    net = pretrained.load(name, checkpoint)
    with torch.no_grad():
        out = net(ms, pan, lms)
        ref = _ref_forward(name, raw, ms, pan, lms)
    assert out.shape == ref.shape == lms.shape
    diff = (out - ref).abs().max().item()
    assert diff <= TOL, f"{checkpoint}: max |ours - original| = {diff:.3g}"
    # real fused output: not a copy of lms, in a plausible range
    assert (out - lms).abs().max() > 1e-3
    assert abs(out.mean() - lms.mean()) < 0.05
    assert -0.5 < out.min() and out.max() < 2.0


def _q2n_sam_ergas(gt_dn, fused):
    from tta.metrics import rr_metrics

    m = rr_metrics(gt_dn, fused.to(torch.float64) * 2047.0, 4, 2047.0)
    return {k: float(torch.as_tensor(m[k]).reshape(-1)[0]) for k in ("Q2n", "SAM", "ERGAS")}


@pytest.mark.parametrize("case", ["wv3-on-wv3", "wv2-on-wv2"])
def test_in_sensor_fusionnet_beats_exp(case, weights_dir, request):
    """In-sensor FusionNet on a reduced-resolution scene beats EXP (23-tap upsampling)."""
    sensor = case.split("-")[0]
    ckpt = weights_dir / "dlpan" / sensor / "fusionnet.pth"
    if not ckpt.is_file():
        pytest.skip(f"checkpoint {ckpt} is absent")
    scene = request.getfixturevalue("wv3_scene" if sensor == "wv3" else "wv2_reduced")
    ms, pan, lms, gt = _inputs(scene)
    net = pretrained.load("fusionnet", ckpt, sensor=sensor.upper())
    with torch.no_grad():
        fused = net(ms, pan, lms)
    exp = _q2n_sam_ergas(gt, lms)
    ours = _q2n_sam_ergas(gt, fused)
    assert ours["Q2n"] > exp["Q2n"] + 0.05, (ours, exp)
    assert ours["SAM"] < exp["SAM"], (ours, exp)
    assert ours["ERGAS"] < exp["ERGAS"], (ours, exp)
