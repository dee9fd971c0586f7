"""``tta train``: train one stage of a zoo network on reduced-resolution data."""

from __future__ import annotations

from typing import Any

import click

from tta.cli.options import (
    FiniteFloat,
    device_option,
    overwrite_option,
    seed_type,
    sensor_option,
)


def _arch_options(items: tuple[str, ...]) -> dict[str, Any]:
    import yaml

    from tta.errors import InputError

    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InputError(f"--arch-option {item!r}: expected KEY=VALUE (e.g. base=48)")
        try:
            out[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError:
            raise InputError(f"--arch-option {item!r}: VALUE is not a YAML scalar") from None
    return out


def _fmt(row: dict[str, Any]) -> str:
    text = (f"epoch {row['epoch']:>3}  train {row['train_loss']:.5f}  lr {row['lr']:.2e}  "
            f"{row['seconds']:.1f} s")
    if "val_L1" in row:
        text += (f"  | held out L1 {row['val_L1']:.5f}  Q2n {row['val_Q2n']:.4f}  "
                 f"SAM {row['val_SAM']:.3f}  ERGAS {row['val_ERGAS']:.3f}")
    return text


@click.command("train")
@click.option("--arch", "-a", required=True, metavar="ARCH",
              help="Architecture to train (see `tta models`).")
@click.option("--data", "-d", "data", multiple=True, required=True, metavar="SPEC[@DY,DX]",
              help="Training scene (repeatable). RR files are used as they are, FR files are "
                   "Wald-degraded; @DY,DX first corrects an integer PAN shift (PAN px).")
@click.option("--data-root", default=None, metavar="DIR",
              help="Folder relative --data/--val-data specs are relative to (recorded as "
                   "given in the card).")
@click.option("--val-data", multiple=True, metavar="SPEC",
              help="Whole scene to hold out (repeatable); default: the bottom --val-fraction "
                   "rows of each training scene.")
@click.option("--val-fraction", type=FiniteFloat(0, 1, max_open=True), default=0.2,
              show_default=True, help="Rows held out per scene without --val-data.")
@click.option("--stage", default=None, metavar="STAGE",
              help="Training stage (default from --arch: diffusion_teacher=teacher, "
                   "diffusion_student=distill, fose=fuse, ksdiff=pretrain, others e2e; "
                   "ksdiff's second stage is diffuse --init PRETRAIN_FILE; the stages are "
                   "registered in tta.training.stages).")
@click.option("--epochs", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--steps-per-epoch", type=click.IntRange(min=1), default=100, show_default=True)
@click.option("--patch", type=click.IntRange(min=8), default=64, show_default=True,
              help="Patch side in PAN pixels (multiple of the ratio).")
@click.option("--batch", type=click.IntRange(min=1), default=16, show_default=True)
@click.option("--lr", type=FiniteFloat(0, 1, min_open=True), default=None,
              help="Peak learning rate (default per stage).")
@click.option("--weight-decay", type=FiniteFloat(min=0), default=1e-4, show_default=True)
@click.option("--loss", type=click.Choice(["l1", "mse"]), default="l1", show_default=True,
              help="Loss of the e2e/fuse/joint stages.")
@click.option("--no-augment", is_flag=True, help="No random rot90/flips.")
@click.option("--seed", type=seed_type, default=0, show_default=True)
@click.option("--teacher", default=None, metavar="FILE",
              help="Teacher weights (stage distill).")
@click.option("--student", default=None, metavar="FILE",
              help="Distilled student weights (stage fuse).")
@click.option("--e2e", default=None, metavar="FILE",
              help="End-to-end branch weights (stage fuse); ksdiff stage pretrain: a trained "
                   "FusionNet its backbone starts from.")
@click.option("--init", default=None, metavar="FILE",
              help="Start from these weights of --arch (resume; stage joint: the fuse result).")
@click.option("--teacher-steps", type=click.IntRange(min=1), default=50, show_default=True,
              help="DDIM steps of the distillation targets.")
@click.option("--val-steps", type=click.IntRange(min=1), default=None,
              help="DDIM steps when validating a teacher (default its own, 50).")
@click.option("--distill-gt-weight", type=FiniteFloat(min=0), default=0.5,
              show_default=True, help="Weight of the ground-truth L1 term when distilling.")
@click.option("--teacher-loss", type=click.Choice(["x0", "edm"]), default="x0",
              show_default=True,
              help="Teacher loss: L1 of the x0 prediction, or that L1 weighted by s / c_out(t) "
                   "(Karras et al.'s weighting; needs --arch-option precond=edm).")
@click.option("--checkpoint-every", type=click.IntRange(min=0), default=0, show_default=True,
              metavar="N", help="Write OUT/NAME.ckpt every N steps (0: never); removed when "
                                "the run completes.")
@click.option("--resume", is_flag=True,
              help="Continue from OUT/NAME.ckpt when it exists (same options), else start; "
                   "gives the same weights as an uninterrupted run.")
@click.option("--arch-option", "arch_option", multiple=True, metavar="KEY=VALUE",
              help="Architecture option for a model built from scratch (repeatable), "
                   "e.g. base=48, e2e=fusionnet.")
@click.option("--name", default=None, metavar="NAME",
              help="Output file stem (default ARCH_SENSOR, the name `--model ARCH:SENSOR` loads).")
@click.option("--note", default=None, metavar="TEXT",
              help="Free text for the card's `notes` (what the data allowed, caveats).")
@click.option("--out", "-o", "out", required=True, metavar="DIR",
              help="Folder of the weights (created if missing).")
@click.option("--cards", default=None, metavar="DIR",
              help="Folder of the model card and log (default --out).")
@sensor_option
@device_option
@overwrite_option
@click.pass_context
def command(ctx: click.Context, arch: str, data: tuple[str, ...], data_root: str | None,
            val_data: tuple[str, ...], val_fraction: float, stage: str | None, epochs: int,
            steps_per_epoch: int, patch: int, batch: int, lr: float | None,
            weight_decay: float, loss: str, no_augment: bool, seed: int,
            teacher: str | None, student: str | None, e2e: str | None, init: str | None,
            teacher_steps: int, val_steps: int | None, distill_gt_weight: float,
            teacher_loss: str,
            checkpoint_every: int, resume: bool, arch_option: tuple[str, ...],
            name: str | None, note: str | None, out: str,
            cards: str | None, sensor: str | None, device: str, overwrite: bool) -> None:
    """Train one stage of a zoo network; write ARCH_SENSOR.safetensors, a card and a log.

    The pairs are reduced-resolution (Wald): ready RR files as they are, FR scenes degraded
    here. Fose takes four stages (five with the optional joint fine-tune):

    \b
      tta train -a diffusion_teacher -d wv3/wv3_cdif_rr.h5 --sensor WV3 -o runs
      tta train -a diffusion_student -d ... --teacher runs/diffusion_teacher_wv3.safetensors
      tta train -a lagconv -d ... -o runs
      tta train -a fose -d ... --student runs/diffusion_student_wv3.safetensors
                --e2e runs/lagconv_wv3.safetensors -o runs
      tta train -a fose --stage joint --init runs/fose_wv3.safetensors --name fose_wv3_joint

    Long runs: --checkpoint-every N writes OUT/NAME.ckpt; rerun the same command with --resume
    after a stop (kill, reboot) to continue it.
    """
    from tta.training import TrainConfig, run_training

    quiet = (ctx.find_root().obj or {}).get("quiet", False)
    cfg = TrainConfig(
        arch=arch.lower(), data=tuple(data), data_root=data_root, sensor=sensor, stage=stage,
        epochs=epochs, steps_per_epoch=steps_per_epoch, patch=patch, batch=batch, lr=lr,
        weight_decay=weight_decay, seed=seed, device=device, val_fraction=val_fraction,
        val_data=tuple(val_data), augment=not no_augment, loss=loss, teacher=teacher,
        student=student, e2e=e2e, init=init, teacher_steps=teacher_steps,
        val_steps=val_steps, distill_gt_weight=distill_gt_weight, teacher_loss=teacher_loss,
        arch_kwargs=_arch_options(arch_option), name=name, note=note, out=out, cards=cards,
        overwrite=overwrite, checkpoint_every=checkpoint_every, resume=resume)
    result = run_training(cfg, callback=None if quiet else lambda row: click.echo(_fmt(row)))
    card = result.card_data
    held = card.get("held_out")
    scores = ("no held-out images" if not held else
              f"held out Q2n {held['Q2n']:.4f}, SAM {held['SAM']:.3f}, "
              f"ERGAS {held['ERGAS']:.3f}")
    click.echo(f"{card['arch']} ({card['stage']}, {card['parameters']:,} params, "
               f"{card['training']['steps']} steps on {card['training']['device']}): {scores}")
    click.echo(f"wrote {result.weights}, card {result.card}, log {result.log}")
