"""``tta degrade``: Wald-protocol reduced-resolution copy of a scene."""

from __future__ import annotations

import click

from tta.cli.options import check_outputs, output_option, overwrite_option, progress, scene_options


@click.command("degrade")
@click.argument("scene")
@output_option
@scene_options
@overwrite_option
@click.pass_context
def command(
    ctx: click.Context,
    scene: str,
    output: str,
    sensor: str | None,
    bands: str | None,
    max_value: float | None,
    overwrite: bool,
) -> None:
    """Degrade SCENE by the Wald protocol and write a reduced-resolution h5 (-o RR.h5).

    MS: sensor-MTF Gaussian filter then decimation by the ratio; PAN: antialiased bicubic
    reduction; the original MS becomes the reference `gt`. Every sample of a multi-sample h5
    file is degraded unless SCENE names one (FILE.h5#K).
    """
    from tta.errors import InputError
    from tta.io import count_scenes, iter_scenes, parse_spec, write_h5
    from tta.memory import guard_memory
    from tta.physics import degrade_scene

    if not output.lower().endswith((".h5", ".hdf5")):
        raise InputError(f"{output}: reduced-resolution output must be an .h5 file")
    check_outputs({"-o": output}, parse_spec(scene).files, overwrite=overwrite)
    total = count_scenes(scene)
    degraded = []
    bar = progress(ctx, total=total, desc="degrade", unit="scene")
    with bar:
        for s in iter_scenes(scene, sensor=sensor, max_value=max_value, bands=bands):
            with guard_memory(s):
                degraded.append(degrade_scene(s))
            bar.update()
    with guard_memory(degraded[0]):
        write_h5(output, degraded, overwrite=overwrite,
                 notes=f"Wald-protocol degradation of {scene} by tta degrade")
    first = degraded[0]
    click.echo(
        f"wrote {output}: {len(degraded)} sample(s), MS {'x'.join(map(str, first.ms.shape))}, "
        f"PAN {'x'.join(map(str, first.pan.shape))}, gt {'x'.join(map(str, first.gt.shape))}"
    )
