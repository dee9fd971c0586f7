"""Hostile input, colliding outputs, bad numbers and interrupts: exit code, one-line message,
inputs unchanged, nothing left behind (issue 20: nothing lost, nothing let in)."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from tta.cli import cli

REPO = Path(__file__).resolve().parents[1]
LAGCONV_QB = REPO / "pretrained" / "weights" / "lagconv_qb.safetensors"


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def _h5(path, ms=(1, 4, 16, 16), pan=(1, 1, 64, 64), attrs=None, zero=False, seed=0):
    rng = np.random.default_rng(seed)
    with h5py.File(path, "w") as f:
        f["ms"] = np.zeros(ms, np.float32) if zero else rng.uniform(1, 2047, ms).astype("f4")
        f["pan"] = np.zeros(pan, np.float32) if zero else rng.uniform(1, 2047, pan).astype("f4")
        for k, v in ({"sensor": "QB"} if attrs is None else attrs).items():
            f.attrs[k] = v
    return path


def _tif(path, shape=(4, 8, 8)):
    import rasterio
    from affine import Affine

    res = 2.0 if shape[0] > 1 else 0.5
    with rasterio.open(path, "w", driver="GTiff", width=shape[2], height=shape[1],
                       count=shape[0], dtype="uint16", crs="EPSG:32633",
                       transform=Affine(res, 0, 500000.0, 0, -res, 4200000.0)) as dst:
        dst.write(np.full(shape, 100, np.uint16))
    return path


def _state(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (hidden ones too) with its digest."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _one_line_error(res, expected: str, code: int = 2) -> None:
    assert res.exit_code == code, (res.exit_code, res.output)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), res.stderr
    assert expected in lines[0], lines[0]
    assert "Traceback" not in res.output and "Internal error" not in res.output


# ------------------------------------------------------------------------ hostile scene files
def _vrt_reading(tmp: Path, source: str, raw: bool) -> Path:
    """A GDAL VRT named like a GeoTIFF PAN, whose pixels come from ``source``."""
    band = (f'<VRTRasterBand dataType="Byte" band="1" subClass="VRTRawRasterBand">'
            f'<SourceFilename relativetoVRT="0">{source}</SourceFilename><ImageOffset>0'
            '</ImageOffset><PixelOffset>1</PixelOffset><LineOffset>32</LineOffset>'
            '</VRTRasterBand>' if raw else
            f'<VRTRasterBand dataType="UInt16" band="1"><SimpleSource><SourceFilename '
            f'relativetoVRT="0">{source}</SourceFilename><SourceBand>1</SourceBand>'
            '</SimpleSource></VRTRasterBand>')
    path = tmp / "pan.tif"
    path.write_text(f'<VRTDataset rasterXSize="32" rasterYSize="32">{band}</VRTDataset>')
    return path


def _vrt_local_file(tmp):
    secret = tmp / "secret.txt"
    secret.write_text("SECRET" * 200)
    return f"{_tif(tmp / 'ms.tif')}+{_vrt_reading(tmp, str(secret), raw=True)}"


def _external_storage(tmp):
    (tmp / "secret.txt").write_text("SECRET" * 200)
    with h5py.File(tmp / "x.h5", "w") as f:
        f["ms"] = np.ones((1, 4, 8, 8), np.float32)
        f.create_dataset("pan", shape=(1, 1, 32, 32), dtype="u1",
                         external=[(str(tmp / "secret.txt"), 0, 1024)])
        f.attrs["sensor"] = "QB"
    return str(tmp / "x.h5")


def _external_link(tmp):
    _h5(tmp / "other.h5")
    with h5py.File(tmp / "x.h5", "w") as f:
        f["ms"] = np.ones((1, 4, 16, 16), np.float32)
        f["pan"] = h5py.ExternalLink(str(tmp / "other.h5"), "/pan")
        f.attrs["sensor"] = "QB"
    return str(tmp / "x.h5")


def _virtual(tmp):
    _h5(tmp / "other.h5")
    layout = h5py.VirtualLayout(shape=(1, 1, 64, 64), dtype="f4")
    layout[:] = h5py.VirtualSource(str(tmp / "other.h5"), "pan", shape=(1, 1, 64, 64))
    with h5py.File(tmp / "x.h5", "w") as f:
        f["ms"] = np.ones((1, 4, 16, 16), np.float32)
        f.create_virtual_dataset("pan", layout)
        f.attrs["sensor"] = "QB"
    return str(tmp / "x.h5")


def _size_bomb(tmp):
    with h5py.File(tmp / "x.h5", "w") as f:  # 298 GiB declared, a few KB on disk
        f.create_dataset("ms", shape=(1, 4, 40000, 40000), dtype="f4", chunks=(1, 1, 64, 64),
                         compression="gzip")
        f.create_dataset("pan", shape=(1, 1, 160000, 160000), dtype="f4",
                         chunks=(1, 1, 64, 64), compression="gzip")
        f.attrs["sensor"] = "QB"
    assert (tmp / "x.h5").stat().st_size < 64 * 1024
    return str(tmp / "x.h5")


def _strings(tmp):
    with h5py.File(tmp / "x.h5", "w") as f:
        f["ms"] = np.full((1, 4, 8, 8), b"ab")
        f["pan"] = np.ones((1, 1, 32, 32), np.float32)
        f.attrs["sensor"] = "QB"
    return str(tmp / "x.h5")


def _mat(tmp, **extra):
    from scipy.io import savemat

    rng = np.random.default_rng(0)
    savemat(tmp / "x.mat", {"I_MS_LR": rng.uniform(1, 99, (8, 8, 4)),
                            "I_PAN": rng.uniform(1, 99, (32, 32)), "sensor": "QB", **extra})
    return str(tmp / "x.mat")


def _manifest(tmp, text):
    _tif(tmp / "ms.tif")
    (tmp / "m.yaml").write_text(text)
    return str(tmp / "m.yaml")


HOSTILE = {
    # name: (make(tmp) -> scene spec, expected text of the one-line error)
    "VRT as .tif reading a local file": (_vrt_local_file, "not a readable GeoTIFF"),
    "GDAL /vsi path": (lambda t: f"{_tif(t / 'ms.tif')}+/vsicurl/http://127.0.0.1:9/p.tif",
                       "only local files"),
    "URL": (lambda t: "https://127.0.0.1:9/scene.h5", "only local files"),
    "manifest naming a /vsi path": (
        lambda t: _manifest(t, "ms: ms.tif\npan: /vsizip/x.zip/p.tif\nsensor: QB\n"),
        "only local files"),
    "manifest max_value not a number": (
        lambda t: _manifest(t, "ms: ms.tif\npan: ms.tif\nsensor: QB\nmax_value: lots\n"),
        "'max_value' must be a positive number"),
    "HDF5 external storage": (_external_storage, "external storage"),
    "HDF5 external link": (_external_link, "link to another place"),
    "HDF5 virtual dataset": (_virtual, "virtual dataset"),
    "size bomb (298 GiB declared)": (_size_bomb, "over the 16 GiB limit"),
    "string dataset": (_strings, "not numbers"),
    "ratio attribute not a number": (lambda t: str(_h5(t / "x.h5", attrs={
        "sensor": "QB", "ratio": "four"})), "'ratio' must be a positive integer"),
    "max_value attribute not a number": (lambda t: str(_h5(t / "x.h5", attrs={
        "sensor": "QB", "max_value": "lots"})), "'max_value' must be a positive number"),
    ".mat with L=2000": (lambda t: _mat(t, L=2000.0), "must be an integer in 1..32"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_scene_is_refused(tmp_path, case):
    make, expected = HOSTILE[case]
    src = tmp_path / "in"
    src.mkdir()
    spec = make(src)
    before = _state(src)
    out = tmp_path / "out.h5"
    _one_line_error(run("degrade", spec, "-o", out, "--sensor", "QB"), expected)
    _one_line_error(run("info", spec, "--sensor", "QB"), expected)
    assert _state(src) == before  # inputs untouched, no sidecar (.aux.xml) written
    assert list(tmp_path.iterdir()) == [src]


def test_vrt_disguised_as_tif_makes_no_request(tmp_path):
    """A VRT pointing at a URL must not make tta open a connection."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.setblocking(False)
    url = f"/vsicurl/http://127.0.0.1:{server.getsockname()[1]}/pan.tif"
    spec = f"{_tif(tmp_path / 'ms.tif')}+{_vrt_reading(tmp_path, url, raw=False)}"
    try:
        _one_line_error(run("info", spec, "--sensor", "QB"), "not a readable GeoTIFF")
        with pytest.raises(BlockingIOError):
            server.accept()  # nobody connected
    finally:
        server.close()


