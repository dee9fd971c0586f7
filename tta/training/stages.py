"""Training stages: one small object per stage (what it builds, its loss step, what it saves).

The generic loop (:func:`tta.training.trainer.run_training`) asks the stage of a run for

* :meth:`Stage.check` - stage-specific checks of the config (arch, required files);
* :meth:`Stage.build` - the model to train, the init files it read (for the card) and the
  stage's own state (e.g. the distillation targets);
* :meth:`Stage.trainable` / :meth:`Stage.set_mode` - which parameters train, module modes;
* :meth:`Stage.loss` - one batch's loss;
* :meth:`Stage.end_epoch` - work after each epoch (the teacher's head sync);
* :meth:`Stage.loss_text` - the loss as written in the card.

Stages are registered by name in :data:`STAGES` (:func:`register_stage`); the CLI's
``--stage`` choices and :data:`DEFAULT_LR` read from it.

=========  ===================  ===============================================================
stage      arch                 what trains, on what loss
=========  ===================  ===============================================================
teacher    diffusion_teacher    the UNet, L1 between its x0 prediction and ``gt - lms`` at a
                                uniformly drawn timestep (cosine schedule, DDRF's x0 target)
distill    diffusion_student    the student, initialised from ``teacher``'s UNet; L1 to the
                                teacher's ``teacher_steps``-step DDIM output + ``distill_gt_
                                weight`` x L1 to ``gt``
e2e        any other network    the network, L1 (or MSE) to ``gt``
fuse       fose                 the adaptor only; branches from ``student`` and ``e2e``, frozen
joint      fose                 every weight of a ``fuse`` result (``init``), small lr; L1
pretrain   ksdiff               PLFE1 + kernel generator + network, L1 to ``gt`` (KSDiff 1)
diffuse    ksdiff               latent diffusion (PLFE2 + denoiser) jointly with the regressor,
                                ``L1(z0, z_theta) + L1(gt, output)`` (KSDiff stage 2, ``init``)
=========  ===================  ===============================================================
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from tta.errors import InputError

if TYPE_CHECKING:  # pragma: no cover  (torch loads lazily: the CLI lists the stages)
    import torch
    from torch import Tensor, nn

    from tta.training.data import LoadedData
    from tta.training.trainer import TrainConfig

__all__ = ["DEFAULT_LR", "STAGES", "Built", "Stage", "default_stage", "get_stage",
           "register_stage"]

#: Architectures with their own stages (not trainable in ``e2e``).
_SPECIAL = ("diffusion_teacher", "diffusion_student", "fose", "ksdiff")


@dataclass
class Built:
    """What :meth:`Stage.build` returns: the model, the init files (card), the stage's state."""

    model: nn.Module
    inits: dict[str, Any] = field(default_factory=dict)
    state: dict[str, Any] = field(default_factory=dict)


def _digest(path: str) -> str:
    import hashlib

    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _note(inits: dict[str, Any], key: str, path: str, model: nn.Module) -> None:
    inits[key] = {"file": str(path), "sha256": _digest(path), "arch": model.arch}


def _load(path: str, arch: str | None, n_bands: int) -> nn.Module:
    from pretrained.zoo import model_from_weights

    model = model_from_weights(path, arch)
    if model.n_bands != n_bands:
        raise InputError(f"{path}: a {model.n_bands}-band model, but the data have "
                         f"{n_bands} bands")
    return model


class Stage:
    """Base stage: train every weight of a fresh (or ``init``) model of ``cfg.arch`` with L1.

    Class attributes:
        name: Stage name (``--stage``).
        arch: The one architecture it trains, or None (any not in :data:`_SPECIAL`).
        lr: Default peak learning rate.
        needs: Weights options (``TrainConfig`` fields) that must be given.
    """

    name: ClassVar[str] = ""
    arch: ClassVar[str | None] = None
    lr: ClassVar[float] = 5e-4
    needs: ClassVar[tuple[str, ...]] = ()

    def check(self, cfg: TrainConfig) -> None:
        """Raise :class:`InputError` when ``cfg`` cannot train in this stage."""
        if self.arch is not None and cfg.arch != self.arch:
            raise InputError(f"stage {self.name!r} trains --arch {self.arch}, not {cfg.arch!r}")
        if self.arch is None and cfg.arch in _SPECIAL:
            raise InputError(f"--arch {cfg.arch} trains in stage "
                             f"{default_stage(cfg.arch)!r}, not {self.name!r}")
        for key in self.required(cfg):
            if getattr(cfg, key) is None:
                raise InputError(f"stage {self.name!r} needs --{key} FILE")

    def required(self, cfg: TrainConfig) -> tuple[str, ...]:
        """The weights options this run must give."""
        return self.needs

    def build(self, cfg: TrainConfig, n_bands: int, loaded: LoadedData,
              device: torch.device) -> Built:
        """The model to train (``init`` weights when given, else built from scratch)."""
        import pretrained

        if cfg.init is not None:
            model = _load(cfg.init, cfg.arch, n_bands)
            built = Built(model)
            _note(built.inits, "init", cfg.init, model)
            return built
        return Built(pretrained.create_model(cfg.arch, n_bands=n_bands,
                                             **dict(cfg.arch_kwargs)))

    def trainable(self, model: nn.Module) -> list[nn.Parameter]:
        for p in model.parameters():
            p.requires_grad_(True)
        return list(model.parameters())

    def set_mode(self, model: nn.Module, training: bool) -> None:
        model.train(training)

    def loss(self, cfg: TrainConfig, model: nn.Module, b: Mapping[str, Tensor],
             gen: torch.Generator, state: Mapping[str, Any]) -> Tensor:
        import torch.nn.functional as F

        out = model(b["ms"], b["pan"], b["lms"])
        return F.l1_loss(out, b["gt"]) if cfg.loss == "l1" else F.mse_loss(out, b["gt"])

    def end_epoch(self, model: nn.Module) -> None:
        """Work after every epoch (nothing by default)."""

    def loss_text(self, cfg: TrainConfig) -> str:
        return f"{cfg.loss.upper()}(output, gt)"


