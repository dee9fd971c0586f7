"""``tta info``: describe a scene file."""

from __future__ import annotations

import json

import click

from tta.cli.options import scene_options


def _fmt_range(r: list[float] | None) -> str:
    return "-" if r is None else f"{r[0]:g}..{r[1]:g}"


def _describe(summary: dict) -> str:
    lines = [
        f"{summary['source']}",
        f"  sensor      {summary['sensor']} (ratio {summary['ratio']}, max value "
        f"{summary['max_value']:g})",
        f"  bands       {', '.join(summary['bands'])}"
        + (f" ({len(summary['bands'])} of the sensor's {len(summary['sensor_bands'])}; MTF "
           f"gains {', '.join(f'{g:g}' for g in summary['mtf_ms'])})"
           if len(summary["bands"]) != len(summary["sensor_bands"]) else ""),
        f"  resolution  {summary['resolution']}",
        f"  MS          {'x'.join(map(str, summary['ms_shape']))}  DN "
        f"{_fmt_range(summary['ms_range'])}",
        f"  PAN         {'x'.join(map(str, summary['pan_shape']))}  DN "
        f"{_fmt_range(summary['pan_range'])}",
    ]
    if summary["gt_shape"]:
        lines.append(f"  GT          {'x'.join(map(str, summary['gt_shape']))}  DN "
                     f"{_fmt_range(summary['gt_range'])}")
    lines.append(f"  nodata      {100 * summary['nodata_fraction']:.2f}% of PAN pixels")
    if summary["crs"]:
        crs = summary["crs"]
        crs = crs if len(crs) < 60 else crs[:57] + "..."
        t = summary["transform"]
        lines.append(f"  CRS         {crs}")
        lines.append(f"  PAN grid    origin ({t[2]:.10g}, {t[5]:.10g}), pixel ({t[0]:.6g}, "
                     f"{t[4]:.6g})")
    else:
        lines.append("  georef      none")
    if "pan_offset_px" in summary:
        dy, dx = summary["pan_offset_px"]
        lines.append(f"  alignment   PAN/MS grids offset by ({dy:+.3g}, {dx:+.3g}) PAN px")
    return "\n".join(lines)


@click.command("info")
@click.argument("scene")
@scene_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def command(scene: str, sensor: str | None, bands: str | None, max_value: float | None,
            as_json: bool) -> None:
    """Describe SCENE: shapes, sensor, DN ranges, nodata share, georeferencing.

    Every sample of a multi-sample h5 file is listed unless SCENE names one (FILE.h5#K).
    """
    from tta.io import iter_scenes

    out = []
    for s in iter_scenes(scene, sensor=sensor, max_value=max_value, bands=bands):
        summary = s.summary()
        if "pan_offset_px" in s.meta:
            summary["pan_offset_px"] = [float(v) for v in s.meta["pan_offset_px"]]
        out.append(summary)
        if not as_json:
            click.echo(_describe(summary))
    if as_json:
        click.echo(json.dumps(out if len(out) > 1 else out[0], indent=2))