def test_vrt_wrapping_a_real_geotiff_is_refused(real_file, tmp_path):
    ms = real_file("geotiff/wv3_shanghai_ms.tif")
    pan = _vrt_reading(tmp_path, str(real_file("geotiff/wv3_shanghai_pan.tif")), raw=False)
    _one_line_error(run("info", f"{ms}+{pan}", "--sensor", "WV3"), "not a readable GeoTIFF")
    ok = run("info", f"{ms}+{real_file('geotiff/wv3_shanghai_pan.tif')}", "--sensor", "WV3")
    assert ok.exit_code == 0, ok.output  # the genuine pair still reads


def test_size_limit_can_be_raised_or_lowered(tmp_path, monkeypatch):
    spec = str(_h5(tmp_path / "x.h5"))  # 16x16x4 + 64x64 float32: 20 KiB
    _one_line_error(run("--max-input-gb", "0.00001", "info", spec), "over the 1e-05 GiB limit")
    monkeypatch.setenv("TTA_MAX_INPUT_GB", "0.00001")
    _one_line_error(run("info", spec), "raise it with tta --max-input-gb")
    assert run("--max-input-gb", "1", "info", spec).exit_code == 0


# ------------------------------------------------------------------------ weights
def _weights_with(tmp, name, sd=None, **meta):
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    with safe_open(str(LAGCONV_QB), "pt") as f:
        metadata = {**f.metadata(), **meta}
    save_file(load_file(LAGCONV_QB) if sd is None else sd, tmp / name, metadata=metadata)
    return tmp / name


