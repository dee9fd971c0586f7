"""Band layouts matched by name: sensor restriction, per-band MTF gains, readers, --bands.

Real data: 4-band WorldView-3 and WorldView-2 bundles (blue, green, red, nir) are cut from
the shared 8-band scenes in tmp_path, as providers deliver them.
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from click.testing import CliRunner

import tta
from tta.cli import cli
from tta.errors import InputError, SensorError
from tta.sensors.bands import canonical_band, match_layout, same_layout

WV3_GAINS = dict(zip(("coastal", "blue", "green", "yellow", "red", "rededge", "nir1", "nir2"),
                     (0.325, 0.355, 0.360, 0.350, 0.365, 0.360, 0.335, 0.315), strict=True))
BGRN = [1, 2, 4, 6]  # blue, green, red, nir1 in the 8-band WorldView layout


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def bundle_h5(path: Path, scene, index, *, sensor: str | None, bands: str | None,
              crop: int | None = None) -> Path:
    """A provider's h5 bundle: some bands of ``scene``, optionally a top-left MS crop."""
    ms = scene.ms[index]
    pan = scene.pan
    if crop is not None:
        ms, pan = ms[:, :crop, :crop], pan[:crop * scene.ratio, :crop * scene.ratio]
    with h5py.File(path, "w") as f:
        f["ms"] = ms[None]
        f["pan"] = pan[None, None]
        if sensor:
            f.attrs["sensor"] = sensor
        if bands:
            f.attrs["bands"] = bands
    return path


@pytest.fixture(scope="module")
def wv3(real_file):
    return tta.read_scene(real_file("wv3/wv3_shanghai_fr.h5"))


@pytest.fixture(scope="module")
def wv2(real_file):
    return tta.read_scene(real_file("wv2/wv2_grip_top_fr.h5"))


# ------------------------------------------------------------------------- names
@pytest.mark.parametrize(("a", "b"), [
    ("nir", "NIR1"), ("nir-1", "nir"), ("coastal", "Coastal-Blue"), ("rededge", "red-edge"),
    ("red_edge", "RedEdge"), ("swir1", "SWIR-1"), ("swir", "swir1")])
def test_synonyms(a, b):
    assert canonical_band(a) == canonical_band(b)


def test_distinct_bands_stay_distinct():
    assert canonical_band("nir2") != canonical_band("nir1")
    assert canonical_band("swir2") != canonical_band("swir1")
    assert match_layout(["red", "NIR"], ["blue", "green", "red", "nir1", "nir2"]) == [2, 3]
    assert match_layout(["swir1"], ["blue", "nir"]) is None
    assert same_layout(["Blue", "nir-1"], ["blue", "nir"])


def test_restrict_picks_gains_by_name():
    wv3 = tta.get_sensor("WV3")
    sub = wv3.restrict(["NIR-1", "blue", "red", "green"])
    assert sub.bands == ("nir1", "blue", "red", "green")
    assert sub.mtf_ms == (0.335, 0.355, 0.365, 0.360)
    assert sub.name == "WV3" and sub.subset_of == wv3.bands and sub.mtf_pan == wv3.mtf_pan
    assert wv3.restrict(list(wv3.bands)) is wv3
    wv2 = tta.get_sensor("WV2").restrict(["blue", "nir2"])
    assert wv2.mtf_ms == (0.35, 0.27)
    with pytest.raises(SensorError) as err:
        wv3.restrict(["blue", "green", "red", "swir1"])
    msg = str(err.value)
    assert "blue,green,red,swir1" in msg
    assert "coastal,blue,green,yellow,red,rededge,nir1,nir2" in msg


def test_landsat7_has_six_bands_and_a_four_band_layout():
    l7 = tta.get_sensor("LANDSAT7")
    assert l7.bands == ("blue", "green", "red", "nir", "swir1", "swir2") and l7.ratio == 2
    assert l7.mtf_ms == (0.3,) * 6 and l7.mtf_pan == 0.15
    assert "genMTF.m" in l7.mtf_reference and "0.52-0.90" in l7.description
    assert l7.layouts[4] == ("blue", "green", "red", "nir")
    assert tta.get_sensor("ETM+") is l7


