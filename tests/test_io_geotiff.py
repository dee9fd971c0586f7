"""GeoTIFF pairs: alignment, nodata, windows, writing and round trips (real and generated)."""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS

from tta.errors import InputError, OutputError
from tta.io import (
    Scene,
    read_geotiff_pair,
    read_h5,
    read_scene,
    write_fused,
    write_geotiff,
    write_scene_geotiff,
)
from tta.io import geotiff as gt_module
from tta.sensors import get_sensor

WV3_MS, WV3_PAN = "geotiff/wv3_shanghai_ms.tif", "geotiff/wv3_shanghai_pan.tif"
L8_MS = [f"geotiff/landsat8_B{b}.tif" for b in (2, 3, 4, 5)]
L8_PAN = "geotiff/landsat8_B8.tif"
UTM = "EPSG:32633"
X0, Y0 = 500_000.0, 4_000_000.0  # generated grids: UTM 33N, 2 m MS / 0.5 m PAN


def from_origin(west: float, north: float, xsize: float, ysize: float) -> Affine:
    """North-up grid (like rasterio.transform.from_origin, without its deprecation warning)."""
    return Affine(xsize, 0.0, west, 0.0, -ysize, north)


def sha(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def write_tif(path: Path, data: np.ndarray, transform=None, crs=UTM, nodata=None,
              descriptions=None) -> Path:
    """Write a plain (striped, uncompressed) GeoTIFF for the tests."""
    data = data if data.ndim == 3 else data[None]
    profile = {"driver": "GTiff", "count": data.shape[0], "height": data.shape[1],
               "width": data.shape[2], "dtype": str(data.dtype)}
    if transform is not None:
        profile.update(transform=transform, crs=crs)
    if nodata is not None:
        profile["nodata"] = nodata
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(data)
            for i, d in enumerate(descriptions or (), start=1):
                dst.set_band_description(i, d)
    return path


def make_pair(tmp_path: Path, *, h=10, w=12, bands=4, r=4, seed=0, ms_origin=(X0, Y0),
              pan_origin=(X0, Y0), pan_shape=None, nodata=None, pan_crs=UTM,
              pan_transform=None, ms_size=2.0) -> tuple[Path, Path, np.ndarray, np.ndarray]:
    """A generated MS (one multi-band file) + PAN pair of uint16 DN in ``tmp_path``."""
    rng = np.random.default_rng(seed)
    big_h, big_w = pan_shape or (r * h, r * w)
    ms = rng.integers(1, 2000, size=(bands, h, w), dtype=np.uint16)
    pan = rng.integers(1, 2000, size=(big_h, big_w), dtype=np.uint16)
    ms_t = from_origin(*ms_origin, ms_size, ms_size)
    pan_t = pan_transform or from_origin(*pan_origin, ms_size / r, ms_size / r)
    ms_path = write_tif(tmp_path / "ms.tif", ms, ms_t, nodata=nodata)
    pan_path = write_tif(tmp_path / "pan.tif", pan, pan_t, crs=pan_crs, nodata=nodata)
    return ms_path, pan_path, ms, pan


def assert_same_scene(a: Scene, b: Scene) -> None:
    np.testing.assert_array_equal(a.ms, b.ms)
    np.testing.assert_array_equal(a.pan, b.pan)
    assert a.transform == b.transform
    assert a.crs == b.crs
    assert a.ratio == b.ratio
    assert (a.nodata is None) == (b.nodata is None)
    if a.nodata is not None:
        np.testing.assert_array_equal(a.nodata, b.nodata)


# ---------------------------------------------------------------------------------- real data
@pytest.fixture(scope="module")
def wv3(real_file) -> Scene:
    return read_geotiff_pair([real_file(WV3_MS)], real_file(WV3_PAN), sensor="WV3")


@pytest.fixture(scope="module")
def landsat(real_file) -> Scene:
    return read_geotiff_pair([real_file(p) for p in L8_MS], real_file(L8_PAN),
                             sensor="LANDSAT8")


def test_real_wv3_equals_h5(wv3, real_file):
    ref = read_h5(real_file("wv3/wv3_shanghai_fr.h5"))
    np.testing.assert_array_equal(wv3.ms, ref.ms)
    np.testing.assert_array_equal(wv3.pan, ref.pan)
    assert wv3.ms.dtype == np.float32 and wv3.ms.shape == (8, 325, 325)
    assert wv3.crs == "EPSG:4326"
    assert CRS.from_user_input(wv3.crs) == CRS.from_epsg(4326)
    assert wv3.transform.a == pytest.approx(2.7e-6, rel=1e-9)
    assert wv3.transform.e == pytest.approx(-2.7e-6, rel=1e-9)
    assert (wv3.transform.c, wv3.transform.f) == pytest.approx((121.7446092, 31.2312159))
    assert wv3.ratio == 4 and wv3.nodata is None and wv3.nodata_value is None
    assert wv3.meta["pan_offset_px"] == (0.0, 0.0)
    assert wv3.meta["files"] == [str(real_file(WV3_MS)), str(real_file(WV3_PAN))]
    assert wv3.source == f"{real_file(WV3_MS)}+{real_file(WV3_PAN)}"
    assert wv3.max_value == 2047.0


def test_real_landsat_equals_h5(landsat, real_file):
    ref = read_h5(real_file("landsat8/landsat8_fr.h5"))
    assert landsat.ms.shape == (4, 603, 626) and landsat.pan.shape == (1206, 1252)
    np.testing.assert_array_equal(landsat.ms, ref.ms)
    np.testing.assert_array_equal(landsat.pan, ref.pan)
    assert landsat.ratio == 2 and landsat.crs == "EPSG:32616"
    assert landsat.meta["pan_offset_px"] == (-0.5, -0.5)
    assert landsat.meta["pan_window"] == (1, 1, 1206, 1252)
    assert landsat.meta["ms_window"] == (0, 0, 603, 626)
    # PAN[1:, 1:] of the file: origin moves by one 15 m PAN pixel.
    assert tuple(landsat.transform)[:6] == (15.0, 0.0, 452482.5, 0.0, -15.0, 3408637.5)


def test_real_dispatcher_spec(real_file, wv3):
    spec = f"{real_file(WV3_MS)}+{real_file(WV3_PAN)}"
    assert_same_scene(read_scene(spec, sensor="wv3"), wv3)
    with pytest.raises(InputError, match="do not name their sensor") as info:
        read_scene(spec)
    assert "--sensor" in str(info.value) and "\n" not in str(info.value)


def test_real_wv3_round_trip(wv3, tmp_path):
    ms_out, pan_out = write_scene_geotiff(wv3, tmp_path / "ms.tif", tmp_path / "pan.tif")
    back = read_geotiff_pair(ms_out, pan_out, sensor="WV3")
    assert_same_scene(back, wv3)
    assert back.band_names == wv3.band_names
    with rasterio.open(ms_out) as ds:
        assert ds.transform.almost_equals(wv3.transform @ Affine.scale(4))
        assert ds.descriptions == wv3.band_names


def test_real_landsat_round_trip_keeps_half_pixel_offset(landsat, tmp_path):
    ms_out, pan_out = write_scene_geotiff(landsat, tmp_path / "ms.tif", tmp_path / "pan.tif")
    back = read_geotiff_pair([ms_out], pan_out, sensor="LANDSAT8")
    assert_same_scene(back, landsat)
    assert back.meta["pan_offset_px"] == pytest.approx((-0.5, -0.5))
    with rasterio.open(ms_out) as ds:  # the MS keeps its true position (file origin)
        assert (ds.transform.c, ds.transform.f) == pytest.approx((452475.0, 3408645.0))


def test_real_window_equals_slice_and_round_trips(real_file, wv3, landsat, tmp_path):
    win = read_geotiff_pair([real_file(WV3_MS)], real_file(WV3_PAN), sensor="WV3",
                            window=(10, 20, 30, 40))
    np.testing.assert_array_equal(win.ms, wv3.ms[:, 10:40, 20:60])
    np.testing.assert_array_equal(win.pan, wv3.pan[40:160, 80:240])
    assert win.transform == wv3.transform @ Affine.translation(80, 40)
    ms_out, pan_out = write_scene_geotiff(win, tmp_path / "m.tif", tmp_path / "p.tif")
    assert_same_scene(read_geotiff_pair(ms_out, pan_out, sensor="WV3"), win)

    lwin = read_geotiff_pair([real_file(p) for p in L8_MS], real_file(L8_PAN),
                             sensor="LANDSAT8", window=(100, 3, 50, 7))
    np.testing.assert_array_equal(lwin.ms, landsat.ms[:, 100:150, 3:10])
    np.testing.assert_array_equal(lwin.pan, landsat.pan[200:300, 6:20])
    assert lwin.meta["pan_window"] == (201, 7, 100, 14)
    assert lwin.meta["pan_offset_px"] == (-0.5, -0.5)


def test_real_write_fused_geotiff(wv3, tmp_path):
    fused = np.repeat(wv3.pan[None], 8, axis=0) * np.arange(1, 9, dtype=np.float32)[:, None,
                                                                                     None] / 8
    out = write_fused(tmp_path / "fused.tif", wv3, fused)
    with rasterio.open(out) as ds:
        assert ds.count == 8 and ds.shape == (1300, 1300) and ds.dtypes[0] == "uint16"
        assert ds.crs == CRS.from_epsg(4326) and ds.transform == wv3.transform
        np.testing.assert_array_equal(ds.read(), np.rint(fused).astype(np.uint16))


# ---------------------------------------------------------------------------------- generated
def test_generated_pair_reads_exactly(tmp_path):
    ms_path, pan_path, ms, pan = make_pair(tmp_path)
    s = read_geotiff_pair([ms_path], pan_path, sensor="QB")
    np.testing.assert_array_equal(s.ms, ms)
    np.testing.assert_array_equal(s.pan, pan)
    assert s.crs == UTM and s.transform == from_origin(X0, Y0, 0.5, 0.5)
    assert s.nodata is None and s.meta["pan_offset_px"] == (0.0, 0.0)


def test_single_band_files_stack_in_order(tmp_path):
    ms_path, pan_path, ms, pan = make_pair(tmp_path)
    t = from_origin(X0, Y0, 2.0, 2.0)
    names = ["blue", "green", "red", "nir"]
    files = [write_tif(tmp_path / f"b{i}.tif", ms[i], t, descriptions=[names[i]])
             for i in range(4)]
    stacked = read_geotiff_pair(files, pan_path, sensor="QB")
    np.testing.assert_array_equal(stacked.ms, ms)
    assert stacked.band_names == tuple(names)
    reordered = read_geotiff_pair(files[::-1], pan_path, sensor="QB")
    np.testing.assert_array_equal(reordered.ms, ms[::-1])
    assert reordered.band_names == tuple(names[::-1])


@pytest.mark.parametrize(
    ("shift_px", "start", "residual"),
    [(0.3, 0, 0.3), (0.7, 1, -0.3), (0.5, 1, -0.5), (-0.5, 0, -0.5), (2.0, 2, 0.0)],
)
def test_sub_pixel_offsets_round_half_up(tmp_path, shift_px, start, residual):
    # PAN origin shifted up/left by shift_px PAN pixels => MS corner at +shift_px in PAN px.
    d = 0.5 * shift_px
    ms_path, pan_path, ms, pan = make_pair(tmp_path, pan_origin=(X0 - d, Y0 + d),
                                           pan_shape=(44, 52))
    s = read_geotiff_pair(ms_path, pan_path, sensor="QB")
    assert s.meta["pan_window"][:2] == (start, start)
    assert s.meta["pan_offset_px"] == pytest.approx((residual, residual), abs=1e-9)
    np.testing.assert_array_equal(s.pan, pan[start:start + 40, start:start + 48])
    np.testing.assert_array_equal(s.ms, ms)


def test_ms_starting_before_pan_is_cropped_by_whole_ms_pixels(tmp_path):
    # PAN starts 5 PAN px right of / below the MS corner: drop 2 MS px, start PAN at index 3.
    ms_path, pan_path, ms, pan = make_pair(tmp_path, pan_origin=(X0 + 2.5, Y0 - 2.5))
    s = read_geotiff_pair(ms_path, pan_path, sensor="QB")
    assert s.meta["ms_window"] == (2, 2, 8, 10)
    assert s.meta["pan_window"] == (3, 3, 32, 40)
    np.testing.assert_array_equal(s.ms, ms[:, 2:10, 2:12])
    np.testing.assert_array_equal(s.pan, pan[3:35, 3:43])
    assert s.transform == from_origin(X0 + 2.5 + 1.5, Y0 - 2.5 - 1.5, 0.5, 0.5)


def test_largest_common_footprint(tmp_path):
    # PAN larger than 4x MS on one axis, smaller on the other.
    ms_path, pan_path, ms, pan = make_pair(tmp_path, pan_shape=(45, 41))
    s = read_geotiff_pair(ms_path, pan_path, sensor="QB")
    assert s.ms.shape == (4, 10, 10) and s.pan.shape == (40, 40)
    np.testing.assert_array_equal(s.ms, ms[:, :, :10])
    np.testing.assert_array_equal(s.pan, pan[:40, :40])


def test_window_equals_slice_of_full_read(tmp_path):
    ms_path, pan_path, _, _ = make_pair(tmp_path, pan_origin=(X0 - 0.25, Y0 + 0.25),
                                        pan_shape=(43, 50))
    full = read_geotiff_pair(ms_path, pan_path, sensor="QB")
    part = read_geotiff_pair(ms_path, pan_path, sensor="QB", window=(3, 4, 5, 6))
    np.testing.assert_array_equal(part.ms, full.ms[:, 3:8, 4:10])
    np.testing.assert_array_equal(part.pan, full.pan[12:32, 16:40])
    assert part.transform == full.transform @ Affine.translation(16, 12)
    assert part.meta["pan_offset_px"] == full.meta["pan_offset_px"]
    for bad in [(0, 0, 11, 1), (-1, 0, 2, 2), (0, 0, 0, 3), (9, 11, 1, 2)]:
        with pytest.raises(InputError, match="window"):
            read_geotiff_pair(ms_path, pan_path, sensor="QB", window=bad)


def _nodata_pair(tmp_path: Path, dtype=np.uint16, nodata=0):
    rng = np.random.default_rng(3)
    ms = rng.integers(1, 2000, size=(4, 10, 12)).astype(dtype)
    pan = rng.integers(1, 2000, size=(40, 48)).astype(dtype)
    pan[:5, :7] = nodata  # partial MS blocks (rows 0-1, cols 0-1) and full block (0, 0)
    pan[20:24, 44:48] = nodata  # exactly MS pixel (5, 11)
    ms[2, 7, 3] = nodata  # one band of MS pixel (7, 3)
    ms_path = write_tif(tmp_path / "ms.tif", ms, from_origin(X0, Y0, 2, 2), nodata=nodata)
    pan_path = write_tif(tmp_path / "pan.tif", pan, from_origin(X0, Y0, 0.5, 0.5),
                         nodata=nodata)
    return ms_path, pan_path, ms.astype(np.float32), pan.astype(np.float32)


def _expected_mask() -> np.ndarray:
    mask = np.zeros((40, 48), bool)
    mask[:5, :7] = True
    mask[20:24, 44:48] = True
    mask[28:32, 12:16] = True  # MS pixel (7, 3) upsampled
    return mask


def test_nodata_mask_and_zeroing(tmp_path):
    ms_path, pan_path, ms, pan = _nodata_pair(tmp_path)
    s = read_geotiff_pair(ms_path, pan_path, sensor="QB")
    mask = _expected_mask()
    np.testing.assert_array_equal(s.nodata, mask)
    assert s.nodata_value == 0.0
    np.testing.assert_array_equal(s.pan[mask], 0)
    np.testing.assert_array_equal(s.pan[~mask], pan[~mask])
    # MS pixels whose whole 4x4 block is masked are zeroed (all bands), the others kept.
    full = [(0, 0), (5, 11), (7, 3)]
    for y, x in full:
        np.testing.assert_array_equal(s.ms[:, y, x], 0)
    keep = np.ones((10, 12), bool)
    keep[tuple(np.array(full).T)] = False
    np.testing.assert_array_equal(s.ms[:, keep], ms[:, keep])
    assert s.ms[0, 0, 1] == ms[0, 0, 1] and s.ms[0, 1, 0] == ms[0, 1, 0]  # partial blocks
    assert s.nodata_fraction() == pytest.approx(mask.mean())


def test_nodata_round_trip_uint16(tmp_path):
    ms_path, pan_path, _, _ = _nodata_pair(tmp_path)
    s = read_geotiff_pair(ms_path, pan_path, sensor="QB")
    out = tmp_path / "out"
    out.mkdir()
    ms_out, pan_out = write_scene_geotiff(s, out / "ms.tif", out / "pan.tif")
    back = read_geotiff_pair(ms_out, pan_out, sensor="QB")
    assert_same_scene(back, s)
    assert back.crs == UTM and back.nodata_value == 0.0
    with rasterio.open(pan_out) as ds:
        assert ds.nodata == 0 and ds.crs == CRS.from_user_input(UTM)


def test_nodata_round_trip_float32_nan(tmp_path):
    ms_path, pan_path, _, _ = _nodata_pair(tmp_path, dtype=np.float32, nodata=np.nan)
    s = read_geotiff_pair(ms_path, pan_path, sensor="QB")
    np.testing.assert_array_equal(s.nodata, _expected_mask())
    assert np.isnan(s.nodata_value) and np.isfinite(s.pan).all()
    ms_out, pan_out = write_scene_geotiff(s, tmp_path / "m.tif", tmp_path / "p.tif",
                                          dtype="float32")
    back = read_geotiff_pair(ms_out, pan_out, sensor="QB")
    assert_same_scene(back, s)
    assert back.ms.dtype == np.float32


def test_nodata_value_colliding_with_valid_data_uses_mask_band(tmp_path):
    rng = np.random.default_rng(5)
    pan = rng.integers(0, 50, size=(16, 16)).astype(np.float32)
    pan[0, 0] = 0  # a valid pixel equal to the default nodata value 0
    mask = np.zeros((16, 16), bool)
    mask[8:, 10:] = True
    pan[mask] = 0
    ms = rng.integers(1, 50, size=(4, 4, 4)).astype(np.float32)
    ms[:, 2:, 3] = 0  # MS pixels whose whole PAN block is nodata hold 0, as the reader makes
    scene = Scene(ms=ms, pan=pan, sensor=get_sensor("QB"), nodata=mask,
                  transform=from_origin(X0, Y0, 0.5, 0.5), crs=UTM)
    ms_out, pan_out = write_scene_geotiff(scene, tmp_path / "m.tif", tmp_path / "p.tif")
    with rasterio.open(pan_out) as ds:
        assert ds.nodata is None
        np.testing.assert_array_equal(ds.read_masks(1) == 0, mask)
    back = read_geotiff_pair(ms_out, pan_out, sensor="QB")
    assert_same_scene(back, scene)
    assert not [p for p in tmp_path.iterdir() if p.suffix not in (".tif",)]


def test_ungeoreferenced_scene_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    scene = Scene(ms=rng.integers(0, 2047, (4, 6, 5)).astype(np.float32),
                  pan=rng.integers(0, 2047, (24, 20)).astype(np.float32),
                  sensor=get_sensor("QB"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ms_out, pan_out = write_scene_geotiff(scene, tmp_path / "m.tif", tmp_path / "p.tif")
        back = read_geotiff_pair(ms_out, pan_out, sensor="QB")
    assert back.transform is None and back.crs is None
    assert back.meta["georeferenced"] is False
    assert_same_scene(back, scene)


# ---------------------------------------------------------------------------------- writing
@pytest.fixture
def small_scene(tmp_path) -> Scene:
    src = tmp_path / "src"
    src.mkdir()
    ms_path, pan_path, _, _ = _nodata_pair(src)
    return read_geotiff_pair(ms_path, pan_path, sensor="QB")


def test_write_geotiff_uint16_and_float32(small_scene, tmp_path):
    image = np.full(small_scene.shape, 1000.4, dtype=np.float32)
    image[1, 10, 10] = 70000.0
    image[2, 10, 10] = 1.6
    out16 = write_geotiff(tmp_path / "f16.tif", image, small_scene)
    out32 = write_geotiff(tmp_path / "f32.tif", image, small_scene, dtype="float32")
    mask = small_scene.nodata
    with rasterio.open(out16) as ds:
        data = ds.read()
        assert data.dtype == np.uint16 and ds.nodata == 0
        assert ds.profile["tiled"] and ds.block_shapes[0] == (256, 256)
        assert ds.profile["compress"] == "deflate"
        assert ds.tags(ns="IMAGE_STRUCTURE")["PREDICTOR"] == "2"
        assert ds.descriptions == ("blue", "green", "red", "nir")
        assert ds.transform == small_scene.transform and ds.crs == CRS.from_user_input(UTM)
        assert data[1, 10, 10] == 65535 and data[2, 10, 10] == 2
        assert (data[3][~mask] == 1000).all() and (data[:, mask] == 0).all()
        np.testing.assert_array_equal(ds.read_masks(1) == 0, mask)
    with rasterio.open(out32) as ds:
        data = ds.read()
        assert data.dtype == np.float32 and ds.profile["compress"] == "deflate"
        assert ds.tags(ns="IMAGE_STRUCTURE")["PREDICTOR"] == "3"
        assert ds.profile["tiled"] and ds.nodata == 0
        expected = image.copy()
        expected[:, mask] = 0
        np.testing.assert_array_equal(data, expected)
        np.testing.assert_array_equal(ds.read_masks(1) == 0, mask)


def test_write_geotiff_valid_zero_falls_back_to_mask_band(small_scene, tmp_path):
    image = np.full(small_scene.shape, 7.0, dtype=np.float32)
    image[0, 10, 10] = -3.0  # clipped to 0 = the nodata value: a mask band is written instead
    out = write_geotiff(tmp_path / "f.tif", image, small_scene)
    with rasterio.open(out) as ds:
        data = ds.read()
        assert ds.nodata is None and data[0, 10, 10] == 0
        np.testing.assert_array_equal(ds.read_masks(1) == 0, small_scene.nodata)
        np.testing.assert_array_equal(ds.read_masks(3) == 0, small_scene.nodata)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.tif", "src"]


def test_write_geotiff_rejects_bad_shape_and_dtype(small_scene, tmp_path):
    with pytest.raises(InputError, match="does not match"):
        write_geotiff(tmp_path / "x.tif", np.zeros((4, 40, 47)), small_scene)
    with pytest.raises(InputError, match="does not match"):
        write_geotiff(tmp_path / "x.tif", np.zeros((3, 40, 48)), small_scene)
    with pytest.raises(InputError, match="dtype"):
        write_geotiff(tmp_path / "x.tif", np.zeros(small_scene.shape), small_scene, dtype="int8")
    assert not (tmp_path / "x.tif").exists()


def test_write_refuses_overwrite_and_inputs(small_scene, tmp_path):
    inputs = [Path(p) for p in small_scene.meta["files"]]
    before = {p: sha(p) for p in inputs}
    image = np.ones(small_scene.shape, dtype=np.float32)
    out = write_geotiff(tmp_path / "out.tif", image, small_scene)
    first = sha(out)
    with pytest.raises(OutputError, match="already exists"):
        write_geotiff(out, image * 2, small_scene)
    assert sha(out) == first
    write_geotiff(out, image * 2, small_scene, overwrite=True)
    with rasterio.open(out) as ds:
        assert ds.read(1)[~small_scene.nodata].max() == 2
    for src in inputs:
        with pytest.raises(OutputError, match="is an input"):
            write_geotiff(src, image, small_scene, overwrite=True)
        with pytest.raises(OutputError, match="is an input"):
            write_scene_geotiff(small_scene, tmp_path / "m.tif", src, overwrite=True)
    with pytest.raises(OutputError, match="different files"):
        write_scene_geotiff(small_scene, tmp_path / "same.tif", tmp_path / "same.tif")
    with pytest.raises(OutputError, match="already exists"):
        write_scene_geotiff(small_scene, tmp_path / "new_ms.tif", out)
    assert not (tmp_path / "new_ms.tif").exists()
    assert {p: sha(p) for p in inputs} == before


def test_failed_writes_leave_no_files(small_scene, tmp_path, monkeypatch):
    real_write = gt_module._write_raster
    calls: list[Path] = []

    def write_then_fail_on(n: int):
        def fake(tmp, data, **kwargs):
            calls.append(tmp)
            real_write(tmp, data, **kwargs)  # the temporary file really is written
            if len(calls) == n:
                raise RuntimeError("disk full")

        return fake

    out = tmp_path / "out"
    out.mkdir()
    monkeypatch.setattr(gt_module, "_write_raster", write_then_fail_on(2))
    with pytest.raises(RuntimeError, match="disk full"):  # MS written, PAN fails
        write_scene_geotiff(small_scene, out / "ms.tif", out / "pan.tif")
    assert len(calls) == 2 and calls[0].name.endswith(".part")
    assert list(out.iterdir()) == []
    calls.clear()
    monkeypatch.setattr(gt_module, "_write_raster", write_then_fail_on(1))
    with pytest.raises(RuntimeError, match="disk full"):
        write_geotiff(out / "fused.tif", np.ones(small_scene.shape), small_scene)
    assert len(calls) == 1 and list(out.iterdir()) == []


def test_gdal_write_errors_become_output_errors(small_scene, tmp_path, monkeypatch):
    real_open = rasterio.open

    def no_space(path, mode="r", **kwargs):
        if mode == "w":
            raise rasterio.errors.RasterioIOError("No space left on device")
        return real_open(path, mode, **kwargs)

    out = tmp_path / "out"
    out.mkdir()
    monkeypatch.setattr(rasterio, "open", no_space)
    with pytest.raises(OutputError) as info:
        write_geotiff(out / "f.tif", np.ones(small_scene.shape), small_scene)
    _assert_one_line(info, "f.tif", "cannot write", "No space left")
    with pytest.raises(OutputError, match="cannot write"):
        write_scene_geotiff(small_scene, out / "m.tif", out / "p.tif")
    assert list(out.iterdir()) == []


# ---------------------------------------------------------------------------------- bad input
def _assert_one_line(exc_info, *words: str) -> None:
    text = str(exc_info.value)
    assert "\n" not in text and "Traceback" not in text
    for word in words:
        assert word in text, text


def test_different_crs(tmp_path):
    ms_path, pan_path, _, _ = make_pair(tmp_path, pan_crs="EPSG:32632")
    with pytest.raises(InputError) as info:
        read_geotiff_pair(ms_path, pan_path, sensor="QB")
    _assert_one_line(info, "different CRS", "EPSG:32633", "EPSG:32632")


def test_non_integer_ratio(tmp_path):
    ms_path, pan_path, _, _ = make_pair(tmp_path, ms_size=1.75,
                                        pan_transform=from_origin(X0, Y0, 0.5, 0.5))
    with pytest.raises(InputError) as info:
        read_geotiff_pair(ms_path, pan_path, sensor="QB")
    _assert_one_line(info, "pixel ratio", "3.5", "is not an integer")


def test_unequal_axis_ratios(tmp_path):
    pan_t = Affine(0.5, 0, X0, 0, -1.0, Y0)  # ratio 4 in x, 2 in y
    ms_path, pan_path, _, _ = make_pair(tmp_path, pan_transform=pan_t)
    with pytest.raises(InputError) as info:
        read_geotiff_pair(ms_path, pan_path, sensor="QB")
    _assert_one_line(info, "is not an integer")


def test_rotated_transform(tmp_path):
    pan_t = from_origin(X0, Y0, 0.5, 0.5) @ Affine.rotation(10)
    ms_path, pan_path, _, _ = make_pair(tmp_path, pan_transform=pan_t)
    with pytest.raises(InputError) as info:
        read_geotiff_pair(ms_path, pan_path, sensor="QB")
    _assert_one_line(info, "rotated or sheared", "pan.tif")


@pytest.mark.parametrize("origin", [(X0 + 1000, Y0), (X0, Y0 + 1000), (X0 - 23.0, Y0)])
def test_non_overlapping_footprints(tmp_path, origin):
    # (X0 - 23, Y0): the MS ends 1 m (half an MS pixel) after the PAN starts.
    ms_path, pan_path, _, _ = make_pair(tmp_path, ms_origin=origin)
    with pytest.raises(InputError) as info:
        read_geotiff_pair(ms_path, pan_path, sensor="QB")
    _assert_one_line(info, "footprints do not overlap")


def test_ms_files_on_different_grids(tmp_path):
    _, pan_path, ms, _ = make_pair(tmp_path)
    t = from_origin(X0, Y0, 2.0, 2.0)
    good = [write_tif(tmp_path / f"b{i}.tif", ms[i], t) for i in range(3)]
    shifted = write_tif(tmp_path / "b3.tif", ms[3], from_origin(X0 + 2, Y0, 2.0, 2.0))
    cropped = write_tif(tmp_path / "b3c.tif", ms[3, :, :11], t)
    other_crs = write_tif(tmp_path / "b3p.tif", ms[3], t, crs="EPSG:32632")
    for bad, word in [(shifted, "geotransform"), (cropped, "shape"), (other_crs, "CRS")]:
        with pytest.raises(InputError) as info:
            read_geotiff_pair([*good, bad], pan_path, sensor="QB")
        _assert_one_line(info, "share one grid", word, bad.name)


def test_missing_and_corrupt_files(tmp_path):
    ms_path, pan_path, _, _ = make_pair(tmp_path)
    with pytest.raises(InputError) as info:
        read_geotiff_pair([tmp_path / "nope.tif"], pan_path, sensor="QB")
    _assert_one_line(info, "nope.tif", "file not found")
    truncated = tmp_path / "truncated.tif"
    truncated.write_bytes(pan_path.read_bytes()[: pan_path.stat().st_size // 2])
    with pytest.raises(InputError) as info:
        read_geotiff_pair(ms_path, truncated, sensor="QB")
    _assert_one_line(info, "truncated.tif", "cannot read")
    assert "previous exception" not in str(info.value)
    header_only = tmp_path / "header.tif"
    header_only.write_bytes(ms_path.read_bytes()[:100])
    with pytest.raises(InputError) as info:
        read_geotiff_pair(header_only, pan_path, sensor="QB")
    _assert_one_line(info, "header.tif")
    text = tmp_path / "text.tif"
    text.write_text("not a tiff at all")
    with pytest.raises(InputError) as info:
        read_geotiff_pair(ms_path, text, sensor="QB")
    _assert_one_line(info, "text.tif", "not a readable GeoTIFF")


def test_band_count_sensor_and_georef_mismatch(tmp_path):
    ms_path, pan_path, _, _ = make_pair(tmp_path)
    # 4 bands of an 8-band sensor: its standard 4-band layout (issue 16), or the names given
    assert read_geotiff_pair(ms_path, pan_path, sensor="WV3").sensor.bands == (
        "blue", "green", "red", "nir1")
    with pytest.raises(InputError) as info:
        read_geotiff_pair(ms_path, pan_path, sensor="WV3", bands=("blue", "green", "red", "swir1"))
    _assert_one_line(info, "swir1 not among them", "WV3")
    with pytest.raises(InputError) as info:
        read_geotiff_pair(ms_path, pan_path)
    _assert_one_line(info, "do not name their sensor", "--sensor")
    plain = write_tif(tmp_path / "plain.tif", np.ones((40, 48), np.uint16))
    with pytest.raises(InputError) as info:
        read_geotiff_pair(ms_path, plain, sensor="QB")
    _assert_one_line(info, "is georeferenced but", "plain.tif")


def test_ungeoreferenced_pair_must_have_exact_ratio_and_one_pan_band(tmp_path):
    ms = np.ones((4, 5, 6), np.uint16)
    ms_path = write_tif(tmp_path / "ms.tif", ms)
    pan_path = write_tif(tmp_path / "pan.tif", np.ones((20, 24), np.uint16))
    s = read_geotiff_pair(ms_path, pan_path, sensor="QB")
    assert s.ratio == 4 and s.transform is None and s.pan.shape == (20, 24)
    upsampled = write_tif(tmp_path / "up.tif", np.ones((4, 20, 24), np.uint16))
    with pytest.raises(InputError) as info:
        read_geotiff_pair(upsampled, pan_path, sensor="QB")
    _assert_one_line(info, "without georeferencing", "exactly ratio 4")
    ms_path, _, ms, _ = make_pair(tmp_path)
    two_band_pan = write_tif(tmp_path / "pan2.tif", np.ones((2, 40, 48), np.uint16),
                             from_origin(X0, Y0, 0.5, 0.5))
    with pytest.raises(InputError) as info:
        read_geotiff_pair(ms_path, two_band_pan, sensor="QB")
    _assert_one_line(info, "pan2.tif", "must hold 1 band, found 2")


def test_declared_nodata_without_masked_pixels_round_trips(tmp_path):
    ms_path, pan_path, ms, pan = make_pair(tmp_path, nodata=0)  # DN >= 1: nothing masked
    s = read_geotiff_pair(ms_path, pan_path, sensor="QB")
    assert s.nodata is None and s.nodata_value == 0.0
    np.testing.assert_array_equal(s.pan, pan)
    ms_out, pan_out = write_scene_geotiff(s, tmp_path / "m.tif", tmp_path / "p.tif")
    back = read_geotiff_pair(ms_out, pan_out, sensor="QB")
    assert_same_scene(back, s)
    assert back.nodata_value == 0.0
