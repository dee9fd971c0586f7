"""``tta adapt``: adapt a pretrained network to a scene (no ground truth) and fuse it."""

from __future__ import annotations

from pathlib import Path

import click

from tta.cli.options import (
    RegistryChoice,
    adaptation_options,
    check_outputs,
    dtype_option,
    run_options,
)


def _default_output(target: str, model_tag: str, adapter: str) -> str:
    stem = Path(target.split("+")[0].split("#")[0]).stem
    return f"{stem}_{model_tag}_{adapter}.h5"


def _fmt(v: float) -> str:
    return f"{v:.4f}" if abs(v) < 100 else f"{v:.1f}"


@click.command("adapt")
@click.option("--model", "-m", "model_spec", required=True, metavar="NAME|FILE",
              help="Architecture (with --weights), NAME:SENSOR of our zoo, or a checkpoint.")
@click.option("--weights", "-w", default=None, metavar="FILE",
              help="Checkpoint file for --model ARCH (e.g. a DLPan-Toolbox .pth).")
@click.option("--target", "-t", required=True, metavar="SCENE",
              help="Scene to adapt to and fuse (see `tta --help` for scene forms).")
@click.option("-o", "--output", default=None, metavar="OUT",
              help="Fused product (.h5 or .tif); default SCENE_MODEL_ADAPTER.h5 here.")
@adaptation_options
@click.option("--report", "report_path", default=None, metavar="REPORT.json",
              help="Write the run report (timings, patches, loss curve, metrics).")
@click.option("--save-adapter", "adapter_path", default=None, metavar="FILE.pt",
              help="Save the trained adapter (small state file).")
@click.option("--compare/--no-compare", default=True, show_default=True,
              help="Also fuse by direct transfer and score both (FR; RR when gt exists).")
@click.option("--compile", "compile_mode", default=None,
              type=RegistryChoice("tta.engine.config:COMPILE_MODES"),
              help="torch.compile the training step (reduce-overhead = CUDA graphs; pays off "
                   "on a GPU). Off by default.")
@dtype_option
@click.option("--stream/--no-stream", default=None,
              help="Read the scene by window and write the product by block (default: for "
                   "GeoTIFF/h5 scenes over 4096² PAN px). A killed run resumes when rerun.")
@click.option("--block", type=click.IntRange(min=64), default=1024, show_default=True,
              help="Streamed output block side, PAN px (memory per block, unit of resume).")
