"""Reading fused products (the output of a pansharpening method) for evaluation.

Accepted, from tta or any other tool:

* an h5 product of tta (``fused`` beside the scene's ``ms``/``pan``; ``FILE.h5#K``), whose
  inputs come back as its scene;
* a bare h5 file holding only the product: dataset ``fused`` (or ``I_Fus``, ``sr``,
  ``output``, or the file's only dataset), ``(N, C, H, W)`` (PanCollection, one sample or
  ``#K``), ``(C, H, W)`` or ``(H, W, C)``;
* a MATLAB file (v5 or v7.3) with variable ``I_Fus`` (toolbox convention), ``I_F``,
  ``fused``, ``I_SR``, ``sr`` or ``output``, ``(H, W, C)``;
* a GeoTIFF (all bands).

A product without its scene is scored against ``--scene``: :func:`conform_product` puts it in
``(C, H, W)`` order (checked against the scene's shape) and in DN: values that are all at most
:data:`UNIT_MAX` for a scene whose max value is larger are taken as scaled to 0-1 and
multiplied by the scene's max value (stated), unless an explicit ``scale`` is given. The bands
are taken to be in the scene's order.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tta.errors import InputError
from tta.io.atomic import atomic_output

__all__ = ["Product", "conform_product", "read_fused", "read_product", "write_json"]

#: Largest value a product scaled to 0-1 may hold (fusion overshoots the nominal 1 a little).
UNIT_MAX = 1.5
_H5_NAMES = ("fused", "I_Fus", "sr", "output")
_MAT_NAMES = ("I_Fus", "I_F", "fused", "I_SR", "sr", "output")


@dataclass
class Product:
    """A fused product as read: its array (layout as stored), its scene when the file holds
    one, and a description of where the array came from."""

    data: np.ndarray
    scene: Any
    origin: str


def read_product(spec: str | Path, *, sensor: Any = None, bands: Any = None) -> Product:
    """Read a fused product of any tool (see the module docstring).

    Raises:
        InputError: Missing file, unknown format, no product array in the file, an
            ``(N, C, H, W)`` array of several samples without ``#K``.
    """
    from tta.io import parse_spec

    text = str(spec)
    if text.lower().endswith((".tif", ".tiff")):
        return Product(_read_tif(Path(text)), None, "GeoTIFF bands")
    parsed = parse_spec(text)
    path = parsed.files[0]
    if parsed.kind == "mat":
        return _read_mat_product(path)
    if parsed.kind != "h5":
        raise InputError(f"{spec}: a fused product is an .h5, .mat or .tif file")
    from tta.io.h5 import _open, read_h5

    with _open(path) as f:
        is_tta = "ms" in f and "pan" in f
    if is_tta:
        scene, fused = read_h5(path, parsed.index, sensor=sensor, with_fused=True,
                               bands=bands)
        if fused is None:
            raise InputError(f"{path}: holds a scene but no 'fused' dataset; give a product "
                             "(tta fuse/adapt output, or any tool's fused array)")
        return Product(fused, scene, "tta product")
    return _read_h5_product(path, parsed.index)


def _read_h5_product(path: Path, index: int | None) -> Product:
    from tta.io.h5 import _open
    from tta.io.safety import check_h5_dataset, check_size

    with _open(path) as f:
        names = [k for k in f.keys() if not k.startswith("#")]
        name = next((n for n in _H5_NAMES if n in f), None)
        if name is None and len(names) == 1:
            name = names[0]
        if name is None:
            raise InputError(f"{path}: no product dataset ({', '.join(_H5_NAMES)}; found: "
                             f"{', '.join(names) or 'nothing'})")
        ds = check_h5_dataset(f, path, name)
        if ds.ndim not in (3, 4):
            raise InputError(f"{path}: dataset '{name}' must be (N, C, H, W), (C, H, W) or "
                             f"(H, W, C), got shape {ds.shape}")
        if ds.ndim == 4:
            n = ds.shape[0]
            if index is None and n != 1:
                raise InputError(f"{path}: '{name}' holds {n} samples; pick one as {path}#K")
            k = 0 if index is None else index
            if not -n <= k < n:
                raise InputError(f"{path}: sample #{k} out of range (file holds {n})")
            check_size(path, [ds.shape[1:]])
            data = np.asarray(ds[k % n], dtype=np.float32)
            where = f"dataset '{name}' sample {k % n}"
        else:
            if index is not None:
                raise InputError(f"{path}: '#K' needs an (N, C, H, W) dataset; '{name}' is "
                                 f"{ds.shape}")
            check_size(path, [ds.shape])
            data = np.asarray(ds[()], dtype=np.float32)
            where = f"dataset '{name}'"
    return Product(data, None, where)


def _read_mat_product(path: Path) -> Product:
    from tta.io.mat import _load

    values, names, _ = _load(path, want=_MAT_NAMES)
    name = next((n for n in _MAT_NAMES if n in values), None)
    if name is None:
        raise InputError(f"{path}: no product variable ({', '.join(_MAT_NAMES)}; found: "
                         f"{', '.join(names) or 'nothing'})")
    arr = np.asarray(values[name])
    if arr.dtype.kind not in "biuf" or arr.ndim not in (2, 3):
        raise InputError(f"{path}: variable '{name}' must be a numeric (H, W, C) array, got "
                         f"{arr.shape} ({arr.dtype})")
    arr = arr[:, :, None] if arr.ndim == 2 else arr
    return Product(np.moveaxis(arr, -1, 0).astype(np.float32), None,
                   f"MATLAB variable '{name}'")


def conform_product(data: np.ndarray, scene: Any, *, scale: float | None = None,
                    source: str = "product") -> tuple[np.ndarray, str]:
    """``data`` as ``(C, H, W)`` DN for ``scene``; returns it and a note on the scale used.

    Raises:
        InputError: The shape fits neither ``(C, H, W)`` nor ``(H, W, C)`` of the scene, or
            the values are not finite.
    """
    c, h, w = scene.shape
    arr = np.asarray(data, dtype=np.float32)
    if arr.ndim == 4 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.shape == (c, h, w):
        pass
    elif arr.shape == (h, w, c):
        arr = np.moveaxis(arr, -1, 0)
    elif arr.ndim == 3 and arr.shape[0] == c and arr.shape[1:] == (w, h) and h != w:
        raise InputError(f"{source}: shape {arr.shape} looks transposed (H and W swapped) "
                         f"for the scene's {c}x{h}x{w}")
    else:
        raise InputError(f"{source}: shape {tuple(arr.shape)} does not match the scene "
                         f"({scene.source}, {c}x{h}x{w}) as (C, H, W) or (H, W, C)")
    arr = np.ascontiguousarray(arr)
    valid = arr[:, ~scene.nodata] if scene.nodata is not None else arr
    if not np.isfinite(valid).all():
        raise InputError(f"{source}: holds NaN or infinite values")
    if scale is not None:
        note = f"values x{scale:g} (--scale)"
        arr = arr * np.float32(scale)
    elif valid.size and float(valid.max()) <= UNIT_MAX < scene.max_value:
        note = (f"values scaled to 0-1 (max {float(valid.max()):.3g}): multiplied by the "
                f"scene's max value {scene.max_value:g}")
        arr = arr * np.float32(scene.max_value)
    else:
        note = "values in DN"
    return arr, note


def read_fused(spec: str | Path, *, sensor: Any = None) -> tuple[np.ndarray, Any]:
    """Read a fused product ``(C, H, W)`` (float32) and, for tta h5 products, its scene.

    A product without a scene (bare h5, MATLAB, GeoTIFF) comes back as stored; put it in
    order and in DN with :func:`conform_product`.

    Returns:
        ``(fused, scene_or_None)``.
    """
    product = read_product(spec, sensor=sensor)
    return product.data, product.scene


def _read_tif(path: Path) -> np.ndarray:
    import contextlib

    from tta.io.geotiff import _open, _reading
    from tta.io.safety import check_size

    with contextlib.ExitStack() as stack:
        src = _open(stack, path)
        check_size(path, [(src.count, src.height, src.width)])
        with _reading(path):
            data = src.read(out_dtype="float32")
    return data


def write_json(path: str | Path, data: Any, inputs: list[str] = (), *,
               overwrite: bool = False) -> Path:
    """Write JSON atomically (refusing input paths; an existing file only with
    ``overwrite``)."""
    with atomic_output(path, inputs, overwrite=overwrite) as tmp:
        tmp.write_text(json.dumps(data, indent=2) + "\n")
    return Path(path)