STAGES: dict[str, Stage] = {}


def register_stage(cls: type[Stage]) -> type[Stage]:
    """Class decorator: register one instance of ``cls`` under ``cls.name``."""
    STAGES[cls.name] = cls()
    return cls


def get_stage(name: str) -> Stage:
    """The registered stage ``name``.

    Raises:
        InputError: Unknown stage.
    """
    if name not in STAGES:
        raise InputError(f"unknown stage {name!r}; choose one of {', '.join(STAGES)}")
    return STAGES[name]


def default_stage(arch: str) -> str:
    """The stage an architecture trains in when none is given."""
    return {"diffusion_teacher": "teacher", "diffusion_student": "distill",
            "fose": "fuse", "ksdiff": "pretrain"}.get(arch, "e2e")


@register_stage
class TeacherStage(Stage):
    """The diffusion teacher: L1 of its x0 prediction at a uniformly drawn timestep."""

    name, arch, lr = "teacher", "diffusion_teacher", 2e-4

    def build(self, cfg, n_bands, loaded, device):
        built = super().build(cfg, n_bands, loaded, device)
        if cfg.teacher_loss == "edm" and built.model.precond != "edm":
            raise InputError("--teacher-loss edm needs a preconditioned teacher "
                             "(--arch-option precond=edm)")
        return built

    def loss(self, cfg, model, b, gen, state):
        import torch
        import torch.nn.functional as F

        x0 = b["gt"] - b["lms"]
        t = torch.randint(model.timesteps, (x0.shape[0],), generator=gen)
        noise = torch.randn(x0.shape, generator=gen).to(x0)
        t = t.to(x0.device)
        x_t = model.q_sample(x0, t, noise)
        pred = model.denoise(x_t, t, b["lms"], b["pan"])
        if cfg.teacher_loss == "edm":  # L1 on the UNet's own output F: weight s / c_out(t)
            c_out = torch.tensor([c[2] for c in model.coeffs], dtype=x0.dtype,
                                 device=x0.device)[t].view(-1, 1, 1, 1)
            return ((pred - x0).abs() * (model.residual_scale / c_out)).mean()
        return F.l1_loss(pred, x0)

    def end_epoch(self, model):
        model.sync_head()

    def loss_text(self, cfg):
        if cfg.teacher_loss == "edm":
            return ("L1(x0_pred, gt - lms) x s / c_out(t) (L1 on the preconditioned output), "
                    "t ~ U{0..T-1}, cosine schedule")
        return "L1(x0_pred, gt - lms), t ~ U{0..T-1}, cosine schedule"


@register_stage
class DistillStage(Stage):
    """The one-step student: L1 to the teacher's DDIM output (+ weighted L1 to ``gt``)."""

    name, arch, lr, needs = "distill", "diffusion_student", 1e-4, ("teacher",)

    def build(self, cfg, n_bands, loaded, device):
        import torch

        import pretrained
        from tta.training.trainer import fuse_one

        teacher = _load(cfg.teacher, "diffusion_teacher", n_bands)
        inits: dict[str, Any] = {}
        _note(inits, "teacher", cfg.teacher, teacher)
        if cfg.init is not None:
            model = _load(cfg.init, cfg.arch, n_bands)
            _note(inits, "init", cfg.init, model)
        else:
            model = pretrained.create_model(
                "diffusion_student", n_bands=n_bands, base=teacher.unet.base,
                timesteps=teacher.timesteps, residual_scale=teacher.residual_scale,
                **({"cond": teacher.unet.cond} if teacher.unet.cond != "lms_pan" else {}))
            model.init_from_teacher(teacher)
        with torch.no_grad():  # the targets: the teacher's DDIM output, once per image
            teacher.to(device).eval()
            for pair in loaded.train:
                pair.target = fuse_one(teacher, pair, device, cfg.teacher_steps)[0].float().cpu()
            teacher.to("cpu")
        return Built(model, inits)

    def loss(self, cfg, model, b, gen, state):
        import torch.nn.functional as F

        out = model(b["ms"], b["pan"], b["lms"])
        return F.l1_loss(out, b["target"]) + cfg.distill_gt_weight * F.l1_loss(out, b["gt"])

    def loss_text(self, cfg):
        return (f"L1(student, teacher {cfg.teacher_steps}-step DDIM) + "
                f"{cfg.distill_gt_weight:g} x L1(student, gt)")


