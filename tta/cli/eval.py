"""``tta eval``: score a fused product with the reduced- and full-resolution indexes."""

from __future__ import annotations

import click

from tta.cli.options import FiniteFloat, check_outputs, run_options
from tta.evaluation import BETTER, FR_KEYS, RR_KEYS


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
@click.option("--stream/--no-stream", default=None,
              help="Score by windows without reading the whole product (default: for scenes "
                   "over 4096² PAN px).")
@click.option("--windows", type=click.IntRange(min=0), default=None,
              help="Windows scored when streaming: 0 = all (block-wise), N = a seeded sample "
                   "of N (default 64).")
@click.option("--window-side", type=click.IntRange(min=32), default=512, show_default=True,
              help="Window side when streaming, PAN px.")
@click.option("--scale", type=FiniteFloat(min=0, min_open=True), default=None,
              help="Multiply FUSED's values by this to get DN (default: detect a product "
                   "scaled to 0-1 and multiply it by the scene's max value; say so).")
@run_options
def command(fused: str, scene_spec: str | None, protocol: str, json_out: str | None,
            stream: bool | None, windows: int | None, window_side: int,
            scale: float | None, sensor: str | None, bands: str | None,
            max_value: float | None, device: str, overwrite: bool) -> None:
    """Score FUSED against its scene: a tta .h5 product, or any tool's product (a bare h5
    with dataset `fused` (N,C,H,W)/(C,H,W)/(H,W,C), a MATLAB file with `I_Fus`/`fused`, a
    GeoTIFF) with --scene SCENE.

    Reduced resolution (toolbox conventions, 21-pixel border cut): Q2n, Q, SAM, ERGAS, SCC,
    PSNR. Full resolution, both families (they can disagree): HQNR, D_lambda_K, D_s, QNR,
    D_lambda and the reprojection indexes R-Q2n, R-Q, R-SAM, R-ERGAS, D_rho.
    """
    from tta.errors import InputError
    from tta.io import parse_spec, read_scene
    from tta.io.product import conform_product, read_product, write_json
    from tta.memory import guard_memory

    inputs = [fused.split("#")[0], *(parse_spec(scene_spec).files if scene_spec else ())]
    check_outputs({"--json": json_out}, inputs, overwrite=overwrite)
    if stream and (scale is not None or bands is not None):
        raise InputError("--stream scores DN products in the scene's band order: drop --scale "
                         "and --bands")
    if stream is not False and scale is None and bands is None:
        from tta.cli.streaming import wants_stream

        is_tif = fused.lower().endswith((".tif", ".tiff"))
        spec = scene_spec or (None if is_tif else fused)  # an h5 product holds its inputs
        try:
            src = wants_stream(stream, spec, sensor, max_value) if spec else None
        except InputError:
            if stream:
                raise
            src = None  # not a windowed scene (e.g. a bare product): the whole path says why
        if src is not None:
            _eval_windows(fused, src, protocol, device, windows, window_side, json_out,
                          inputs, overwrite)
            return
    product = read_product(fused, sensor=sensor, bands=None if scene_spec else bands)
    stored = product.scene
    scene = (read_scene(scene_spec, sensor=sensor, max_value=max_value, bands=bands)
             if scene_spec else stored)
    if scene is None:
        raise InputError(f"{fused}: this product ({product.origin}) carries no inputs; give "
                         "--scene SCENE")
    if max_value is not None and not scene_spec:
        scene = scene.with_(max_value=max_value)
    if stored is not None and scale is None:
        image, note = conform_product(product.data, scene, scale=1.0, source=fused)
        note = "values in DN (tta product)"
    else:
        image, note = conform_product(product.data, scene, scale=scale, source=fused)
    from tta.evaluation import evaluate

    with guard_memory(scene, None if device == "auto" else device):
        scores = evaluate(scene, image, protocol, device)
    click.echo(f"{fused} ({scene.sensor.name}, scene {scene.source}; {product.origin}, "
               f"{note})")
    click.echo(format_scores(scores))
    if json_out:
        write_json(json_out, {"fused": fused, "scene": scene.source,
                              "product": {"origin": product.origin, "scale": note}, **scores},
                   [*inputs, *scene.meta.get("files", [])], overwrite=overwrite)


def _eval_windows(fused: str, src, protocol: str, device: str, windows: int | None,
                  side: int, json_out: str | None, inputs: list, overwrite: bool) -> None:
    """``tta eval`` by windows (:mod:`tta.evaluation_windows`)."""
    from tta.evaluation_windows import describe, evaluate_windows
    from tta.io.product import ProductWindows, write_json

    count = 64 if windows is None else (None if windows == 0 else windows)
    scores, info = evaluate_windows(src, ProductWindows(fused), protocol, device, side=side,
                                    count=count)
    click.echo(f"{fused} ({src.sensor.name}, scene {src.source})")
    click.echo(describe(info))
    click.echo(format_scores(scores))
    if json_out:
        write_json(json_out, {"fused": fused, "scene": src.source, "windows": info, **scores},
                   [*inputs, *src.meta.get("files", [])], overwrite=overwrite)
