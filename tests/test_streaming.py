"""Streaming: windowed scene sources, block fusion, COG/h5 block output, resume, windowed eval."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import rasterio
import torch
from affine import Affine
from click.testing import CliRunner

from tta.cli import cli
from tta.engine.stream import StreamOptions, block_grid, fuse_blocks, proxy_scene, sample_windows
from tta.engine.tiling import tiled_fuse
from tta.io import Scene, write_h5, write_scene_geotiff
from tta.io.blocks import BlockStore, resume_key
from tta.io.source import open_source
from tta.physics import interp23tap
from tta.sensors import get_sensor


def run(*args: object):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def _texture_scene(real_file, h: int, w: int, *, nodata: bool = False) -> Scene:
    """A WV3 scene of MS ``h x w`` cut from the real Shanghai pair (flipped copies where it is
    larger), georeferenced in UTM, optionally with a nodata corner."""
    src = open_source(f"{real_file('geotiff/wv3_shanghai_ms.tif')}+"
                      f"{real_file('geotiff/wv3_shanghai_pan.tif')}", sensor="WV3")
    whole = src.read()
    ms = np.concatenate([whole.ms, whole.ms[:, ::-1]], axis=1)[:, :h, :w]
    pan = np.concatenate([whole.pan, whole.pan[::-1]], axis=0)[:4 * h, :4 * w]
    mask = None
    if nodata:
        mask = np.zeros(pan.shape, bool)
        mask[:37, :53] = True
        pan = np.where(mask, 0, pan)
    return Scene(ms=np.ascontiguousarray(ms), pan=np.ascontiguousarray(pan),
                 sensor=get_sensor("WV3"), nodata=mask, nodata_value=0.0 if nodata else None,
                 transform=Affine(0.31, 0, 350000.0, 0, -0.31, 3460000.0), crs="EPSG:32651")


@pytest.fixture(scope="module")
def tif_pair(real_file, tmp_path_factory) -> tuple[str, Scene]:
    scene = _texture_scene(real_file, 100, 84, nodata=True)
    d = tmp_path_factory.mktemp("pair")
    ms, pan = write_scene_geotiff(scene, d / "ms.tif", d / "pan.tif")
    return f"{ms}+{pan}", scene


@pytest.fixture(scope="module")
def h5_scene(real_file, tmp_path_factory) -> str:
    scene = _texture_scene(real_file, 64, 72, nodata=True)
    scene = scene.with_(gt=np.repeat(np.repeat(scene.ms, 4, 1), 4, 2))
    path = tmp_path_factory.mktemp("h5") / "s.h5"
    write_h5(path, scene)
    return str(path)


# ---------------------------------------------------------------------------- sources
@pytest.mark.parametrize("kind", ["tif", "h5"])
def test_window_reads_equal_the_whole_read(kind, tif_pair, h5_scene):
    spec = tif_pair[0] if kind == "tif" else h5_scene
    src = open_source(spec, sensor="WV3")
    whole = src.read()
    assert src.shape == whole.shape and src.band_names == whole.band_names
    assert src.dtype == ("uint16" if kind == "tif" else "float32")
    rng = np.random.default_rng(0)
    h, w = src.ms_size
    for _ in range(5):
        y, x = int(rng.integers(0, h - 8)), int(rng.integers(0, w - 8))
        hh, ww = int(rng.integers(1, h - y)), int(rng.integers(1, w - x))
        part = src.read((y, x, hh, ww))
        np.testing.assert_array_equal(part.ms, whole.ms[:, y:y + hh, x:x + ww])
        np.testing.assert_array_equal(part.pan, whole.pan[4 * y:4 * (y + hh), 4 * x:4 * (x + ww)])
        want = whole.nodata[4 * y:4 * (y + hh), 4 * x:4 * (x + ww)]
        got = part.nodata if part.nodata is not None else np.zeros_like(want)
        np.testing.assert_array_equal(got, want)
        if whole.gt is not None:
            np.testing.assert_array_equal(part.gt, whole.gt[:, 4 * y:4 * (y + hh),
                                                            4 * x:4 * (x + ww)])
        assert part.transform == src.window_transform((y, x, hh, ww))
        assert part.transform @ (0, 0) == whole.transform @ (4 * x, 4 * y)


def test_real_geotiff_windows_and_overview(real_file):
    spec = (f"{real_file('geotiff/wv3_shanghai_ms.tif')}+"
            f"{real_file('geotiff/wv3_shanghai_pan.tif')}")
    src = open_source(spec, sensor="WV3")
    whole = src.read()
    part = src.read((100, 37, 64, 90))
    np.testing.assert_array_equal(part.ms, whole.ms[:, 100:164, 37:127])
    np.testing.assert_array_equal(part.pan, whole.pan[400:656, 148:508])
    ms_o, pan_o, mask, f = src.overview(200)
    assert f == 2 and ms_o.shape == (8, 162, 162) and pan_o.shape == (162, 162) and mask is None
    # block means of the MS (average resampling); PAN blocks of 8x8 px
    np.testing.assert_allclose(ms_o, whole.ms[:, :324, :324].reshape(8, 162, 2, 162, 2)
                               .mean(axis=(2, 4)), rtol=1e-5, atol=0.51)
    np.testing.assert_allclose(pan_o, whole.pan[:1296, :1296].reshape(162, 8, 162, 8)
                               .mean(axis=(1, 3)), rtol=1e-5, atol=0.51)


def test_real_h5_windows(real_file):
    src = open_source(real_file("wv3/wv3_shanghai_fr.h5"))
    whole = src.read()
    part = src.read((5, 300, 40, 25))
    np.testing.assert_array_equal(part.ms, whole.ms[:, 5:45, 300:325])
    np.testing.assert_array_equal(part.pan, whole.pan[20:180, 1200:1300])
    ms_o, pan_o, _, f = src.overview(100)
    np.testing.assert_allclose(pan_o[3, 4], whole.pan[3 * 4 * f:4 * 4 * f,
                                                      4 * 4 * f:5 * 4 * f].mean(), rtol=1e-5)


def test_window_outside_the_grid_is_refused(tif_pair):
    from tta.errors import InputError

    src = open_source(tif_pair[0], sensor="WV3")
    with pytest.raises(InputError, match="outside the aligned 100x84"):
        src.read((90, 0, 20, 10))


# ---------------------------------------------------------------------------- fusion
def _net() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(9, 8, 3, padding=1), torch.nn.ReLU(),
                               torch.nn.Conv2d(8, 8, 3, padding=1)).eval()


def _fn(net):
    def fn(ms, pan, lms):
        return lms + net(torch.cat([lms, pan], 1))
    return fn


@pytest.mark.parametrize("block", [96, 160])
def test_block_fusion_equals_whole_scene_tiled_fusion(tif_pair, tmp_path, block):
    src = open_source(tif_pair[0], sensor="WV3")
    whole = src.read()
    fn = _fn(_net())
    ms = torch.from_numpy(whole.ms) / 2047
    pan = torch.from_numpy(whole.pan) / 2047
    want = tiled_fuse(fn, ms, pan, interp23tap(ms[None], 4)[0], ratio=4, tile=64, overlap=24,
                      margin=8) * 2047
    want[:, whole.nodata] = 0
    with BlockStore(tmp_path / "o.tif", "k", src.shape, "float32") as store:
        info = fuse_blocks(fn, src, store, divisor=2047.0, tile=64, overlap=24, margin=8,
                           block=block)
        got = store.read(0, 0, *src.pan_size)
    assert info["blocks"] == len(block_grid(400, 336, block)) == info["computed"]
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-3)
    assert (got[:, :37, :53] == 0).all()


def _fused_tif(src, tmp_path: Path, name: str, dtype: str, *, fail_after: int | None = None,
               key: str = "k1") -> tuple[dict, BlockStore]:
    store = BlockStore(tmp_path / name, key, src.shape, dtype).open()
    calls = []

    def on_block(i: int) -> None:
        calls.append(i)
        if fail_after is not None and len(calls) == fail_after:
            raise KeyboardInterrupt

    try:
        info = fuse_blocks(_fn(_net()), src, store, divisor=2047.0, tile=64, overlap=24,
                           margin=8, block=96, on_block=on_block)
    finally:
        store.close()
    return info, store


def test_cog_output_keeps_dtype_georef_nodata_and_bands(tif_pair, tmp_path):
    spec, scene = tif_pair
    src = open_source(spec, sensor="WV3")
    _, store = _fused_tif(src, tmp_path, "p.tif", "uint16")
    store.open().finish_cog([], transform=src.transform, crs=src.crs, bands=src.band_names,
                            nodata=0.0, overwrite=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.tif"]
    with rasterio.open(tmp_path / "p.tif") as f:
        assert f.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        assert f.profile["tiled"] and f.profile["compress"] == "deflate"
        assert f.block_shapes[0] == (256, 256) and f.overviews(1) == [2]
        assert f.dtypes == ("uint16",) * 8 and f.nodata == 0
        assert f.descriptions == scene.band_names
        assert f.crs.to_epsg() == 32651 and f.transform == scene.transform
        data = f.read()
    assert (data[:, :37, :53] == 0).all() and data[:, 37:, 53:].mean() > 100


def test_resume_after_an_interruption(tif_pair, tmp_path):
    src = open_source(tif_pair[0], sensor="WV3")
    n = len(block_grid(400, 336, 96))
    ref_info, ref = _fused_tif(src, tmp_path, "ref.tif", "uint16", key="r")
    want = ref.open().read(0, 0, 400, 336)
    ref.remove()
    with pytest.raises(KeyboardInterrupt):
        _fused_tif(src, tmp_path, "out.tif", "uint16", fail_after=7)
    assert not (tmp_path / "out.tif").exists()  # nothing at the final path
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == [".out.tif.tta-resume-k1.journal", ".out.tif.tta-resume-k1.part"]
    info, store = _fused_tif(src, tmp_path, "out.tif", "uint16")
    assert (info["resumed"], info["computed"], ref_info["computed"]) == (7, n - 7, n)
    np.testing.assert_array_equal(store.open().read(0, 0, 400, 336), want)
    store.finish_cog([], transform=src.transform, crs=src.crs, bands=src.band_names,
                     nodata=0.0, overwrite=False)
    with rasterio.open(tmp_path / "out.tif") as f:
        np.testing.assert_array_equal(f.read(), want)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.tif"]


def test_other_options_discard_the_leftovers(tif_pair, tmp_path):
    src = open_source(tif_pair[0], sensor="WV3")
    with pytest.raises(KeyboardInterrupt):
        _fused_tif(src, tmp_path, "out.tif", "uint16", fail_after=2, key="aaaa")
    info, store = _fused_tif(src, tmp_path, "out.tif", "uint16", key="bbbb")
    assert info["resumed"] == 0 and len(store.discarded) == 2
    store.remove()
    assert list(tmp_path.iterdir()) == []


def test_resume_key_follows_inputs_and_options(tmp_path):
    a = tmp_path / "a.tif"
    a.write_bytes(b"x")
    k = resume_key([a], {"steps": 1})
    assert k == resume_key([a], {"steps": 1}) != resume_key([a], {"steps": 2})
    a.write_bytes(b"xy")
    assert resume_key([a], {"steps": 1}) != k


def test_sample_windows_and_proxy(tif_pair):
    src = open_source(tif_pair[0], sensor="WV3")
    opts = StreamOptions(windows=4, side=64, overview=128)
    windows, info = sample_windows(src, opts, sampler="fps", seed=0)
    assert len(windows) == 4 == info["windows"] and info["candidates"] == 6 * 5
    assert info["valid"] == 29  # the nodata corner covers 46 % of the first window
    proxy = proxy_scene(src, windows)
    assert proxy.ms.shape == (8, 32, 32) and proxy.pan.shape == (128, 128)
    y, x = windows[3][:2]
    np.testing.assert_array_equal(proxy.ms[:, 16:, 16:], src.read(windows[3]).ms)
    assert (y, x) == tuple(info["corners_ms"][3])


# ---------------------------------------------------------------------------- CLI
@pytest.fixture(scope="module")
def weights(data_dir) -> Path:
    w = data_dir.parent / "weights" / "dlpan" / "wv3" / "fusionnet.pth"
    if not w.is_file():
        pytest.skip(f"community weights {w} are absent")
    return w


def test_cli_stream_equals_whole_scene_product(real_file, weights, tmp_path):
    scene = _texture_scene(real_file, 64, 80)
    ms, pan = write_scene_geotiff(scene, tmp_path / "ms.tif", tmp_path / "pan.tif")
    target = f"{ms}+{pan}"
    common = ["adapt", "-m", "fusionnet", "-w", weights, "-t", target, "--sensor", "WV3",
              "--steps", "3", "--device", "cpu", "--no-compare"]
    res = run(*common, "-o", tmp_path / "whole.tif")
    assert res.exit_code == 0, res.output
    res = run(*common, "--stream", "--block", "128", "-o", tmp_path / "s.tif",
              "--report", tmp_path / "r.json")
    assert res.exit_code == 0, res.output
    assert "stream: adapted on the whole scene; fused 6 blocks of 128 px" in res.output
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["stream"]["computed"] == 6 and report["stream"]["dtype"] == "uint16"
    with rasterio.open(tmp_path / "whole.tif") as a, rasterio.open(tmp_path / "s.tif") as b:
        x, y = a.read().astype(np.int64), b.read().astype(np.int64)
        assert b.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        assert b.transform == a.transform and b.descriptions == a.descriptions
    assert np.abs(x - y).max() <= 1 and (x != y).mean() < 1e-3
    res = run(*common, "--stream", "-o", tmp_path / "s.h5")
    assert res.exit_code == 0, res.output
    with h5py.File(tmp_path / "s.h5") as f:
        fused = f["fused"][0]
        np.testing.assert_array_equal(f["pan"][0, 0], scene.pan)
    assert np.abs(np.clip(np.rint(fused), 0, 65535) - x).max() <= 1  # h5: float32, unclipped
    res = run("eval", tmp_path / "s.h5", "--stream", "--windows", "0", "--window-side", "128")
    assert res.exit_code == 0, res.output
    assert "block-wise, mean over all 6 windows of 128² PAN px" in res.output


def test_windowed_eval_close_to_whole(real_file, tmp_path):
    spec = (f"{real_file('geotiff/wv3_shanghai_ms.tif')}+"
            f"{real_file('geotiff/wv3_shanghai_pan.tif')}")
    from tta.evaluation import evaluate
    from tta.evaluation_windows import evaluate_windows
    from tta.io import write_geotiff
    from tta.io.product import ProductWindows

    scene = open_source(spec, sensor="WV3").read((0, 0, 192, 192))
    ms, pan = write_scene_geotiff(scene, tmp_path / "ms.tif", tmp_path / "pan.tif")
    small = open_source(f"{ms}+{pan}", sensor="WV3")
    fused = interp23tap(torch.from_numpy(scene.ms)[None].double(), 4)[0].numpy()
    write_geotiff(tmp_path / "exp.tif", fused, scene, dtype="float32")
    whole = evaluate(scene, fused.astype(np.float32), "fr", "cpu")["fr"]
    got, info = evaluate_windows(small, ProductWindows(tmp_path / "exp.tif"), "fr", "cpu",
                                 side=256)
    assert info == {"mode": "block-wise", "windows": 9, "of": 9, "side": 256, "seed": 0}
    for key in ("HQNR", "QNR", "D_lambda", "D_s"):
        assert got["fr"][key] == pytest.approx(whole[key], abs=0.03), key
    part, info = evaluate_windows(small, ProductWindows(tmp_path / "exp.tif"), "fr", "cpu",
                                  side=256, count=3)
    assert info["mode"] == "sample" and info["windows"] == 3 and info["of"] == 9
    assert part["fr"]["HQNR"] != got["fr"]["HQNR"]


def test_cli_fuse_stream(tif_pair, tmp_path):
    spec, scene = tif_pair
    res = run("fuse", spec, "-m", "exp", "--sensor", "WV3", "-o", tmp_path / "w.tif")
    assert res.exit_code == 0, res.output
    res = run("fuse", spec, "-m", "exp", "--sensor", "WV3", "--stream", "--block", "128",
              "-o", tmp_path / "s.tif")
    assert res.exit_code == 0, res.output
    assert "streamed: 12 blocks of 128 px (0 resumed)" in res.output
    with rasterio.open(tmp_path / "w.tif") as a, rasterio.open(tmp_path / "s.tif") as b:
        x, y = a.read().astype(np.int64), b.read().astype(np.int64)
        assert b.nodata == 0 and b.descriptions == scene.band_names
    # EXP is local: equal away from the scene border, where the whole scene's circular
    # interpolation border wraps around the scene and a window's around the window
    assert np.abs(x - y)[:, 40:-40, 40:-40].max() <= 1


def test_cli_resume_after_kill_9(real_file, weights, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    scene = _texture_scene(real_file, 64, 64)
    ms, pan = write_scene_geotiff(scene, tmp_path / "ms.tif", tmp_path / "pan.tif")
    args = [sys.executable, "-m", "tta", "-q", "adapt", "-m", "fusionnet", "-w", str(weights),
            "-t", f"{ms}+{pan}", "--sensor", "WV3", "--steps", "2", "--device", "cpu",
            "--stream", "--block", "64", "-o", str(tmp_path / "out.tif")]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    done = 0
    for _ in range(1200):
        journals = list(tmp_path.glob(".out.tif.tta-resume-*.journal"))
        done = len(journals[0].read_text().splitlines()) - 1 if journals else 0
        if done >= 3 or proc.poll() is not None:
            break
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert done >= 3 and not (tmp_path / "out.tif").exists()
    res = subprocess.run(args, env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    resumed = int(res.stdout.split("fused 16 blocks of 64 px (")[1].split(" resumed")[0])
    assert resumed >= 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ms.tif", "out.tif", "pan.tif"]
    res = run("adapt", "-m", "fusionnet", "-w", weights, "-t", f"{ms}+{pan}", "--sensor", "WV3",
              "--steps", "2", "--device", "cpu", "--no-compare", "-o", tmp_path / "w.tif")
    assert res.exit_code == 0, res.output
    with rasterio.open(tmp_path / "w.tif") as a, rasterio.open(tmp_path / "out.tif") as b:
        assert np.abs(a.read().astype(np.int64) - b.read()).max() <= 1