@register_stage
class E2EStage(Stage):
    """Any end-to-end network: L1 (or MSE) to ``gt``."""

    name, lr = "e2e", 5e-4


@register_stage
class FuseStage(Stage):
    """Fose's adaptor only; both branches loaded, frozen and kept in eval mode."""

    name, arch, lr = "fuse", "fose", 5e-4

    def required(self, cfg):
        return () if cfg.init else ("student", "e2e")

    def build(self, cfg, n_bands, loaded, device):
        import pretrained

        if cfg.init is not None:
            return super().build(cfg, n_bands, loaded, device)
        student = _load(cfg.student, "diffusion_student", n_bands)
        e2e = _load(cfg.e2e, None, n_bands)
        if e2e.arch in _SPECIAL:
            raise InputError(f"--e2e {cfg.e2e}: holds a {e2e.arch!r} model, not an "
                             "end-to-end network")
        inits: dict[str, Any] = {}
        _note(inits, "student", cfg.student, student)
        _note(inits, "e2e", cfg.e2e, e2e)
        hp = getattr(e2e, "hparams", None)
        kwargs = {"width": 32, **dict(cfg.arch_kwargs)}
        model = pretrained.create_model(
            "fose", n_bands=n_bands, e2e=e2e.arch, base=student.unet.base,
            timesteps=student.timesteps, e2e_kwargs=dict(hp()) if callable(hp) else {},
            **({"cond": student.unet.cond} if student.unet.cond != "lms_pan" else {}),
            **kwargs)
        model.student.load_state_dict(student.state_dict())
        model.e2e.load_state_dict(e2e.state_dict())
        return Built(model, inits)

    def trainable(self, model):
        for branch in model.branches().values():
            for p in branch.parameters():
                p.requires_grad_(False)
        return model.adaptor_parameters()

    def set_mode(self, model, training):
        model.train(training)
        for branch in model.branches().values():
            branch.eval()


@register_stage
class JointStage(Stage):
    """Every weight of a ``fuse`` result, small learning rate."""

    name, arch, lr, needs = "joint", "fose", 2e-5, ("init",)


@register_stage
class KSDiffPretrainStage(Stage):
    """KSDiff stage 1: PLFE1 (sees ``gt``) + kernel generator + network, L1 to ``gt``."""

    name, arch, lr = "pretrain", "ksdiff", 5e-4

    def build(self, cfg, n_bands, loaded, device):
        """A fresh KSDiff, or with ``e2e`` one whose backbone starts from a trained FusionNet
        (its kernels are ``W0``; the zero-initialised core makes ``W = 1``, so training starts
        from the backbone's output exactly)."""
        if cfg.e2e is None:
            return super().build(cfg, n_bands, loaded, device)
        import pretrained

        if cfg.init is not None:
            raise InputError("--e2e (a backbone to start from) and --init exclude each other")
        backbone = _load(cfg.e2e, "fusionnet", n_bands)
        hp = backbone.hparams() if callable(getattr(backbone, "hparams", None)) else {}
        kwargs = {**{k: hp[k] for k in ("channels", "n_blocks") if k in hp},
                  **dict(cfg.arch_kwargs)}
        model = pretrained.create_model("ksdiff", n_bands=n_bands, **kwargs)
        try:
            model.net.load_state_dict(backbone.state_dict())
        except RuntimeError as err:
            raise InputError(f"--e2e {cfg.e2e}: its FusionNet does not fit this KSDiff's "
                             f"backbone ({str(err).splitlines()[0]})") from None
        built = Built(model)
        _note(built.inits, "e2e", cfg.e2e, backbone)
        return built

    def loss(self, cfg, model, b, gen, state):
        return model.pretrain_loss(b["pan"], b["lms"], b["gt"])

    def loss_text(self, cfg):
        return "L1(network(pan, lms; z = PLFE1(pan, lms, gt)), gt)"


@register_stage
class KSDiffDiffuseStage(Stage):
    """KSDiff stage 2: latent diffusion from PLFE2 jointly with the regressor (``init``)."""

    name, arch, lr, needs = "diffuse", "ksdiff", 2e-4, ("init",)

    def trainable(self, model):
        params = super().trainable(model)
        for p in model.plfe1.parameters():  # z0 comes from the frozen stage-1 encoder
            p.requires_grad_(False)
        return [p for p in params if p.requires_grad]

    def set_mode(self, model, training):
        model.train(training)
        model.plfe1.eval()

    def loss(self, cfg, model, b, gen, state):
        return model.diffusion_loss(b["pan"], b["lms"], b["gt"], generator=gen)

    def loss_text(self, cfg):
        return ("L1(z0, z_theta(z_t, t, PLFE2(pan, lms))) with z0 = PLFE1(pan, lms, gt) frozen, "
                "t ~ U{0..T-1} + L1(network(pan, lms; z = DDIM sample), gt)")


DEFAULT_LR = {name: stage.lr for name, stage in STAGES.items()}
