"""Options and helpers shared by several subcommands, defined once."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from pathlib import Path

import click

from tta.checks import MAX_LR, MAX_SEED
from tta.registry import Registry


class FiniteFloat(click.FloatRange):
    """A :class:`click.FloatRange` that also refuses NaN and infinity."""

    name = "finite float"

    def convert(self, value, param, ctx):
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return number


class RegistryChoice(click.Choice):
    """A :class:`click.Choice` of a :class:`tta.registry.Registry`'s names at the time of use,
    so entries registered after the CLI was imported are offered too.

    Args:
        where: ``"module:NAME"`` of the registry (or of a tuple of names), imported on first
            use so that ``tta --help`` does not load torch.
    """

    def __init__(self, where: str) -> None:
        self.where = where
        super().__init__(())

    @property
    def choices(self) -> tuple[str, ...]:
        import importlib

        module, _, name = self.where.partition(":")
        entries = getattr(importlib.import_module(module), name)
        names = entries.names() if isinstance(entries, Registry) else entries
        return tuple(n for n in names if n is not None)

    @choices.setter
    def choices(self, _value: object) -> None:  # click's __init__ assigns; the registry rules
        pass


seed_type = click.IntRange(0, MAX_SEED)

sensor_option = click.option(
    "--sensor",
    metavar="NAME|FILE.yaml",
    default=None,
    help="Sensor preset (see `tta sensors`) or a YAML sensor file; overrides the file's.",
)
bands_option = click.option(
    "--bands",
    metavar="B1,B2,...",
    default=None,
    help="MS band names in channel order (e.g. blue,green,red,nir); overrides the file's. "
         "A subset of the sensor's bands gets the sensor restricted to them.",
)
max_value_option = click.option(
    "--max-value",
    type=FiniteFloat(min=0, min_open=True),
    default=None,
    help="DN scale of the data; overrides the file's and the sensor's nominal value.",
)
output_option = click.option(
    "-o",
    "--output",
    "output",
    required=True,
    metavar="OUT",
    help="Output file (written atomically; never an input file).",
)
dtype_option = click.option(
    "--dtype", type=click.Choice(["uint16", "float32"]), default="uint16", show_default=True,
    help="GeoTIFF sample type of a fused product (h5 is always float32).")
overwrite_option = click.option(
    "--overwrite", is_flag=True, help="Replace OUT if it exists (inputs are never replaced)."
)

device_option = click.option(
    "--device",
    default="auto",
    show_default=True,
    metavar="auto|cpu|cuda[:N]",
    help="Torch device; auto uses CUDA when present.",
)


#: The adaptation settings of ``tta adapt`` and ``tta batch`` (fields of ``AdaptConfig``).
_ADAPTATION_OPTIONS = (
    click.option("--adapter", "-a", type=RegistryChoice("adapters:ADAPTERS"), default=None,
                 help="What adapts (default ft)."),
    click.option("--sampler", type=RegistryChoice("tta.sampling:SAMPLERS"), default=None,
                 help="Patch selection (default swift)."),
    click.option("--fraction", type=FiniteFloat(0, 1, min_open=True), default=None,
                 help="Share of patches to train on (default 0.03)."),
    click.option("--steps", type=click.IntRange(min=0), default=None, help="Optimiser steps."),
    click.option("--lr", type=FiniteFloat(0, MAX_LR, min_open=True), default=None,
                 help="Learning rate (default per adapter). A run whose loss diverges falls "
                      "back to the direct network and says so."),
    click.option("--patch", type=click.IntRange(min=8), default=None,
                 help="Training patch side, PAN pixels."),
    click.option("--seed", type=seed_type, default=None, help="Seed (default 0)."),
    click.option("--config", "config_path", default=None, metavar="CFG.yaml",
                 help="YAML of adaptation settings; options given here override it."),
    click.option("--interface", default=None, metavar="MODULE",
                 help="Module to adapt at (overrides the automatic decomposition)."),
)


def _add(command, options):
    """Add ``options`` to ``command`` in their order of ``--help``."""
    for option in reversed(options):
        command = option(command)
    return command


def adaptation_options(command):
    """Add ``--adapter --sampler --fraction --steps --lr --patch --seed --config
    --interface`` to a command, in that order of ``--help``."""
    return _add(command, _ADAPTATION_OPTIONS)


def scene_options(command):
    """Add ``--sensor --bands --max-value`` (what overrides a scene file's description)."""
    return _add(command, (sensor_option, bands_option, max_value_option))


def run_options(command):
    """Add :func:`scene_options`, ``--device`` and ``--overwrite``: the closing options of the
    commands that run a network and write an output (adapt, batch, fuse, eval)."""
    return _add(command, (scene_options, device_option, overwrite_option))


def progress(ctx: click.Context, **kwargs):
    """A tqdm bar on stderr: off with -q, and off when stderr is not a terminal."""
    from tqdm import tqdm

    quiet = (ctx.find_root().obj or {}).get("quiet", False)
    return tqdm(disable=True if quiet else None, **kwargs)



def check_outputs(
    files: Mapping[str, str | Path | None],
    inputs: Iterable[str | Path] = (),
    *,
    overwrite: bool = False,
    folders: Mapping[str, str | Path | None] | None = None,
) -> None:
    """Check every output of a command before any work (:func:`tta.io.atomic.plan_outputs`);
    say on stderr which temporary files of killed runs were removed."""
    from tta.io.atomic import plan_outputs

    plan = plan_outputs(files, inputs, overwrite=overwrite, folders=folders)
    for path in plan.stale:
        click.echo(f"removed {path}, a temporary file left by a killed run", err=True)