# ------------------------------------------------------------------------- scenes
def test_scene_names_restrict_the_sensor(wv3):
    sub = tta.Scene(ms=wv3.ms[BGRN], pan=wv3.pan, sensor=wv3.sensor,
                    band_names=("Blue", "Green", "Red", "NIR"))
    assert sub.band_names == ("Blue", "Green", "Red", "NIR")
    assert sub.sensor.bands == ("blue", "green", "red", "nir1")
    assert sub.sensor.mtf_ms == tuple(WV3_GAINS[b] for b in ("blue", "green", "red", "nir1"))
    # without names, 4 bands of a WorldView sensor are its standard 4-band layout
    assert tta.Scene(ms=wv3.ms[BGRN], pan=wv3.pan, sensor=wv3.sensor).sensor == sub.sensor
    with pytest.raises(InputError, match="MS has 5 bands but sensor WV3 has 8 .*--bands"):
        tta.Scene(ms=wv3.ms[:5], pan=wv3.pan, sensor=wv3.sensor)
    with pytest.raises(InputError, match="swir1 not among them"):
        tta.Scene(ms=wv3.ms[:2], pan=wv3.pan, sensor=wv3.sensor, band_names=("blue", "swir1"))


def test_degrade_of_a_bundle_uses_each_bands_gain(wv3):
    """Wald degradation filters each band with its own MTF: the 4-band bundle degrades to
    exactly the 8-band scene's degraded bands."""
    crop = wv3.with_(ms=wv3.ms[:, :64, :64], pan=wv3.pan[:256, :256], meta={})
    sub = tta.Scene(ms=crop.ms[BGRN], pan=crop.pan, sensor=crop.sensor,
                    band_names=("blue", "green", "red", "nir"))
    full_rr, sub_rr = tta.degrade_scene(crop), tta.degrade_scene(sub)
    np.testing.assert_allclose(sub_rr.ms, full_rr.ms[BGRN], rtol=1e-6, atol=1e-3)
    # and a wrong gain would show: filter band 'blue' with nir1's gain instead
    wrong = tta.mtf_filter(torch.from_numpy(sub.ms[None]).double(), (0.335,) * 4, 4)
    right = tta.mtf_filter(torch.from_numpy(sub.ms[None]).double(), sub.sensor.mtf_ms, 4)
    assert float((wrong - right)[0, 0].abs().max()) > 1.0


def test_classical_fusion_of_a_bundle(wv2):
    crop = wv2.with_(ms=wv2.ms[:, :48, :48], pan=wv2.pan[:192, :192], meta={})
    sub = tta.Scene(ms=crop.ms[BGRN], pan=crop.pan, sensor=crop.sensor)
    assert sub.sensor.bands == ("blue", "green", "red", "nir1")
    fused = tta.fuse_scene(sub, "mtf-glp-hpm")
    full = tta.fuse_scene(crop, "mtf-glp-hpm")
    np.testing.assert_allclose(fused, full[BGRN], rtol=1e-5, atol=1e-2)


