"""Command-line interface: ``tta <command>``.

Exit codes: 0 success, 2 bad input or usage (one line ``Error: ...``), 1 internal error,
130 interrupted. One module per subcommand; shared options live in :mod:`tta.cli.options`.
"""

from __future__ import annotations

import sys
import traceback
import warnings

import click

from tta import __version__
from tta.errors import TtaError


class _Group(click.Group):
    """Click group that turns toolkit errors into one line and an exit code."""

    def invoke(self, ctx: click.Context):
        try:
            with warnings.catch_warnings():
                if not ctx.obj or not ctx.obj.get("verbose"):
                    warnings.simplefilter("ignore")
                return super().invoke(ctx)
        except TtaError as exc:
            click.echo(f"Error: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except KeyboardInterrupt:
            click.echo("Interrupted", err=True)
            ctx.exit(130)
        except Exception as exc:  # a bug: say so in one line; details with --debug
            if ctx.obj and ctx.obj.get("debug"):
                traceback.print_exc()
            click.echo(
                f"Internal error: {type(exc).__name__}: {exc} (rerun with --debug for the "
                "traceback and please report it)",
                err=True,
            )
            ctx.exit(1)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="tta")
@click.option("-v", "--verbose", is_flag=True, help="Show library warnings and more detail.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars.")
@click.option("--debug", is_flag=True, hidden=True, help="Print tracebacks of internal errors.")
@click.pass_context
def cli(ctx: click.Context, verbose: bool, quiet: bool, debug: bool) -> None:
    """tta: cross-sensor test-time adaptation for pansharpening.

    Scenes are given as FILE.h5 (PanCollection; FILE.h5#K picks sample K), FILE.mat
    (I_MS_LR / I_PAN), MS.tif+PAN.tif (GeoTIFFs; several MS files are stacked in order)
    or a YAML manifest.
    """
    ctx.ensure_object(dict)
    ctx.obj.update(verbose=verbose, quiet=quiet, debug=debug)


def _register() -> None:
    from tta.cli import adapt, bench, degrade, fuse, info, inspect, models, sensors, train
    from tta.cli import eval as eval_

    for module in (sensors, info, degrade, fuse, eval_, inspect, adapt, models, train,
                   bench):
        cli.add_command(module.command)


_register()


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point."""
    try:
        cli.main(args=argv, prog_name="tta", standalone_mode=True)
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
