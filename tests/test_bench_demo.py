"""benchmarks/bench_demo.py on a small generated QB scene: both jobs, the written tables."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import bench_demo  # noqa: E402
from _inputs import write_scene_h5  # noqa: E402


def test_demo_jobs_are_timed_with_their_stages(tmp_path):
    scene = write_scene_h5(tmp_path / "toy.h5", bands=4, ms_side=64)
    meta = bench_demo.main(["--scene", str(scene), "--model", "lagconv:qb", "--rounds", "1",
                            "--threads", "1", "--out", str(tmp_path / "out"), "--stem", "toy"])
    (folder,) = (tmp_path / "out").iterdir()
    saved = json.loads((folder / "toy.json").read_text())
    assert saved == json.loads(json.dumps(meta)) and saved["threads"] == 1
    assert [(r["round"], r["job"]) for r in saved["rows"]] == [(1, "reduced"), (1, "full")]
    for row in saved["rows"]:
        assert row["wall_s"] > row["timings"]["adapt_and_infer"] > 0
        assert "direct_infer" not in row["timings"]  # lagconv + ft: one pass for both
        assert row["choice"] in ("adapted", "direct")
    md = (folder / "toy.md").read_text()
    assert "| reduced |" in md
    # named by commit and file name, not by where they sit on this machine
    assert saved["scene"] == "toy.h5" and saved["trees"] == [bench_demo.tree_label(bench_demo.ROOT)]
    for text in (md, (folder / "toy.json").read_text()):
        assert str(tmp_path) not in text and str(bench_demo.ROOT) not in text
