"""Resumable training: ``--checkpoint-every`` + ``--resume`` give the uninterrupted run's weights.

Tiny runs (a few steps on 32-px crops of generated 4-band images, CPU, 1 thread): a run stopped
after its first epoch and resumed from its checkpoint must end with the same tensors, log rows
and held-out scores as one that ran straight through; a checkpoint is refused without
``--resume``/``--overwrite`` and when the options differ; it is removed at the end.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from pretrained.zoo import read_weights
from tta.errors import InputError
from tta.io import Scene, write_h5
from tta.sensors import get_sensor
from tta.training import train
from tta.training.checkpoint import checkpoint_path, read_checkpoint

RUN = {"epochs": 3, "steps_per_epoch": 2, "patch": 16, "batch": 2, "device": "cpu",
       "sensor": "QB", "val_fraction": 0.25}


class Stop(Exception):
    """Raised by the callback to interrupt a run."""


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def data(tmp_path):
    s = get_sensor("QB")
    g = np.random.default_rng(3)
    scenes = []
    for k in range(2):
        yy, xx = np.mgrid[0:64, 0:64] / 64
        gt = np.stack([600 + 200 * np.sin(2 * np.pi * (b + 1 + k) * xx) * np.cos(3 * yy)
                       + g.normal(0, 10, (64, 64)) for b in range(4)]).clip(1, None)
        ms = gt.reshape(4, 16, 4, 16, 4).mean(axis=(2, 4))
        scenes.append(Scene(ms=ms, pan=gt.mean(0), gt=gt, sensor=s, source=f"s{k}"))
    path = tmp_path / "qb_rr.h5"
    write_h5(path, scenes)
    return str(path)


def _stop_after(epochs: int):
    def callback(row):
        if row["epoch"] >= epochs:
            raise Stop

    return callback


@pytest.mark.parametrize(("arch", "stage"), [("fusionnet", None), ("diffusion_teacher", None),
                                             ("ksdiff", "pretrain")])
def test_resumed_run_equals_the_uninterrupted_one(tmp_path, data, arch, stage):
    kw = {"arch_kwargs": {"base": 8}} if arch == "diffusion_teacher" else {}
    straight = train(arch, [data], stage=stage, out=tmp_path / "a", **RUN, **kw)
    out = tmp_path / "b"
    with pytest.raises(Stop):
        train(arch, [data], stage=stage, out=out, checkpoint_every=2,
              callback=_stop_after(1), **RUN, **kw)
    ckpt = checkpoint_path(out, straight.weights.stem)
    state = read_checkpoint(ckpt)
    assert state["step"] == 2 and len(state["history"]) == 1
    assert not (out / straight.weights.name).exists()
    resumed = train(arch, [data], stage=stage, out=out, checkpoint_every=2, resume=True,
                    **RUN, **kw)
    a, _ = read_weights(straight.weights)
    b, _ = read_weights(resumed.weights)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    def rows(history):  # as JSON text: NaN scores (Q of a flat band) compare equal
        return json.dumps([{k: v for k, v in r.items() if k != "seconds"} for r in history])

    assert rows(straight.history) == rows(resumed.history)
    assert (json.dumps(straight.card_data["held_out"])
            == json.dumps(resumed.card_data["held_out"]))
    assert not ckpt.exists(), "the checkpoint is removed when the run completes"


def test_checkpoint_is_not_silently_ignored_or_reused(tmp_path, data):
    out = tmp_path / "run"
    with pytest.raises(Stop):
        train("fusionnet", [data], out=out, checkpoint_every=2, callback=_stop_after(1), **RUN)
    ckpt = checkpoint_path(out, "fusionnet_qb")
    assert ckpt.is_file()
    with pytest.raises(InputError, match="pass --resume"):
        train("fusionnet", [data], out=out, **RUN)
    with pytest.raises(InputError, match=r"other options \(lr\)"):
        train("fusionnet", [data], out=out, resume=True, lr=1e-3, **RUN)
    with pytest.raises(InputError, match="checkpoint-every"):
        train("fusionnet", [data], out=out, checkpoint_every=-1, **RUN)
    ckpt.write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="not a readable training checkpoint"):
        train("fusionnet", [data], out=out, resume=True, **RUN)
    res = train("fusionnet", [data], out=out, overwrite=True, **RUN)  # starts afresh
    assert res.weights.is_file() and not ckpt.exists()


def test_cli_checkpoint_every_and_resume(tmp_path, data):
    from tta.cli import cli

    args = ["train", "-a", "fusionnet", "-d", data, "--sensor", "QB", "--epochs", "2",
            "--steps-per-epoch", "2", "--patch", "16", "--batch", "2", "--device", "cpu",
            "--checkpoint-every", "1", "--resume", "-o", str(tmp_path / "o")]
    res = CliRunner().invoke(cli, args)  # --resume without a checkpoint starts the run
    assert res.exit_code == 0, res.output
    assert (tmp_path / "o" / "fusionnet_qb.safetensors").is_file()
    assert not (tmp_path / "o" / "fusionnet_qb.ckpt").exists()
    res = CliRunner().invoke(cli, [*args[:-2], "--checkpoint-every", "x", "-o", "o2"])
    assert res.exit_code == 2 and "Traceback" not in res.output
    res = CliRunner().invoke(cli, [*args, "--stage", "nosuch"])
    assert res.exit_code == 2 and "unknown stage 'nosuch'" in res.output
