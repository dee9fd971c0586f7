"""Supervised training of the zoo's networks on Wald reduced-resolution data.

One call, :func:`train`, runs one *stage* and writes three files (atomically; existing files
are refused unless ``overwrite``):

* ``OUT/<name>.safetensors`` - the weights (:func:`pretrained.zoo.save_weights`; the metadata
  rebuilds the model);
* ``CARDS/<name>.yaml`` - the model card: architecture and options, parameter counts, training
  data files (sha256, licence, how they were used), validation split, recipe, epochs, seed,
  device, date, duration, held-out scores (:meth:`pretrained.card.ModelCard.build` and
  :meth:`~pretrained.card.ModelCard.write`, the one card writer);
* ``CARDS/<name>.log.json`` - the per-epoch log: train loss, held-out L1 and Q2n/Q/SAM/ERGAS/
  SCC/PSNR (:func:`tta.metrics.rr_metrics`), learning rate, seconds.

``<name>`` defaults to ``<arch>_<sensor>`` (``fose_wv3``), the name :func:`pretrained.load_zoo`
looks for; ``CARDS`` defaults to ``OUT``.

Stages (:mod:`tta.training.stages`, one object each: Fose's four plus ``joint``, KSDiff's two
``pretrain`` and ``diffuse``): each builds its model, says what trains and gives a batch's
loss; :func:`run_training` is the one generic loop around them.

Long runs: ``checkpoint_every=N`` writes ``OUT/<name>.ckpt`` every N steps (model, optimiser,
scheduler, random states, data order, step, log so far; :mod:`tta.training.checkpoint`) and
``resume=True`` continues from it to the same final weights as an uninterrupted run; the
checkpoint is removed when the run completes.

Recipe: AdamW (``weight_decay``), learning rate cosine-annealed per step from ``lr`` to
``min_lr_ratio * lr``, gradient-norm clipping at ``clip_grad``, ``epochs`` x
``steps_per_epoch`` steps of ``batch`` random augmented ``patch`` x ``patch`` crops
(:class:`~tta.training.data.PatchSampler`). The weights of the last epoch are saved. Seeds:
``torch.manual_seed(seed)`` before the model is built; the sampler and the diffusion noise use
their own CPU generators seeded from ``seed``, so a run is reproducible on a given device.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from tta.errors import InputError
from tta.training.checkpoint import checkpoint_path, read_checkpoint, write_checkpoint
from tta.training.data import (
    LoadedData,
    Pair,
    PatchSampler,
    file_digests,
    load_pairs,
    resolve_spec,
)
from tta.training.stages import DEFAULT_LR, STAGES, Stage, default_stage, get_stage

__all__ = ["DEFAULT_LR", "STAGES", "TrainConfig", "TrainResult", "default_stage", "train",
           "run_training", "validate", "validate_classical"]


@dataclass(frozen=True)
class TrainConfig:
    """Everything one training run depends on (recorded in the log).

    Attributes:
        arch: Registered architecture.
        data: Training scene specs (``SPEC`` or ``SPEC@DY,DX``).
        data_root: Folder relative specs (``data``, ``val_data``) are relative to; the card
            records the specs as given.
        sensor: Training sensor (default: the data's).
        stage: One of :data:`STAGES` (default :func:`default_stage`).
        epochs, steps_per_epoch, patch, batch: Schedule and crop/batch sizes.
        lr: Peak learning rate (default :data:`DEFAULT_LR` of the stage).
        weight_decay, min_lr_ratio, clip_grad: AdamW decay, cosine floor, gradient clip.
        seed: Seed.
        device: ``auto``, ``cpu`` or ``cuda[:N]``.
        val_fraction, val_data: Held-out split (see :mod:`tta.training.data`).
        augment: Random rot90/flip.
        loss: ``l1`` or ``mse`` (e2e, fuse, joint).
        teacher, student, e2e, init: Weights files (distill needs ``teacher``; fuse needs
            ``student`` and ``e2e`` unless ``init``; joint needs ``init``; ksdiff's
            pretrain may start its backbone from a FusionNet ``e2e``).
        teacher_steps: DDIM steps of the distillation targets.
        val_steps: DDIM steps of the teacher's validation (default its own, 50).
        distill_gt_weight: Weight of the ground-truth L1 term when distilling.
        teacher_loss: The teacher's loss: ``x0`` (L1 of the residual prediction) or ``edm``
            (the same L1 weighted by ``s / c_out(t)``, i.e. L1 on the preconditioned UNet's
            own output; needs ``precond=edm``).
        arch_kwargs: Architecture options for a model built from scratch.
        name: Output stem (default ``<arch>_<sensor>``).
        note: Free text stored as the card's ``notes`` (what the data allowed, caveats).
        out: Folder of the weights; cards: folder of the card and log (default ``out``).
        overwrite: Replace existing outputs (and a left-over checkpoint).
        checkpoint_every: Write ``OUT/<name>.ckpt`` every this many steps (0: never); it is
            removed when the run completes.
        resume: Continue from ``OUT/<name>.ckpt`` when it exists (the config must match,
            except ``checkpoint_every``, ``resume``, ``overwrite``, ``note``); start afresh
            when there is none.
    """

    arch: str
    data: tuple[str, ...]
    data_root: str | None = None
    sensor: str | None = None
    stage: str | None = None
    epochs: int = 10
    steps_per_epoch: int = 100
    patch: int = 64
    batch: int = 16
    lr: float | None = None
    weight_decay: float = 1e-4
    min_lr_ratio: float = 0.01
    clip_grad: float = 1.0
    seed: int = 0
    device: str = "auto"
    val_fraction: float = 0.2
    val_data: tuple[str, ...] = ()
    augment: bool = True
    loss: str = "l1"
    teacher: str | None = None
    student: str | None = None
    e2e: str | None = None
    init: str | None = None
    teacher_steps: int = 50
    val_steps: int | None = None
    distill_gt_weight: float = 0.5
    teacher_loss: str = "x0"
    arch_kwargs: Mapping[str, Any] = field(default_factory=dict)
    name: str | None = None
    note: str | None = None
    out: str = "."
    cards: str | None = None
    overwrite: bool = False
    checkpoint_every: int = 0
    resume: bool = False

    @property
    def resolved_stage(self) -> str:
        return self.stage or default_stage(self.arch)

    @property
    def learning_rate(self) -> float:
        if self.lr is not None:
            return float(self.lr)
        return get_stage(self.resolved_stage).lr

    def check(self) -> None:
        """Validate before any data is read.

        Raises:
            InputError: Unknown arch or stage, an arch that does not train in the stage, a
                missing required weights file, an out-of-range number.
        """
        import pretrained

        pretrained.model_class(self.arch)  # unknown arch: close matches
        get_stage(self.resolved_stage).check(self)
        for label, value, minimum in (("epochs", self.epochs, 1),
                                      ("steps-per-epoch", self.steps_per_epoch, 1),
                                      ("batch", self.batch, 1), ("patch", self.patch, 8),
                                      ("teacher-steps", self.teacher_steps, 1),
                                      ("checkpoint-every", self.checkpoint_every, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise InputError(f"--{label} must be an integer >= {minimum}, got {value!r}")
        if self.val_steps is not None and self.val_steps < 1:
            raise InputError(f"--val-steps must be >= 1, got {self.val_steps}")
        if not 0 <= self.val_fraction < 1:
            raise InputError(f"--val-fraction must lie in [0, 1), got {self.val_fraction}")
        if not self.learning_rate > 0:
            raise InputError(f"--lr must be positive, got {self.learning_rate}")
        if self.loss not in ("l1", "mse"):
            raise InputError(f"--loss must be l1 or mse, got {self.loss!r}")
        if self.teacher_loss not in ("x0", "edm"):
            raise InputError(f"--teacher-loss must be x0 or edm, got {self.teacher_loss!r}")
        for key in ("teacher", "student", "e2e", "init"):
            value = getattr(self, key)
            if value is not None and not Path(value).is_file():
                raise InputError(f"--{key} {value}: file not found")
        if not self.data:
            raise InputError("no training data: give at least one --data SPEC")


@dataclass
class TrainResult:
    """What :func:`train` produced: the trained model (eval mode), file paths, card, log."""

    model: nn.Module
    weights: Path
    card: Path
    log: Path
    card_data: dict[str, Any]
    history: list[dict[str, Any]]


# ----------------------------------------------------------------------------- models
def _kwargs_of(model: nn.Module, given: Mapping[str, Any]) -> dict[str, Any]:
    hp = getattr(model, "hparams", None)
    return dict(hp()) if callable(hp) else dict(given)


def _spec_files(spec: str) -> list[str]:
    from tta.io import parse_spec
    from tta.training.data import parse_data_spec

    return [str(f) for f in parse_spec(parse_data_spec(spec).spec).files]


def fuse_one(model: nn.Module, pair: Pair, device: torch.device, steps: int | None
              ) -> Tensor:
    b = {k: v.to(device) for k, v in pair.batch().items()}
    if steps is not None and getattr(model, "arch", "") == "diffusion_teacher":
        return model(b["ms"], b["pan"], b["lms"], steps=steps)
    return model(b["ms"], b["pan"], b["lms"])


@torch.no_grad()
def validate(model: nn.Module, pairs: list[Pair], device: torch.device | str = "cpu",
             steps: int | None = None) -> dict[str, Any] | None:
    """Held-out scores: L1 (scaled units) and the RR indexes (DN, no border cut).

    Returns:
        ``{"L1", "Q2n", "Q", "SAM", "ERGAS", "SCC", "PSNR", "images": [...]}`` (means over
        the images, each image's own values in ``images``), or None without images.
    """
    from tta.metrics import rr_metrics

    if not pairs:
        return None
    device = torch.device(device)
    was = model.training
    model.eval()
    rows = []
    for pair in pairs:
        fused = fuse_one(model, pair, device, steps)[0].double().cpu()
        gt = pair.gt.double()
        mv = pair.max_value
        scores = rr_metrics(gt * mv, fused * mv, pair.ratio, mv, border=0)
        rows.append({"image": pair.source, "L1": float((fused - gt).abs().mean()),
                     **{k: float(v) for k, v in scores.items()}})
    model.train(was)
    keys = [k for k in rows[0] if k != "image"]
    mean = {k: float(sum(r[k] for r in rows) / len(rows)) for k in keys}
    return {**mean, "images": rows}


@torch.no_grad()
def validate_classical(method: str, pairs: list[Pair], sensor: Any) -> dict[str, Any] | None:
    """:func:`validate`'s scores for a classical method (:func:`tta.classical.pansharpen`) on
    the same pairs: the reference rows next to a network's held-out scores."""
    from tta.classical import pansharpen
    from tta.metrics import rr_metrics

    if not pairs:
        return None
    rows = []
    for pair in pairs:
        mv = pair.max_value
        fused = pansharpen(method, (pair.ms[None] * mv).double(), (pair.pan[None] * mv).double(),
                           sensor=sensor, ratio=pair.ratio)[0]
        gt = pair.gt.double() * mv
        scores = rr_metrics(gt, fused, pair.ratio, mv, border=0)
        rows.append({"image": pair.source, "L1": float((fused - gt).abs().mean() / mv),
                     **{k: float(v) for k, v in scores.items()}})
    keys = [k for k in rows[0] if k != "image"]
    mean = {k: float(sum(r[k] for r in rows) / len(rows)) for k in keys}
    return {**mean, "images": rows}


# ----------------------------------------------------------------------------- outputs
def _now() -> str:
    return _dt.datetime.now(_dt.UTC).replace(microsecond=0).isoformat()


def _device_label(device: torch.device) -> str:
    from tta.device import device_label

    return f"{device} ({device_label(device)})"


def _write_text(path: Path, text: str, overwrite: bool) -> None:
    from tta.io import atomic_output

    with atomic_output(path, overwrite=overwrite) as tmp:
        tmp.write_text(text)


def _round(d: Any) -> Any:
    if isinstance(d, float):
        return float(f"{d:.6g}") if math.isfinite(d) else d
    if isinstance(d, dict):
        return {k: _round(v) for k, v in d.items()}
    if isinstance(d, list):
        return [_round(v) for v in d]
    return d


# ----------------------------------------------------------------------------- API
def train(arch: str, data: list[str] | tuple[str, ...], *, sensor: str | None = None,
          epochs: int = 10, patch: int = 64, batch: int = 16, lr: float | None = None,
          seed: int = 0, device: str = "auto", stage: str | None = None,
          teacher: str | None = None, out: str | Path = ".",
          callback: Callable[[dict[str, Any]], None] | None = None,
          **options: Any) -> TrainResult:
    """Train one stage of a zoo network and write weights, card and log.

    Args:
        arch: Registered architecture (``lagconv``, ``fusionnet``, ``diffusion_teacher``,
            ``diffusion_student``, ``fose``, ...).
        data: Scene specs to train on (``SPEC@DY,DX`` corrects a PAN shift).
        sensor: Training sensor (default: the data's own, which must be one).
        epochs: Epochs of ``steps_per_epoch`` optimiser steps.
        patch: PAN-grid patch side (multiple of the ratio).
        batch: Patches per step.
        lr: Peak learning rate (default per stage, :data:`DEFAULT_LR`).
        seed: Seed.
        device: ``auto``, ``cpu`` or ``cuda[:N]``.
        stage: One of :data:`STAGES` (default from ``arch``).
        teacher: Teacher weights for ``distill``.
        out: Output folder (created if missing).
        callback: Called with each epoch's log row.
        **options: Any other :class:`TrainConfig` field (``steps_per_epoch``, ``student``,
            ``e2e``, ``init``, ``val_data``, ``arch_kwargs``, ``name``, ``cards``,
            ``overwrite``, ...).

    Returns:
        :class:`TrainResult`.

    Raises:
        InputError: Bad options or data (before any training); OutputError: an output exists
            without ``overwrite``.

    Example:
        >>> train("lagconv", ["wv3/wv3_cdif_rr.h5"], sensor="WV3", epochs=1,
        ...       steps_per_epoch=5, patch=32, batch=2, out="runs")  # doctest: +SKIP
    """
    if options.get("val_data") is not None:
        options["val_data"] = tuple(str(v) for v in options["val_data"])
    for key in ("student", "e2e", "init", "cards"):
        if options.get(key) is not None:
            options[key] = str(options[key])
    cfg = TrainConfig(arch=arch, data=tuple(str(d) for d in data), sensor=sensor,
                      epochs=epochs, patch=patch, batch=batch, lr=lr, seed=seed, device=device,
                      stage=stage, teacher=None if teacher is None else str(teacher),
                      out=str(out), **options)
    return run_training(cfg, callback)


def _lr_schedule(opt: torch.optim.Optimizer, cfg: TrainConfig
                 ) -> torch.optim.lr_scheduler.LambdaLR:
    total = cfg.epochs * cfg.steps_per_epoch
    floor = cfg.min_lr_ratio
    return torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(s, total)
                                                                  / total)))


