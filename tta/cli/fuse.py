"""``tta fuse``: pansharpen a scene with a classical method, or with a saved adapter."""

from __future__ import annotations

import click

from tta.cli.options import check_outputs, dtype_option, output_option, run_options


@click.command("fuse")
@click.argument("scene")
@click.option("--method", "-m", default=None, metavar="NAME",
              help="Classical method: exp, bt-h, gsa, bdsd-pc, mtf-glp-fs, mtf-glp-hpm, awlp.")
@click.option("--adapter", "adapter_path", default=None, metavar="ADAPTER.pt",
              help="Apply an adapter saved by `tta adapt --save-adapter` (same sensor and "
                   "bands) instead of a classical method: no re-adaptation.")
@click.option("--weights", "-w", default=None, metavar="FILE",
              help="With --adapter: the network's checkpoint, if not at the recorded path.")
@output_option
@dtype_option
@click.option("--stream/--no-stream", default=None,
              help="Read by window and write by block (default: for GeoTIFF/h5 scenes over "
                   "4096² PAN px); each block's window (64-px halo) is fused with statistics "
                   "estimated on that window. A killed run resumes when rerun.")
@click.option("--block", type=click.IntRange(min=64), default=1024, show_default=True,
              help="Streamed output block side, PAN px.")
@run_options
@click.pass_context
def command(ctx: click.Context, scene: str, method: str | None, adapter_path: str | None,
            weights: str | None, output: str, dtype: str | None, stream: bool | None,
            block: int, sensor: str | None, bands: str | None, max_value: float | None,
            device: str, overwrite: bool) -> None:
    """Pansharpen SCENE with a classical method (-m) or a saved adapter (--adapter) and write
    OUT (.h5 or .tif).

    The h5 product holds the inputs and dataset `fused`, ready for `tta eval OUT`; the
    GeoTIFF holds the fused bands on the PAN grid with the scene's georeferencing.
    """
    import time

    from tta.device import resolve_device
    from tta.errors import InputError
    from tta.io import parse_spec, read_scene, write_fused, writer_for
    from tta.memory import guard_memory

    if (method is None) == (adapter_path is None):
        raise InputError("give either --method NAME (classical) or --adapter FILE.pt")
    if weights is not None and adapter_path is None:
        raise InputError("--weights applies to --adapter only")
    writer_for(output)  # a known format, before any work
    inputs = [*parse_spec(scene).files, *(p for p in (adapter_path, weights) if p)]
    if adapter_path is not None and weights is None:
        from tta.engine.reuse import read_adapter_file

        recorded = read_adapter_file(adapter_path)["meta"]["record"]["model"]["weights"]
        inputs += [recorded] if recorded else []
    check_outputs({"-o": output}, inputs, overwrite=overwrite)
    dev = resolve_device(device)
    from tta.cli import streaming

    if stream and (adapter_path is not None or bands is not None):
        raise InputError("--stream applies to --method without --bands")
    source = None
    if adapter_path is None and bands is None:
        source = streaming.wants_stream(stream, scene, sensor, max_value)
    if source is not None:
        import sys

        quiet = (ctx.find_root().obj or {}).get("quiet", False)
        info = streaming.run_fuse(source, method=method, out=output, dtype=dtype, block=block,
                                  inputs=[str(p) for p in inputs], target=scene, device=dev,
                                  overwrite=overwrite,
                                  progress=not quiet and sys.stderr.isatty())
        click.echo(f"wrote {output}: {method} on {source.source}, "
                   f"{'x'.join(map(str, source.shape))} in {info['seconds']:.2f} s on {dev}, "
                   f"streamed: {info['blocks']} blocks of {block} px ({info['resumed']} "
                   f"resumed), statistics per block window ({info['halo']}-px halo)")
        return
    dtype = dtype or "uint16"
    s = read_scene(scene, sensor=sensor, max_value=max_value, bands=bands)
    t0 = time.perf_counter()
    with guard_memory(s, dev):
        if adapter_path is None:
            from tta.classical import fuse_scene

            fused = fuse_scene(s, method, device=dev)
            what = method
        else:
            from tta.engine.reuse import fuse_with_adapter

            fused, info = fuse_with_adapter(s, adapter_path, weights=weights, device=dev)
            rec = info["record"]
            what = (f"{rec['model']['arch']} + {rec['adapter']['kind']} adapter "
                    f"({adapter_path}, adapted on {rec['adapted_on']}; "
                    f"{info['network']} network, input gain x{rec['radiometry']['gain']:.3g})")
            if info["bands"]["other_bands"]:
                click.echo(f"bands: the network fuses {','.join(info['bands']['fused_by_network'])}"
                           f"; {info['bands']['other_method']} fuses "
                           f"{','.join(info['bands']['other_bands'])}")
        elapsed = time.perf_counter() - t0
        write_fused(output, s, fused, dtype=dtype, overwrite=overwrite)
    click.echo(f"wrote {output}: {what} on {s.source}, {'x'.join(map(str, fused.shape))} "
               f"in {elapsed:.2f} s on {dev}")
