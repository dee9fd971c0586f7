"""``tta sensors``: list the sensor presets."""

from __future__ import annotations

import click
import yaml


@click.command("sensors")
@click.argument("name", required=False)
def command(name: str | None) -> None:
    """List sensor presets, or print one (NAME or FILE.yaml) as YAML."""
    from dataclasses import asdict

    from tta.sensors import get_sensor, list_sensors

    if name:
        data = asdict(get_sensor(name))
        data = {k: list(v) if isinstance(v, tuple) else v for k, v in data.items()}
        data["layouts"] = {n: list(b) for n, b in data["layouts"].items()}
        if not data["subset_of"]:
            del data["subset_of"]
        click.echo(yaml.safe_dump(data, sort_keys=False).rstrip())
        return
    rows = [("name", "bands", "ratio", "bits", "max", "MTF MS (Nyquist)", "MTF PAN")]
    for s in list_sensors():
        gains = sorted(set(s.mtf_ms))
        ms = f"{gains[0]:g}" if len(gains) == 1 else f"{gains[0]:g}..{gains[-1]:g}"
        rows.append((s.name, str(s.n_bands), str(s.ratio), str(s.bit_depth),
                     f"{s.max_value:g}", ms, f"{s.mtf_pan:g}"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        click.echo("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    click.echo("\nDetails: tta sensors NAME. Own sensor: a YAML file with the same keys.")