def _epoch_row(cfg: TrainConfig, stage: Stage, model: nn.Module, loaded: LoadedData,
               device: torch.device, opt: torch.optim.Optimizer, losses: Tensor, step: int,
               t0: float) -> dict[str, Any]:
    """End of an epoch: the stage's epoch work, held-out scores, the log row."""
    stage.end_epoch(model)
    val = validate(model, loaded.val, device, cfg.val_steps)
    row = {"epoch": step // cfg.steps_per_epoch, "train_loss": float(losses) / cfg.steps_per_epoch,
           "lr": opt.param_groups[0]["lr"], "seconds": time.perf_counter() - t0}
    if val is not None:
        row.update({f"val_{k}": v for k, v in val.items() if k != "images"})
    return row


_NOT_COMPARED = ("checkpoint_every", "resume", "overwrite", "note")


def _resume_state(cfg: TrainConfig, path: Path) -> dict[str, Any] | None:
    """The checkpoint to continue from (None: start afresh).

    Raises:
        InputError: A checkpoint exists but neither ``resume`` nor ``overwrite`` was given, or
            it was written by a run with another config.
    """
    if not path.is_file():
        return None
    if not cfg.resume:
        if cfg.overwrite:
            return None
        raise InputError(f"{path}: an interrupted run left this checkpoint; pass --resume to "
                         "continue it or --overwrite to start afresh")
    state = read_checkpoint(path)
    now = {k: v for k, v in _config_dict(cfg).items() if k not in _NOT_COMPARED}
    then = {k: v for k, v in dict(state.get("config", {})).items() if k not in _NOT_COMPARED}
    diff = sorted(k for k in set(now) | set(then) if now.get(k) != then.get(k))
    if diff:
        raise InputError(f"{path}: written by a run with other options ({', '.join(diff)}); "
                         "rerun with the same options or pass --overwrite to start afresh")
    return state


