"""``tta bench``: run a cross-sensor benchmark matrix and write its report."""

from __future__ import annotations

import datetime as dt
import shlex
import sys
from pathlib import Path

import click

from tta.cli.options import check_outputs, device_option, overwrite_option


def _targets(specs: tuple[str, ...], protocols: str):
    from tta.bench.matrix import _target

    chosen = ["rr", "fr"] if protocols == "both" else [protocols]
    return [_target({"file": s, "protocols": chosen}, f"--target {s}") for s in specs]


@click.command("bench")
@click.argument("matrix", required=False, metavar="[MATRIX.yaml|NAME]")
@click.option("--quick", is_flag=True,
              help="Run the built-in quick matrix (a smoke test: minutes on a CPU).")
@click.option("-o", "--out", "out", default=None, metavar="DIR",
              help="Output folder (default bench-out/<date>-<device>/<matrix>).")
@click.option("--data-root", default=None, metavar="DIR",
              help="Folder the matrix's scene files are relative to (overrides its data_root).")
@click.option("--weights-root", default=None, metavar="DIR",
              help="Folder the matrix's weights files are relative to (overrides its "
                   "weights_root).")
@click.option("--target", "targets", multiple=True, metavar="SCENE",
              help="Replace the matrix's targets by these scene files (repeatable; any format "
                   "tta reads). Relative paths are taken from the working directory.")
@click.option("--protocol", type=click.Choice(["rr", "fr", "both"]), default="both",
              show_default=True, help="Protocols of the --target scenes.")
@click.option("--source", "sources", multiple=True, metavar="NAME",
              help="Run only these sources of the matrix (repeatable).")
@click.option("--method", "methods", multiple=True, metavar="NAME",
              help="Run only these methods (repeatable; adapter names or zpnn).")
@click.option("--seeds", default=None, metavar="S[,S...]", help="Override the seeds.")
@click.option("--steps", type=click.IntRange(min=0), default=None,
              help="Override the adaptation steps of every method.")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="Torch CPU threads (default: torch's).")
@click.option("--no-speed", is_flag=True, help="Skip the timing part.")
@click.option("--no-figures", is_flag=True, help="Write no PNG figures.")
@device_option
@overwrite_option
@click.pass_context
def command(ctx: click.Context, matrix: str | None, quick: bool, out: str | None,
            data_root: str | None, weights_root: str | None, targets: tuple[str, ...],
            protocol: str, sources: tuple[str, ...], methods: tuple[str, ...],
            seeds: str | None, steps: int | None, threads: int | None, no_speed: bool,
            no_figures: bool, device: str, overwrite: bool) -> None:
    """Adapt, fuse and score every cell of a benchmark MATRIX; write CSV, Markdown and PNGs.

    MATRIX is a YAML file or a built-in name (quick, cross_sensor, samplers, zoo). Each
    target runs under the reduced-resolution (Wald) and full-resolution protocols; see
    tta/bench/matrix.py for the file format. Example: tta bench --quick -o bench-out;
    tta bench cross_sensor --target my_scene.h5 --source fusionnet-wv3.
    """
    import torch

    from tta.bench import load_matrix, run_bench, write_report
    from tta.checks import check_seed
    from tta.device import resolve_device
    from tta.errors import InputError
    from tta.io import parse_spec

    if quick and matrix:
        raise InputError("give a MATRIX or --quick, not both")
    name = "quick" if quick else (matrix or "cross_sensor")
    m = load_matrix(name, data_root=data_root, weights_root=weights_root)
    seed_list = None
    if seeds is not None:
        try:
            seed_list = [int(s) for s in seeds.split(",") if s.strip()]
        except ValueError:
            raise InputError(f"--seeds {seeds!r}: expected integers like 0,1,2") from None
        for s in seed_list:
            check_seed(s, "--seeds")
    m = m.restrict(targets=_targets(targets, protocol) if targets else None, seeds=seed_list,
                   steps=steps, methods=list(methods) or None, sources=list(sources) or None)
    if threads is not None:
        torch.set_num_threads(threads)
    dev = resolve_device(device)
    folder = Path(out) if out else Path("bench-out") / (
        f"{dt.date.today().isoformat()}-{dev.type}") / m.name
    quiet = (ctx.find_root().obj or {}).get("quiet", False)
    say = (lambda _msg: None) if quiet else (lambda msg: click.echo(msg, err=True))
    inputs = [p for t in targets for p in parse_spec(t).files]
    if matrix and Path(matrix).is_file():
        inputs.append(matrix)
    check_outputs({}, inputs, folders={"-o": folder})
    if folder.exists() and not overwrite and any(folder.iterdir()):
        raise InputError(f"{folder} is not empty; pass --overwrite or choose another --out")
    result = run_bench(m, device=dev, log=say, speed=not no_speed)
    if not result.runs and not result.speed:
        raise InputError(f"{m.name}: nothing could run (" + "; ".join(result.skipped) + ")")
    command_line = "tta " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    paths = write_report(result, folder, command=command_line, figures=not no_figures,
                         overwrite=overwrite)
    click.echo(f"{len(result.runs)} runs, {len(result.skipped)} skipped; wrote "
               f"{len(paths)} files to {folder}")
    summary = folder / "summary.md"
    if summary.exists():
        click.echo(f"summary: {summary}")
