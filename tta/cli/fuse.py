"""``tta fuse``: pansharpen a scene with a classical method."""

from __future__ import annotations

import click

from tta.cli.options import (
    check_outputs,
    device_option,
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
@click.option("--dtype", type=click.Choice(["uint16", "float32"]), default=None,
              help="GeoTIFF sample type (default uint16; streamed: the input's, uint16 for "
                   "integer DN). h5 is always float32.")
@click.option("--stream/--no-stream", default=None,
              help="Read by window and write by block (default: for GeoTIFF/h5 scenes over "
                   "4096² PAN px); each block's window (64-px halo) is fused with statistics "
                   "estimated on that window. A killed run resumes when rerun.")
@click.option("--block", type=click.IntRange(min=64), default=1024, show_default=True,
              help="Streamed output block side, PAN px.")
@sensor_option
@max_value_option
@device_option
@overwrite_option
@click.pass_context
def command(ctx: click.Context, scene: str, method: str, output: str, dtype: str | None,
            stream: bool | None, block: int, sensor: str | None, max_value: float | None,
            device: str, overwrite: bool) -> None:
    """Pansharpen SCENE with a classical method and write OUT (.h5 or .tif).

    The h5 product holds the inputs and dataset `fused`, ready for `tta eval OUT`; the
    GeoTIFF holds the fused bands on the PAN grid with the scene's georeferencing.
    """
    import time

    from tta.classical import fuse_scene
    from tta.device import resolve_device
    from tta.errors import InputError
    from tta.io import parse_spec, read_scene, write_fused
    from tta.memory import guard_memory

    if not output.lower().endswith((".h5", ".hdf5", ".tif", ".tiff")):
        raise InputError(f"{output}: output must end in .h5 or .tif")
    check_outputs({"-o": output}, parse_spec(scene).files, overwrite=overwrite)
    dev = resolve_device(device)
    from tta.cli import streaming

    source = streaming.wants_stream(stream, scene, sensor, max_value)
    if source is not None:
        import sys

        quiet = (ctx.find_root().obj or {}).get("quiet", False)
        info = streaming.run_fuse(source, method=method, out=output, dtype=dtype, block=block,
                                  inputs=[str(p) for p in parse_spec(scene).files],
                                  target=scene, device=dev, overwrite=overwrite,
                                  progress=not quiet and sys.stderr.isatty())
        click.echo(f"wrote {output}: {method} on {source.source}, "
                   f"{'x'.join(map(str, source.shape))} in {info['seconds']:.2f} s on {dev}, "
                   f"streamed: {info['blocks']} blocks of {block} px ({info['resumed']} "
                   f"resumed), statistics per block window ({info['halo']}-px halo)")
        return
    dtype = dtype or "uint16"
    s = read_scene(scene, sensor=sensor, max_value=max_value)
    t0 = time.perf_counter()
    with guard_memory(s, dev):
        fused = fuse_scene(s, method, device=dev)
        elapsed = time.perf_counter() - t0
        write_fused(output, s, fused, dtype=dtype, overwrite=overwrite)
    click.echo(f"wrote {output}: {method} on {s.source}, {'x'.join(map(str, fused.shape))} "
               f"in {elapsed:.2f} s on {dev}")
