"""tta bench: matrix parsing, protocols, aggregation, reports, and the quick matrix on real data."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import pretrained
from tta.bench import (
    BUILTIN_METHODS,
    aggregate,
    builtin_matrix,
    centre_crop,
    load_matrix,
    parse_matrix,
    prepare_target,
    run_bench,
    summary_rows,
    write_report,
)
from tta.bench.figures import rgb_indices
from tta.bench.report import gap_closed
from tta.cli import cli
from tta.errors import InputError, OutputError
from tta.io import Scene, write_h5
from tta.sensors import get_sensor


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


# ----------------------------------------------------------------------------- synthetic
def _scene(sensor="QB", h=32, w=32, seed=0, gt=False) -> Scene:
    s = get_sensor(sensor)
    rng = np.random.default_rng(seed)
    r = s.ratio
    yy, xx = np.mgrid[0:r * h, 0:r * w] / (r * h)
    base = 300 + 200 * np.sin(6 * yy) * np.cos(5 * xx) + 20 * rng.standard_normal((r * h, r * w))
    hr = np.stack([base * (0.8 + 0.1 * b) for b in range(s.n_bands)]).astype(np.float32)
    ms = hr.reshape(s.n_bands, h, r, w, r).mean(axis=(2, 4))
    return Scene(ms=ms, pan=hr.mean(0), sensor=s, gt=hr if gt else None,
                 source=f"synthetic {sensor}")


@pytest.fixture(scope="module")
def tiny_setup(tmp_path_factory):
    """A 4-band FR scene file and two tiny PNN checkpoints (a 'source' and an 'in-sensor')."""
    root = tmp_path_factory.mktemp("bench")
    write_h5(root / "qb_fr.h5", [_scene(h=64, w=80)])
    torch.manual_seed(0)
    for name in ("src", "ref"):
        net = pretrained.create_model("pnn", n_bands=4)
        torch.save(net.state_dict(), root / f"{name}.pth")
    return root


def _tiny_matrix(root: Path, **extra) -> dict:
    return {
        "name": "tiny", "steps": 3, "seeds": [0, 1], "patch": 32, "min_patches": 2,
        "methods": ["none", "ft", {"name": "zpnn", "steps": 3}], "classical": ["exp"],
        "sources": [{"name": "pnn-src", "model": "pnn", "weights": "src.pth",
                     "in_sensor": {"qb": "ref.pth"}},
                    {"name": "eight-band", "model": "fusionnet", "weights": "missing.pth"}],
        "targets": [{"name": "t", "file": "qb_fr.h5", "protocols": ["rr", "fr"]}],
        **extra}


# ----------------------------------------------------------------------------- matrix
def _method_named(name: str):
    from tta.bench.matrix import _method

    return _method(name, "test")


def test_builtin_matrices_parse_and_zpnn_follows_the_paper():
    quick = builtin_matrix("quick")
    assert [m.name for m in quick.methods] == ["none", "ft", "swift"]
    assert quick.speed is not None and quick.speed.sizes == (256,)
    full = builtin_matrix("cross_sensor")
    zpnn = next(m for m in full.methods if m.name == "zpnn")
    cfg = full.method_config(zpnn, "swift", 5)
    # Z-PNN (Ciotola et al. 2022): whole network, Adam lr 1e-5, 100 iterations, whole image,
    # L_spec + beta L_struct with no anchor
    assert (cfg.adapter, cfg.lr, cfg.steps, cfg.fraction) == ("full", 1e-5, 100, 1.0)
    # beta 0.36 (its WV2/WV3 value), pinned: our own default spatial weight is 0.1
    assert cfg.loss_weights == {"spatial": 0.36, "anchor": 0.0} and cfg.spatial_loss == "zpnn"
    assert not cfg.decide and cfg.rr_weight == 0.0  # none of our additions
    lam = full.method_config(_method_named("lambda-pnn"), "swift", 0)
    assert (lam.adapter, lam.lr, lam.steps, lam.max_patches) == ("full", 3.5e-5, 100, 16)
    assert lam.loss_weights == {"spectral": 0.0, "spatial": 6.0, "anchor": 0.0,
                                "ergas": 0.05, "q2n": 1.0}
    assert cfg.sampler == "random" and full.samplers_of(zpnn) == ["random"]
    assert full.seeds_of(zpnn) == [0] and full.seeds_of(full.methods[1]) == [0, 1, 2]
    assert full.seeds_of(full.methods[0]) == [0]  # none: deterministic
    assert "zpnn" in BUILTIN_METHODS
    ft = next(m for m in full.methods if m.name == "ft")
    assert full.method_config(ft, "fps", 2).sampler == "fps"


def test_restrict_drops_the_timing_whose_source_is_filtered_out():
    zoo = builtin_matrix("zoo")
    assert zoo.speed is not None and zoo.speed.source == "fose-wv3"
    kept = zoo.restrict(sources=["fose-wv3", "lagconv-wv3"])
    assert kept.speed == zoo.speed
    qb = zoo.restrict(sources=["fose-qb", "lagconv-qb"])
    assert qb.speed is None and [s.name for s in qb.sources] == ["fose-qb", "lagconv-qb"]


def test_matrix_roots_and_restrict(tmp_path):
    m = parse_matrix(_tiny_matrix(tmp_path), data_root=tmp_path, weights_root="/w")
    assert m.scene_path(m.targets[0]) == str(tmp_path / "qb_fr.h5")
    assert m.weights_path("a/b.pth") == "/w/a/b.pth" and m.weights_path("/abs.pth") == "/abs.pth"
    assert m.targets[0].protocols == ("rr", "fr")
    r = m.restrict(steps=7, seeds=[3], methods=["ft", "cat"], sources=["pnn-src"])
    assert [x.name for x in r.methods] == ["ft", "cat"] and r.seeds == [3]
    assert r.method_config(r.methods[0], "swift", 3).steps == 7
    assert [s.name for s in r.sources] == ["pnn-src"] and len(m.sources) == 2
    z = m.restrict(steps=4)
    assert z.method_config(next(x for x in z.methods if x.name == "zpnn"), "swift", 0).steps == 4
    with pytest.raises(InputError, match="no source named nope"):
        m.restrict(sources=["nope"])


@pytest.mark.parametrize(("change", "match"), [
    ({"colour": 1}, "unknown key"),
    ({"samplers": ["nearest"]}, "unknown sampler 'nearest'"),
    ({"classical": ["magic"]}, "unknown classical method 'magic'"),
    ({"methods": [{"name": "x", "adapter": "ft", "learning": 1}]}, "unknown AdaptConfig"),
    ({"methods": ["ft", "ft"]}, "duplicate method"),
    ({"methods": ["telepathy"]}, "telepathy"),
    ({"steps": -1}, "steps"),
    ({"seeds": "zero"}, "seeds"),
    ({"targets": [{"file": "a.h5", "protocols": ["hr"]}]}, "protocols"),
    ({"targets": [{"name": "a"}]}, "needs 'file'"),
    ({"targets": [{"file": "a.h5", "crop": 3}]}, "crop"),
    ({"sources": [{"name": "a"}]}, "needs 'model'"),
    ({"sources": []}, "no sources"),
    ({"speed": {"source": "other"}}, "speed.source"),
    ({"methods": [{"name": "z", "adapter": "ft", "seeds": []}]}, "seeds"),
])
def test_matrix_errors_are_one_line(tmp_path, change, match):
    data = {**_tiny_matrix(tmp_path), **change}
    with pytest.raises(InputError, match=match) as err:
        parse_matrix(data)
    assert "\n" not in str(err.value)


def test_load_matrix_file_errors(tmp_path):
    with pytest.raises(InputError, match="matrix file not found .*quick"):
        load_matrix(tmp_path / "none.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(InputError, match="not valid YAML"):
        load_matrix(bad)


# ----------------------------------------------------------------------------- scenes
def test_centre_crop_keeps_pan_and_ms_aligned():
    s = _scene(h=20, w=30, gt=True)
    c = centre_crop(s, 42)  # rounded down to 40 = 10 MS px
    assert c.ms.shape == (4, 10, 10) and c.pan.shape == (40, 40) and c.gt.shape == (4, 40, 40)
    y, x = 5, 10  # (20 - 10) // 2, (30 - 10) // 2
    np.testing.assert_array_equal(c.ms, s.ms[:, y:y + 10, x:x + 10])
    np.testing.assert_array_equal(c.pan, s.pan[4 * y:4 * y + 40, 4 * x:4 * x + 40])
    np.testing.assert_array_equal(c.gt, s.gt[:, 4 * y:4 * y + 40, 4 * x:4 * x + 40])
    big = centre_crop(s, 1000)  # larger than the scene: unchanged extent
    assert big.ms.shape == s.ms.shape


def test_prepare_target_protocols(tiny_setup):
    m = parse_matrix(_tiny_matrix(tiny_setup), data_root=tiny_setup, weights_root=tiny_setup)
    scenes = prepare_target(m, m.targets[0])
    rr, fr = scenes["rr"][0], scenes["fr"][0]
    assert fr.gt is None and fr.pan.shape == (256, 320)
    # Wald: the reduced scene's reference is the original MS
    assert rr.pan.shape == (64, 80) and rr.ms.shape == (4, 16, 20)
    np.testing.assert_array_equal(rr.gt, fr.ms)
    small = parse_matrix(_tiny_matrix(tiny_setup, targets=[
        {"name": "s", "file": "qb_fr.h5", "crop": 128}]), data_root=tiny_setup)
    with pytest.raises(InputError, match="smaller than 64"):
        prepare_target(small, small.targets[0])


# ----------------------------------------------------------------------------- numbers
def _runs() -> list[dict]:
    base = {"target": "t", "protocol": "rr", "sensor": "QB", "pan_shape": "64x64",
            "t_adapt": 1.0, "t_train": 0.5, "t_infer": 0.1, "t_adapt_and_infer": 1.1,
            "t_wall": 1.2, "SAM": 3.0, "ERGAS": 2.0}
    rows = [
        {**base, "source": "a", "method": "direct", "sampler": "-", "seed": "-",
         "kind": "direct", "Q2n": 0.70},
        {**base, "source": "a", "method": "in-sensor", "sampler": "-", "seed": "-",
         "kind": "reference", "Q2n": 0.90},
        {**base, "source": "a", "method": "ft", "sampler": "swift", "seed": 0,
         "kind": "adapted", "Q2n": 0.78, "SAM": 2.5, "ERGAS": 1.5},
        {**base, "source": "a", "method": "ft", "sampler": "swift", "seed": 1,
         "kind": "adapted", "Q2n": 0.82, "SAM": 2.5, "ERGAS": 1.9},
        {**base, "source": "b", "method": "direct", "sampler": "-", "seed": "-",
         "kind": "direct", "Q2n": 0.80},
        {**base, "source": "b", "method": "ft", "sampler": "swift", "seed": 0,
         "kind": "adapted", "Q2n": 0.75, "SAM": 2.9, "ERGAS": 2.5},
    ]
    return rows


def test_aggregate_and_summary_values():
    rows = aggregate(_runs())
    ft_a = next(r for r in rows if r["source"] == "a" and r["method"] == "ft")
    assert ft_a["n"] == 2 and ft_a["Q2n"] == pytest.approx(0.80)
    assert ft_a["Q2n_std"] == pytest.approx(math.sqrt(2) * 0.02)  # sample std of .78, .82
    d = next(r for r in rows if r["source"] == "a" and r["kind"] == "direct")
    ref = next(r for r in rows if r["kind"] == "reference")
    assert gap_closed(ft_a, d, ref, "Q2n") == pytest.approx(0.5)
    assert math.isnan(gap_closed(ft_a, d, d, "Q2n"))
    (entry,) = summary_rows(rows)
    assert entry["Q2n_wins"] == "1/2" and entry["SAM_wins"] == "2/2"
    assert entry["ERGAS_wins"] == "1/2"  # a: 1.7 < 2.0; b: 2.5 > 2.0
    assert entry["Q2n_delta"] == pytest.approx(((0.80 - 0.70) + (0.75 - 0.80)) / 2)
    assert entry["Q2n_gap_closed"] == pytest.approx(0.5)  # only source a has a reference
    assert entry["beats_direct_everywhere"] is False


def test_rgb_indices():
    assert rgb_indices(get_sensor("WV3").bands) == (4, 2, 1)
    assert rgb_indices(("blue", "green", "red", "nir")) == (2, 1, 0)
    assert rgb_indices(("a", "b")) == (1, 1, 0)


# ----------------------------------------------------------------------------- end to end
def test_run_bench_on_a_synthetic_target(tiny_setup, tmp_path):
    m = parse_matrix(_tiny_matrix(tiny_setup), data_root=tiny_setup, weights_root=tiny_setup)
    res = run_bench(m, device="cpu")
    # the 8-band source has no weights: skipped with the reason; not fatal
    assert any("eight-band" in s and "missing.pth not found" in s for s in res.skipped)
    kinds = [(r["protocol"], r["method"], r["seed"]) for r in res.runs]
    for protocol in ("rr", "fr"):
        assert (protocol, "EXP", "-") in kinds and (protocol, "in-sensor", "-") in kinds
        assert (protocol, "direct", "-") in kinds
        assert (protocol, "ft", 0) in kinds and (protocol, "ft", 1) in kinds
        assert (protocol, "zpnn", 0) in kinds and (protocol, "zpnn", 1) not in kinds
    rr_direct = next(r for r in res.runs if r["protocol"] == "rr" and r["kind"] == "direct")
    assert 0 < rr_direct["Q2n"] <= 1 and rr_direct["trainable"] == 0
    fr_ft = next(r for r in res.runs if r["protocol"] == "fr" and r["method"] == "ft")
    assert "HQNR" in fr_ft and "Q2n" not in fr_ft and fr_ft["t_adapt"] > 0
    zp = next(r for r in res.runs if r["method"] == "zpnn")
    assert zp["lr"] == 1e-5 and zp["trainable"] == sum(
        p.numel() for p in pretrained.create_model("pnn", n_bands=4).parameters())

    out = tmp_path / "out"
    paths = write_report(res, out, command="tta bench tiny")
    names = {p.name for p in paths}
    assert {"runs.csv", "summary.csv", "rr.md", "fr.md", "summary.md", "bench.json",
            "quicklook_t_rr.png", "quicklook_t_fr.png", "tradeoff_rr.png"} <= names
    with open(out / "runs.csv") as fh:
        assert len(list(csv.DictReader(fh))) == len(res.runs)
    data = json.loads((out / "bench.json").read_text())
    assert data["meta"]["command"] == "tta bench tiny" and data["meta"]["device_type"] == "cpu"
    assert (out / "quicklook_t_rr.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rr_md = (out / "rr.md").read_text()
    assert "| pnn-src | in-sensor |" in rr_md and "gap closed (Q2n)" in rr_md
    before = (out / "runs.csv").read_bytes()
    with pytest.raises(OutputError, match="exists; pass --overwrite"):
        write_report(res, out)
    assert (out / "runs.csv").read_bytes() == before


def test_cli_bench_errors_are_one_line(tmp_path, tiny_setup):
    res = run("bench", tmp_path / "none.yaml")
    assert res.exit_code == 2 and "matrix file not found" in res.output
    res = run("bench", "--quick", "quick")
    assert res.exit_code == 2 and "not both" in res.output
    res = run("bench", "--quick", "--seeds", "a,b")
    assert res.exit_code == 2 and "--seeds" in res.output
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    res = run("bench", "--quick", "-o", tmp_path / "full")
    assert res.exit_code == 2 and "not empty" in res.output
    assert (tmp_path / "full" / "keep.txt").read_text() == "mine"
    res = run("bench", "--quick", "--data-root", tmp_path / "nodata", "--no-speed",
              "-o", tmp_path / "o2")
    assert res.exit_code == 2 and "nothing could run" in res.output
    for r in (res,):
        assert "Traceback" not in r.output


def test_cli_bench_takes_any_scene_file(tiny_setup, tmp_path):
    """--target replaces the matrix's scenes: a new scene needs no code or YAML change."""
    yaml_path = tmp_path / "m.yaml"
    import yaml

    yaml_path.write_text(yaml.safe_dump(_tiny_matrix(tiny_setup, methods=["none", "ft"])))
    res = run("bench", yaml_path, "--weights-root", tiny_setup, "--target",
              tiny_setup / "qb_fr.h5", "--protocol", "fr", "--seeds", "0",
              "--no-figures", "-o", tmp_path / "o")
    assert res.exit_code == 0, res.output
    rows = list(csv.DictReader(open(tmp_path / "o" / "runs.csv")))
    assert {r["target"] for r in rows} == {"qb_fr"} and {r["protocol"] for r in rows} == {"fr"}
    assert {r["method"] for r in rows} == {"EXP", "in-sensor", "direct", "ft"}


