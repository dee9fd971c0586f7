"""Weights given as a file path carry the same weights record as named ones: ``tta adapt``'s
report and the saved adapter's rebuild record name the file, its sha256, sensor and bands,
whether the network is ``--model lagconv:qb`` or ``--model pretrained/weights/lagconv_qb.
safetensors`` (a DLPan-Toolbox ``.pth`` alone or with ``--model ARCH --weights``), and a
``tta train``-style file outside the zoo gets its record from its metadata (real QuickBird
crop)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from pretrained import create_model
from pretrained.zoo import WEIGHTS_DIR, save_weights
from tta.cli import cli
from tta.io import read_scene, write_h5

FAST = ("--steps", "1", "--no-compare", "--device", "cpu")


def run(*args: object):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def qb_crop(real_file, tmp_path_factory) -> Path:
    s = read_scene(real_file("qb/qb_abfnet_train_rr.h5"))
    crop = s.with_(ms=s.ms[:, :32, :32], pan=s.pan[:128, :128], gt=None, source="crop")
    out = tmp_path_factory.mktemp("qb") / "qb_crop.h5"
    write_h5(out, crop)
    return out


def _adapt(model: str, scene: Path, tmp: Path, tag: str) -> tuple[dict, dict, np.ndarray]:
    out, rep, ad = tmp / f"{tag}.h5", tmp / f"{tag}.json", tmp / f"{tag}.pt"
    res = run("adapt", "--model", model, "--target", scene, "-o", out, "--report", rep,
              "--save-adapter", ad, *FAST)
    assert res.exit_code == 0, res.output
    with h5py.File(out) as f:
        fused = f["fused"][...]
    record = torch.load(ad, weights_only=True)["meta"]["record"]
    return json.loads(rep.read_text()), record, fused


def test_named_and_path_weights_report_the_same_record(qb_crop, tmp_path):
    file = WEIGHTS_DIR / "lagconv_qb.safetensors"
    digest = hashlib.sha256(file.read_bytes()).hexdigest()
    named, named_rec, named_fused = _adapt("lagconv:qb", qb_crop, tmp_path, "named")
    path, path_rec, path_fused = _adapt(str(file), qb_crop, tmp_path, "path")
    assert named["model"] == path["model"]
    assert path["model"]["weights"] == "lagconv_qb.safetensors"
    assert path["model"]["weights_sha256"] == digest
    assert path["model"]["weights_sensor"] == "QB"
    assert path["bands"] == named["bands"]
    assert path["bands"]["network_source"] == "weights of QB"
    assert path_rec["model"]["weights_sha256"] == named_rec["model"]["weights_sha256"] == digest
    assert path_rec["model"]["state_sha256"] == named_rec["model"]["state_sha256"]
    assert np.array_equal(named_fused, path_fused)


def test_unshipped_train_file_gets_its_record_from_metadata(qb_crop, tmp_path):
    torch.manual_seed(0)
    net = create_model("fusionnet", n_bands=4, channels=8)
    file = tmp_path / "my_fusionnet.safetensors"
    sha = save_weights(net, file, metadata={
        "arch_kwargs": {"channels": 8}, "sensor": "QB", "bands": "blue,green,red,nir",
        "ratio": "4", "max_value": "2047.0", "stage": "e2e"})
    report, record, fused = _adapt(str(file), qb_crop, tmp_path, "mine")
    model = report["model"]
    assert (model["weights"], model["weights_sha256"], model["weights_sensor"]) == (
        "my_fusionnet.safetensors", sha, "QB")
    assert report["bands"]["network"] == ["blue", "green", "red", "nir"]
    assert report["bands"]["network_source"] == "weights of QB"
    assert record["model"]["weights_sha256"] == sha
    # the rebuild record finds the file again: the same pixels without re-adapting
    again = tmp_path / "again.h5"
    res = run("fuse", qb_crop, "--adapter", tmp_path / "mine.pt", "-o", again, "--device", "cpu")
    assert res.exit_code == 0, res.output
    with h5py.File(again) as f:
        assert np.abs(f["fused"][...] - fused).max() <= 1e-3


def test_dlpan_checkpoint_alone_and_with_arch_report_the_same_record(qb_crop, dlpan_dir,
                                                                     tmp_path):
    file = dlpan_dir / "qb/fusionnet.pth"
    digest = hashlib.sha256(file.read_bytes()).hexdigest()
    alone, alone_rec, alone_fused = _adapt(str(file), qb_crop, tmp_path, "alone")
    res = run("adapt", "--model", "fusionnet", "--weights", file, "--target", qb_crop,
              "-o", tmp_path / "arch.h5", "--report", tmp_path / "arch.json", *FAST)
    assert res.exit_code == 0, res.output
    arch = json.loads((tmp_path / "arch.json").read_text())
    assert alone["model"] == arch["model"]
    assert (alone["model"]["weights"], alone["model"]["weights_sha256"],
            alone["model"]["weights_sensor"]) == ("dlpan/qb/fusionnet.pth", digest, "QB")
    assert alone_rec["model"]["weights_sha256"] == digest
    with h5py.File(tmp_path / "arch.h5") as f:
        assert np.array_equal(f["fused"][...], alone_fused)
