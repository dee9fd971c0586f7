"""`tta adapt` and `tta inspect` from the CLI on the real WV2 scene, and their bad inputs."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import pytest
import torch
from click.testing import CliRunner

from tta.cli import cli


def run(*args: str):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def wv2_rr(real_file, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wv2") / "wv2_rr.h5"
    res = run("degrade", real_file("wv2/wv2_grip_top_fr.h5"), "-o", out)
    assert res.exit_code == 0, res.output
    return out


def test_adapt_end_to_end(wv2_rr, dlpan_dir, tmp_path):
    out, rep, ad = tmp_path / "fused.h5", tmp_path / "report.json", tmp_path / "a.pt"
    res = run("adapt", "--model", "fusionnet", "--weights", dlpan_dir / "wv3/fusionnet.pth",
              "--target", wv2_rr, "-o", out, "--report", rep, "--save-adapter", ad,
              "--steps", "20", "--device", "cpu")
    assert res.exit_code == 0, res.output
    assert "interface conv3" in res.output and "Q2n" in res.output and "HQNR" in res.output
    report = json.loads(rep.read_text())
    assert report["model"]["weights_sensor"] == "WV3"
    assert report["scene"]["sensor"] == "WV2"
    assert len(report["loss"]["curve"]) == 20
    assert report["timings"]["load"] > 0 and report["timings"]["write"] > 0
    assert set(report["metrics"]["adapted"]) == {"rr", "fr"}
    with h5py.File(out) as f:
        assert f["fused"].shape[-3:] == (8, 160, 320)
    payload = torch.load(ad, weights_only=True)
    assert payload["kind"] == "ft" and payload["mapper"] == "conv3"
    res = run("eval", out, "--json", tmp_path / "e.json")
    assert res.exit_code == 0, res.output
    scores = json.loads((tmp_path / "e.json").read_text())["rr"]
    assert scores["Q2n"] == pytest.approx(report["metrics"]["adapted"]["rr"]["Q2n"], abs=1e-3)


def test_adapt_checkpoint_alone_and_config(wv2_rr, dlpan_dir, tmp_path):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("adapter: mapper\nsteps: 3\nsampler: kmeans\n")
    out = tmp_path / "o.h5"
    res = run("adapt", "-m", dlpan_dir / "wv3/pnn.pth", "-t", wv2_rr, "-o", out,
              "--config", cfg, "--no-compare", "--device", "cpu")
    assert res.exit_code == 0, res.output
    assert "adapter mapper" in res.output and "(kmeans)" in res.output
    assert "Q2n (+)" not in res.output  # no comparison table (the decision line names rr_Q2n)


@pytest.mark.parametrize(("args", "message"), [
    (["-m", "nosuchnet", "-w", "{w}/wv3/fusionnet.pth"], "nosuchnet"),
    (["-m", "fusionnet"], "no shipped weights for 'fusionnet'"),
    (["-m", "fusionnet", "-w", "{tmp}/missing.pth"], "not found"),
    (["-m", "fusionnet", "-w", "{w}/wv3/fusionnet.pth", "--bands", "blue,green,red,nir1"],
     "4 band names given for 8 MS bands"),
    (["-m", "pannet", "-w", "{w}/wv3/fusionnet.pth"], "it loads as 'fusionnet'"),
    (["-m", "fusionnet", "-w", "{w}/wv3/fusionnet.pth", "-o", "{src}"], "is an input"),
    (["-m", "fusionnet", "-w", "{w}/wv3/fusionnet.pth", "-o", "{tmp}/x.png"], "must end in"),
    (["-m", "fusionnet", "-w", "{w}/wv3/fusionnet.pth", "--interface", "nope"],
     "no module named 'nope'"),
    (["-m", "fusionnet", "-w", "{w}/wv3/fusionnet.pth", "--config", "{tmp}/none.yaml"],
     "config file not found"),
    (["-m", "fusionnet", "-w", "{w}/wv3/fusionnet.pth", "--patch", "1024"],
     "larger than the scene"),
])
def test_adapt_bad_input(wv2_rr, dlpan_dir, tmp_path, args, message):
    before = wv2_rr.read_bytes()
    args = [a.replace("{w}", str(dlpan_dir)).replace("{tmp}", str(tmp_path))
            .replace("{src}", str(wv2_rr)) for a in args]
    if "-o" not in args:
        args += ["-o", str(tmp_path / "out.h5")]
    res = run("adapt", "-t", wv2_rr, "--steps", "1", "--device", "cpu", *args)
    assert res.exit_code == 2, res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and message in lines[0], lines
    assert wv2_rr.read_bytes() == before
    assert not (tmp_path / "out.h5").exists()


def test_adapt_refuses_to_overwrite(wv2_rr, dlpan_dir, tmp_path):
    out = tmp_path / "o.h5"
    out.write_bytes(b"keep me")
    res = run("adapt", "-m", "dicnn", "-w", dlpan_dir / "wv3/dicnn.pth", "-t", wv2_rr,
              "-o", out, "--steps", "1")
    assert res.exit_code == 2 and "already exists" in res.output
    assert out.read_bytes() == b"keep me"


def test_inspect(dlpan_dir):
    res = run("inspect", "--model", "fusionnet")
    assert res.exit_code == 0, res.output
    assert "mapper       conv3" in res.output and "tail         add" in res.output
    res = run("inspect", "--model", "msdcnn", "--weights", dlpan_dir / "qb/msdcnn.pth",
              "--json")
    info = json.loads(res.output)
    assert info["mapper"] == "conv5" and info["interface_shape"][1] == 30
    assert info["output_shape"][1] == 4 and info["tail"] == "nonlinear"
    assert {c["name"] for c in info["candidates"]} == {"conv5", "shallow3"}
    res = run("inspect", "--model", "pnn", "--interface", "conv2")
    assert res.exit_code == 2 and "not the fused image's shape" in res.output
