"""Reading fused products (the output of a pansharpening method) for evaluation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from tta.errors import InputError
from tta.io.atomic import atomic_output

__all__ = ["ProductWindows", "read_fused", "write_json"]


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


class ProductWindows:
    """A fused product read by window: a GeoTIFF (all bands) or the ``fused`` dataset of an
    h5 file (``FILE.h5#K`` picks a sample).

    Attributes:
        shape: ``(C, H, W)``.
        source: The product spec.
    """

    def __init__(self, spec: str | Path) -> None:
        import contextlib

        from tta.io import parse_spec

        self.source = str(spec)
        self._tif = self.source.lower().endswith((".tif", ".tiff"))
        if self._tif:
            from tta.io.geotiff import _open

            self.path, self.index = Path(self.source), 0
            with contextlib.ExitStack() as stack:
                ds = _open(stack, self.path)
                self.shape = (ds.count, ds.height, ds.width)
            return
        parsed = parse_spec(self.source)
        if parsed.kind != "h5":
            raise InputError(f"{spec}: a fused product is an .h5 (with 'fused') or a .tif file")
        from tta.io.h5 import _open as open_h5

        self.path = parsed.files[0]
        with open_h5(self.path) as f:
            if "fused" not in f or f["fused"].ndim != 4:
                raise InputError(f"{self.path}: no 'fused' (N, C, H, W) dataset")
            n = f["fused"].shape[0]
            index = 0 if parsed.index is None else parsed.index
            if not -n <= index < n:
                raise InputError(f"{self.path}: sample #{index} out of range (file holds {n})")
            self.index = index % n
            self.shape = tuple(int(v) for v in f["fused"].shape[1:])

    def read(self, y: int, x: int, h: int, w: int) -> np.ndarray:
        """The window ``(C, h, w)`` at PAN ``(y, x)``, float32 DN."""
        import contextlib

        if self._tif:
            from rasterio.windows import Window

            from tta.io.geotiff import _open, _reading

            with contextlib.ExitStack() as stack:
                ds = _open(stack, self.path)
                with _reading(self.path):
                    return ds.read(window=Window(x, y, w, h), out_dtype="float32")
        from tta.io.h5 import _open as open_h5

        with open_h5(self.path) as f:
            return np.asarray(f["fused"][self.index, :, y:y + h, x:x + w], dtype=np.float32)