def _nan_weights(tmp):
    from safetensors.torch import load_file

    sd = load_file(LAGCONV_QB)
    next(v for v in sd.values() if v.is_floating_point()).view(-1)[0] = float("nan")
    return _weights_with(tmp, "nan.safetensors", sd)


WEIGHTS = {
    "NaN weights": (_nan_weights, "NaN or infinite weights"),
    "200000 declared channels": (
        lambda t: _weights_with(t, "b.safetensors", {"x": torch.zeros(1)}, n_bands="200000"),
        "'n_bands' must be an integer in 1..256"),
    "absurd width in the options": (
        lambda t: _weights_with(t, "w.safetensors", {"x": torch.zeros(1)},
                                arch_kwargs='{"channels": 100000}'), "does not fit"),
    "band count the tensors contradict": (
        lambda t: _weights_with(t, "c.safetensors", n_bands="8"), "says 8 bands"),
}


@pytest.mark.parametrize("case", sorted(WEIGHTS))
def test_hostile_weights_are_refused(tmp_path, case):
    if not LAGCONV_QB.is_file():
        pytest.skip(f"{LAGCONV_QB} is absent")
    make, expected = WEIGHTS[case]
    weights = make(tmp_path)
    scene = _h5(tmp_path / "scene.h5")
    before = _state(tmp_path)
    t0 = time.perf_counter()
    _one_line_error(run("adapt", "-m", weights, "-t", scene, "-o", tmp_path / "o.h5"),
                    expected)
    assert time.perf_counter() - t0 < 20  # refused before building anything large
    assert _state(tmp_path) == before


