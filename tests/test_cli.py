"""The command line: help, sensors, info on every shared file, degrade, and bad input."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from tta import __version__
from tta.cli import cli

SHARED_SCENES = [
    "wv3/wv3_patches_rr.h5", "wv3/wv3_cdif_rr.h5", "wv3/wv3_shanghai_fr.h5",
    "wv2/wv2_grip_top_fr.h5", "qb/qb_abfnet_train_rr.h5", "qb/qb_abfnet_fr.h5",
    "gf2/gf2_psdata3_train_rr.h5", "gf2/gf2_psdata3_train_fr.h5", "gf2/gf2_sfnlr_rr.h5",
    "landsat8/landsat8_fr.h5",
]


def run(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_help_and_version():
    res = run("--help")
    assert res.exit_code == 0
    for cmd in ("sensors", "info", "degrade"):
        assert cmd in res.output
    res = run("--version")
    assert res.exit_code == 0 and __version__ in res.output


def test_sensors_lists_every_preset():
    res = run("sensors")
    assert res.exit_code == 0
    for name in ("WV3", "WV2", "QB", "GF2", "LANDSAT8", "PLEIADES", "SPOT7"):
        assert f"\n{name} " in res.output
    res = run("sensors", "wv3")
    assert res.exit_code == 0 and "mtf_pan: 0.14" in res.output


@pytest.mark.parametrize("rel", SHARED_SCENES)
def test_info_reads_every_shared_h5(real_file, rel):
    path = real_file(rel)
    res = run("info", "--json", str(path))
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    data = data if isinstance(data, list) else [data]
    with h5py.File(path, "r") as f:
        assert len(data) == f["ms"].shape[0]
        for d in data:
            assert d["ms_shape"] == list(f["ms"].shape[1:])
            assert d["pan_shape"] == list(f["pan"].shape[2:])
            assert d["sensor"] == f.attrs["sensor"]
            assert d["ms_range"][1] <= float(np.max(f["ms"])) + 1e-3


@pytest.mark.parametrize(
    ("files", "sensor", "ms", "pan", "crs"),
    [
        (["wv3_shanghai_ms.tif", "wv3_shanghai_pan.tif"], "WV3", [8, 325, 325], [1300, 1300],
         "EPSG:4326"),
        ([f"landsat8_B{b}.tif" for b in (2, 3, 4, 5, 8)], "LANDSAT8", [4, 603, 626],
         [1206, 1252], "32616"),
    ],
)
def test_info_reads_geotiff_pairs(real_file, files, sensor, ms, pan, crs):
    spec = "+".join(str(real_file(f"geotiff/{f}")) for f in files)
    res = run("info", "--json", "--sensor", sensor, spec)
    assert res.exit_code == 0, res.output
    d = json.loads(res.stdout)
    assert (d["ms_shape"], d["pan_shape"]) == (ms, pan)
    assert crs in d["crs"]
    text = run("info", "--sensor", sensor, spec).output
    assert "CRS" in text and "PAN grid" in text


def test_degrade_end_to_end(real_file, tmp_path):
    src = real_file("wv2/wv2_grip_top_fr.h5")
    before = hashlib.sha256(src.read_bytes()).hexdigest()
    out = tmp_path / "rr.h5"
    res = run("-q", "degrade", str(src), "-o", str(out))
    assert res.exit_code == 0, res.output
    with h5py.File(out, "r") as f, h5py.File(src, "r") as g:
        assert f["ms"].shape == (1, 8, 40, 80)
        assert f["pan"].shape == (1, 1, 160, 320)
        np.testing.assert_array_equal(f["gt"][0], g["ms"][0])
        assert f.attrs["resolution"] == "reduced" and f.attrs["sensor"] == "WV2"
    assert hashlib.sha256(src.read_bytes()).hexdigest() == before
    res = run("info", str(out))
    assert res.exit_code == 0 and "reduced" in res.output
    again = run("degrade", str(src), "-o", str(out))
    assert again.exit_code == 2 and "already exists" in again.stderr


def test_degrade_every_sample(real_file, tmp_path):
    out = tmp_path / "gf2_rr.h5"
    res = run("-q", "degrade", str(real_file("gf2/gf2_psdata3_train_fr.h5")), "-o", str(out))
    assert res.exit_code == 0, res.output
    with h5py.File(out, "r") as f:
        assert f["ms"].shape == (5, 4, 16, 16) and f["gt"].shape == (5, 4, 64, 64)


# ----------------------------------------------------------------------- bad input, table-driven
def _h5(path, ms=(1, 4, 8, 8), pan=(1, 1, 32, 32), attrs=None, fill=None, keys=("ms", "pan")):
    rng = np.random.default_rng(0)
    arrays = {"ms": rng.uniform(0, 2047, ms).astype(np.float32),
              "pan": rng.uniform(0, 2047, pan).astype(np.float32)}
    if fill:
        fill(arrays)
    with h5py.File(path, "w") as f:
        for k in keys:
            f[k] = arrays[k]
        for k, v in ({"sensor": "QB"} if attrs is None else attrs).items():
            f.attrs[k] = v
    return str(path)


def _tif(path, crs="EPSG:32633", res=2.0, origin=(500000.0, 4200000.0), shape=(4, 8, 8),
         rotation=0.0):
    import rasterio
    from affine import Affine

    transform = Affine(res, rotation, origin[0], rotation, -res, origin[1])
    data = np.random.default_rng(0).integers(1, 2047, shape).astype(np.uint16)
    with rasterio.open(path, "w", driver="GTiff", width=shape[2], height=shape[1],
                       count=shape[0], dtype="uint16", crs=crs, transform=transform) as dst:
        dst.write(data)
    return str(path)


def _pair(tmp, **pan_kw):
    ms = _tif(tmp / "ms.tif")
    kw = dict(res=0.5, shape=(1, 32, 32))
    kw.update(pan_kw)
    return f"{ms}+{_tif(tmp / 'pan.tif', **kw)}"


def _nan(a):
    a["ms"][0, 1, 2, 3] = np.nan


def _neg(a):
    a["pan"][0, 0, 5, 5] = -3.0


def _truncated(tmp):
    full = _h5(tmp / "full.h5")
    data = open(full, "rb").read()
    (tmp / "full.h5").unlink()
    (tmp / "cut.h5").write_bytes(data[: len(data) // 2])
    return str(tmp / "cut.h5")


def _mat_without_pan(tmp):
    from scipy.io import savemat

    savemat(tmp / "x.mat", {"I_MS_LR": np.ones((8, 8, 4)), "sensor": "QB"})
    return str(tmp / "x.mat")


BAD_INPUTS = {
    # name: (make(tmp) -> scene spec, extra args, expected text in the one-line error)
    "missing file": (lambda t: str(t / "nope.h5"), [], "not found"),
    "unknown format": (lambda t: (t / "a.txt").write_text("x") and str(t / "a.txt"), [],
                       "unrecognised scene format"),
    "not hdf5": (lambda t: (t / "a.h5").write_text("hello") and str(t / "a.h5"), [],
                 "not a readable HDF5"),
    "truncated h5": (_truncated, [], "not a readable HDF5"),
    "wrong keys": (lambda t: _h5(t / "a.h5", keys=("ms",)), [], "missing dataset 'pan'"),
    "ratio mismatch": (lambda t: _h5(t / "a.h5", pan=(1, 1, 30, 32)), [], "is not ratio 4"),
    "NaN": (lambda t: _h5(t / "a.h5", fill=_nan), [], "NaN"),
    "negative DN": (lambda t: _h5(t / "a.h5", fill=_neg), [], "negative DN"),
    "empty": (lambda t: _h5(t / "a.h5", ms=(0, 4, 8, 8), pan=(0, 1, 32, 32)), [], "empty"),
    "wrong band count": (lambda t: _h5(t / "a.h5", ms=(1, 5, 8, 8)), [],
                         "MS has 5 bands but sensor QB has 4"),
    "sample count mismatch": (lambda t: _h5(t / "a.h5", pan=(2, 1, 32, 32)), [],
                              "holds 2 samples but 'ms' holds 1"),
    "index out of range": (lambda t: _h5(t / "a.h5") + "#3", [], "out of range"),
    "bad index": (lambda t: _h5(t / "a.h5") + "#x", [], "must be an integer"),
    "no sensor": (lambda t: _h5(t / "a.h5", attrs={}), [], "pass --sensor"),
    "unknown sensor": (lambda t: _h5(t / "a.h5"), ["--sensor", "QBB"], "unknown sensor"),
    "single tif": (lambda t: _tif(t / "a.tif"), ["--sensor", "QB"], "pair"),
    "misaligned pair (CRS)": (lambda t: _pair(t, crs="EPSG:4326"), ["--sensor", "QB"], "CRS"),
    "non-integer ratio": (lambda t: _pair(t, res=0.6), ["--sensor", "QB"], "not an integer"),
    "disjoint footprints": (lambda t: _pair(t, origin=(600000.0, 4200000.0)),
                            ["--sensor", "QB"], "overlap"),
    "mat without I_PAN": (_mat_without_pan, [], "I_PAN"),
}


def _hashes(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
@pytest.mark.parametrize("command", ["info", "degrade"])
def test_bad_input_is_one_line_and_exit_2(tmp_path, case, command):
    make, extra, expected = BAD_INPUTS[case]
    src = tmp_path / "in"
    src.mkdir()
    spec = make(src)
    before = _hashes(src)
    out = tmp_path / "out.h5"
    args = [command, spec, *extra] + (["-o", str(out)] if command == "degrade" else [])
    res = run(*args)
    assert res.exit_code == 2, (res.exit_code, res.output)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("Error: ") and expected in lines[0], lines[0]
    assert "Traceback" not in res.output
    assert _hashes(src) == before  # inputs untouched
    assert not out.exists() and list(tmp_path.glob("*.part")) == []


def test_at_least_twelve_kinds_of_bad_input():
    assert len(BAD_INPUTS) >= 12


def test_degrade_refuses_to_write_over_its_input(tmp_path):
    src = _h5(tmp_path / "a.h5")
    before = _hashes(tmp_path)
    res = run("degrade", src, "-o", src, "--overwrite")
    assert res.exit_code == 2 and "is an input" in res.stderr
    assert _hashes(tmp_path) == before


def test_usage_errors_exit_2(tmp_path):
    assert run("info").exit_code == 2
    assert run("degrade", _h5(tmp_path / "a.h5"), "-o", str(tmp_path / "x.h5"),
               "--max-value", "-1").exit_code == 2
    assert run("nosuchcommand").exit_code == 2


def test_console_script_has_no_traceback(tmp_path):
    """The installed entry point (python -m tta) gives exit 2 and one line."""
    proc = subprocess.run([sys.executable, "-m", "tta", "info", str(tmp_path / "x.h5")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "Traceback" not in proc.stderr
    ok = subprocess.run([sys.executable, "-m", "tta", "--version"], capture_output=True,
                        text=True, timeout=120)
    assert ok.returncode == 0 and __version__ in ok.stdout