def test_quick_matrix_on_real_data(data_dir, tmp_path):
    """The CI smoke test: the built-in quick matrix on the real WV2 and GF2 scenes."""
    weights = data_dir.parent / "weights"
    if not (weights / "dlpan" / "wv3" / "fusionnet.pth").is_file():
        pytest.skip(f"community weights folder {weights / 'dlpan'} is absent")
    out = tmp_path / "quick"
    res = run("-q", "bench", "--quick", "--data-root", data_dir, "--weights-root", weights,
              "--threads", torch.get_num_threads(), "-o", out)
    assert res.exit_code == 0, res.output
    rows = {(r["target"], r["protocol"], r["method"]): r
            for r in csv.DictReader(open(out / "summary.csv"))}
    q = {k: float(v["Q2n"]) for k, v in rows.items() if k[1] == "rr"}
    # WV3 network on WV2 (RR): adaptation closes part of the gap to the WV2-trained one
    assert q[("wv2", "rr", "direct")] < q[("wv2", "rr", "ft")] < q[("wv2", "rr", "in-sensor")]
    assert q[("wv2", "rr", "EXP")] < q[("wv2", "rr", "GSA")]
    h = {k: float(v["HQNR"]) for k, v in rows.items() if k[1] == "fr"}
    assert h[("wv2", "fr", "ft")] > h[("wv2", "fr", "direct")]
    assert ("gf2", "rr", "direct") in rows and ("gf2", "fr", "direct") not in rows
    summary = (out / "summary.md").read_text()
    assert "## wv2, RR" in summary and "## gf2, RR" in summary
    assert float(next(csv.DictReader(open(out / "speed.csv")))["wall_s"]) > 0
    for png in ("quicklook_wv2_rr.png", "tradeoff_fr.png"):
        assert (out / png).stat().st_size > 10_000


def test_ksdiff_matrix_pairs_each_ksdiff_with_its_shipped_backbone():
    """The KSDiff report's sources load: KSDiff by name, its backbones from the shipped files
    (paths relative to the repository root), each with the band count of its targets."""
    from pretrained.loader import load_model

    matrix = builtin_matrix("ksdiff")
    assert [m.name for m in matrix.methods] == ["none", "ft", "cat", "swift"]
    root = Path(__file__).resolve().parents[1]
    bands = {}
    for source in matrix.sources:
        spec = source.model
        if spec.endswith(".safetensors"):
            assert (root / spec).is_file(), spec
            spec = str(root / spec)
        bands[source.name] = load_model(spec).n_bands
    assert bands == {"ksdiff-wv3": 8, "backbone-wv3": 8, "ksdiff-qb": 4, "backbone-qb": 4}
