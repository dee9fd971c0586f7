"""``tta models``: the registered architectures and the one set of known weights (DLPan-Toolbox
checkpoints and our shipped zoo, :func:`pretrained.list_weights`)."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import click

from tta.checks import MAX_BANDS

#: How each record origin is named in the table.
ORIGINS = {"dlpan": "DLPan-Toolbox", "zoo": "shipped zoo"}


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


def _weights() -> list[dict[str, Any]]:
    """Every weights record as a dict, with ``path`` (the shipped file, or None: DLPan files
    are not shipped) and, for zoo records, the card's ``stage`` and ``held_out`` scores."""
    import pretrained
    from pretrained.spec import CARDS_DIR, WEIGHTS_DIR
    from pretrained.zoo import read_card

    rows = []
    for rec in pretrained.list_weights():
        row = dataclasses.asdict(rec)
        row["bands"] = list(rec.bands)
        path = WEIGHTS_DIR / rec.file if rec.origin == "zoo" else None
        row["path"] = str(path) if path is not None and path.is_file() else None
        if rec.card and (CARDS_DIR / rec.card).is_file():
            card = read_card(CARDS_DIR / rec.card)
            row["stage"] = card.get("stage")
            row["held_out"] = card.get("held_out")
        rows.append(row)
    return rows


def _weights_line(row: dict[str, Any]) -> str:
    held = row.get("held_out") if isinstance(row.get("held_out"), dict) else None
    if row["origin"] == "zoo":
        state = ("" if row["path"] else "  [card only: weights file missing]")
        note = (f"{row.get('stage') or '?'}, held out Q2n {held.get('Q2n', float('nan')):.4f}"
                if held else f"{row.get('stage') or '?'}, no held-out score")
        zoo_name = f"{row['arch']}_{row['sensor'].lower()}.safetensors"
        use = (f"--model {row['arch']}:{row['sensor'].lower()}" if row["file"] == zoo_name
               else f"--model pretrained/weights/{row['file']}")
    else:
        state, note, use = "", row["licence"], f"--model {row['arch']} --weights FILE"
    origin = ORIGINS.get(row["origin"], row["origin"])
    return (f"  {row['file']:<34} {row['arch']:<18} {row['sensor']:<6} {len(row['bands']):>5}  "
            f"{origin:<13} {row['training_data'][:40]:<40}  {note}; {use}{state}")


@click.command("models")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@click.option("--bands", type=click.IntRange(1, MAX_BANDS), default=8, show_default=True,
              help="Band count for the parameter counts.")
def command(as_json: bool, bands: int) -> None:
    """List the registered architectures (parameter counts) and the known weights.

    One table of weights records: the DLPan-Toolbox checkpoints (not shipped; pass the file
    with --model ARCH --weights FILE) and our shipped zoo (pretrained/weights, cards in
    pretrained/cards; load with --model ARCH[:SENSOR] and no --weights).
    """
    archs = _architectures(bands)
    weights = _weights()
    if as_json:
        click.echo(json.dumps({"architectures": archs, "weights": weights}, indent=2,
                              default=str))
        return
    click.echo(f"architectures ({len(archs)}; parameters at {bands} bands)")
    click.echo(f"  {'name':<18} {'parameters':>10}  {'channel mapper':<16} known weights")
    for a in archs:
        click.echo(f"  {a['name']:<18} {a['parameters']:>10,}  {a['channel_mapper']:<16} "
                   f"{a['known_checkpoints'] or '-'}")
    counts = ", ".join(f"{sum(1 for w in weights if w['origin'] == o)} {name}"
                       for o, name in ORIGINS.items())
    click.echo(f"weights ({len(weights)}: {counts})")
    click.echo(f"  {'file':<34} {'arch':<18} {'sensor':<6} {'bands':>5}  {'source':<13} "
               f"{'training data':<40}  notes; use")
    for row in weights:
        click.echo(_weights_line(row))
