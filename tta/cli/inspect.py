"""``tta inspect``: show where a model splits into feature extractor | channel mapper."""

from __future__ import annotations

import click

from tta.checks import MAX_BANDS


@click.command("inspect")
@click.option("--model", "-m", "model_spec", required=True, metavar="NAME|FILE",
              help="Architecture (with --weights or alone), NAME:SENSOR, or a checkpoint.")
@click.option("--weights", "-w", default=None, metavar="FILE", help="Checkpoint file.")
@click.option("--bands", type=click.IntRange(1, MAX_BANDS), default=None,
              help="Band count for an architecture without weights (default 8).")
@click.option("--interface", default=None, metavar="MODULE",
              help="Check this module as the interface instead of searching.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def command(model_spec: str, weights: str | None, bands: int | None, interface: str | None,
            as_json: bool) -> None:
    """Print the decomposition of a model: extractor, interface shape, mapper, parameters."""
    import json

    import pretrained
    from pretrained.loader import load_model
    from pretrained.spec import parse_model_spec
    from tta.decomposition import decompose
    from tta.errors import InputError

    spec = parse_model_spec(model_spec, weights)
    if spec.kind == "zoo" and spec.sensor is None:  # ARCH alone: the architecture
        model = pretrained.create_model(spec.arch, n_bands=bands or 8).eval()
        source = "random weights (architecture only)"
    else:
        model = load_model(spec)
        if bands is not None and getattr(model, "n_bands", bands) != bands:
            raise InputError(f"--bands {bands} but the checkpoint has {model.n_bands}")
        source = str(weights or model_spec)
    ratio = getattr(model, "ratio", None) or 4
    dec = decompose(model, ratio=ratio, interface=interface)
    info = dec.summary()
    info["source"] = source
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    click.echo(f"model        {info['model']} ({source})")
    click.echo(f"extractor    everything before {info['mapper']!r}: "
               f"{info['extractor_parameters']:,} parameters")
    click.echo(f"interface    features {tuple(info['interface_shape'])} on a "
               f"{tuple(info['output_shape'][-2:])} probe")
    click.echo(f"mapper       {info['mapper']}: {info['mapper_module']}, "
               f"{info['mapper_parameters']:,} parameters")
    click.echo(f"tail         {info['tail']} (output = mapper(features) + rest"
               + (")" if info["tail"] == "add" else " does not hold: whole-model training)"))
    click.echo(f"why          {info['reason']}")
    if len(info["candidates"]) > 1:
        click.echo("candidates   " + ", ".join(
            f"{c['name']} ({c['effect']}, in {c['in_shape'][1]}ch)" for c in info["candidates"]))
