"""Command-line interface: ``tta <command>``.

Exit codes: 0 success, 2 bad input or usage (one line ``Error: ...``; out of memory too),
1 internal error, 130 interrupted (Ctrl-C), 143 terminated (SIGTERM), 141 output pipe closed
(``tta info x | head -1``, quietly). One module per subcommand; shared options live in
:mod:`tta.cli.options`.
"""

from __future__ import annotations

import os
import sys
import traceback
import warnings

import click

from tta import __version__
from tta.cli.options import FiniteFloat
from tta.errors import TtaError
from tta.interrupts import handling_signals, raise_pending
from tta.memory import is_out_of_memory, out_of_memory_error

_EXIT_PIPE = 141  # 128 + SIGPIPE, what a shell reports for a Unix tool whose reader left


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush cannot fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # not a real file (tests' CliRunner)
        pass


def _usage_line(exc: click.UsageError) -> None:
    """A usage error (bad option or value) as one line ``Error: ...`` naming the help."""
    message = " ".join(exc.format_message().split())
    where = exc.ctx.command_path if exc.ctx is not None else "tta"
    click.echo(f"Error: {message} (see `{where} -h`)", err=True)


class _Group(click.Group):
    """Click group that turns toolkit errors and usage errors into one line and an exit
    code."""

    def make_context(self, info_name, args, parent=None, **extra):  # the group's own options
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except click.exceptions.NoArgsIsHelpError:
            raise
        except click.UsageError as exc:
            _usage_line(exc)
            raise click.exceptions.Exit(exc.exit_code) from None

    def invoke(self, ctx: click.Context):
        try:
            with warnings.catch_warnings(), handling_signals():
                if not ctx.obj or not ctx.obj.get("verbose"):
                    warnings.simplefilter("ignore")
                result = super().invoke(ctx)
                sys.stdout.flush()
                raise_pending()
                return result
        except TtaError as exc:
            click.echo(f"Error: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except click.exceptions.NoArgsIsHelpError:
            raise
        except click.UsageError as exc:
            _usage_line(exc)
            ctx.exit(exc.exit_code)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except KeyboardInterrupt as exc:
            click.echo("Interrupted" if getattr(exc, "signum", 2) == 2 else "Terminated",
                       err=True)
            ctx.exit(getattr(exc, "exit_code", 130))
        except BrokenPipeError:
            _silence_stdout()
            ctx.exit(_EXIT_PIPE)
        except Exception as exc:  # a bug: say so in one line; details with --debug
            if is_out_of_memory(exc):
                click.echo(f"Error: {out_of_memory_error()}", err=True)
                ctx.exit(2)
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
@click.option("--max-input-gb", type=FiniteFloat(min=0, min_open=True), default=None,
              metavar="GIB", help="Size limit of the arrays one read may declare (default 16, "
                                  "or $TTA_MAX_INPUT_GB); larger files are refused unread.")
@click.pass_context
def cli(ctx: click.Context, verbose: bool, quiet: bool, debug: bool,
        max_input_gb: float | None) -> None:
    """tta: cross-sensor test-time adaptation for pansharpening.

    Scenes are given as FILE.h5 (PanCollection; FILE.h5#K picks sample K), FILE.mat
    (I_MS_LR / I_PAN), MS.tif+PAN.tif (GeoTIFFs; several MS files are stacked in order)
    or a YAML manifest.
    """
    from tta.allocator import retain_freed_memory
    from tta.io.safety import set_input_limit

    retain_freed_memory(respect_env=True)  # reuse freed tile buffers (tta.allocator)
    ctx.ensure_object(dict)
    ctx.obj.update(verbose=verbose, quiet=quiet, debug=debug)
    set_input_limit(max_input_gb)


def _register() -> None:
    from tta.cli import adapt, batch, bench, degrade, fuse, info, inspect, models, sensors, train
    from tta.cli import eval as eval_

    for module in (sensors, info, degrade, fuse, eval_, inspect, adapt, batch, models, train,
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
