"""MATLAB toolbox-convention .mat scenes: v5 (scipy) and v7.3 (HDF5) files."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io

from tta.errors import InputError, SensorError
from tta.io import read_h5, read_mat, read_scene

_MATLAB_CLASS = {np.dtype(np.float64): "double", np.dtype(np.float32): "single",
                 np.dtype(np.uint16): "uint16", np.dtype(np.uint8): "uint8"}


def save_v73(path: Path, variables: dict) -> Path:
    """Write a MATLAB v7.3 file as MATLAB does: HDF5 with a 512-byte userblock holding the
    128-byte MAT header, arrays stored with reversed axes, strings as uint16 char arrays."""
    with h5py.File(path, "w", userblock_size=512) as f:
        for name, value in variables.items():
            if isinstance(value, str):  # MATLAB 1xN char -> h5py (N, 1)
                codes = np.array([[ord(c)] for c in value], dtype=np.uint16)
                ds = f.create_dataset(name, data=codes)
                ds.attrs["MATLAB_class"] = np.bytes_("char")
                ds.attrs["MATLAB_int_decode"] = np.int32(2)
                continue
            arr = np.atleast_2d(np.asarray(value))
            ds = f.create_dataset(name, data=arr.T)
            ds.attrs["MATLAB_class"] = np.bytes_(_MATLAB_CLASS[arr.dtype])
    text = ("MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 "
            "HDF5 schema 1.00 .").ljust(116).encode()
    header = text + b"\0" * 8 + b"\x00\x02" + b"IM"
    assert len(header) == 128
    with path.open("r+b") as fh:
        fh.write(header)
    return path


def toolbox_vars(c: int = 4, h: int = 8, w: int = 6, r: int = 4, seed: int = 0) -> dict:
    """Channel-last toolbox variables with distinct integer DN."""
    rng = np.random.default_rng(seed)
    return {
        "I_MS_LR": rng.integers(1, 2047, size=(h, w, c)).astype(np.float64),
        "I_PAN": rng.integers(1, 2047, size=(r * h, r * w)).astype(np.uint16),
        "I_GT": rng.integers(1, 2047, size=(r * h, r * w, c)).astype(np.float64),
        "I_MS": np.zeros((r * h, r * w, c)),  # upsampled MS: ignored
        "ratio": float(r),
        "L": 11.0,
        "sensor": "QB",
    }


def save(kind: str, path: Path, variables: dict) -> Path:
    if kind == "v5":
        scipy.io.savemat(path, variables)
        return path
    return save_v73(path, variables)


@pytest.fixture(params=["v5", "v73"])
def kind(request) -> str:
    return request.param


def test_reads_toolbox_variables(tmp_path, kind):
    v = toolbox_vars()
    path = save(kind, tmp_path / "scene.mat", v)
    s = read_mat(path)
    np.testing.assert_array_equal(s.ms, v["I_MS_LR"].transpose(2, 0, 1))
    np.testing.assert_array_equal(s.pan, v["I_PAN"])
    np.testing.assert_array_equal(s.gt, v["I_GT"].transpose(2, 0, 1))
    assert s.ms.shape == (4, 8, 6) and s.pan.shape == (32, 24) and s.is_reduced
    assert s.sensor.name == "QB" and s.ratio == 4 and s.max_value == 2047.0
    assert s.meta["files"] == [str(path)] and s.source == str(path)
    assert s.meta["mat_version"] == ("5" if kind == "v5" else "7.3")
    assert {"I_MS_LR", "I_PAN", "I_MS"} <= set(s.meta["variables"])


def test_v73_file_stores_reversed_axes(tmp_path):
    v = toolbox_vars()
    path = save_v73(tmp_path / "s.mat", v)
    assert path.read_bytes()[:19] == b"MATLAB 7.3 MAT-file"
    with h5py.File(path, "r") as f:
        assert f["I_MS_LR"].shape == (4, 6, 8)  # MATLAB (h, w, C) seen as (C, w, h)
    s = read_mat(path)
    assert s.ms[2, 5, 1] == v["I_MS_LR"][5, 1, 2]


def test_overrides_and_optional_variables(tmp_path, kind):
    v = toolbox_vars(c=8, r=4)
    for key in ("I_GT", "L", "ratio"):
        del v[key]
    v["sensor"] = "WorldView-3"  # an alias
    path = save(kind, tmp_path / "s.mat", v)
    s = read_mat(path)
    assert s.sensor.name == "WV3" and s.gt is None and s.ratio == 4 and s.max_value == 2047.0
    s = read_mat(path, sensor="WV2", max_value=1000.0)
    assert s.sensor.name == "WV2" and s.max_value == 1000.0
    v["L"] = 12.0
    s = read_mat(save(kind, tmp_path / "l.mat", v))
    assert s.max_value == 4095.0
    assert read_mat(tmp_path / "l.mat", max_value=300.0).max_value == 300.0


def test_single_band_and_pan_with_trailing_axis(tmp_path):
    rng = np.random.default_rng(2)
    ms = rng.integers(1, 200, size=(5, 5)).astype(np.float64)
    pan = rng.integers(1, 200, size=(10, 10, 1)).astype(np.float64)
    path = tmp_path / "one.mat"
    scipy.io.savemat(path, {"I_MS_LR": ms[:, :, None], "I_PAN": pan, "ratio": 2.0})
    sensor = {"name": "ONEBAND", "bands": ["b"], "ratio": 2, "bit_depth": 8,
              "max_value": 255, "mtf_ms": 0.3, "mtf_pan": 0.15}
    yaml_path = tmp_path / "oneband.yaml"
    import yaml

    yaml_path.write_text(yaml.safe_dump(sensor))
    s = read_mat(path, sensor=yaml_path)
    np.testing.assert_array_equal(s.ms[0], ms)
    np.testing.assert_array_equal(s.pan, pan[:, :, 0])
    assert s.ratio == 2


def test_matches_real_h5_scene(real_file, tmp_path, kind):
    ref = read_h5(real_file("wv3/wv3_cdif_rr.h5"))
    v = {"I_MS_LR": ref.ms.transpose(1, 2, 0), "I_PAN": ref.pan,
         "I_GT": ref.gt.transpose(1, 2, 0), "ratio": 4.0, "L": 11.0, "sensor": "WV3"}
    s = read_scene(save(kind, tmp_path / "cdif.mat", v))
    np.testing.assert_array_equal(s.ms, ref.ms)
    np.testing.assert_array_equal(s.pan, ref.pan)
    np.testing.assert_array_equal(s.gt, ref.gt)
    assert (s.sensor.name, s.ratio, s.max_value) == ("WV3", 4, 2047.0)


def test_v73_without_matlab_header_is_detected(tmp_path):
    v = toolbox_vars()
    path = tmp_path / "plain.mat"
    with h5py.File(path, "w") as f:
        for name in ("I_MS_LR", "I_PAN"):
            f.create_dataset(name, data=np.asarray(v[name]).T)
    s = read_mat(path, sensor="QB")
    np.testing.assert_array_equal(s.ms, v["I_MS_LR"].transpose(2, 0, 1))
    assert s.meta["mat_version"] == "7.3"


# ---------------------------------------------------------------------------------- errors
def _one_line(info, *words: str) -> None:
    text = str(info.value)
    assert "\n" not in text
    for word in words:
        assert word in text, text


def test_missing_pan_lists_variables(tmp_path, kind):
    v = toolbox_vars()
    del v["I_PAN"]
    path = save(kind, tmp_path / "nopan.mat", v)
    with pytest.raises(InputError) as info:
        read_mat(path)
    _one_line(info, "missing variable(s) I_PAN", "found:", "I_MS_LR", "I_GT", "sensor")


def test_sensor_missing_or_unknown(tmp_path, kind):
    v = toolbox_vars()
    del v["sensor"]
    path = save(kind, tmp_path / "nosensor.mat", v)
    with pytest.raises(InputError) as info:
        read_mat(path)
    _one_line(info, "does not name its sensor", "--sensor")
    assert read_mat(path, sensor="GF2").sensor.name == "GF2"
    v["sensor"] = "none"
    with pytest.raises(InputError, match="--sensor"):
        read_mat(save(kind, tmp_path / "none.mat", v))
    v["sensor"] = "Hubble"
    with pytest.raises(InputError) as info:
        read_mat(save(kind, tmp_path / "hubble.mat", v))
    _one_line(info, "'Hubble'", "--sensor")
    with pytest.raises(SensorError):  # an unknown name given by the caller stays a SensorError
        read_mat(path, sensor="Hubble")


@pytest.mark.parametrize("keep", [0.02, 0.1, 0.5, 0.9, 0.99])
def test_truncated_files(tmp_path, kind, keep):
    # Cuts land in I_MS_LR, I_PAN, ... and in variables the reader skips (I_MS, sensor).
    path = save(kind, tmp_path / "full.mat", toolbox_vars(h=32, w=32))
    data = path.read_bytes()
    truncated = tmp_path / "truncated.mat"
    truncated.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(InputError) as info:
        read_mat(truncated)
    _one_line(info, "truncated.mat")
    assert "truncated" in str(info.value).replace("truncated.mat", "")


def test_garbage_and_absent_files(tmp_path):
    garbage = tmp_path / "garbage.mat"
    garbage.write_bytes(b"\x01\x02" * 300)
    with pytest.raises(InputError) as info:
        read_mat(garbage)
    _one_line(info, "garbage.mat", "not a readable MAT file")
    with pytest.raises(InputError) as info:
        read_mat(tmp_path / "absent.mat")
    _one_line(info, "absent.mat", "file not found")


def test_inconsistent_arrays(tmp_path, kind):
    v = toolbox_vars()
    v["I_PAN"] = v["I_PAN"][:-1]
    with pytest.raises(InputError) as info:
        read_mat(save(kind, tmp_path / "shape.mat", v))
    _one_line(info, "PAN 31x24 is not ratio 4 x MS 8x6")
    v = toolbox_vars()
    v["ratio"] = 2.5
    with pytest.raises(InputError, match="'ratio' must be a positive integer"):
        read_mat(save(kind, tmp_path / "ratio.mat", v))
    v = toolbox_vars()
    v["I_PAN"] = "not an image"
    with pytest.raises(InputError, match="'I_PAN' must be a numeric array"):
        read_mat(save(kind, tmp_path / "str.mat", v))
    v = toolbox_vars(c=8)
    with pytest.raises(InputError, match="MS has 8 bands but sensor QB has 4"):
        read_mat(save(kind, tmp_path / "bands.mat", v))
