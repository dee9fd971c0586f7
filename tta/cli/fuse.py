"""``tta fuse``: pansharpen a scene with a classical method."""

from __future__ import annotations

import click

from tta.cli.options import (
    check_outputs,
    device_option,
    dtype_option,
    max_value_option,
    output_option,
    overwrite_option,
    sensor_option,
)


@click.command("fuse")
@click.argument("scene")
@click.option("--method", "-m", required=True, metavar="NAME",
              help="Classical method: exp, bt-h, gsa, bdsd-pc, mtf-glp-fs, mtf-glp-hpm, awlp.")
@output_option
@dtype_option
@sensor_option
@max_value_option
@device_option
@overwrite_option
def command(scene: str, method: str, output: str, dtype: str, sensor: str | None,
            max_value: float | None, device: str, overwrite: bool) -> None:
    """Pansharpen SCENE with a classical method and write OUT (.h5 or .tif).

    The h5 product holds the inputs and dataset `fused`, ready for `tta eval OUT`; the
    GeoTIFF holds the fused bands on the PAN grid with the scene's georeferencing.
    """
    import time

    from tta.classical import fuse_scene
    from tta.device import resolve_device
    from tta.io import parse_spec, read_scene, write_fused, writer_for
    from tta.memory import guard_memory

    writer_for(output)  # a known format, before any work
    check_outputs({"-o": output}, parse_spec(scene).files, overwrite=overwrite)
    dev = resolve_device(device)
    s = read_scene(scene, sensor=sensor, max_value=max_value)
    t0 = time.perf_counter()
    with guard_memory(s, dev):
        fused = fuse_scene(s, method, device=dev)
        elapsed = time.perf_counter() - t0
        write_fused(output, s, fused, dtype=dtype, overwrite=overwrite)
    click.echo(f"wrote {output}: {method} on {s.source}, {'x'.join(map(str, fused.shape))} "
               f"in {elapsed:.2f} s on {dev}")