@run_options
@click.pass_context
def command(ctx: click.Context, model_spec: str, weights: str | None, target: str,
            output: str | None, adapter: str | None, sampler: str | None,
            fraction: float | None, steps: int | None, lr: float | None, patch: int | None,
            seed: int | None, config_path: str | None, interface: str | None,
            report_path: str | None, adapter_path: str | None, compare: bool,
            compile_mode: str | None, dtype: str, stream: bool | None, block: int,
            sensor: str | None, bands: str | None, max_value: float | None, device: str,
            overwrite: bool) -> None:
    """Adapt a pretrained model to the target scene and fuse the whole scene.

    Trains a small adapter on a few selected patches with physics-aware unsupervised losses
    (no ground truth), then fuses every tile. Example:

        tta adapt --model fusionnet --weights wv3/fusionnet.pth --target wv2.h5 -o out.h5
    """
    from pretrained.spec import parse_model_spec
    from tta.engine import AdaptConfig
    from tta.engine.files import adapt_file
    from tta.io import parse_spec, writer_for
    from tta.io.product import write_json

    cfg = AdaptConfig.from_yaml(config_path) if config_path else AdaptConfig()
    cfg = cfg.replace(adapter=adapter, sampler=sampler, fraction=fraction, steps=steps, lr=lr,
                      patch=patch, seed=seed, compile=compile_mode)
    spec = parse_model_spec(model_spec, weights)
    out = output or _default_output(target, spec.tag, cfg.adapter)
    writer_for(out)  # a known format, before any work
    inputs = [*parse_spec(target).files, *spec.files()]
    if config_path:
        inputs.append(config_path)
    check_outputs({"-o": out, "--report": report_path, "--save-adapter": adapter_path},
                  inputs, overwrite=overwrite)

    quiet = (ctx.find_root().obj or {}).get("quiet", False)
    import sys

    from tta.cli import streaming
    from tta.errors import InputError as _InputError

    if stream and bands is not None:
        raise _InputError("--stream reads the scene's bands as stored: drop --bands")
    source = None if bands is not None else streaming.wants_stream(stream, target, sensor,
                                                                    max_value)
    if source is not None:
        _adapt_streamed(source, model_spec=model_spec, weights=weights, target=target, out=out,
                        cfg=cfg, dtype=dtype, block=block, inputs=inputs, interface=interface,
                        device=device, progress=not quiet and sys.stderr.isatty(),
                        overwrite=overwrite, report_path=report_path,
                        adapter_path=adapter_path)
        return
    result, plan = adapt_file(target, out, model=model_spec, weights=weights, config=cfg,
                              sensor=sensor, bands=bands, max_value=max_value,
                              interface=interface, compare=compare, device=device,
                              dtype=dtype, overwrite=overwrite,
                              progress=not quiet and sys.stderr.isatty())
    report = result.report
    if report.loss.diverged:
        click.echo(f"warning: the adaptation diverged at step {report.loss.diverged_at_step}"
                   f" (non-finite or exploding loss); the product is the direct network's. "
                   "Try a smaller --lr.", err=True)
    if adapter_path:
        from tta.engine.reuse import save_adapted

        save_adapted(result, adapter_path, model_spec=model_spec, weights=weights,
                     overwrite=overwrite, meta={"target": target})
    if report_path:
        write_json(report_path, report.to_json(), inputs=inputs, overwrite=overwrite)

    tm = report.timings
    dec = report.decomposition
    click.echo(f"model {report.model.arch} | interface {dec['mapper']} "
               f"{tuple(dec['interface_shape'][1:2])}ch, tail {dec['tail']} | adapter "
               f"{cfg.adapter} ({report.adapter.trainable} trainable) | "
               f"{report.sampling['selected']}/{report.sampling['patches_valid']} "
               f"patches ({cfg.sampler})")
    if plan.split:
        click.echo(plan.describe(cfg.other_bands))
    click.echo(f"adapt {tm['adapt']:.2f} s (train {tm.get('train', 0.0):.2f} s, "
               f"{cfg.steps} steps) + infer {tm['infer']:.2f} s on {report.device}")
    radiometry = report.radiometry or {}
    if radiometry.get("applied"):
        click.echo(f"radiometry: inputs x{radiometry['gain']:.3g} (scene PAN level "
                   f"{radiometry['scene_level']:.3f}, network's {radiometry['source_level']:.3f};"
                   f" self-check Q2n {radiometry['self_check']})")
    decision = report.decision
    if decision:
        click.echo(f"decision: {decision['choice']} - {decision['reason']}")
    metrics = report.metrics
    if metrics:
        from tta.evaluation import BETTER

        for proto in ("rr", "fr"):
            d, a = metrics["direct"].get(proto), metrics["adapted"].get(proto)
            if not d:
                continue
            click.echo(f"{proto.upper():<4}{'index':<12}{'direct':>10}{'adapted':>10}")
            for key in d:
                arrow = "+" if BETTER.get(key) == "up" else "-"
                click.echo(f"    {key + ' (' + arrow + ')':<12}{_fmt(d[key]):>10}"
                           f"{_fmt(a[key]):>10}")
    click.echo(f"wrote {out}" + (f", report {report_path}" if report_path else "")
               + (f", adapter {adapter_path}" if adapter_path else ""))


def _adapt_streamed(source, *, model_spec: str, weights: str | None, target: str, out: str,
                    cfg, dtype: str, block: int, inputs: list, interface: str | None,
                    device: str, progress: bool, overwrite: bool, report_path: str | None,
                    adapter_path: str | None) -> None:
    """``tta adapt`` on a scene read by window (:mod:`tta.cli.streaming`)."""
    from tta.cli import streaming
    from tta.io.product import write_json
    from tta.memory import guard_memory
    from tta.models import resolve_model

    model = resolve_model(model_spec, weights=weights)
    with guard_memory(None, None if device == "auto" else device):
        result, report = streaming.run_adapt(
            source, model=model, model_spec=model_spec, weights=weights, target=target,
            out=out, cfg=cfg, dtype=dtype, block=block, inputs=inputs, interface=interface,
            device=device, progress=progress, overwrite=overwrite)
    if report["loss"].get("diverged"):
        click.echo(f"warning: the adaptation diverged at step "
                   f"{report['loss']['diverged_at_step']}; the product is the direct "
                   "network's. Try a smaller --lr.", err=True)
    report["output"] = out
    if adapter_path:
        from tta.engine.reuse import save_adapted

        save_adapted(result, adapter_path, model_spec=model_spec, weights=weights,
                     overwrite=overwrite, meta={"target": target})
    if report_path:
        write_json(report_path, report, inputs=inputs, overwrite=overwrite)
    tm = report["timings"]
    click.echo(f"model {report['model']['arch']} | adapter {cfg.adapter} | "
               f"{report['sampling']['selected']}/{report['sampling']['patches_valid']} "
               f"patches ({cfg.sampler})")
    click.echo(streaming.describe(report))
    click.echo(f"adapt {tm['adapt']:.2f} s (train {tm.get('train', 0.0):.2f} s, "
               f"{cfg.steps} steps) + infer {tm['infer']:.2f} s on {report['device']}")
    decision = report.get("decision")
    if decision:
        click.echo(f"decision: {decision['choice']} - {decision['reason']}")
    click.echo(f"wrote {out}" + (f", report {report_path}" if report_path else "")
               + (f", adapter {adapter_path}" if adapter_path else ""))
