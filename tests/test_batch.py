"""`tta batch` / :func:`tta.run_batch`: many real scenes through local Ray and in-process.

Six 128 px crops of the shared scenes (WV2, WV3, QB, two GF2 samples, Landsat 8) written with
tta's own writer under awkward names, plus one corrupt file, adapted with 5 steps each.
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

import tta
from tta.batch.naming import scene_names, scene_stem
from tta.cli import cli
from tta.errors import InputError
from tta.io.scene_list import collect_scenes

CROP = 128
SHARED = [  # (file name in the batch, shared scene, zoo model)
    ("São Paulo (wv2) v1.0.h5", "wv2/wv2_grip_top_fr.h5", "fose"),
    ("wv3 shanghai & co.h5", "wv3/wv3_shanghai_fr.h5", "fose"),
    ("qb.h5", "qb/qb_abfnet_fr.h5", "fose:qb"),
    ("gf2 [0].h5", "gf2/gf2_psdata3_train_fr.h5#0", "fose:qb"),
    ("gf2 [3].h5", "gf2/gf2_psdata3_train_fr.h5#3", "fose:qb"),
    ("landsat-8_ü.h5", "landsat8/landsat8_fr.h5", "fose:qb"),
]
CORRUPT = "broken.h5"


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def _crop(scene: tta.Scene) -> tta.Scene:
    r = scene.ratio
    return replace(scene, ms=scene.ms[:, :CROP // r, :CROP // r], pan=scene.pan[:CROP, :CROP],
                   gt=None, nodata=None)


@pytest.fixture(scope="module")
def batch_dir(real_file, tmp_path_factory) -> Path:
    """Six real crops, a corrupt file and a YAML manifest naming them."""
    d = tmp_path_factory.mktemp("scenes")
    entries = []
    for name, spec, model in SHARED:
        path, _, index = spec.partition("#")
        src = str(real_file(path)) + (f"#{index}" if index else "")
        tta.write_h5(d / name, _crop(tta.read_scene(src)))
        entries.append({"scene": name, "model": model})
    (d / CORRUPT).write_bytes(b"\x89HDF\r\n\x1a\n" + b"\x00" * 64)  # a truncated HDF5 file
    entries.append({"scene": CORRUPT, "model": "fose:qb"})
    (d / "list.yaml").write_text(json.dumps({"defaults": {"steps": 5}, "scenes": entries}))
    return d


@pytest.fixture(scope="module")
def ray_session():
    """One local Ray for the module (2 CPUs), always shut down."""
    ray = pytest.importorskip("ray", reason="ray is not installed (pip install .[ray])")
    import logging

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
             logging_level=logging.ERROR, object_store_memory=128 * 1024**2)
    try:
        yield ray
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def ray_batch(batch_dir, ray_session, tmp_path_factory):
    out = tmp_path_factory.mktemp("ray-out")
    res = run("batch", batch_dir / "list.yaml", "-o", out, "--executor", "ray", "--device",
              "cpu")
    return out, res


def _summary(out: Path) -> list[dict]:
    return json.loads((out / "summary.json").read_text())["scenes"]


def test_ray_batch_runs_every_scene_and_fails_the_corrupt_one_alone(ray_batch):
    out, res = ray_batch
    assert res.exit_code == 1, res.output
    assert "6 done, 0 skipped, 1 failed" in res.stdout and "executor ray" in res.stdout
    rows = {r["name"]: r for r in _summary(out)}
    assert len(rows) == 7
    bad = rows["broken"]
    assert bad["status"] == "failed" and CORRUPT in bad["error"] and "\n" not in bad["error"]
    assert f"broken: failed: {bad['error']}" in res.stderr
    good = [r for n, r in rows.items() if n != "broken"]
    assert {r["status"] for r in good} == {"done"}
    assert {r["sensor"] for r in good} == {"WV2", "WV3", "QB", "GF2", "LANDSAT8"}
    for r in good:
        assert r["decision"] in ("adapted", "direct") and r["decision_reason"]
        assert 0 < r["HQNR"] <= 1 and 0 <= r["D_lambda"] < 1 and 0 <= r["D_s"] < 1
        assert r["wall_s"] > 0 and r["adapt_s"] > 0
        fused = h5py.File(r["product"])["fused"]
        assert fused.shape[-2:] == (CROP, CROP) and fused.dtype == np.float32
        report = json.loads(Path(r["report"]).read_text())
        assert report["decision"]["choice"] == r["decision"]
        assert report["config"]["steps"] == 5
        assert report["batch"]["threads"] == 1 and len(report["batch"]["input_sha256"]) == 64
    header = (out / "summary.csv").read_text().splitlines()[0].split(",")
    assert {"status", "error", "wall_s", "decision", "HQNR", "D_lambda", "D_s"} <= set(header)
    # exotic file names become safe, distinct product names
    assert (out / "São_Paulo_wv2_v1.0_fused.h5").is_file()
    assert (out / "wv3_shanghai_co_fused.h5").is_file()


def test_rerun_skips_every_finished_scene(ray_batch, batch_dir):
    out, _ = ray_batch
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()
              if not p.name.startswith("summary")}
    res = run("batch", batch_dir / "list.yaml", "-o", out, "--executor", "ray")
    assert res.exit_code == 1  # the corrupt scene fails again, alone
    assert "0 done, 6 skipped, 1 failed" in res.stdout
    rows = _summary(out)
    assert [r["status"] for r in rows].count("skipped") == 6
    assert all(r["wall_s"] == 0.0 for r in rows if r["status"] == "skipped")
    assert all(r["HQNR"] is not None for r in rows if r["status"] == "skipped")
    after = {p.name: p.stat().st_mtime_ns for p in out.iterdir()
             if not p.name.startswith("summary")}
    assert after == before  # nothing rewritten


def test_in_process_gives_the_same_products_as_ray(ray_batch, batch_dir, tmp_path):
    out, _ = ray_batch
    picked = [SHARED[0], SHARED[5]]
    manifest = tmp_path / "two.csv"
    manifest.write_text("scene,model\n" + "".join(f"\"{batch_dir / n}\",{m}\n"
                                                  for n, _, m in picked))
    result = tta.run_batch([str(manifest)], tmp_path / "local", executor="local", steps=5,
                           device="cpu")
    assert result.counts == {"done": 2, "skipped": 0, "failed": 0}
    assert result.executor["executor"] == "local"
    for row in result.rows:
        ours = h5py.File(row["product"])["fused"][:]
        theirs = h5py.File(out / Path(row["product"]).name)["fused"][:]
        np.testing.assert_array_equal(ours, theirs)


def test_changed_outputs_are_not_skipped_nor_replaced_silently(ray_batch, batch_dir,
                                                               tmp_path):
    out, _ = ray_batch
    name = "qb"
    work = tmp_path / "out"
    work.mkdir()
    for suffix in ("_fused.h5", "_report.json"):
        (work / f"{name}{suffix}").write_bytes((out / f"{name}{suffix}").read_bytes())
    scene = str(batch_dir / "qb.h5")
    kw = {"model": "fose:qb", "executor": "local", "device": "cpu"}
    same = tta.run_batch([scene], work, steps=5, **kw)
    assert same.rows[0]["status"] == "skipped"
    changed = tta.run_batch([scene], work, steps=6, **kw)  # other options: no skip
    assert changed.rows[0]["status"] == "failed"
    assert "the options changed" in changed.rows[0]["error"]
    assert "--overwrite" in changed.rows[0]["error"]
    # the output folder given as the scene folder: its products are not scenes
    with pytest.raises(InputError, match="only products of"):
        tta.run_batch([str(work)], work, steps=5, **kw)


def test_unreadable_manifest_exits_2_with_one_line(tmp_path):
    cases = {
        "missing.yaml": None,
        "bad.yaml": "scenes: [a.h5\n",
        "keys.yaml": "scenes:\n  - {scene: a.h5, colour: red}\n",
        "steps.csv": "scene,steps\na.h5,many\n",
        "noscene.csv": "file,model\na.h5,fose\n",
        "binary.txt": "\x00\x01\x02",
    }
    for name, text in cases.items():
        if text is not None:
            (tmp_path / name).write_text(text)
        res = run("batch", tmp_path / name, "-o", tmp_path / "out", "--model", "fose",
                  "--executor", "local")
        assert res.exit_code == 2, (name, res.output)
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: ") and name in lines[0], name
        assert "Traceback" not in res.output
    assert not (tmp_path / "out").exists()


def test_a_scene_without_model_and_an_unknown_executor_are_refused(tmp_path):
    (tmp_path / "l.txt").write_text("a.h5\n")
    res = run("batch", tmp_path / "l.txt", "-o", tmp_path / "out")
    assert res.exit_code == 2 and "no model for scene" in res.stderr
    with pytest.raises(InputError, match="unknown executor 'rey'.*did you mean ray"):
        tta.get_executor("rey")
    assert set(tta.list_executors()) >= {"local", "ray"}


def test_list_forms_and_names(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    for p in ("a/x.h5", "b/X.h5", "a/y.mat", "a/notes.md"):
        (tmp_path / p).write_bytes(b"")
    folder = collect_scenes([str(tmp_path / "a")])
    assert [Path(e.spec).name for e in folder] == ["x.h5", "y.mat"]
    pattern = collect_scenes([str(tmp_path / "*" / "*.h5")])
    assert [Path(e.spec).name for e in pattern] == ["x.h5", "X.h5"]
    (tmp_path / "l.txt").write_text("# comment\n\na/x.h5#2\n  b/X.h5  \nm.tif+p.tif\n")
    listed = collect_scenes(str(tmp_path / "l.txt"))
    assert [e.spec for e in listed] == [f"{tmp_path}/a/x.h5#2", f"{tmp_path}/b/X.h5",
                                       f"{tmp_path}/m.tif+{tmp_path}/p.tif"]
    # case-insensitive collision: both derived names get a digest of their own scene
    specs = [e.spec for e in pattern]
    names = scene_names(specs, [None, None])
    assert names[0].startswith("x-") and names[1].startswith("X-") and names[0] != names[1]
    assert scene_names(specs[::-1], [None, None]) == names[::-1]  # order does not matter
    assert scene_stem("a/São Paulo (1).h5#3") == "São_Paulo_1_3"
    assert scene_stem("dir/.hidden;rm -rf.h5") == "hidden_rm_-rf"
    with pytest.raises(InputError, match="both map to output name 'K'"):
        scene_names(specs, ["k", "K"])
    with pytest.raises(InputError, match="listed twice"):
        scene_names([specs[0], os.path.join(tmp_path, "b", "..", "a", "x.h5")], [None, None])
    with pytest.raises(InputError, match="letters, digits"):
        scene_names([specs[0]], ["../up"])


def _half(x: int) -> float:
    if x == 3:
        raise ValueError("three")
    return x / 2


def test_local_executor_runs_in_order_and_reports_errors():
    import torch

    before = torch.get_num_threads()
    with tta.get_executor("local", threads=1, address="ignored") as ex:
        got = list(ex.map_unordered(_half, [1, 2, 3],
                                    on_error=lambda item, exc: f"{item}: {exc}"))
        assert ex.describe()["threads_per_job"] == 1
    assert got == [(0, 0.5), (1, 1.0), (2, "3: three")]
    assert torch.get_num_threads() == before
    with pytest.raises(ValueError, match="three"):
        list(tta.get_executor("local").map_unordered(_half, [3]))


def test_ray_address_is_checked_before_connecting():
    pytest.importorskip("ray", reason="ray is not installed (pip install .[ray])")
    from tta.executors.ray_executor import _check_reachable

    with pytest.raises(InputError, match="cannot reach the Ray head at 127.0.0.1:1"):
        _check_reachable("127.0.0.1:1")
    with pytest.raises(InputError, match="HOST:PORT"):
        _check_reachable("nonsense")
    _check_reachable("auto")  # left to Ray
