"""PanCollection h5 reading/writing on the real shared files and generated ones."""

from __future__ import annotations

import hashlib

import h5py
import numpy as np
import pytest

from tta.errors import InputError, OutputError
from tta.io import Scene, count_scenes, iter_scenes, parse_spec, read_scene, write_h5
from tta.sensors import get_sensor

# (file, N, ms shape, pan shape, has gt) as listed in ../shared/data/README.md
SHARED_H5 = [
    ("wv3/wv3_patches_rr.h5", 1, (8, 16, 16), (64, 64), True),
    ("wv3/wv3_cdif_rr.h5", 1, (8, 64, 64), (256, 256), True),
    ("wv3/wv3_shanghai_fr.h5", 1, (8, 325, 325), (1300, 1300), False),
    ("wv2/wv2_grip_top_fr.h5", 1, (8, 160, 320), (640, 1280), False),
    ("qb/qb_abfnet_train_rr.h5", 1, (4, 64, 64), (256, 256), True),
    ("qb/qb_abfnet_fr.h5", 1, (4, 256, 256), (1024, 1024), False),
    ("gf2/gf2_psdata3_train_rr.h5", 5, (4, 64, 64), (256, 256), True),
    ("gf2/gf2_psdata3_train_fr.h5", 5, (4, 64, 64), (256, 256), False),
    ("gf2/gf2_sfnlr_rr.h5", 1, (4, 64, 64), (256, 256), True),
    ("landsat8/landsat8_fr.h5", 1, (4, 603, 626), (1206, 1252), False),
]


def sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize(("rel", "n", "ms", "pan", "gt"), SHARED_H5)
def test_reads_every_shared_h5(real_file, rel, n, ms, pan, gt):
    path = real_file(rel)
    scenes = list(iter_scenes(path))
    assert len(scenes) == n == count_scenes(path)
    for i, s in enumerate(scenes):
        assert s.ms.shape == ms and s.pan.shape == pan
        assert s.is_reduced is gt
        assert s.gt is None or s.gt.shape == (ms[0], *pan)
        with h5py.File(path, "r") as f:
            np.testing.assert_array_equal(s.ms, f["ms"][i])
            np.testing.assert_array_equal(s.pan, f["pan"][i, 0])
            assert s.sensor.name == f.attrs["sensor"]
            assert s.max_value == f.attrs["max_value"]


def test_sample_selection(real_file):
    path = real_file("gf2/gf2_psdata3_train_rr.h5")
    third = read_scene(f"{path}#3")
    assert third.source.endswith("#3")
    with h5py.File(path, "r") as f:
        np.testing.assert_array_equal(third.gt, f["gt"][3])
    np.testing.assert_array_equal(read_scene(f"{path}#-1").ms, read_scene(f"{path}#4").ms)
    with pytest.raises(InputError, match="holds 5 samples"):
        read_scene(path)
    with pytest.raises(InputError, match="out of range"):
        read_scene(f"{path}#5")


def _pancollection(path, n=2, c=4, h=8, r=4, lms=True, attrs=None):
    rng = np.random.default_rng(0)
    ms = rng.integers(0, 2048, (n, c, h, h)).astype(np.float32)
    pan = rng.integers(0, 2048, (n, 1, h * r, h * r)).astype(np.float32)
    with h5py.File(path, "w") as f:
        f["ms"], f["pan"] = ms, pan
        f["gt"] = rng.integers(0, 2048, (n, c, h * r, h * r)).astype(np.float32)
        if lms:
            f["lms"] = np.zeros((n, c, h * r, h * r), np.float32)
        for k, v in (attrs or {}).items():
            f.attrs[k] = v
    return ms, pan


def test_real_pancollection_layout_needs_sensor(tmp_path):
    path = tmp_path / "test_qb_multiExm1.h5"
    ms, pan = _pancollection(path)
    with pytest.raises(InputError, match="pass --sensor"):
        read_scene(f"{path}#0")
    s = read_scene(f"{path}#1", sensor="QB", max_value=1023)
    np.testing.assert_array_equal(s.ms, ms[1])
    np.testing.assert_array_equal(s.pan, pan[1, 0])
    assert (s.sensor.name, s.max_value, s.ratio, s.is_reduced) == ("QB", 1023.0, 4, True)
    assert s.band_names == ("blue", "green", "red", "nir")


def test_sensor_argument_overrides_file(tmp_path):
    path = tmp_path / "x.h5"
    _pancollection(path, n=1, attrs={"sensor": "QB", "max_value": 2047.0})
    assert read_scene(path, sensor="GF2").sensor.name == "GF2"
    assert read_scene(path, sensor="GF2").max_value == 2047.0  # file attribute beats preset


