"""``tta eval``: score a fused product with the reduced- and full-resolution indexes."""

from __future__ import annotations

import click

from tta.cli.options import device_option, max_value_option, sensor_option

RR_KEYS = ("Q2n", "Q", "SAM", "ERGAS", "SCC", "PSNR")
FR_KEYS = ("HQNR", "D_lambda_K", "D_s", "QNR", "D_lambda", "R-Q2n", "R-Q", "R-SAM", "R-ERGAS",
           "D_rho")
#: Which way is better, shown next to each index.
BETTER = {"Q2n": "up", "Q": "up", "SAM": "down", "ERGAS": "down", "SCC": "up", "PSNR": "up",
          "HQNR": "up", "D_lambda_K": "down", "D_s": "down", "QNR": "up", "D_lambda": "down",
          "R-Q2n": "up", "R-Q": "up", "R-SAM": "down", "R-ERGAS": "down", "D_rho": "down"}


def score(scene, fused, protocol: str, device: str = "auto") -> dict[str, dict[str, float]]:
    """Scores of a fused ``(C, H, W)`` DN array for a scene: ``{"rr": {...}, "fr": {...}}``.

    ``protocol`` is ``rr`` (needs ``scene.gt``), ``fr`` or ``both``; ``auto`` means ``rr``
    for scenes with a reference and ``fr`` otherwise. The FR indexes of a reduced-resolution
    scene are computed on its (degraded) MS/PAN inputs.
    """
    import torch

    from tta.device import resolve_device
    from tta.errors import InputError
    from tta.metrics import fr_metrics, rr_metrics

    if protocol == "auto":
        protocol = "rr" if scene.is_reduced else "fr"
    if protocol in ("rr", "both") and not scene.is_reduced:
        raise InputError(f"{scene.source}: no reference 'gt' for the reduced-resolution "
                         "protocol; use --protocol fr (or degrade the scene first)")
    if tuple(fused.shape) != scene.shape:
        raise InputError(f"fused product {tuple(fused.shape)} does not match the scene "
                         f"{scene.shape}")
    dev = resolve_device(device)

    def t(a):
        return torch.as_tensor(a, dtype=torch.float64, device=dev)

    out: dict[str, dict[str, float]] = {}
    with torch.inference_mode():
        f = t(fused)
        if protocol in ("rr", "both"):
            out["rr"] = rr_metrics(t(scene.gt), f, scene.ratio, scene.max_value)
        if protocol in ("fr", "both"):
            out["fr"] = fr_metrics(t(scene.ms), t(scene.pan)[None], f, scene.sensor,
                                   scene.max_value)
    return out


def format_scores(scores: dict[str, dict[str, float]]) -> str:
    lines = []
    titles = {"rr": "reduced resolution (vs gt)", "fr": "full resolution (no reference)"}
    for family, values in scores.items():
        lines.append(titles[family])
        for key in RR_KEYS if family == "rr" else FR_KEYS:
            arrow = "(higher is better)" if BETTER[key] == "up" else "(lower is better)"
            lines.append(f"  {key:11s} {values[key]:10.4f}  {arrow}")
    return "\n".join(lines)


@click.command("eval")
@click.argument("fused")
@click.option("--scene", "scene_spec", default=None, metavar="SCENE",
              help="Inputs (and gt) of FUSED; default: the scene stored in an h5 product.")
@click.option("--protocol", type=click.Choice(["auto", "rr", "fr", "both"]), default="auto",
              show_default=True, help="rr needs a reference gt; auto picks rr when present.")
@click.option("--json", "json_out", default=None, metavar="OUT.json",
              help="Also write the scores as JSON.")
@sensor_option
@max_value_option
@device_option
def command(fused: str, scene_spec: str | None, protocol: str, json_out: str | None,
            sensor: str | None, max_value: float | None, device: str) -> None:
    """Score FUSED (a tta .h5 product or a .tif) against its scene.

    Reduced resolution (toolbox conventions, 21-pixel border cut): Q2n, Q, SAM, ERGAS, SCC,
    PSNR. Full resolution, both families (they can disagree): HQNR, D_lambda_K, D_s, QNR,
    D_lambda and the reprojection indexes R-Q2n, R-Q, R-SAM, R-ERGAS, D_rho.
    """
    from tta.errors import InputError
    from tta.io import read_scene
    from tta.io.product import read_fused, write_json

    image, stored = read_fused(fused, sensor=sensor)
    scene = (read_scene(scene_spec, sensor=sensor, max_value=max_value) if scene_spec
             else stored)
    if scene is None:
        raise InputError(f"{fused}: a GeoTIFF product carries no inputs; give --scene SCENE")
    if max_value is not None and not scene_spec:
        scene = scene.with_(max_value=max_value)
    scores = score(scene, image, protocol, device)
    click.echo(f"{fused} ({scene.sensor.name}, scene {scene.source})")
    click.echo(format_scores(scores))
    if json_out:
        inputs = [fused, *(scene.meta.get("files", []))]
        write_json(json_out, {"fused": fused, "scene": scene.source, **scores}, inputs)
