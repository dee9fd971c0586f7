"""Training: data building and splits, patches, the five stages, outputs, and `tta train`.

Every run here is a few optimiser steps on tiny crops (seconds on a CPU); the real-data smoke
test skips when ../shared/data is absent.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml
from click.testing import CliRunner

import pretrained
from pretrained.card import CARD_KEYS, ModelCard
from pretrained.zoo import load_zoo, model_from_weights
from tta.errors import InputError, OutputError
from tta.io import Scene, write_h5
from tta.sensors import get_sensor
from tta.training import (
    PatchSampler,
    load_pairs,
    parse_data_spec,
    shift_pan,
    split_rows,
    train,
)
from tta.training.data import resolve_spec, to_pair

FAST = {"epochs": 1, "steps_per_epoch": 2, "patch": 16, "batch": 2, "device": "cpu"}


def _image(sensor: str = "QB", size: int = 64, seed: int = 0) -> tuple[np.ndarray, ...]:
    """A smooth random HRMS ``x`` and its known PAN (band mean) and MS (4x4 block mean)."""
    s = get_sensor(sensor)
    g = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    x = np.stack([
        700 + 250 * np.sin(2 * np.pi * (k + 1) * xx + g.uniform(0, 6))
        * np.cos(2 * np.pi * (k + 2) * yy + g.uniform(0, 6)) + g.normal(0, 15, (size, size))
        for k in range(s.n_bands)]).clip(1, None)
    r = s.ratio
    ms = x.reshape(s.n_bands, size // r, r, size // r, r).mean(axis=(2, 4))
    return x, x.mean(axis=0), ms


def _rr(sensor="QB", size=64, seed=0) -> Scene:
    x, pan, ms = _image(sensor, size, seed)
    return Scene(ms=ms, pan=pan, gt=x, sensor=get_sensor(sensor), source=f"rr{seed}")


def _fr(sensor="QB", size=64, seed=0) -> Scene:
    x, pan, ms = _image(sensor, size, seed)
    return Scene(ms=x[:, ::4, ::4], pan=np.kron(x.mean(0)[::4, ::4], np.ones((4, 4))),
                 sensor=get_sensor(sensor), source=f"fr{seed}")


@pytest.fixture
def rr_file(tmp_path):
    p = tmp_path / "qb_rr.h5"
    write_h5(p, [_rr(seed=0), _rr(seed=1)])
    return p


# ----------------------------------------------------------------------------- data
def test_data_spec_parsing():
    assert parse_data_spec("a.h5").pan_shift is None
    src = parse_data_spec("dir/a_fr.h5#0@3,-1")
    assert src.spec == "dir/a_fr.h5#0" and src.pan_shift == (3, -1)
    assert src.text == "dir/a_fr.h5#0@3,-1"
    with pytest.raises(InputError, match="two integers"):
        parse_data_spec("a.h5@3")
    assert resolve_spec("wv3/a.h5@3,0", "/data") == "/data/wv3/a.h5@3,0"
    assert resolve_spec("m.tif+p.tif", "/d") == "/d/m.tif+/d/p.tif"
    assert resolve_spec("/abs/a.h5", "/d") == "/abs/a.h5"


@pytest.mark.parametrize(("dy", "dx"), [(3, 0), (-5, 2), (0, 0)])
def test_shift_pan_aligns_displaced_pan(dy, dx):
    s = get_sensor("QB")
    big = np.arange(48 * 48, dtype=np.float32).reshape(48, 48) + 1
    ms = np.ones((4, 12, 12), np.float32) * np.arange(12, dtype=np.float32)[:, None] + 1
    scene = Scene(ms=ms, pan=big, sensor=s)
    out = shift_pan(scene, dy, dx)
    i0, j0 = max(0, -(dy // 4)), max(0, -(dx // 4))
    assert out.pan[0, 0] == big[4 * i0 + dy, 4 * j0 + dx]
    assert out.ms[0, 0, 0] == ms[0, i0, j0]
    assert out.pan.shape == (4 * out.ms.shape[1], 4 * out.ms.shape[2])
    assert out.meta["pan_shift"] == [dy, dx]
    with pytest.raises(InputError, match="no overlap"):
        shift_pan(scene, 60, 0)


def test_split_rows_holds_out_the_bottom_strip():
    scene = _rr(size=128)
    train_part, val = split_rows(scene, 0.2, 64)
    assert val is not None
    assert train_part.pan.shape == (104, 128) and val.pan.shape == (24, 128)
    np.testing.assert_array_equal(val.gt, scene.gt[:, 104:])
    np.testing.assert_array_equal(train_part.ms, scene.ms[:, :26])
    small, none = split_rows(_rr(size=64), 0.2, 64)  # the rest could not hold a patch
    assert none is None and small.pan.shape == (64, 64)
    assert split_rows(scene, 0.0, 16)[1] is None


def test_load_pairs_degrades_full_resolution_and_uses_rr_gt(tmp_path, rr_file):
    fr = tmp_path / "qb_fr.h5"
    write_h5(fr, _fr(size=256))
    loaded = load_pairs([str(rr_file), str(fr)], "QB", val_fraction=0.25, patch=16)
    assert loaded.sensor.name == "QB"
    assert len(loaded.train) == 3 and len(loaded.val) == 3
    rr_pair = loaded.train[0]
    np.testing.assert_allclose(rr_pair.gt.numpy() * 2047, _rr(seed=0).gt[:, :48], rtol=1e-6)
    fr_pair = loaded.train[2]  # Wald: the reference is the FR MS (64x64, 48 rows kept)
    np.testing.assert_allclose(fr_pair.gt.numpy() * 2047, _fr(size=256).ms[:, :48], rtol=1e-6)
    assert fr_pair.ms.shape == (4, 12, 16) and fr_pair.lms.shape == (4, 48, 64)
    assert [r["resolution"] for r in loaded.records] == ["reduced", "reduced",
                                                        "full (Wald-degraded for training)"]
    held = load_pairs([str(rr_file)], val_data=[str(fr)], patch=16)
    assert len(held.train) == 2 and len(held.val) == 1 and held.val[0].shape == (64, 64)
    assert "whole scenes held out" in held.split


def test_load_pairs_rejects_other_sensors_and_small_scenes(tmp_path, rr_file):
    wv2 = tmp_path / "wv2_fr.h5"
    write_h5(wv2, _fr("WV2", size=128))
    with pytest.raises(InputError, match="is WV2 data; a WV3 model must be trained on WV3"):
        load_pairs([str(wv2)], "WV3")
    with pytest.raises(InputError, match="is WV2 data; a QB model must be trained on QB"):
        load_pairs([str(rr_file), str(wv2)])
    with pytest.raises(InputError, match="smaller than --patch 128"):
        load_pairs([str(rr_file)], patch=128)
    with pytest.raises(InputError, match="no training data"):
        load_pairs([])


def test_load_pairs_reads_unnamed_files_as_the_given_sensor(tmp_path):
    import h5py

    s = _rr()
    p = tmp_path / "anon.h5"
    with h5py.File(p, "w") as f:
        f["ms"], f["pan"], f["gt"] = s.ms[None], s.pan[None, None], s.gt[None]
    with pytest.raises(InputError, match="does not name its sensor"):
        load_pairs([str(p)])
    assert load_pairs([str(p)], "QB", patch=16).sensor.name == "QB"


def test_patch_sampler_shapes_determinism_and_augmentation():
    pair = to_pair(_rr(size=64))
    pair.target = 2 * pair.lms  # follows the crops and their rotations
    a = PatchSampler([pair], 32, 3, seed=5).sample()
    b = PatchSampler([pair], 32, 3, seed=5).sample()
    assert a["ms"].shape == (3, 4, 8, 8) and a["pan"].shape == (3, 1, 32, 32)
    assert a["gt"].shape == a["lms"].shape == a["target"].shape == (3, 4, 32, 32)
    for k in a:
        assert torch.equal(a[k], b[k])
    torch.testing.assert_close(a["target"], 2 * a["lms"])
    with pytest.raises(InputError, match="multiple of the ratio"):
        PatchSampler([pair], 30, 2)


def test_patch_sampler_avoids_nodata():
    scene = _rr(size=64)
    mask = np.zeros((64, 64), bool)
    mask[:, :40] = True
    pair = to_pair(scene.with_(nodata=mask))
    sampler = PatchSampler([pair], 16, 8, augment=False, seed=1)
    assert (sampler.positions[0][:, 1] >= 40).all()
    assert (sampler.sample()["gt"] > 0).all()


# ----------------------------------------------------------------------------- training
def test_training_lowers_the_loss_on_a_known_mapping(tmp_path, rr_file):
    res = train("fusionnet", [str(rr_file)], sensor="QB", epochs=3, steps_per_epoch=8,
                patch=16, batch=4, lr=3e-3, device="cpu", out=tmp_path / "o", val_fraction=0)
    losses = [row["train_loss"] for row in res.history]
    assert losses[-1] < 0.6 * losses[0], losses
    assert res.card_data["held_out"] is None  # nothing held out


def test_smoke_on_a_real_crop_writes_reloadable_outputs(real_file, tmp_path):
    from tta.io import read_scene

    s = read_scene(real_file("wv3/wv3_cdif_rr.h5"))
    crop = s.with_(ms=s.ms[:, :24, :24], pan=s.pan[:96, :96], gt=s.gt[:, :96, :96],
                   source="crop")
    data = tmp_path / "wv3_crop_rr.h5"
    write_h5(data, crop)
    out = tmp_path / "weights"
    rows = []
    res = train("lagconv", ["wv3_crop_rr.h5"], sensor="WV3", data_root=str(tmp_path),
                out=out, cards=tmp_path / "cards", callback=rows.append,
                arch_kwargs={"channels": 8, "n_blocks": 2}, **{**FAST, "patch": 32})
    assert res.weights == out / "lagconv_wv3.safetensors" and res.weights.is_file()
    card = yaml.safe_load(res.card.read_text())
    assert card["arch"] == "lagconv" and card["sensor"] == "WV3" and card["n_bands"] == 8
    assert card["parameters"] == sum(p.numel() for p in res.model.parameters())
    assert tuple(card) == CARD_KEYS  # the one card writer (pretrained.card), its key order
    assert res.card.read_text() == ModelCard(res.card_data).to_yaml()
    assert card["training"]["data"][0]["file"] == "wv3_crop_rr.h5"
    assert len(card["training"]["data"][0]["sha256"]) == 64
    assert card["training"]["epochs"] == 1 and card["training"]["seed"] == 0
    assert card["training"]["device"].startswith("cpu (") and card["training"]["date"]
    assert {"Q2n", "SAM", "ERGAS", "L1"} <= set(card["held_out"])
    log = json.loads(res.log.read_text())
    assert len(log["history"]) == 1 == len(rows) and "val_Q2n" in log["history"][0]
    loaded = load_zoo("lagconv", weights_dir=out, cards_dir=tmp_path / "cards")
    assert loaded.card["weights"]["sha256"] == loaded.weights_record.sha256
    ms, pan, lms = (torch.rand(1, 8, 8, 8), torch.rand(1, 1, 32, 32), torch.rand(1, 8, 32, 32))
    with torch.no_grad():
        assert torch.equal(loaded(ms, pan, lms), res.model(ms, pan, lms))
    before = res.weights.read_bytes()
    with pytest.raises(OutputError, match="already exists"):
        train("lagconv", [str(data)], sensor="WV3", out=out, cards=tmp_path / "cards", **FAST)
    assert res.weights.read_bytes() == before


def test_the_five_fose_stages_chain(tmp_path, rr_file):
    o = tmp_path / "runs"
    data = [str(rr_file)]
    common = {**FAST, "out": o, "sensor": "QB"}
    teacher = train("diffusion_teacher", data, arch_kwargs={"base": 8}, val_steps=2, **common)
    assert teacher.card_data["stage"] == "teacher"
    assert torch.equal(teacher.model.head.weight, teacher.model.unet.out_conv.weight)
    student = train("diffusion_student", data, teacher=teacher.weights, teacher_steps=2,
                    **common)
    assert student.card_data["training"]["init"]["teacher"]["arch"] == "diffusion_teacher"
    assert student.model.unet.base == 8
    e2e = train("lagconv", data, arch_kwargs={"channels": 8, "n_blocks": 1}, **common)
    fused = train("fose", data, student=student.weights, e2e=e2e.weights, name="fose_fuse",
                  **common)
    model = fused.model
    assert model.e2e.hparams() == {"channels": 8, "n_blocks": 1, "hidden": 16, "gh": "local"}
    assert fused.card_data["trainable_parameters"] == sum(
        p.numel() for p in model.adaptor_parameters())
    for name, t in model.student.state_dict().items():  # branches frozen
        assert torch.equal(t, student.model.state_dict()[name]), name
    for name, t in model.e2e.state_dict().items():
        assert torch.equal(t, e2e.model.state_dict()[name]), name
    joint = train("fose", data, stage="joint", init=fused.weights, **common)
    assert joint.weights.name == "fose_qb.safetensors"
    assert joint.card_data["trainable_parameters"] == joint.card_data["parameters"]
    assert any(not torch.equal(t, student.model.state_dict()[n])
               for n, t in joint.model.student.state_dict().items())
    again = model_from_weights(joint.weights)
    assert isinstance(again, pretrained.Fose) and again.e2e_arch == "lagconv"


# ----------------------------------------------------------------------------- CLI
def _cli(*args):
    from tta.cli import cli

    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def test_cli_train_runs_and_refuses_to_overwrite(tmp_path, rr_file):
    args = ["train", "-a", "fusionnet", "-d", rr_file, "--epochs", "2", "--steps-per-epoch",
            "2", "--patch", "16", "--batch", "2", "--val-fraction", "0.25", "--device", "cpu",
            "-o", tmp_path / "o"]
    res = _cli(*args)
    assert res.exit_code == 0, res.output
    assert "epoch   2" in res.output and "held out L1" in res.output
    assert "wrote" in res.output and (tmp_path / "o" / "fusionnet_qb.yaml").is_file()
    res = _cli(*args)
    assert res.exit_code == 2 and "already exists; pass --overwrite" in res.output
    res = _cli(*args, "--overwrite")
    assert res.exit_code == 0, res.output


@pytest.mark.parametrize(("extra", "message"), [
    (["-a", "fusionet"], "unknown model 'fusionet'"),
    (["-a", "diffusion_student"], "stage 'distill' needs --teacher FILE"),
    (["-a", "lagconv", "--stage", "teacher"], "stage 'teacher' trains --arch diffusion_teacher"),
    (["-a", "fose"], "stage 'fuse' needs --student FILE"),
    (["-a", "fose", "--stage", "e2e"], "trains in stage 'fuse', not 'e2e'"),
    (["-a", "diffusion_student", "--teacher", "{tmp}/none.safetensors"], "file not found"),
    (["-a", "lagconv", "-d", "{tmp}/missing.h5"], "file not found"),
    (["-a", "lagconv", "--sensor", "WV3"], "is QB data; a WV3 model must be trained on WV3"),
    (["-a", "lagconv", "--patch", "18"], "multiple of the ratio 4"),
    (["-a", "lagconv", "--patch", "256"], "smaller than --patch 256"),
    (["-a", "lagconv", "--arch-option", "width"], "expected KEY=VALUE"),
    (["-a", "lagconv", "--sensor", "NOSAT"], "NOSAT"),
    (["-a", "lagconv", "-d", "{rr}@1"], "two integers"),
])
def test_cli_train_bad_input(tmp_path, rr_file, extra, message):
    extra = [e.replace("{tmp}", str(tmp_path)).replace("{rr}", str(rr_file)) for e in extra]
    data = [] if "-d" in extra else ["-d", rr_file]
    patch = [] if "--patch" in extra else ["--patch", "16"]
    res = _cli("train", *data, *extra, *patch, "--epochs", "1", "--steps-per-epoch", "1",
               "--device", "cpu", "-o", tmp_path / "o")
    assert res.exit_code == 2, res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and message in lines[0], lines
    assert not list(tmp_path.glob("o/*.safetensors"))


def test_validate_classical_known_answer():
    """EXP is the 23-tap interpolation a Pair's ``lms`` already holds: scored against
    ``gt = lms`` it is perfect (Q2n 1, SAM 0, ERGAS 0, L1 0); GSA, which injects PAN detail,
    is not."""
    from tta.physics import interp23tap
    from tta.training import Pair, validate_classical

    g = torch.Generator().manual_seed(0)
    ms = 0.2 + 0.3 * torch.rand(4, 16, 16, generator=g, dtype=torch.float64)
    pan = 0.2 + 0.3 * torch.rand(1, 64, 64, generator=g, dtype=torch.float64)
    lms = interp23tap(ms[None], 4)[0]
    pair = Pair(ms=ms, pan=pan, lms=lms, gt=lms.clone(), source="synthetic", ratio=4,
                max_value=1023.0)
    exp = validate_classical("exp", [pair], "GF2")
    assert exp["Q2n"] == pytest.approx(1.0, abs=1e-6)
    assert exp["SAM"] == pytest.approx(0.0, abs=1e-5) and exp["ERGAS"] == pytest.approx(0.0)
    assert exp["L1"] == pytest.approx(0.0, abs=1e-9)
    assert exp["images"][0]["image"] == "synthetic"
    gsa = validate_classical("gsa", [pair], "GF2")
    assert gsa["Q2n"] < 0.99 and gsa["ERGAS"] > 0.1
    assert validate_classical("exp", [], "GF2") is None