class _Session:
    """The mutable state of one run: model, optimiser, scheduler, sampler, noise, progress.

    :meth:`state` / :meth:`restore` are what a checkpoint holds (see
    :mod:`tta.training.checkpoint`).
    """

    def __init__(self, cfg: TrainConfig, model: nn.Module, params: list[nn.Parameter],
                 loaded: LoadedData, device: torch.device) -> None:
        self.cfg, self.model, self.params, self.device = cfg, model, params, device
        self.sampler = PatchSampler(loaded.train, cfg.patch, cfg.batch, augment=cfg.augment,
                                    seed=cfg.seed)
        self.gen = torch.Generator().manual_seed(cfg.seed + 1)
        self.opt = torch.optim.AdamW(params, lr=cfg.learning_rate,
                                     weight_decay=cfg.weight_decay)
        self.sched = _lr_schedule(self.opt, cfg)
        self.step, self.spent = 0, 0.0
        self.losses = torch.zeros((), device=device)
        self.history: list[dict[str, Any]] = []

    def state(self) -> dict[str, Any]:
        cuda = self.device.type == "cuda"
        rng = {"sampler": self.sampler.gen.get_state(), "stage": self.gen.get_state(),
               "torch": torch.get_rng_state(),
               "cuda": torch.cuda.get_rng_state(self.device) if cuda else None}
        return {"config": _config_dict(self.cfg), "step": self.step,
                "model": self.model.state_dict(), "optimizer": self.opt.state_dict(),
                "scheduler": self.sched.state_dict(), "rng": rng,
                "epoch_loss": self.losses.detach().cpu(), "history": self.history,
                "seconds": self.spent}

    def restore(self, state: Mapping[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["optimizer"])
        self.sched.load_state_dict(state["scheduler"])
        self.step, self.spent = int(state["step"]), float(state["seconds"])
        self.history = list(state["history"])
        self.losses = state["epoch_loss"].to(self.device)
        self.sampler.gen.set_state(state["rng"]["sampler"])
        self.gen.set_state(state["rng"]["stage"])
        torch.set_rng_state(state["rng"]["torch"])
        if self.device.type == "cuda" and state["rng"].get("cuda") is not None:
            torch.cuda.set_rng_state(state["rng"]["cuda"], self.device)

    def train_step(self, stage: Stage, built_state: Mapping[str, Any]) -> None:
        b = {k: v.to(self.device, non_blocking=True) for k, v in self.sampler.sample().items()}
        loss = stage.loss(self.cfg, self.model, b, self.gen, built_state)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.cfg.clip_grad:
            nn.utils.clip_grad_norm_(self.params, self.cfg.clip_grad)
        self.opt.step()
        self.sched.step()
        self.losses += loss.detach()
        self.step += 1


def _plan(cfg: TrainConfig, loaded: LoadedData) -> tuple[str, dict[str, Path], Path]:
    """Output name, the three output paths and the checkpoint path, checked up front."""
    from pretrained.zoo import zoo_stem
    from tta.io.atomic import plan_outputs

    name = cfg.name or zoo_stem(cfg.arch, loaded.sensor)
    out_dir = Path(cfg.out)
    card_dir = Path(cfg.cards) if cfg.cards else out_dir
    paths = {"weights": out_dir / f"{name}.safetensors", "card": card_dir / f"{name}.yaml",
             "log": card_dir / f"{name}.log.json"}
    inputs = [f for spec in (*cfg.data, *cfg.val_data)
              for f in _spec_files(resolve_spec(spec, cfg.data_root))]
    inputs += [p for p in (cfg.teacher, cfg.student, cfg.e2e, cfg.init) if p]
    plan_outputs({}, inputs, folders={"--out": out_dir, "--cards": card_dir})
    for folder in {out_dir, card_dir}:
        folder.mkdir(parents=True, exist_ok=True)
    ckpt = checkpoint_path(out_dir, name)
    plan_outputs({**paths, "checkpoint": ckpt}, inputs, overwrite=True)
    plan_outputs(paths, inputs, overwrite=cfg.overwrite)
    return name, paths, ckpt


def run_training(cfg: TrainConfig, callback: Callable[[dict[str, Any]], None] | None = None
                 ) -> TrainResult:
    """:func:`train` on a ready :class:`TrainConfig`.

    The loop is generic: the run's :class:`~tta.training.stages.Stage` builds the model,
    says what trains and gives each batch's loss. With ``checkpoint_every`` the full training
    state is written every that many steps (:mod:`tta.training.checkpoint`); ``resume``
    continues from it to the same final weights as an uninterrupted run.
    """
    from tta.device import resolve_device

    cfg.check()
    stage = get_stage(cfg.resolved_stage)
    device = resolve_device(cfg.device)
    loaded: LoadedData = load_pairs(list(cfg.data), cfg.sensor, val_data=list(cfg.val_data),
                                    val_fraction=cfg.val_fraction, patch=cfg.patch,
                                    root=cfg.data_root)
    name, paths, ckpt = _plan(cfg, loaded)
    resumed = _resume_state(cfg, ckpt)

    torch.manual_seed(cfg.seed)
    built = stage.build(cfg, int(loaded.train[0].gt.shape[0]), loaded, device)
    model = built.model.to(device)
    run = _Session(cfg, model, stage.trainable(model), loaded, device)
    if resumed is not None:
        run.restore(resumed)
    total = cfg.epochs * cfg.steps_per_epoch
    t0 = tick = time.perf_counter()
    stage.set_mode(model, True)
    while run.step < total:
        run.train_step(stage, built.state)
        epoch_end = run.step % cfg.steps_per_epoch == 0
        if epoch_end:
            run.history.append(_round(_epoch_row(cfg, stage, model, loaded, device, run.opt,
                                                 run.losses, run.step, t0)))
            run.losses = torch.zeros((), device=device)
            stage.set_mode(model, True)
            t0 = time.perf_counter()
        now = time.perf_counter()
        run.spent, tick = run.spent + now - tick, now
        if cfg.checkpoint_every and run.step % cfg.checkpoint_every == 0 and run.step < total:
            write_checkpoint(ckpt, run.state())
        if epoch_end and callback is not None:
            callback(run.history[-1])
    result = _finish(cfg, stage, model, loaded, device, name, paths, built.inits,
                     sum(p.numel() for p in run.params), run.history, run.spent)
    ckpt.unlink(missing_ok=True)
    return result


def _finish(cfg: TrainConfig, stage: Stage, model: nn.Module, loaded: LoadedData,
            device: torch.device, name: str, paths: dict[str, Path], inits: dict[str, Any],
            n_train: int, history: list[dict[str, Any]], duration: float) -> TrainResult:
    """Final held-out scores; write the weights, card and log (all three or none)."""
    from pretrained.card import ModelCard
    from pretrained.zoo import save_weights
    from tta import __version__

    model.eval()
    for p in model.parameters():
        p.requires_grad_(True)
    final = validate(model, loaded.val, device, cfg.val_steps)
    model.to("cpu")
    sensor = loaded.sensor
    n_bands = int(loaded.train[0].gt.shape[0])
    total = cfg.epochs * cfg.steps_per_epoch
    kwargs = _kwargs_of(model, cfg.arch_kwargs)
    meta = {"arch_kwargs": kwargs, "sensor": sensor.name, "bands": ",".join(sensor.bands),
            "ratio": str(loaded.train[0].ratio), "max_value": str(loaded.train[0].max_value),
            "stage": stage.name, "name": name}
    sha = save_weights(model, paths["weights"], metadata=meta, overwrite=cfg.overwrite)
    n_params = sum(p.numel() for p in model.parameters())
    data_records = []
    for rec in loaded.records:
        rec = dict(rec)
        digests = file_digests(resolve_spec(rec["file"], cfg.data_root))
        rec["sha256"] = next(iter(digests.values())) if len(digests) == 1 else digests
        data_records.append(rec)
    card = ModelCard.build(
        name=name, arch=cfg.arch, arch_kwargs=kwargs, stage=stage.name, n_bands=n_bands,
        sensor=sensor.name, bands=list(sensor.bands), ratio=loaded.train[0].ratio,
        max_value=loaded.train[0].max_value, parameters=n_params,
        trainable_parameters=n_train, channel_mapper=(model.channel_mappers or [None])[0],
        weights_file=paths["weights"].name, weights_sha256=sha,
        training={
            "data_root": cfg.data_root,
            "data": data_records,
            "validation": loaded.split,
            "init": inits or None,
            "recipe": {
                "optimizer": "AdamW", "lr": cfg.learning_rate,
                "weight_decay": cfg.weight_decay,
                "schedule": f"cosine per step to {cfg.min_lr_ratio:g} x lr over {total} steps",
                "clip_grad": cfg.clip_grad, "batch": cfg.batch, "patch": cfg.patch,
                "steps_per_epoch": cfg.steps_per_epoch,
                "loss": stage.loss_text(cfg),
                "augmentation": "rot90 + horizontal flip" if cfg.augment else "none",
                "scaling": "DN / max_value",
            },
            "epochs": cfg.epochs,
            "steps": total,
            "seed": cfg.seed,
            "device": _device_label(device),
            "date": _now(),
            "duration_s": round(duration, 1),
            "software": {"tta": str(__version__), "torch": str(torch.__version__)},
        },
        held_out=_round(final) if final is not None else None,
        notes=cfg.note, log=paths["log"].name)
    log = {"name": name, "config": _config_dict(cfg), "split": loaded.split,
           "data": data_records, "history": history,
           "held_out": card["held_out"]}
    written = [paths["weights"]]
    try:  # all three files or none
        log_text = json.dumps(log, indent=2) + "\n"
        card.write(paths["card"], overwrite=cfg.overwrite)
        written.append(paths["card"])
        _write_text(paths["log"], log_text, cfg.overwrite)
    except BaseException:
        for p in written:
            p.unlink(missing_ok=True)
        raise
    return TrainResult(model=model, weights=paths["weights"], card=paths["card"],
                       log=paths["log"], card_data=card.to_dict(), history=history)


def _config_dict(cfg: TrainConfig) -> dict[str, Any]:
    d = asdict(cfg)
    d["arch_kwargs"] = dict(cfg.arch_kwargs)
    d["data"], d["val_data"] = list(cfg.data), list(cfg.val_data)
    d["stage"], d["lr"] = cfg.resolved_stage, cfg.learning_rate
    return d