# ------------------------------------------------------------------------- readers
def test_readers_carry_band_layouts(wv3, tmp_path):
    import rasterio
    import yaml
    from affine import Affine

    h5 = bundle_h5(tmp_path / "b.h5", wv3, BGRN, sensor="WV3", bands="blue,green,red,nir",
                   crop=32)
    s = tta.read_scene(h5)
    assert s.sensor.mtf_ms == (0.355, 0.360, 0.365, 0.335) and s.n_bands == 4
    # --bands overrides the file's names: the same 4 DN read as other bands of WV3
    s2 = tta.read_scene(h5, bands="coastal,blue,green,nir2")
    assert s2.sensor.mtf_ms == (0.325, 0.355, 0.360, 0.315)
    with pytest.raises(InputError, match="foo not among them"):
        tta.read_scene(h5, bands="blue,green,red,foo")

    # GeoTIFF band descriptions and a YAML manifest's bands
    ms = wv3.ms[[4, 2, 1], :32, :32]  # red, green, blue: an RGB product
    profile = {"driver": "GTiff", "width": 32, "height": 32, "dtype": "float32",
               "crs": "EPSG:32651", "transform": Affine(4, 0, 500000, 0, -4, 3500000)}
    with rasterio.open(tmp_path / "ms.tif", "w", count=3, **profile) as dst:
        dst.write(ms)
        dst.descriptions = ("Red", "Green", "Blue")
    with rasterio.open(tmp_path / "pan.tif", "w", count=1, **{
            **profile, "width": 128, "height": 128,
            "transform": Affine(1, 0, 500000, 0, -1, 3500000)}) as dst:
        dst.write(wv3.pan[None, :128, :128])
    s3 = tta.read_scene(f"{tmp_path / 'ms.tif'}+{tmp_path / 'pan.tif'}", sensor="WV3")
    assert s3.sensor.bands == ("red", "green", "blue") and s3.sensor.mtf_ms == (0.365, 0.36, 0.355)
    (tmp_path / "m.yaml").write_text(yaml.safe_dump(
        {"ms": "ms.tif", "pan": "pan.tif", "sensor": "WV2", "bands": ["red", "green", "blue"]}))
    s4 = tta.read_scene(tmp_path / "m.yaml")
    assert s4.sensor.name == "WV2" and s4.sensor.mtf_ms == (0.35,) * 3


def test_mat_bands_variable(wv2, tmp_path):
    import scipy.io

    path = tmp_path / "s.mat"
    scipy.io.savemat(path, {"I_MS_LR": np.moveaxis(wv2.ms[[1, 7], :16, :16], 0, -1),
                            "I_PAN": wv2.pan[:64, :64], "sensor": "WV2",
                            "bands": "blue,nir2"})
    s = tta.read_scene(path)
    assert s.sensor.bands == ("blue", "nir2") and s.sensor.mtf_ms == (0.35, 0.27)


# ------------------------------------------------------------------------- CLI
def test_cli_on_a_4band_wv2_bundle(wv2, tmp_path):
    """The refusal of issue 16 (`MS has 4 bands but sensor WV2 has 8`) now works: info,
    degrade, fuse and eval on a 4-band WorldView-2 bundle that does not name its bands."""
    src = bundle_h5(tmp_path / "wv2_4.h5", wv2, BGRN, sensor="WV2", bands=None, crop=64)
    res = run("info", src)
    assert res.exit_code == 0, res.output
    assert "blue, green, red, nir1 (4 of the sensor's 8; MTF gains 0.35, 0.35, 0.35, 0.35)" \
        in res.output
    rr = tmp_path / "rr.h5"
    assert run("degrade", src, "-o", rr).exit_code == 0
    with h5py.File(rr) as f:
        assert f.attrs["bands"] == "blue,green,red,nir1" and f["ms"].shape == (1, 4, 16, 16)
    out = tmp_path / "hpm.h5"
    res = run("fuse", rr, "-m", "mtf-glp-hpm", "-o", out)
    assert res.exit_code == 0, res.output
    res = run("eval", out, "--protocol", "both", "--json", tmp_path / "e.json")
    assert res.exit_code == 0, res.output
    scores = json.loads((tmp_path / "e.json").read_text())
    assert 0.5 < scores["rr"]["Q2n"] <= 1 and 0 < scores["fr"]["HQNR"] <= 1
    # --bands on the command line: a 4-band file read as blue, green, red, nir2
    res = run("info", src, "--bands", "blue,green,red,nir2", "--json")
    info = json.loads(res.output)
    assert info["mtf_ms"] == [0.35, 0.35, 0.35, 0.27]
    res = run("info", src, "--bands", "blue,green,red,swir1")
    assert res.exit_code == 2 and res.output.count("\n") == 1
    assert "blue,green,red,swir1" in res.output and "coastal,blue" in res.output
