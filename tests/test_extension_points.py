"""Each extension point takes a new entry from outside the package (issue 18, item 3): an
adapter, a sampler, a loss term and an output writer are registered here and run through
`tta adapt`; the CLI's choices and the config validation see them, nothing else changes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from _inputs import write_scene_h5
from click.testing import CliRunner
from torch import Tensor, nn

from adapters import ADAPTERS, Adapter, register_adapter
from tta.cli import cli
from tta.engine import AdaptConfig
from tta.io import WRITERS, atomic_output, register_writer
from tta.losses import LOSS_TERMS, TermInputs, register_loss_term
from tta.sampling import SAMPLERS, register_sampler


class ChannelGain(Adapter):
    """A per-channel gain on the interface features, identity at start, that counts its
    calibration calls."""

    kind = "gain"
    default_lr = 5e-3
    calibrates = True

    def __init__(self) -> None:
        super().__init__()
        self.gain: nn.Parameter | None = None
        self.calibrations = 0

    def build(self, decomposition) -> None:
        self.gain = nn.Parameter(torch.zeros(1, decomposition.feature_channels, 1, 1))

    def tailor(self, features: Tensor) -> Tensor:
        return features * (1 + self.gain)

    def calibrate(self, loss_fn, n_batches: int = 1) -> dict:
        self.calibrations += 1
        return {"probe_loss": float(loss_fn().detach())}


def first_rows(features: Tensor, k: int, *, seed: int = 0) -> Tensor:
    """The first ``k`` patches of the grid."""
    return torch.arange(k, device=features.device)


def mean_level(t: TermInputs) -> Tensor:
    """Fused and upsampled MS must share each band's mean."""
    return (t.fused.mean(dim=(-2, -1)) - t.lms.mean(dim=(-2, -1))).abs().mean()


def write_npy(path, scene, fused, *, dtype, overwrite) -> Path:
    with atomic_output(path, overwrite=overwrite) as tmp, open(tmp, "wb") as f:
        np.save(f, fused.astype(np.float32))
    return Path(path)


@pytest.fixture
def registered():
    register_adapter(ChannelGain)
    register_sampler("first")(first_rows)
    register_loss_term("mean_level")(mean_level)
    register_writer(".npy")(write_npy)
    try:
        yield
    finally:
        ADAPTERS.unregister("gain")
        SAMPLERS.unregister("first")
        LOSS_TERMS.unregister("mean_level")
        WRITERS.unregister(".npy")


@pytest.fixture
def scene(tmp_path) -> Path:
    return write_scene_h5(tmp_path / "qb.h5", low=100, high=900, seed=1)


def test_new_entries_run_through_tta_adapt(registered, scene, tmp_path):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("loss_weights: {mean_level: 1.0}\npatch: 32\nmin_patches: 2\n"
                   "decide: false\nrr_weight: 0\n")
    out, rep = tmp_path / "fused.npy", tmp_path / "r.json"
    res = CliRunner().invoke(cli, [
        "adapt", "-m", "lagconv:qb", "-t", str(scene), "-o", str(out), "--report", str(rep),
        "-a", "gain", "--sampler", "first", "--steps", "3", "--config", str(cfg),
        "--no-compare", "--device", "cpu"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    report = json.loads(rep.read_text())
    assert report["adapter"]["kind"] == "gain"
    assert report["adapter"]["swift"]["probe_loss"] > 0  # the engine ran its calibration
    width = report["decomposition"]["feature_channels"]
    assert report["adapter"]["trainable"] == width
    assert report["sampling"]["sampler"] == "first"
    assert report["sampling"]["corners"] == [[0, 0], [0, 32]]  # grid order, first two
    assert {"spectral", "mean_level"} <= set(report["loss"]["first"])
    assert report["loss"]["first"]["mean_level"] >= 0
    fused = np.load(out)
    assert fused.shape == (4, 64, 64) and np.isfinite(fused).all()
    assert AdaptConfig(adapter="gain").learning_rate == 5e-3  # the adapter's own default


def test_unregistered_entries_are_refused(scene, tmp_path):
    res = CliRunner().invoke(cli, ["adapt", "-m", "lagconv:qb", "-t", str(scene), "-o",
                                   str(tmp_path / "o.npy")], catch_exceptions=False)
    assert res.exit_code == 2 and res.stderr.startswith("Error: ")
    assert "must end in .h5 or .tif" in res.stderr
    res = CliRunner().invoke(cli, ["adapt", "-m", "lagconv:qb", "-t", str(scene), "-a", "gain"],
                             catch_exceptions=False)
    assert res.exit_code == 2 and "'gain' is not one of" in res.stderr


def test_readme_lists_every_registered_entry():
    """The README's Contributing table names exactly what each registry holds."""
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = text[text.index("## Contributing"):]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) == 3 and cells[1].startswith("`"):
            rows[cells[0]] = [c.strip(" `") for c in cells[2].split(",")]
    assert rows == {"adapter": list(ADAPTERS), "sampler": list(SAMPLERS),
                    "loss term": list(LOSS_TERMS), "output writer": list(WRITERS)}