@pytest.mark.parametrize("rel", [r[0] for r in SHARED_H5])
def test_h5_round_trip_is_lossless(real_file, tmp_path, rel):
    src = real_file(rel)
    scenes = list(iter_scenes(src))
    out = write_h5(tmp_path / "copy.h5", scenes)
    back = list(iter_scenes(out))
    assert len(back) == len(scenes)
    for a, b in zip(scenes, back, strict=True):
        np.testing.assert_array_equal(a.ms, b.ms)
        np.testing.assert_array_equal(a.pan, b.pan)
        if a.gt is None:
            assert b.gt is None
        else:
            np.testing.assert_array_equal(a.gt, b.gt)
        assert (a.sensor, a.ratio, a.max_value, a.band_names) == (
            b.sensor, b.ratio, b.max_value, b.band_names)
    with h5py.File(src, "r") as f, h5py.File(out, "r") as g:
        for key in ("sensor", "ratio", "bit_depth", "max_value", "bands", "resolution"):
            assert f.attrs[key] == g.attrs[key], key


def _scene(**kw) -> Scene:
    rng = np.random.default_rng(1)
    args = dict(ms=rng.uniform(0, 2047, (4, 6, 5)), pan=rng.uniform(0, 2047, (24, 20)),
                sensor=get_sensor("QB"))
    args.update(kw)
    return Scene(**args)


def test_round_trip_keeps_fused_nodata_and_georef(tmp_path):
    from affine import Affine

    mask = np.zeros((24, 20), bool)
    mask[:4, :8] = True
    s = _scene(nodata=mask, transform=Affine(0.5, 0, 500000.0, 0, -0.5, 4200000.0),
               crs="EPSG:32633")
    fused = np.random.default_rng(2).uniform(0, 2047, (4, 24, 20)).astype(np.float32)
    out = write_h5(tmp_path / "f.h5", s, fused=fused)
    from tta.io import read_h5

    back, fused_back = read_h5(out, with_fused=True)
    np.testing.assert_array_equal(fused_back, fused)
    np.testing.assert_array_equal(back.nodata, mask)
    assert back.transform == s.transform and back.crs == "EPSG:32633"
    assert back.nodata_fraction() == pytest.approx(32 / 480)


def test_scene_validation_messages():
    with pytest.raises(InputError, match="is not ratio 4 x MS"):
        _scene(pan=np.zeros((23, 20)))
    with pytest.raises(InputError, match="MS has 3 bands but sensor QB has 4"):
        _scene(ms=np.zeros((3, 6, 5)))
    with pytest.raises(InputError, match="NaN or infinite"):
        _scene(ms=np.full((4, 6, 5), np.inf))
    with pytest.raises(InputError, match="negative DN"):
        _scene(pan=-np.ones((24, 20)))
    with pytest.raises(InputError, match="empty image"):
        _scene(ms=np.zeros((4, 0, 5)), pan=np.zeros((0, 20)))
    with pytest.raises(InputError, match="GT must be"):
        _scene(gt=np.zeros((4, 6, 5)))


def test_nodata_pixels_are_not_validated():
    mask = np.zeros((24, 20), bool)
    mask[:4, :4] = True
    pan = np.ones((24, 20))
    pan[:4, :4] = -9999
    s = _scene(pan=pan, nodata=mask)
    assert s.ms_valid().sum() == 6 * 5 - 1


def test_writer_refuses_inputs_and_existing_files(real_file, tmp_path):
    src = real_file("qb/qb_abfnet_train_rr.h5")
    before = sha(src)
    s = read_scene(src)
    with pytest.raises(OutputError, match="is an input"):
        write_h5(src, s, overwrite=True)
    out = tmp_path / "o.h5"
    out.write_text("keep me")
    with pytest.raises(OutputError, match="already exists"):
        write_h5(out, s)
    assert out.read_text() == "keep me"
    write_h5(out, s, overwrite=True)
    assert read_scene(out).ms.shape == (4, 64, 64)
    assert sha(src) == before
    assert [p.name for p in tmp_path.iterdir()] == ["o.h5"]  # no temporary files left


def test_failed_write_leaves_nothing(tmp_path):
    s = _scene()
    with pytest.raises(InputError, match="does not match"):
        write_h5(tmp_path / "bad.h5", s, fused=np.zeros((4, 5, 5), np.float32))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("spec", "kind", "n_files", "index"),
    [("a.h5", "h5", 1, None), ("a.h5#2", "h5", 1, 2), ("a.mat", "mat", 1, None),
     ("m.tif+p.tif", "geotiff", 2, None), ("b2.tif+b3.tif+b8.TIF", "geotiff", 3, None)],
)
def test_parse_spec(spec, kind, n_files, index):
    p = parse_spec(spec)
    assert (p.kind, len(p.files), p.index) == (kind, n_files, index)


@pytest.mark.parametrize(("spec", "msg"), [("a.txt", "unrecognised"), ("a.h5#x", "integer"),
                                           ("a.tif", "pair"), ("a.mat#1", "h5 files only")])
def test_parse_spec_errors(spec, msg):
    with pytest.raises(InputError, match=msg):
        parse_spec(spec)


def test_manifest(tmp_path):
    (tmp_path / "s.yaml").write_text("ms: [b2.tif, b3.tif]\npan: b8.tif\nsensor: LANDSAT8\n")
    p = parse_spec(tmp_path / "s.yaml")
    assert p.kind == "geotiff" and p.sensor == "LANDSAT8"
    assert [f.name for f in p.files] == ["b2.tif", "b3.tif", "b8.tif"]
