"""The one --model grammar and loading path (pretrained.spec, pretrained.checkpoint): every
form parses to the files it reads, a zoo file is read once, the band check covers load_zoo."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch

import pretrained
from pretrained.checkpoint import read_checkpoint
from pretrained.loader import load_model
from pretrained.spec import parse_model_spec
from pretrained.zoo import CARDS_DIR, WEIGHTS_DIR, load_zoo, save_weights
from tta.errors import InputError

LAGCONV_QB = WEIGHTS_DIR / "lagconv_qb.safetensors"


@pytest.mark.parametrize(("text", "weights", "kind", "arch", "sensor"), [
    ("fose", None, "zoo", "fose", None),
    ("Fose:QB", None, "zoo", "fose", "QB"),
    ("fusionnet", "w/fusionnet.pth", "weights", "fusionnet", None),
    ("run/net.pth", None, "file", None, None),
    ("run/net.safetensors", None, "file", None, None),
])
def test_grammar(text, weights, kind, arch, sensor):
    spec = parse_model_spec(text, weights)
    assert (spec.kind, spec.arch, spec.sensor) == (kind, arch, sensor)


def test_files_and_tags():
    zoo = parse_model_spec("lagconv:qb")
    assert zoo.files() == [LAGCONV_QB, CARDS_DIR / "lagconv_qb.yaml"]
    assert zoo.tag == "lagconv-qb"
    assert parse_model_spec("fose").files()[0] == WEIGHTS_DIR / "fose_wv3.safetensors"
    file = parse_model_spec("run/net.safetensors")
    assert file.files() == [Path("run/net.safetensors")] and file.tag == "net"
    assert parse_model_spec("pnn", "w.pth").files() == [Path("w.pth")]


@pytest.mark.parametrize(("text", "message"), [
    ("  ", "--model is empty"),
    ("fusionet", "did you mean fusionnet"),
])
def test_bad_specs(text, message):
    with pytest.raises(InputError, match=message):
        parse_model_spec(text)


def test_checkpoint_reader(tmp_path):
    ck = read_checkpoint(LAGCONV_QB)
    assert ck.sha256 == hashlib.sha256(LAGCONV_QB.read_bytes()).hexdigest()
    assert ck.metadata["arch"] == "lagconv" and ck.metadata["n_bands"] == "4"
    net = pretrained.create_model("pnn", n_bands=4)
    path = tmp_path / "pnn.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in net.state_dict().items()}}, path)
    read = read_checkpoint(path)
    assert read.metadata == {} and set(read.state_dict) == set(net.state_dict())
    loaded = load_model(str(path))  # the architecture is recognised from the keys
    assert type(loaded).__name__ == "PNN" and loaded.n_bands == 4


def test_zoo_file_is_read_once(monkeypatch):
    reads = []
    original = Path.read_bytes

    def counting(self):
        reads.append(self.name)
        return original(self)

    monkeypatch.setattr(Path, "read_bytes", counting)
    net = load_model("lagconv:qb")
    assert reads.count("lagconv_qb.safetensors") == 1
    assert net.weights_record.sha256 == read_checkpoint(LAGCONV_QB).sha256


def test_band_check_covers_the_zoo(tmp_path):
    save_weights(pretrained.create_model("lagconv", n_bands=8), tmp_path / "lagconv_qb.safetensors")
    with pytest.raises(InputError, match="checkpoint has 8 bands but sensor QB has 4"):
        load_zoo("lagconv:qb", weights_dir=tmp_path)
    with pytest.raises(InputError, match="8-band model cannot fuse a 4-band"):
        load_model(str(tmp_path / "lagconv_qb.safetensors"), sensor="QB")
