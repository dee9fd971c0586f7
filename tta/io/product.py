"""Reading fused products (the output of a pansharpening method) for evaluation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from tta.errors import InputError
from tta.io.atomic import atomic_output

__all__ = ["read_fused", "write_json"]


def read_fused(spec: str | Path, *, sensor: Any = None) -> tuple[np.ndarray, Any]:
    """Read a fused product ``(C, H, W)`` (float32 DN) and, for h5 files, its scene.

    Accepted: an h5 file written by tta (dataset ``fused``; ``FILE.h5#K`` picks a sample),
    whose inputs come back as the scene, or a GeoTIFF (all bands), which has none.

    Returns:
        ``(fused, scene_or_None)``.

    Raises:
        InputError: Missing file, no ``fused`` dataset, unreadable GeoTIFF.
    """
    from tta.io import parse_spec
    from tta.io.h5 import read_h5

    text = str(spec)
    if text.lower().endswith((".tif", ".tiff")):
        return _read_tif(Path(text)), None
    parsed = parse_spec(text)
    if parsed.kind != "h5":
        raise InputError(f"{spec}: a fused product is an .h5 (with 'fused') or a .tif file")
    scene, fused = read_h5(parsed.files[0], parsed.index, sensor=sensor, with_fused=True)
    if fused is None:
        raise InputError(f"{parsed.files[0]}: no 'fused' dataset; give a product written by "
                         "tta (fuse, adapt) or a GeoTIFF")
    return fused, scene


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
