"""`tta eval`: both protocols from the CLI on real scenes, JSON report, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from tta.cli import cli
from tta.io import read_scene, write_fused, write_h5
from tta.metrics import fr_metrics, rr_metrics
from tta.physics import degrade_scene, interp23tap


def run(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def exp_fused(scene) -> np.ndarray:
    ms = torch.from_numpy(scene.ms)[None].double()
    return interp23tap(ms, scene.ratio)[0].float().numpy()


@pytest.fixture(scope="module")
def reduced_product(real_file, tmp_path_factory):
    scene = degrade_scene(read_scene(real_file("wv2/wv2_grip_top_fr.h5")))
    path = tmp_path_factory.mktemp("eval") / "exp_rr.h5"
    write_h5(path, scene, fused=exp_fused(scene))
    return path, scene


def test_eval_reduced_product_both_protocols(reduced_product, tmp_path):
    path, scene = reduced_product
    out = tmp_path / "scores.json"
    res = run("eval", str(path), "--protocol", "both", "--json", str(out), "--device", "cpu")
    assert res.exit_code == 0, res.output
    for key in ("Q2n", "SAM", "ERGAS", "HQNR", "D_lambda_K", "R-Q2n", "D_rho"):
        assert key in res.output
    scores = json.loads(out.read_text())
    fused = torch.from_numpy(exp_fused(scene)).double()
    ref = rr_metrics(torch.from_numpy(scene.gt).double(), fused, 4, 2047.0)
    for k, v in ref.items():
        assert scores["rr"][k] == pytest.approx(v, rel=1e-9)
    fr = fr_metrics(torch.from_numpy(scene.ms).double(), torch.from_numpy(scene.pan)[None],
                    fused, "WV2", 2047.0)
    assert scores["fr"]["HQNR"] == pytest.approx(fr["HQNR"], rel=1e-9)
    # EXP adds no spatial detail: spectrally perfect at MS scale, far from the gt in detail
    assert scores["fr"]["D_lambda"] == pytest.approx(0.0, abs=1e-9)
    assert 0.3 < scores["rr"]["Q2n"] < 0.9


def test_eval_auto_picks_rr_for_reduced(reduced_product):
    res = run("eval", str(reduced_product[0]))
    assert res.exit_code == 0 and "reduced resolution" in res.output
    assert "full resolution" not in res.output


def test_eval_geotiff_product_needs_scene(real_file, tmp_path):
    src = real_file("qb/qb_abfnet_train_rr.h5")
    scene = read_scene(src)
    tif = write_fused(tmp_path / "exp.tif", scene, exp_fused(scene), dtype="float32")
    res = run("eval", str(tif))
    assert res.exit_code == 2 and "give --scene" in res.stderr
    res = run("eval", str(tif), "--scene", str(src), "--protocol", "fr")
    assert res.exit_code == 0, res.output
    assert "R-SAM" in res.output and "QNR" in res.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--protocol", "rr"], "no reference 'gt'"),
        (["--scene", "{qb}"], "does not match the scene"),
        (["--device", "cuda:7"], "CUDA is not available"),
    ],
)
def test_eval_bad_input(real_file, tmp_path, args, message):
    if "cuda" in " ".join(args) and torch.cuda.is_available():
        pytest.skip("CUDA present")
    scene = read_scene(real_file("wv2/wv2_grip_top_fr.h5"))
    path = write_h5(tmp_path / "p.h5", scene, fused=exp_fused(scene))
    args = [a.replace("{qb}", str(real_file("qb/qb_abfnet_fr.h5"))) for a in args]
    res = run("eval", str(path), *args)
    assert res.exit_code == 2, res.output
    assert message in res.stderr and len(res.stderr.strip().splitlines()) == 1


def test_eval_h5_without_fused(real_file):
    res = run("eval", str(real_file("wv2/wv2_grip_top_fr.h5")))
    assert res.exit_code == 2 and "no 'fused' dataset" in res.stderr
