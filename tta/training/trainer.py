"""Supervised training of the zoo's networks on Wald reduced-resolution data.

One call, :func:`train`, runs one *stage* and writes three files (atomically; existing files
are refused unless ``overwrite``):

* ``OUT/<name>.safetensors`` - the weights (:func:`pretrained.zoo.save_weights`; the metadata
  rebuilds the model);
* ``CARDS/<name>.yaml`` - the model card: architecture and options, parameter counts, training
  data files (sha256, licence, how they were used), validation split, recipe, epochs, seed,
  device, date, duration, held-out scores;
* ``CARDS/<name>.log.json`` - the per-epoch log: train loss, held-out L1 and Q2n/Q/SAM/ERGAS/
  SCC/PSNR (:func:`tta.metrics.rr_metrics`), learning rate, seconds.

``<name>`` defaults to ``<arch>_<sensor>`` (``fose_wv3``), the name :func:`pretrained.load_zoo`
looks for; ``CARDS`` defaults to ``OUT``.

Stages (Fose's four, plus a fifth):

=========  ===================  ===============================================================
stage      arch                 what trains, on what loss
=========  ===================  ===============================================================
teacher    diffusion_teacher    the UNet, L1 between its x0 prediction and ``gt - lms`` at a
                                uniformly drawn timestep (cosine schedule, DDRF's x0 target)
distill    diffusion_student    the student, initialised from ``teacher``'s UNet; L1 to the
                                teacher's ``teacher_steps``-step DDIM output (computed once per
                                training image) + ``distill_gt_weight`` x L1 to ``gt``
e2e        any other network    the network, L1 (or MSE) to ``gt``
fuse       fose                 the adaptor only; branches loaded from ``student`` and ``e2e``
                                files, frozen, in eval mode; L1 to ``gt``
joint      fose                 every weight of a ``fuse`` result (``init``), small lr; L1
=========  ===================  ===============================================================

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
import torch.nn.functional as F
import yaml
from torch import Tensor, nn

from tta.errors import InputError
from tta.training.data import (
    LoadedData,
    Pair,
    PatchSampler,
    file_digests,
    load_pairs,
    resolve_spec,
)

__all__ = ["DEFAULT_LR", "STAGES", "TrainConfig", "TrainResult", "default_stage", "train",
           "run_training", "validate", "validate_classical"]

STAGES = ("teacher", "distill", "e2e", "fuse", "joint")
DEFAULT_LR = {"teacher": 2e-4, "distill": 1e-4, "e2e": 5e-4, "fuse": 5e-4, "joint": 2e-5}
_STAGE_ARCH = {"teacher": "diffusion_teacher", "distill": "diffusion_student", "fuse": "fose",
               "joint": "fose"}
_SPECIAL = ("diffusion_teacher", "diffusion_student", "fose")


def default_stage(arch: str) -> str:
    """The stage an architecture trains in when none is given."""
    return {"diffusion_teacher": "teacher", "diffusion_student": "distill",
            "fose": "fuse"}.get(arch, "e2e")


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
            ``student`` and ``e2e`` unless ``init``; joint needs ``init``).
        teacher_steps: DDIM steps of the distillation targets.
        val_steps: DDIM steps of the teacher's validation (default its own, 50).
        distill_gt_weight: Weight of the ground-truth L1 term when distilling.
        arch_kwargs: Architecture options for a model built from scratch.
        name: Output stem (default ``<arch>_<sensor>``).
        note: Free text stored as the card's ``notes`` (what the data allowed, caveats).
        out: Folder of the weights; cards: folder of the card and log (default ``out``).
        overwrite: Replace existing outputs.
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
    arch_kwargs: Mapping[str, Any] = field(default_factory=dict)
    name: str | None = None
    note: str | None = None
    out: str = "."
    cards: str | None = None
    overwrite: bool = False

    @property
    def resolved_stage(self) -> str:
        return self.stage or default_stage(self.arch)

    @property
    def learning_rate(self) -> float:
        return float(self.lr) if self.lr is not None else DEFAULT_LR[self.resolved_stage]

    def check(self) -> None:
        """Validate before any data is read.

        Raises:
            InputError: Unknown arch or stage, an arch that does not train in the stage, a
                missing required weights file, an out-of-range number.
        """
        import pretrained

        pretrained.model_class(self.arch)  # unknown arch: close matches
        stage = self.resolved_stage
        if stage not in STAGES:
            raise InputError(f"unknown stage {stage!r}; choose one of {', '.join(STAGES)}")
        want = _STAGE_ARCH.get(stage)
        if want is not None and self.arch != want:
            raise InputError(f"stage {stage!r} trains --arch {want}, not {self.arch!r}")
        if want is None and self.arch in _SPECIAL:
            raise InputError(f"--arch {self.arch} trains in stage "
                             f"{default_stage(self.arch)!r}, not 'e2e'")
        for label, value, minimum in (("epochs", self.epochs, 1),
                                      ("steps-per-epoch", self.steps_per_epoch, 1),
                                      ("batch", self.batch, 1), ("patch", self.patch, 8),
                                      ("teacher-steps", self.teacher_steps, 1)):
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
        needs = {"distill": ["teacher"], "joint": ["init"],
                 "fuse": [] if self.init else ["student", "e2e"]}.get(stage, [])
        for key in needs:
            if getattr(self, key) is None:
                raise InputError(f"stage {stage!r} needs --{key} FILE")
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


def _digest(path: str) -> str:
    import hashlib

    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _build(cfg: TrainConfig, n_bands: int) -> tuple[nn.Module, dict[str, Any],
                                                   nn.Module | None]:
    """Model to train, the init files used (for the card), and the teacher (distill)."""
    import pretrained
    from pretrained.zoo import model_from_weights

    stage = cfg.resolved_stage
    inits: dict[str, Any] = {}
    teacher = None

    def note(key: str, path: str, model: nn.Module) -> None:
        inits[key] = {"file": str(path), "sha256": _digest(path), "arch": model.arch}

    def bands_ok(model: nn.Module, path: str) -> None:
        if model.n_bands != n_bands:
            raise InputError(f"{path}: a {model.n_bands}-band model, but the data have "
                             f"{n_bands} bands")

    if stage == "distill":
        teacher = model_from_weights(cfg.teacher, "diffusion_teacher")
        bands_ok(teacher, cfg.teacher)
        note("teacher", cfg.teacher, teacher)
    if cfg.init is not None:
        model = model_from_weights(cfg.init, cfg.arch)
        bands_ok(model, cfg.init)
        note("init", cfg.init, model)
    elif stage == "distill":
        model = pretrained.create_model("diffusion_student", n_bands=n_bands,
                                        base=teacher.unet.base, timesteps=teacher.timesteps,
                                        residual_scale=teacher.residual_scale)
        model.init_from_teacher(teacher)
    elif stage == "fuse":
        student = model_from_weights(cfg.student, "diffusion_student")
        e2e = model_from_weights(cfg.e2e)
        for m, p in ((student, cfg.student), (e2e, cfg.e2e)):
            bands_ok(m, p)
        if e2e.arch in _SPECIAL:
            raise InputError(f"--e2e {cfg.e2e}: holds a {e2e.arch!r} model, not an "
                             "end-to-end network")
        note("student", cfg.student, student)
        note("e2e", cfg.e2e, e2e)
        kwargs = {"width": 32, **dict(cfg.arch_kwargs)}
        model = pretrained.create_model(
            "fose", n_bands=n_bands, e2e=e2e.arch, base=student.unet.base,
            timesteps=student.timesteps, e2e_kwargs=_kwargs_of(e2e, {}), **kwargs)
        model.student.load_state_dict(student.state_dict())
        model.e2e.load_state_dict(e2e.state_dict())
    else:
        model = pretrained.create_model(cfg.arch, n_bands=n_bands, **dict(cfg.arch_kwargs))
    return model, inits, teacher


def _trainable(model: nn.Module, stage: str) -> list[nn.Parameter]:
    if stage == "fuse":
        for branch in model.branches().values():
            for p in branch.parameters():
                p.requires_grad_(False)
        return model.adaptor_parameters()
    for p in model.parameters():
        p.requires_grad_(True)
    return list(model.parameters())


def _set_mode(model: nn.Module, stage: str, training: bool) -> None:
    model.train(training)
    if stage == "fuse":
        for branch in model.branches().values():
            branch.eval()


# ----------------------------------------------------------------------------- steps
def _loss(cfg: TrainConfig, stage: str, model: nn.Module, b: dict[str, Tensor],
          gen: torch.Generator) -> Tensor:
    if stage == "teacher":
        x0 = b["gt"] - b["lms"]
        t = torch.randint(model.timesteps, (x0.shape[0],), generator=gen)
        noise = torch.randn(x0.shape, generator=gen).to(x0)
        t = t.to(x0.device)
        x_t = model.q_sample(x0, t, noise)
        return F.l1_loss(model.denoise(x_t, t, b["lms"], b["pan"]), x0)
    out = model(b["ms"], b["pan"], b["lms"])
    if stage == "distill":
        return (F.l1_loss(out, b["target"])
                + cfg.distill_gt_weight * F.l1_loss(out, b["gt"]))
    return F.l1_loss(out, b["gt"]) if cfg.loss == "l1" else F.mse_loss(out, b["gt"])


def _fuse_one(model: nn.Module, pair: Pair, device: torch.device, steps: int | None
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
        fused = _fuse_one(model, pair, device, steps)[0].double().cpu()
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


@torch.no_grad()
def _distill_targets(teacher: nn.Module, pairs: list[Pair], device: torch.device,
                     steps: int) -> None:
    teacher.to(device).eval()
    for pair in pairs:
        pair.target = (_fuse_one(teacher, pair, device, steps)[0]).float().cpu()
    teacher.to("cpu")


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


def run_training(cfg: TrainConfig, callback: Callable[[dict[str, Any]], None] | None = None
                 ) -> TrainResult:
    """:func:`train` on a ready :class:`TrainConfig`."""
    from pretrained.zoo import save_weights, zoo_stem
    from tta.device import resolve_device
    from tta.io.atomic import plan_outputs

    cfg.check()
    stage = cfg.resolved_stage
    device = resolve_device(cfg.device)
    loaded: LoadedData = load_pairs(list(cfg.data), cfg.sensor, val_data=list(cfg.val_data),
                                    val_fraction=cfg.val_fraction, patch=cfg.patch,
                                    root=cfg.data_root)
    sensor = loaded.sensor
    name = cfg.name or zoo_stem(cfg.arch, sensor)
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
    plan_outputs(paths, inputs, overwrite=cfg.overwrite)

    torch.manual_seed(cfg.seed)
    n_bands = int(loaded.train[0].gt.shape[0])
    model, inits, teacher = _build(cfg, n_bands)
    if teacher is not None:
        _distill_targets(teacher, loaded.train, device, cfg.teacher_steps)
        del teacher
    model.to(device)
    params = _trainable(model, stage)
    sampler = PatchSampler(loaded.train, cfg.patch, cfg.batch, augment=cfg.augment,
                           seed=cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    opt = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    total = cfg.epochs * cfg.steps_per_epoch
    floor = cfg.min_lr_ratio
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(s, total)
                                                                  / total)))
    val_steps = cfg.val_steps
    history: list[dict[str, Any]] = []
    t_start = time.perf_counter()
    for epoch in range(1, cfg.epochs + 1):
        t0 = time.perf_counter()
        _set_mode(model, stage, True)
        losses = torch.zeros((), device=device)
        for _ in range(cfg.steps_per_epoch):
            b = {k: v.to(device, non_blocking=True) for k, v in sampler.sample().items()}
            loss = _loss(cfg, stage, model, b, gen)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.clip_grad:
                nn.utils.clip_grad_norm_(params, cfg.clip_grad)
            opt.step()
            sched.step()
            losses += loss.detach()
        if stage == "teacher":
            model.sync_head()
        train_loss = float(losses) / cfg.steps_per_epoch
        val = validate(model, loaded.val, device, val_steps)
        row = {"epoch": epoch, "train_loss": train_loss,
               "lr": opt.param_groups[0]["lr"], "seconds": time.perf_counter() - t0}
        if val is not None:
            row.update({f"val_{k}": v for k, v in val.items() if k != "images"})
        history.append(_round(row))
        if callback is not None:
            callback(history[-1])
    duration = time.perf_counter() - t_start
    model.eval()
    for p in model.parameters():
        p.requires_grad_(True)
    final = validate(model, loaded.val, device, val_steps)
    model.to("cpu")

    from tta import __version__

    kwargs = _kwargs_of(model, cfg.arch_kwargs)
    meta = {"arch_kwargs": kwargs, "sensor": sensor.name, "bands": ",".join(sensor.bands),
            "ratio": str(loaded.train[0].ratio), "max_value": str(loaded.train[0].max_value),
            "stage": stage, "name": name}
    sha = save_weights(model, paths["weights"], metadata=meta, overwrite=cfg.overwrite)
    n_params = sum(p.numel() for p in model.parameters())
    n_train = sum(p.numel() for p in params)
    data_records = []
    for rec in loaded.records:
        rec = dict(rec)
        digests = file_digests(resolve_spec(rec["file"], cfg.data_root))
        rec["sha256"] = next(iter(digests.values())) if len(digests) == 1 else digests
        data_records.append(rec)
    card = {
        "name": name,
        "arch": cfg.arch,
        "arch_kwargs": kwargs,
        "stage": stage,
        "n_bands": n_bands,
        "sensor": sensor.name,
        "bands": list(sensor.bands),
        "ratio": loaded.train[0].ratio,
        "max_value": loaded.train[0].max_value,
        "parameters": n_params,
        "trainable_parameters": n_train,
        "channel_mapper": (model.channel_mappers or [None])[0],
        "weights": {"file": paths["weights"].name, "sha256": sha},
        "training": {
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
                "loss": _loss_text(cfg, stage),
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
        "held_out": _round(final) if final is not None else None,
        "notes": cfg.note,
        "log": paths["log"].name,
    }
    log = {"name": name, "config": _config_dict(cfg), "split": loaded.split,
           "data": data_records, "history": history,
           "held_out": card["held_out"]}
    written = [paths["weights"]]
    try:  # all three files or none
        card_text = yaml.safe_dump(card, sort_keys=False, allow_unicode=True)
        log_text = json.dumps(log, indent=2) + "\n"
        _write_text(paths["card"], card_text, cfg.overwrite)
        written.append(paths["card"])
        _write_text(paths["log"], log_text, cfg.overwrite)
    except BaseException:
        for p in written:
            p.unlink(missing_ok=True)
        raise
    return TrainResult(model=model, weights=paths["weights"], card=paths["card"],
                       log=paths["log"], card_data=card, history=history)


def _loss_text(cfg: TrainConfig, stage: str) -> str:
    if stage == "teacher":
        return "L1(x0_pred, gt - lms), t ~ U{0..T-1}, cosine schedule"
    if stage == "distill":
        return (f"L1(student, teacher {cfg.teacher_steps}-step DDIM) + "
                f"{cfg.distill_gt_weight:g} x L1(student, gt)")
    return f"{cfg.loss.upper()}(output, gt)"


def _config_dict(cfg: TrainConfig) -> dict[str, Any]:
    d = asdict(cfg)
    d["arch_kwargs"] = dict(cfg.arch_kwargs)
    d["data"], d["val_data"] = list(cfg.data), list(cfg.val_data)
    d["stage"], d["lr"] = cfg.resolved_stage, cfg.learning_rate
    return d