def test_nan_checkpoint_refused_by_pretrained_load(tmp_path):
    import pretrained

    model = pretrained.create_model("pnn", n_bands=4)
    sd = {k: v.clone() for k, v in model.state_dict().items()}
    sd[next(iter(sd))].view(-1)[3] = float("inf")
    torch.save(sd, tmp_path / "pnn.pth")
    from tta.errors import InputError

    with pytest.raises(InputError, match="NaN or infinite weights"):
        pretrained.load("pnn", weights=tmp_path / "pnn.pth")


# ------------------------------------------------------------------------ outputs
COLLISIONS = {
    "-o and --report": (["-o", "{x}", "--report", "{x}"], "given to both -o and --report"),
    "-o and --save-adapter": (["-o", "{x}", "--save-adapter", "{x}", "--overwrite"],
                              "given to both -o and --save-adapter"),
    "--report and --save-adapter": (["-o", "{d}/o.h5", "--report", "{d}/r", "--save-adapter",
                                     "{d}/./r"], "given to both --report and --save-adapter"),
    "report over an existing file": (["-o", "{d}/o.h5", "--report", "{d}/keep.json"],
                                     "already exists; pass --overwrite"),
    "report over the scene": (["-o", "{d}/o.h5", "--report", "{d}/scene.h5", "--overwrite"],
                              "is an input"),
    "adapter over the shipped weights": (["-o", "{d}/o.h5", "--save-adapter", str(LAGCONV_QB),
                                          "--overwrite", "-m", "lagconv:qb"], "is an input"),
    "output under a regular file": (["-o", "{d}/keep.json/o.h5"], "is not a folder"),
}


@pytest.mark.parametrize("case", sorted(COLLISIONS))
def test_adapt_outputs_checked_before_any_work(tmp_path, case):
    args, expected = COLLISIONS[case]
    scene = _h5(tmp_path / "scene.h5")
    (tmp_path / "keep.json").write_text('{"unrelated": "product"}')
    x = tmp_path / "x.h5"
    args = [a.format(x=x, d=tmp_path) for a in args]
    model = [] if "-m" in args else ["-m", "fose:qb"]
    before = _state(tmp_path)
    _one_line_error(run("adapt", *model, "-t", scene, *args), expected)
    assert _state(tmp_path) == before


def test_eval_json_needs_overwrite(tmp_path):
    scene = _h5(tmp_path / "scene.h5")
    assert run("fuse", scene, "-m", "exp", "-o", tmp_path / "f.h5").exit_code == 0
    keep = tmp_path / "keep.json"
    keep.write_text("precious")
    _one_line_error(run("eval", tmp_path / "f.h5", "--json", keep), "already exists")
    _one_line_error(run("eval", tmp_path / "f.h5", "--json", tmp_path / "f.h5", "--overwrite"),
                    "is an input")
    assert keep.read_text() == "precious"
    res = run("eval", tmp_path / "f.h5", "--json", keep, "--overwrite")
    assert res.exit_code == 0 and "Q2n" not in json.loads(keep.read_text())["fr"]


def test_unwritable_output_folder(tmp_path):
    scene = _h5(tmp_path / "scene.h5")
    (tmp_path / "file").write_text("x")
    _one_line_error(run("fuse", scene, "-m", "exp", "-o", tmp_path / "file/o.h5"),
                    "is not a folder")
    _one_line_error(run("bench", "--quick", "-o", tmp_path / "file/sub"), "is not a folder")


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0,
                    reason="root writes into read-only folders; the regular-file case covers it")
def test_read_only_output_folder(tmp_path):
    scene = _h5(tmp_path / "scene.h5")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        _one_line_error(run("fuse", scene, "-m", "exp", "-o", ro / "o.h5"), "cannot write")
        _one_line_error(run("adapt", "-m", "fose:qb", "-t", scene, "-o", tmp_path / "o.h5",
                            "--report", ro / "r.json"), "cannot write")
    finally:
        ro.chmod(0o700)


