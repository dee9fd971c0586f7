"""benchmarks/bench_lagconv_forms.py: its forms compute the layer's sums; toy-size run."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import bench_lagconv_forms as forms  # noqa: E402

from pretrained.lagconv import LAGConv2d  # noqa: E402


@pytest.fixture
def block():
    torch.manual_seed(0)
    layer = LAGConv2d(8, 8).eval()
    return forms.Block(layer, m=40, w=12)


def weighted_taps(blk):
    """``sum_j wts[p, j] * x[p + dy * w + dx] @ W_j`` pixel by pixel, ``W_j`` from the
    products form's kernel."""
    k, o = blk.k, blk.o
    out = torch.zeros(blk.m, o)
    for p in range(blk.m):
        for dy in range(k):
            for dx in range(k):
                tap = blk.x[p + dy * blk.w + dx] @ blk.products_kernel[dy][:, dx * o:(dx + 1) * o]
                out[p] += blk.wts[p, dy * k + dx] * tap
    return out


def test_forms_compute_the_same_sums(block):
    expected = weighted_taps(block)
    block.acc.zero_()
    block.shipped()
    assert torch.allclose(block.acc, expected, atol=1e-5)
    block.acc.zero_()
    for dy in range(block.k):  # the parts, row by row
        block.weigh_row(dy)
        block.acc.addmm_(block.operand, block.kernel[dy])
    assert torch.allclose(block.acc, expected, atol=1e-5)
    block.acc.zero_()
    forms.tap_products(block)()
    assert torch.allclose(block.acc, expected, atol=1e-5)
    block.acc.zero_()
    block.product_gemms(buffers=block.k)
    for dy in range(block.k):  # each row from its own buffer, as the compiled form reads them
        block.weigh_products(dy, block.taps[dy])
    assert torch.allclose(block.acc, expected, atol=1e-5)
    forms.channels_first(block)()  # adds the residual
    assert torch.allclose(block.acc, expected + block.residual, atol=1e-5)
    block.gh_term()
    expected_gh = torch.relu(block.pooled @ block.gh + block.bias + block.residual)
    assert torch.allclose(block.acc, expected_gh, atol=1e-6)


def test_main_writes_rows_and_bound(tmp_path):
    meta = forms.main(["--tile", "32", "--repeats", "1", "--threads", "1", "--out",
                       str(tmp_path), "--stem", "toy"])
    (folder,) = tmp_path.iterdir()
    saved = json.loads((folder / "toy.json").read_text())
    assert saved == json.loads(json.dumps(meta)) and saved["threads"] == 1
    # taps 3x3 32->32, LCA 3x3 32->16 and 1x1 16->9, GH 1x1 32->32; 2 FLOPs per multiply-add
    assert saved["flops_per_pixel"] == 2 * (9 * 32 * 32 + 9 * 32 * 16 + 16 * 9 + 32 * 32)
    names = [r["name"] for r in saved["rows"]]
    assert names[0] == "layer" and "weighting + matmuls" in names and "tap products" in names
    assert "LCA generator, unfused" in names
    assert all(r["x_dense"] > 0 for r in saved["rows"])
    parts = sum(r["x_dense"] for r in saved["rows"] if r["name"] in (
        "weighting + matmuls", "GH, bias, residual, ReLU", "LCA generator", "GH box mean"))
    assert saved["parts_x_dense"] == pytest.approx(parts)
    assert saved["bound_ratio"] == pytest.approx(saved["flops_x_dense"] / parts)
    assert "| layer |" in (folder / "toy.md").read_text()
