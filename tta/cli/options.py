"""Options shared by several subcommands, defined once."""

from __future__ import annotations

import click

sensor_option = click.option(
    "--sensor",
    metavar="NAME|FILE.yaml",
    default=None,
    help="Sensor preset (see `tta sensors`) or a YAML sensor file; overrides the file's.",
)
max_value_option = click.option(
    "--max-value",
    type=click.FloatRange(min=0, min_open=True),
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
overwrite_option = click.option(
    "--overwrite", is_flag=True, help="Replace OUT if it exists (inputs are never replaced)."
)


def progress(ctx: click.Context, **kwargs):
    """A tqdm bar on stderr: off with -q, and off when stderr is not a terminal."""
    from tqdm import tqdm

    quiet = (ctx.find_root().obj or {}).get("quiet", False)
    return tqdm(disable=True if quiet else None, **kwargs)

device_option = click.option(
    "--device",
    default="auto",
    show_default=True,
    metavar="auto|cpu|cuda[:N]",
    help="Torch device; auto uses CUDA when present.",
)
