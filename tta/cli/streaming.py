"""The streamed path of ``tta adapt``: scenes read by window, products written by block.

``tta adapt`` takes it for GeoTIFF pairs and HDF5 scenes larger than :data:`STREAM_PIXELS`
PAN pixels (or with ``--stream``); see :mod:`tta.engine.stream` for what is read and
:mod:`tta.io.blocks` for how the product is written and resumed.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import click

__all__ = ["STREAM_PIXELS", "output_dtype", "output_nodata", "run_adapt", "run_fuse",
           "wants_stream"]

#: Scenes with more PAN pixels than this (4096²) are streamed by default.
STREAM_PIXELS = 4096 * 4096


def wants_stream(stream: bool | None, target: str, sensor: str | None,
                 max_value: float | None) -> Any:
    """The opened :class:`~tta.io.source.SceneSource` when the scene is to be streamed, else
    None (``stream``: True forces it, False refuses it, None decides by size)."""
    from tta.errors import InputError
    from tta.io import parse_spec
    from tta.io.source import open_source

    if stream is False:
        return None
    kind = parse_spec(target).kind
    if kind == "mat":
        if stream:
            raise InputError(f"{target}: --stream needs a GeoTIFF pair or an HDF5 scene")
        return None
    src = open_source(target, sensor=sensor, max_value=max_value)
    return src if stream or src.pixels > STREAM_PIXELS else None


def output_dtype(requested: str | None, src: Any) -> str:
    """The product's sample type: the one asked for, else uint16 for integer inputs and
    float32 otherwise."""
    import numpy as np

    if requested:
        return requested
    return "uint16" if np.issubdtype(np.dtype(src.dtype), np.integer) else "float32"


def output_nodata(src: Any, dtype: str) -> float | None:
    """The input's nodata value when the product's dtype can hold it, 0 when it cannot, None
    when the input declares none."""
    value = src.nodata_value
    if value is None:
        return None
    if dtype == "uint16":
        ok = math.isfinite(value) and value == int(value) and 0 <= value <= 65535
        return float(value) if ok else 0.0
    return float(value)


def _finish(store: Any, src: Any, out: str, inputs: list[str], dtype: str,
            overwrite: bool, notes: str) -> None:
    """Write the finished product (COG or h5) from the store; the store is closed."""
    try:
        if Path(out).suffix.lower() in (".h5", ".hdf5"):
            attrs = {"sensor": src.sensor.name, "ratio": src.ratio,
                     "bit_depth": src.sensor.bit_depth, "max_value": src.max_value,
                     "bands": ",".join(src.band_names), "resolution": "full",
                     "source": src.source, "notes": notes}
            if src.transform is not None:
                attrs["transform"] = list(src.transform)[:6]
                attrs["crs"] = src.crs
            store.finish_h5(inputs, read_window=src.read, attrs=attrs, ms_size=src.ms_size,
                            ratio=src.ratio, overwrite=overwrite)
        else:
            store.finish_cog(inputs, transform=src.transform, crs=src.crs,
                             bands=src.band_names, nodata=output_nodata(src, dtype),
                             overwrite=overwrite)
    finally:
        store.close()


def run_fuse(src: Any, *, method: str, out: str, dtype: str | None, block: int,
             inputs: list[str], target: str, device: Any, overwrite: bool,
             progress: bool) -> dict[str, Any]:
    """``tta fuse`` by blocks (:func:`tta.engine.stream.map_blocks` with
    :func:`tta.classical.fuse_scene`); returns the block statistics."""
    from tta import __version__
    from tta.classical import fuse_scene
    from tta.engine.stream import map_blocks
    from tta.io.blocks import BlockStore, resume_key

    dtype = "float32" if Path(out).suffix.lower() in (".h5", ".hdf5") else \
        output_dtype(dtype, src)
    key = resume_key(inputs, {"method": method, "target": target, "block": block,
                              "dtype": dtype, "out": out, "version": __version__})
    store = BlockStore(out, key, src.shape, dtype, method).open()
    for p in store.discarded:
        click.echo(f"removed {p}, left by a run with other inputs or options", err=True)
    try:
        info = map_blocks(lambda s: fuse_scene(s, method, device=device), src, store,
                          block=block, progress=progress)
    except BaseException:
        store.close()
        raise
    _finish(store, src, out, inputs, dtype, overwrite, f"streamed product (tta fuse {method})")
    return info


def run_adapt(src: Any, *, model: Any, model_spec: str, weights: str | None, target: str,
              out: str, cfg: Any, dtype: str | None, block: int, inputs: list[str],
              interface: str | None, device: str, progress: bool,
              overwrite: bool) -> tuple[Any, dict[str, Any]]:
    """Adapt on a sample of ``src``, fuse it block by block into ``out`` (resuming a killed
    run of the same command), finish the product; return ``(result, report)``."""
    import time

    from tta import __version__
    from tta.engine.stream import StreamOptions, adapt_stream
    from tta.io.blocks import BlockStore, resume_key

    dtype = output_dtype(dtype, src)
    is_h5 = Path(out).suffix.lower() in (".h5", ".hdf5")
    if is_h5:
        dtype = "float32"  # h5 products are float32, as the whole-scene writer's
    opts = StreamOptions(block=block)
    key = resume_key(inputs, {"model": model_spec, "weights": weights, "target": target,
                              "config": cfg.to_dict(), "stream": opts.to_dict(),
                              "dtype": dtype, "interface": interface, "out": out,
                              "device": device, "version": __version__})

    def factory(stamp: str) -> BlockStore:
        return BlockStore(out, key, src.shape, dtype, stamp)

    result, report, store = adapt_stream(model, src, factory, config=cfg, opts=opts,
                                         device=device, interface=interface,
                                         progress=progress)
    for p in store.discarded:
        click.echo(f"removed {p}, left by a run with other inputs or options", err=True)
    t0 = time.perf_counter()
    _finish(store, src, out, inputs, dtype, overwrite, "streamed product (tta adapt)")
    report["timings"]["write"] = time.perf_counter() - t0
    report["stream"]["dtype"] = dtype
    return result, report


def describe(report: dict[str, Any]) -> str:
    """One line on what the streamed run read and wrote."""
    s = report["stream"]
    sample = s["sample"]
    read = ("the whole scene" if sample.get("whole_scene") else
            f"{sample['windows']} windows of {sample['side']} px (of {sample['valid']} valid, "
            f"chosen on a 1/{sample['overview_factor']} overview)")
    return (f"stream: adapted on {read}; fused {s['blocks']} blocks of "
            f"{s['options']['block']} px ({s['resumed']} resumed, {s['computed']} computed, "
            f"{s['tiles']} tiles), {s['dtype']}")