def test_stale_temporary_file_is_removed(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    from tta.io.atomic import _HOST

    stale = tmp_path / f".o.h5.tta-tmp-{_HOST}-{dead.pid}-abcd1234.part"
    stale.write_bytes(b"half a product")
    alive = tmp_path / f".o.h5.tta-tmp-{_HOST}-{os.getpid()}-abcd1234.part"  # running writer
    alive.write_bytes(b"in progress")
    other = tmp_path / f".o.h5.tta-tmp-0000beef-{dead.pid}-abcd1234.part"  # another machine
    other.write_bytes(b"in progress elsewhere")
    scene = _h5(tmp_path / "scene.h5")
    res = run("fuse", scene, "-m", "exp", "-o", tmp_path / "o.h5")
    assert res.exit_code == 0 and f"removed {stale}" in res.stderr
    assert not stale.exists() and alive.exists() and other.exists()


# ------------------------------------------------------------------------ numbers
@pytest.mark.parametrize("args, expected", [
    (["--lr", "inf"], "--lr"), (["--lr", "nan"], "--lr"), (["--lr", "1e30"], "--lr"),
    (["--seed", str(2**63)], "--seed"), (["--seed", "-1"], "--seed"),
    (["--fraction", "nan"], "--fraction"), (["--max-value", "inf"], "--max-value"),
])
def test_numeric_options_in_range(tmp_path, args, expected):
    scene = _h5(tmp_path / "scene.h5")
    res = run("adapt", "-m", "fose:qb", "-t", scene, "-o", tmp_path / "o.h5", *args)
    assert res.exit_code == 2 and expected in res.stderr and "Traceback" not in res.output
    assert not (tmp_path / "o.h5").exists()


@pytest.mark.parametrize("setting, expected", [
    ("tile: 250", "tile 250 must be a multiple of the ratio 4"),
    ("overlap: 100000", "overlap must be an integer in 0..511"),
    ("inference_batch: 0", "inference_batch must be an integer >= 1"),
    ("loss_weights: {spectral: -1}", "must be finite and >= 0"),
    ("loss_weights: {bogus: 1}", "unknown loss term"),
    ("adapter_options: {hidden: -3}", "adapter_options.hidden must be an integer"),
    ("adapter_options: {bogus: 3}", "bad options"),
    ("lr: .inf", "lr must be a finite number"),
    ("seed: 18446744073709551616", "seed must be an integer"),
])
def test_config_values_refused_up_front(tmp_path, setting, expected):
    scene = _h5(tmp_path / "scene.h5")
    (tmp_path / "c.yaml").write_text(setting + "\n")
    _one_line_error(run("adapt", "-m", "fose:qb", "-t", scene, "-o", tmp_path / "o.h5",
                        "--config", tmp_path / "c.yaml"), expected)
    assert not (tmp_path / "o.h5").exists()


def test_non_finite_product_is_not_written(tmp_path):
    zero = _h5(tmp_path / "zero.h5", zero=True)
    _one_line_error(run("fuse", zero, "-m", "gsa", "-o", tmp_path / "o.h5"),
                    "NaN or infinite values in 4096 of 4096 pixels")
    tiny = _h5(tmp_path / "tiny.h5", ms=(1, 4, 1, 1), pan=(1, 1, 4, 4))
    _one_line_error(run("fuse", tiny, "-m", "gsa", "-o", tmp_path / "o.h5"), "too small")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.h5", "zero.h5"]


def test_divergence_guard_restores_the_start():
    from tta.engine.divergence import DivergenceGuard

    w = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
    guard = DivergenceGuard([w], every=3)
    stopped = []
    for step, loss in enumerate([1.0, 2.0, 5e6, 1.0, 1.0, 1.0]):
        with torch.no_grad():
            w.add_(10.0)
        if guard.stop(torch.tensor(loss)):
            stopped.append(step)
            break
    assert stopped == [2] and guard.finish() and guard.step == 2
    assert w.tolist() == [1.0, 2.0]
    calm = DivergenceGuard([w], every=3)
    for loss in (1.0, 0.5, 0.4, 0.3):
        assert not calm.stop(torch.tensor(loss))
    with torch.no_grad():
        w.add_(1.0)
    assert not calm.finish() and w.tolist() == [2.0, 3.0]


def test_diverging_adaptation_falls_back_to_direct(monkeypatch):
    import pretrained
    import tta
    from tta.io import Scene
    from tta.losses import PhysicsLoss
    from tta.sensors import get_sensor

    rng = np.random.default_rng(0)
    scene = Scene(ms=rng.uniform(100, 1500, (4, 16, 16)), pan=rng.uniform(100, 1500, (64, 64)),
                  sensor=get_sensor("QB"))
    torch.manual_seed(0)
    model = pretrained.create_model("pnn", n_bands=4).eval()
    original, calls = PhysicsLoss.forward, []

    def exploding(self, *args, **kwargs):
        loss, parts = original(self, *args, **kwargs)
        calls.append(1)
        return (loss * float("nan") if len(calls) > 3 else loss), parts

    monkeypatch.setattr(PhysicsLoss, "forward", exploding)
    res = tta.adapt_scene(model, scene, adapter="ft", steps=20, patch=32, compare=True)
    loss = res.report["loss"]
    assert loss["diverged"] and loss["diverged_at_step"] == 3 and len(loss["curve"]) == 10
    np.testing.assert_array_equal(res.fused, res.direct)
    assert np.isfinite(res.fused).all()
    decision = res.report["decision"]  # reset to the start: nothing left to score
    assert decision["choice"] == "direct" and "diverged at step 3" in decision["reason"]
    assert decision["scores"] == {} and "decide" not in res.report["timings"]


def test_out_of_memory_is_one_line(tmp_path, monkeypatch):
    import tta.classical

    def no_memory(*_a, **_k):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't "
                           "allocate memory: you tried to allocate 274877906944 bytes.")

    monkeypatch.setattr(tta.classical, "fuse_scene", no_memory)
    scene = _h5(tmp_path / "scene.h5")
    _one_line_error(run("fuse", scene, "-m", "gsa", "-o", tmp_path / "o.h5"),
                    "out of memory on cpu on")
    res = run("fuse", scene, "-m", "gsa", "-o", tmp_path / "o.h5")
    assert "(product 4x64x64" in res.stderr and not (tmp_path / "o.h5").exists()


