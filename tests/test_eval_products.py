"""`tta eval FUSED --scene SCENE` on products of other tools: a bare `fused` h5 (PanCollection
(N, C, H, W), (C, H, W), (H, W, C); DN or scaled to 0-1), a MATLAB file, a GeoTIFF. Each
must score exactly as the tta product holding the same pixels (real WV2 scene)."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import scipy.io
from click.testing import CliRunner

import tta
from tta.cli import cli
from tta.errors import InputError


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def product(real_file, tmp_path_factory):
    """A reduced-resolution WV2 crop, its GSA product written by tta, and its scores."""
    d = tmp_path_factory.mktemp("eval")
    scene = tta.read_scene(real_file("wv2/wv2_grip_top_fr.h5"))
    crop = scene.with_(ms=scene.ms[:, :128, :128], pan=scene.pan[:512, :512], meta={})
    rr = tta.degrade_scene(crop)
    tta.write_h5(d / "rr.h5", rr)
    fused = tta.fuse_scene(rr, "gsa")
    tta.write_fused(d / "gsa.h5", rr, fused)
    res = run("eval", d / "gsa.h5", "--protocol", "both", "--json", d / "tta.json")
    assert res.exit_code == 0, res.output
    return d, fused, json.loads((d / "tta.json").read_text())


def _scores(d, spec, *extra):
    out = d / "s.json"
    res = run("eval", spec, "--scene", d / "rr.h5", "--protocol", "both", "--json", out,
              "--overwrite", *extra)
    assert res.exit_code == 0, res.output
    return json.loads(out.read_text()), res.output


def _same(a, b):
    for family in ("rr", "fr"):
        for key, value in a[family].items():
            assert b[family][key] == pytest.approx(value, rel=1e-5, abs=1e-6, nan_ok=True), \
                (family, key)


@pytest.mark.parametrize("layout", ["nchw", "chw", "hwc", "unit", "named"])
def test_bare_h5_scores_as_the_tta_product(product, layout):
    d, fused, expected = product
    data = {"nchw": fused[None], "chw": fused, "hwc": np.moveaxis(fused, 0, -1),
            "unit": fused / 2047.0, "named": fused}[layout]
    path = d / f"{layout}.h5"
    with h5py.File(path, "w") as f:
        f["I_Fus" if layout == "named" else "fused"] = data.astype(np.float32)
    scores, out = _scores(d, path)
    _same(expected, scores)
    if layout == "unit":
        assert "scaled to 0-1" in out and "max value 2047" in out
        again, out = _scores(d, path, "--scale", "2047")
        _same(expected, again)
        assert "x2047 (--scale)" in out
    else:
        assert "values in DN" in out


def test_matlab_and_geotiff_products(product, tmp_path):
    d, fused, expected = product
    scipy.io.savemat(d / "p.mat", {"I_Fus": np.moveaxis(fused, 0, -1).astype(np.float64)})
    scores, out = _scores(d, d / "p.mat")
    _same(expected, scores)
    assert "MATLAB variable 'I_Fus'" in out
    from test_io_mat import save_v73

    save_v73(d / "p73.mat", {"fused": np.moveaxis(fused, 0, -1).astype(np.float32) / 2047})
    scores, out = _scores(d, d / "p73.mat")
    _same(expected, scores)
    assert "MATLAB variable 'fused'" in out and "scaled to 0-1" in out
    import rasterio
    from affine import Affine

    c, h, w = fused.shape
    with rasterio.open(d / "p.tif", "w", driver="GTiff", count=c, width=w, height=h,
                       dtype="float32", crs="EPSG:32633",
                       transform=Affine(2, 0, 400000, 0, -2, 5000000)) as dst:
        dst.write(fused)
    scores, _ = _scores(d, d / "p.tif")
    _same(expected, scores)


def test_api_and_refusals(product):
    d, fused, _ = product
    rr = tta.read_scene(d / "rr.h5")
    p = tta.read_product(d / "gsa.h5")
    assert p.origin == "tta product" and p.scene.source == str(d / "gsa.h5")
    arr, note = tta.conform_product(np.moveaxis(fused, 0, -1) / 2047, rr)
    np.testing.assert_allclose(arr, fused, rtol=1e-6, atol=1e-3)
    assert "0-1" in note
    with pytest.raises(InputError, match="does not match the scene"):
        tta.conform_product(fused[:4], rr)
    with h5py.File(d / "two.h5", "w") as f:
        f["fused"] = np.stack([fused, fused])
    res = run("eval", d / "two.h5", "--scene", d / "rr.h5")
    assert res.exit_code == 2 and "holds 2 samples; pick one" in res.output
    assert run("eval", f"{d / 'two.h5'}#1", "--scene", d / "rr.h5").exit_code == 0
    res = run("eval", d / "two.h5#0")
    assert res.exit_code == 2 and "carries no inputs; give --scene" in res.output
    scipy.io.savemat(d / "none.mat", {"X": np.ones((4, 4))})
    res = run("eval", d / "none.mat", "--scene", d / "rr.h5")
    assert res.exit_code == 2 and "no product variable" in res.output and "found: X" in res.output
