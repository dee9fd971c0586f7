"""benchmarks/bench_roofline.py at toy size: FLOP counts, the reference, the written tables."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import bench_roofline  # noqa: E402


def test_flops_and_width_of_the_networks():
    net = bench_roofline.load_network("fusionnet")  # no shipped weights: seeded architecture
    assert bench_roofline.network_width(net) == 32
    fpp = bench_roofline.flops_per_pixel(net, 32, torch.device("cpu"))
    # FusionNet: 3x3 convs 8->32 (on pan - lms), 4 res blocks of two 32->32, 32->8; 2 FLOPs
    # per multiply-add
    assert fpp == 2 * 9 * (8 * 32 + 8 * 32 * 32 + 32 * 8)
    fose = bench_roofline.load_network("fose")  # the shipped weights
    assert fose.weights_record.file == "fose_wv3.safetensors"
    ref = bench_roofline.DenseReference(32, 16, torch.device("cpu"))
    assert ref.flops == 2 * 32 * 32 * 9 * 16 * 16 and ref.rate() > 0


def test_main_writes_json_and_markdown(tmp_path):
    meta = bench_roofline.main(["--sizes", "64", "--models", "fusionnet", "--tile", "64",
                                "--repeats", "1", "--threads", "1", "--out", str(tmp_path),
                                "--stem", "toy"])
    (folder,) = tmp_path.iterdir()
    saved = json.loads((folder / "toy.json").read_text())
    assert saved == json.loads(json.dumps(meta)) and saved["threads"] == 1
    (row,) = saved["rows"]
    assert row["model"] == "fusionnet" and 0 < row["tile_ratio"]
    (scene,) = row["scenes"]
    assert scene["size"] == 64 and scene["infer_s"] > 0
    assert scene["gflops_s"] == pytest.approx(row["gflops_per_mpx"] * 1e3 * 64 ** 2
                                              / scene["infer_s"] / 1e9)
    md = (folder / "toy.md").read_text()
    assert "| fusionnet | 32 | 41.1 |" in md and "64² ratio" in md