# ------------------------------------------------------------------------ signals and pipes
def _tta(*args, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "tta", *map(str, args)], text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)


@pytest.mark.parametrize("sig, code, word", [(signal.SIGINT, 130, "Interrupted"),
                                             (signal.SIGTERM, 143, "Terminated")])
def test_signal_during_write_leaves_nothing(tmp_path, sig, code, word):
    scene = _h5(tmp_path / "big.h5", ms=(1, 4, 256, 256), pan=(1, 1, 1024, 1024))
    before = _state(tmp_path)
    out = tmp_path / "out.h5"
    proc = _tta("fuse", scene, "-m", "exp", "-o", out, cwd=tmp_path)
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob(".out.h5.tta-tmp-*.part")) and proc.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.002)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert err.strip() == word  # no traceback
    assert _state(tmp_path) == before  # no product, no temporary file


def test_broken_pipe_ends_quietly(tmp_path):
    n = 300  # more text than a pipe buffer holds, so tta is still writing when we leave
    _h5(tmp_path / "many.h5", ms=(n, 4, 4, 4), pan=(n, 1, 16, 16))
    proc = _tta("info", tmp_path / "many.h5")
    first = proc.stdout.readline()
    proc.stdout.close()
    err = proc.stderr.read()
    proc.wait(timeout=60)
    assert first.strip().endswith("many.h5#0")
    assert proc.returncode == 141 and err == ""
