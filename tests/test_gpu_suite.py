"""benchmarks/gpu_suite.py: staging copies what the GPU run reads, and the run works end to end
at toy size on the CPU (``--device cpu --tiny``), so that the prepared GPU run stays runnable."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SUITE = REPO / "benchmarks" / "gpu_suite.py"
sys.path.insert(0, str(REPO / "benchmarks"))

import gpu_suite  # noqa: E402
from conftest import shared_data_dir  # noqa: E402


def _shared_or_none() -> Path | None:
    """The shared folder (data and weights) when everything ``--stage`` copies is in it."""
    root = shared_data_dir().parent
    wanted = [root / "data" / n for n in gpu_suite.STAGE_DATA]
    wanted += [root / "weights" / n for n in gpu_suite.STAGE_WEIGHTS]
    return root if all(p.exists() for p in wanted) else None


def _fake_shared(root: Path) -> Path:
    for name in gpu_suite.STAGE_DATA:
        p = root / "data" / name
        if "." in name:
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(f"{name}\n")
        else:
            p.mkdir(parents=True)
            (p / f"{name}_scene.h5").write_bytes(name.encode() * 10)
    for name in gpu_suite.STAGE_WEIGHTS:
        p = root / "weights" / name
        if "." in name:
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text("weights\n")
        else:
            (p / "wv3").mkdir(parents=True)
            (p / "wv3" / "net.pth").write_bytes(b"\x00\x01")
    return root


def test_stage_copies_the_listed_files_with_a_manifest(tmp_path):
    shared = _fake_shared(tmp_path / "shared")
    (shared / "data" / "landsat8").mkdir()  # not listed: stays behind
    dest = tmp_path / "repo" / ".gpu-data"
    dest.mkdir(parents=True)
    (dest / "stale.txt").write_text("old")  # the copy is replaced, not merged
    manifest = gpu_suite.stage(shared, dest)
    files = manifest["files"]
    assert set(files) == {p.relative_to(dest).as_posix() for p in dest.rglob("*")
                          if p.is_file() and p.name != "manifest.json"}
    assert "data/wv2/wv2_scene.h5" in files and "weights/dlpan/wv3/net.pth" in files
    assert not (dest / "stale.txt").exists() and not (dest / "data" / "landsat8").exists()
    for rel, rec in files.items():
        blob = (dest / rel).read_bytes()
        assert rec == {"bytes": len(blob), "sha256": hashlib.sha256(blob).hexdigest()}
    assert json.loads((dest / "manifest.json").read_text())["files"] == files


def test_stage_names_what_is_missing(tmp_path):
    shared = _fake_shared(tmp_path / "shared")
    (shared / "data" / "wv2" / "wv2_scene.h5").unlink()
    (shared / "data" / "wv2").rmdir()
    with pytest.raises(SystemExit, match=r"not found: .*data/wv2"):
        gpu_suite.stage(shared, tmp_path / "dest")


def test_the_gpu_repository_copy_ignores_the_staged_data():
    assert ".gpu-data/" in (REPO / ".gitignore").read_text().splitlines()


def test_tiny_run_on_cpu(tmp_path):
    """The whole run at toy size; on the staged real data when ../shared is here."""
    data, shared = tmp_path / "gpu-data", _shared_or_none()
    if shared is not None:
        gpu_suite.stage(shared, data)
    out = tmp_path / "results"
    proc = subprocess.run([sys.executable, str(SUITE), "--device", "cpu", "--tiny",
                           "--threads", "2", "--data", str(data), "--out", str(out)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (folder,) = out.iterdir()
    assert folder.name.endswith("-cpu")
    meta = json.loads((folder / "gpu_suite.json").read_text())
    assert (folder / "gpu_suite.md").is_file() and (folder / "pytest.log").is_file()
    assert ("(staged)" in meta["scene"]) == (shared is not None)
    assert ("(staged)" in meta["weights"]["fusionnet"]) == (shared is not None)
    runs = {(r["model"], r["adapter"]): r for r in meta["adapt"]}
    assert set(runs) == {("fusionnet", a) for a in gpu_suite.ADAPTERS} | {("fose", "ft")}
    for r in runs.values():
        assert r["mode"] == "eager" and r["size"] == 64, r
        assert 0 < r["infer_s"] < r["adapt_and_infer_s"] <= r["wall_s"], r
    assert meta["pytest"]["passed"] > 0 and meta["pytest"]["failed"] == 0
    assert meta["metrics"]["rr_s"] > 0 and meta["metrics"]["fr_s"] > 0
    (zoo,) = meta["zoo"]
    assert zoo["model"] == "fusionnet" and 0 < zoo["tile_ratio"] and zoo["scenes"][0]["size"] == 64
    assert "cpu_s" in meta["faiss"] or meta["faiss"]["faiss"] is None
    assert meta["oom"] == {"skipped": "CUDA only"}
    assert meta["targets"] == []  # targets are for 512² and 4000² on a GPU
