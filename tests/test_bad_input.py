"""Bad options and config values across the commands: each one is a user's mistake, so each
exits 2 with one line ``Error: ...`` naming what to fix; never a traceback or "Internal
error" (issue 18, item 4). Every case fails before any model runs, so the file is fast."""

from __future__ import annotations

from pathlib import Path

import pytest
from _inputs import write_scene_h5
from click.testing import CliRunner

from tta.cli import cli


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> Path:
    """A small seeded QuickBird-like scene (4 bands, ratio 4, PAN 64x64)."""
    return write_scene_h5(tmp_path_factory.mktemp("bad") / "qb.h5")


# (command line after `tta`, text the one line must hold); {scene} and {tmp} are filled in.
ADAPT = ["adapt", "-m", "lagconv:qb", "-t", "{scene}", "-o", "{tmp}/out.h5"]
OPTIONS = [
    (ADAPT + ["--steps", "-1"], "'--steps'"),
    (ADAPT + ["--steps", "ten"], "'--steps'"),
    (ADAPT + ["--lr", "0"], "'--lr'"),
    (ADAPT + ["--lr", "nan"], "'--lr'"),
    (ADAPT + ["--lr", "5"], "'--lr'"),
    (ADAPT + ["--fraction", "0"], "'--fraction'"),
    (ADAPT + ["--fraction", "1.5"], "'--fraction'"),
    (ADAPT + ["--patch", "4"], "'--patch'"),
    (ADAPT + ["--seed", "-1"], "'--seed'"),
    (ADAPT + ["-a", "lora"], "'--adapter'"),
    (ADAPT + ["--sampler", "grid"], "'--sampler'"),
    (ADAPT + ["--compile", "fast"], "'--compile'"),
    (ADAPT + ["--dtype", "int8"], "'--dtype'"),
    (ADAPT + ["--bogus"], "--bogus"),
    (["adapt", "-m", "lagconv:qb", "-t", "{scene}", "-o", "{tmp}/out.png"], ".h5 or .tif"),
    (["adapt", "-m", "lagconv:qb", "-t", "{tmp}/missing.h5", "-o", "{tmp}/o.h5"], "missing.h5"),
    (ADAPT + ["--config", "{tmp}/missing.yaml"], "config file not found"),
    (["adapt", "-m", "lagconv:qb"], "--target"),
    (["fuse", "{scene}", "-m", "nosuch", "-o", "{tmp}/f.h5"], "nosuch"),
    (["info", "{tmp}/missing.h5"], "missing.h5"),
    (["degrade", "{scene}"], "'-o'"),
    (["eval", "{tmp}/missing.h5"], "missing.h5"),
    (["sensors", "NOSUCH"], "NOSUCH"),
    (["--max-input-gb", "-1", "info", "{scene}"], "'--max-input-gb'"),
    (["nosuch"], "nosuch"),
    (["inspect", "-m", "nosucharch"], "nosucharch"),
]
# (YAML of --config, text the one line must hold)
CONFIGS = [
    ("tile: 250", "tile 250 must be a multiple of the ratio 4"),
    ("patch: 66", "patch 66 must be a multiple of the ratio 4"),
    ("tile: 64\noverlap: 62", "overlap 62 must be at most tile - ratio"),
    ("tile: 8", "tile must be an integer >= 16"),
    ("tile: 64.0", "tile must be an integer"),
    ("overlap: -4", "overlap must be an integer"),
    ("steps: 2.5", "steps must be an integer"),
    ("patch: 512", "larger than the scene"),
    ("adapter_options: {hidden: 0}", "adapter_options.hidden"),
    ("adapter_options: {kernel_size: 4}", "kernel_size must be odd"),
    ("adapter_options: {nope: 1}", "bad options"),
    ("adapter_options: [1, 2]", "adapter_options must be a mapping"),
    ("loss_weights: {spectal: 1}", "unknown loss term"),
    ("loss_weights: {spatial: -1}", "'spatial'"),
    ("amp: maybe", "amp must be true or false"),
    ("decide: 1", "decide must be true or false"),
    ("fraction: a", "fraction must lie in (0, 1]"),
    ("fraction: 0", "fraction must lie in (0, 1]"),
    ("sampler: [1]", "unknown sampler"),
    ("adapter: lora", "unknown adapter 'lora'"),
    ("spatial_loss: qnr", "spatial_loss must be 'zpnn' or 'drho'"),
    ("compile: 3", "compile must be default"),
    ("max_nodata: 1", "max_nodata"),
    ("decision_tolerance: 2", "decision_tolerance"),
    ("rr_weight: -1", "rr_weight"),
    ("rr_weight: .nan", "rr_weight"),
    ("lr: .inf", "lr must be a finite number"),
    ("seed: -5", "seed must be an integer"),
    ("calibration_batches: 0", "calibration_batches"),
    ("batch_size: 0", "batch_size"),
    ("inference_batch: two", "inference_batch"),
    ("min_patches: 10\nmax_patches: 2", "min_patches <= max_patches"),
    ("weight_decay: -0.1", "weight_decay"),
    ("tiles: 64", "unknown setting(s) tiles"),
    ("- tile\n- 64", "a config must be a YAML mapping"),
    ("tile: [", "not a readable YAML file"),
]


def _one_line_error(res, expected: str) -> None:
    assert res.exit_code == 2, (res.exit_code, res.output)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), res.stderr
    assert expected in lines[0], lines[0]
    assert "Traceback" not in res.output and "Internal error" not in res.output


def test_enough_cases():
    assert len(OPTIONS) + len(CONFIGS) >= 30


@pytest.mark.parametrize(("args", "expected"), OPTIONS, ids=[" ".join(a[:1] + a[7:])
                                                              for a, _ in OPTIONS])
def test_bad_option(args, expected, scene, tmp_path):
    argv = [a.format(scene=scene, tmp=tmp_path) for a in args]
    _one_line_error(CliRunner().invoke(cli, argv, catch_exceptions=False), expected)
    assert not (tmp_path / "out.h5").exists()


@pytest.mark.parametrize(("text", "expected"), CONFIGS, ids=[t for t, _ in CONFIGS])
def test_bad_config_value(text, expected, scene, tmp_path):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(text + "\n")
    argv = [a.format(scene=scene, tmp=tmp_path) for a in ADAPT] + ["--config", str(cfg)]
    _one_line_error(CliRunner().invoke(cli, argv, catch_exceptions=False), expected)
    assert not (tmp_path / "out.h5").exists()
