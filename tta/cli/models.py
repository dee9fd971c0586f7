"""``tta models``: the registered architectures and our shipped weights."""

from __future__ import annotations

import json
from typing import Any

import click

from tta.checks import MAX_BANDS


def _architectures(n_bands: int) -> list[dict[str, Any]]:
    import pretrained

    rows = []
    for name in pretrained.list_models():
        model = pretrained.create_model(name, n_bands=n_bands)
        rows.append({
            "name": name,
            "class": type(model).__name__,
            "parameters": sum(p.numel() for p in model.parameters()),
            "channel_mapper": (model.channel_mappers or ("",))[0],
            "adds_lms": bool(model.adds_lms),
            "uses": list(model.uses),
            "known_checkpoints": len(pretrained.list_weights(name)),
        })
    return rows


def _weights_line(card: dict[str, Any]) -> str:
    training = card.get("training") if isinstance(card.get("training"), dict) else {}
    files = [d.get("file", "?") if isinstance(d, dict) else str(d)
             for d in training.get("data") or []]
    held = card.get("held_out") if isinstance(card.get("held_out"), dict) else None
    scores = (f"held out Q2n {held.get('Q2n', float('nan')):.4f} "
              f"SAM {held.get('SAM', float('nan')):.3f} "
              f"ERGAS {held.get('ERGAS', float('nan')):.3f}" if held else "no held-out score")
    state = "" if card.get("weights_present") else "  [card only: weights file missing]"
    params = card.get("parameters")
    return (f"  {card['name']:<28} {card.get('arch', '?'):<18} {card.get('sensor', '?'):<6} "
            f"{params if params is not None else '?':>9}  {card.get('stage', '?'):<8} "
            f"epochs {training.get('epochs', '?')}, data {', '.join(files) or '?'}; "
            f"{scores}{state}")


@click.command("models")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@click.option("--bands", type=click.IntRange(1, MAX_BANDS), default=8, show_default=True,
              help="Band count for the parameter counts.")
def command(as_json: bool, bands: int) -> None:
    """List the registered architectures (parameter counts) and our shipped weights.

    Shipped weights live in pretrained/weights as ARCH_SENSOR.safetensors with a model card
    (pretrained/cards); load them with --model ARCH[:SENSOR] and no --weights.
    """
    import pretrained

    archs = _architectures(bands)
    zoo = pretrained.list_zoo()
    if as_json:
        click.echo(json.dumps({"architectures": archs, "weights": zoo}, indent=2,
                              default=str))
        return
    click.echo(f"architectures ({len(archs)}; parameters at {bands} bands)")
    click.echo(f"  {'name':<18} {'parameters':>10}  {'channel mapper':<16} checkpoints")
    for a in archs:
        known = f"{a['known_checkpoints']} DLPan" if a["known_checkpoints"] else "-"
        click.echo(f"  {a['name']:<18} {a['parameters']:>10,}  {a['channel_mapper']:<16} "
                   f"{known}")
    click.echo(f"shipped weights ({sum(1 for c in zoo if c.get('weights_present'))})")
    if not zoo:
        click.echo("  none yet: train them with `tta train --out pretrained/weights "
                   "--cards pretrained/cards`")
    for card in zoo:
        click.echo(_weights_line(card))
