"""Lazily-read scenes: open once, read any window of the aligned MS/PAN grids on demand.

A :class:`SceneSource` knows a scene's geometry and metadata (shape, sensor, input sample type,
georeferencing, nodata value, band names) without reading its pixels; ``read(window)``
returns a :class:`~tta.io.scene.Scene` of one window and ``overview(side)`` a decimated copy
of the whole scene (block means). Peak memory is then set by the windows a caller asks for,
not by the scene.

Windows are ``(row, col, height, width)`` in MS pixels of the aligned grid (PAN: ``ratio``
times each value), the convention of :func:`tta.io.geotiff.read_geotiff_pair`:

* GeoTIFF pairs are aligned exactly as :func:`~tta.io.geotiff.read_geotiff_pair` aligns them
  (it does the window reads, so a window equals the same crop of the whole read, nodata
  handling included); overviews use rasterio's decimated reads (``out_shape``, average
  resampling, internal overviews when the file has them);
* PanCollection HDF5 samples are read by h5py slicing (only the chunks a window touches);
  overviews by strided slicing.
"""

from __future__ import annotations

import contextlib
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tta.errors import InputError
from tta.io.scene import Scene
from tta.sensors import Sensor, get_sensor

__all__ = ["GeoTiffSource", "H5Source", "SceneSource", "Window", "open_source"]

#: ``(row, col, height, width)`` in MS pixels of the aligned grid.
Window = tuple[int, int, int, int]


@dataclass
class SceneSource(ABC):
    """Geometry and metadata of a scene whose pixels are read by window.

    Attributes:
        source: The scene spec (for messages).
        files: Every file the scene reads.
        sensor: Sensor preset.
        ratio: PAN/MS scale ratio.
        ms_size: ``(h, w)`` of the aligned MS grid.
        n_bands: MS bands ``C``.
        dtype: Sample type of the input files (e.g. ``"uint16"``; the product's default).
        max_value: Nominal maximum DN.
        band_names: MS band names.
        nodata_value: The input's declared nodata value, if any.
        transform: Affine of the aligned PAN grid (None without georeferencing).
        crs: ``EPSG:n`` or WKT text, when known.
        meta: Provenance (as :attr:`Scene.meta`).
    """

    source: str
    files: tuple[Path, ...]
    sensor: Sensor
    ratio: int
    ms_size: tuple[int, int]
    n_bands: int
    dtype: str
    max_value: float
    band_names: tuple[str, ...]
    nodata_value: float | None = None
    transform: Any = None
    crs: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def pan_size(self) -> tuple[int, int]:
        """``(H, W)`` of the aligned PAN grid."""
        return (self.ratio * self.ms_size[0], self.ratio * self.ms_size[1])

    @property
    def shape(self) -> tuple[int, int, int]:
        """Shape of the fused product ``(C, H, W)``."""
        return (self.n_bands, *self.pan_size)

    @property
    def pixels(self) -> int:
        """PAN pixels of the scene."""
        return self.pan_size[0] * self.pan_size[1]

    def whole(self) -> Window:
        """The window of the whole aligned grid."""
        return (0, 0, *self.ms_size)

    def check_window(self, window: Window) -> Window:
        """``window`` as ints; ``InputError`` unless it lies inside the aligned MS grid."""
        try:
            row, col, height, width = (int(v) for v in window)
        except (TypeError, ValueError):
            raise InputError(f"{self.source}: window must be (row, col, height, width)") from None
        h, w = self.ms_size
        if row < 0 or col < 0 or height < 1 or width < 1 or row + height > h or col + width > w:
            raise InputError(f"{self.source}: window {(row, col, height, width)} (MS px) lies "
                             f"outside the aligned {h}x{w} MS grid")
        return (row, col, height, width)

    def window_transform(self, window: Window) -> Any:
        """Affine of a window's PAN grid (None without georeferencing)."""
        if self.transform is None:
            return None
        from affine import Affine

        r = self.ratio
        return self.transform @ Affine.translation(r * window[1], r * window[0])

    @abstractmethod
    def read(self, window: Window | None = None) -> Scene:
        """The scene cropped to ``window`` (None: the whole scene), float32 DN."""

    @abstractmethod
    def overview(self, max_side: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, int]:
        """A decimated copy ``(ms, pan, nodata, factor)``: MS ``(C, h/f, w/f)`` and PAN
        ``(H/(r f), W/(r f))``, both on the MS grid decimated by ``f`` (block means), the
        longer PAN side at most ``max_side``; ``nodata`` marks cells holding any nodata."""


# ---------------------------------------------------------------------------------- GeoTIFF
class GeoTiffSource(SceneSource):
    """A GeoTIFF pair read by window (see the module docstring)."""

    ms_files: tuple[Path, ...] = ()
    pan_file: Path = Path()

    @classmethod
    def open(cls, ms_paths: list[Path], pan_path: Path, *, sensor: str | Sensor | None,
             max_value: float | None = None) -> GeoTiffSource:
        """Open the pair, align it and read its metadata (no pixels)."""
        from tta.io import geotiff as g

        files = [*ms_paths, pan_path]
        source = "+".join(str(p) for p in files)
        if sensor is None:
            raise InputError(f"{source}: GeoTIFF files do not name their sensor; pass --sensor "
                             "NAME (see `tta sensors`)")
        resolved = get_sensor(sensor)
        with contextlib.ExitStack() as stack:
            ms_ds = [g._open(stack, p) for p in ms_paths]
            pan_ds = g._open(stack, pan_path)
            g._check_same_grid(ms_ds)
            al = g._align(ms_ds[0], pan_ds, resolved, source)
            n_bands = sum(ds.count for ds in ms_ds)
            transform = None
            if g._georeferenced(pan_ds):
                from affine import Affine

                transform = pan_ds.transform @ Affine.translation(al.pan_col, al.pan_row)
            nodata = next((ds.nodata for ds in (pan_ds, *ms_ds) if ds.nodata is not None), None)
            bands = g._descriptions(ms_ds)
            dtype = str(np.result_type(*[np.dtype(t) for ds in ms_ds for t in ds.dtypes]))
            crs = g._crs_text(pan_ds.crs)
        if bands is None or len(bands) != n_bands:
            bands = tuple(resolved.bands) if len(resolved.bands) == n_bands else tuple(
                f"band{i + 1}" for i in range(n_bands))
        src = cls(source=source, files=tuple(files), sensor=resolved, ratio=al.ratio,
                  ms_size=(al.height, al.width), n_bands=n_bands, dtype=dtype,
                  max_value=float(max_value if max_value is not None else resolved.max_value),
                  band_names=tuple(bands),
                  nodata_value=None if nodata is None else float(nodata),
                  transform=transform, crs=crs,
                  meta={"files": [str(p) for p in files], "pan_offset_px": al.offset,
                        "alignment": al})
        src.ms_files, src.pan_file = tuple(ms_paths), pan_path
        return src

    def read(self, window: Window | None = None) -> Scene:
        from tta.io.geotiff import read_geotiff_pair

        win = self.check_window(window if window is not None else self.whole())
        return read_geotiff_pair(list(self.ms_files), self.pan_file, sensor=self.sensor,
                                 max_value=self.max_value, window=win)

    def overview(self, max_side: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, int]:
        from rasterio.enums import Resampling

        from tta.io import geotiff as g

        al = self.meta["alignment"]
        r = self.ratio
        f = max(1, math.ceil(max(self.pan_size) / max_side / r))
        h, w = al.height // f, al.width // f
        if h < 1 or w < 1:
            raise InputError(f"{self.source}: scene too small for an overview of factor {f}")
        ms_win = g._window(al.ms_row, al.ms_col, h * f, w * f)
        pan_win = g._window(al.pan_row, al.pan_col, h * f * r, w * f * r)
        parts, masks = [], []
        with contextlib.ExitStack() as stack:
            for path, win in [(p, ms_win) for p in self.ms_files] + [(self.pan_file, pan_win)]:
                ds = g._open(stack, path)
                with g._reading(path), g._quiet():
                    parts.append(ds.read(window=win, out_shape=(ds.count, h, w),
                                         resampling=Resampling.average, out_dtype="float32"))
                    m = ds.read_masks(window=win, out_shape=(ds.count, h, w),
                                      resampling=Resampling.nearest)
                masks.append((m == 0).any(axis=0))
        mask = np.logical_or.reduce(masks)
        return (np.concatenate(parts[:-1]), parts[-1][0], mask if mask.any() else None, f)


# ---------------------------------------------------------------------------------- HDF5
class H5Source(SceneSource):
    """One sample of a PanCollection h5 file read by h5py slicing."""

    path: Path = Path()
    index: int = 0

    @classmethod
    def open(cls, path: Path, index: int | None, *, sensor: str | Sensor | None,
             max_value: float | None = None) -> H5Source:
        from tta.io import h5 as h

        with h._open(path) as f:
            ms, pan, gt, _, _, n = h._layout(f, path)
            if index is None:
                if n != 1:
                    raise InputError(f"{path}: holds {n} samples; pick one as {path}#K "
                                     f"(K < {n})")
                index = 0
            if not -n <= index < n:
                raise InputError(f"{path}: sample #{index} out of range (file holds {n})")
            index %= n
            resolved = h._resolve_sensor(f, path, sensor)
            attrs = f.attrs
            ratio = h._number_attr(attrs, path, "ratio", integer=True) or resolved.ratio
            if max_value is None:
                max_value = h._number_attr(attrs, path, "max_value")
            bands = None
            if "bands" in attrs:
                bands = tuple(b.strip() for b in h._text(attrs["bands"]).split(",") if b.strip())
            if bands is None or len(bands) != ms.shape[1]:
                bands = tuple(resolved.bands)
            transform = crs = None
            if n == 1 and "transform" in attrs:
                from affine import Affine

                transform = Affine(*[float(v) for v in np.asarray(attrs["transform"])[:6]])
                crs = h._text(attrs["crs"]) if "crs" in attrs else None
            c, hh, ww = ms.shape[1:]
            big = pan.shape[-2:]
            if big != (ratio * hh, ratio * ww):
                raise InputError(f"{path}: PAN {big[0]}x{big[1]} is not ratio {ratio} x MS "
                                 f"{hh}x{ww}")
            dtype = str(ms.dtype)
            has_gt = gt is not None
        src = cls(source=f"{path}#{index}" if n > 1 else str(path), files=(path,),
                  sensor=resolved, ratio=int(ratio), ms_size=(hh, ww), n_bands=c, dtype=dtype,
                  max_value=float(max_value if max_value is not None else resolved.max_value),
                  band_names=bands, transform=transform, crs=crs,
                  meta={"files": [str(path)], "index": index, "samples": n, "gt": has_gt})
        src.path, src.index = path, index
        return src

    def read(self, window: Window | None = None) -> Scene:
        from tta.io import h5 as h

        row, col, hh, ww = self.check_window(window if window is not None else self.whole())
        r, i = self.ratio, self.index
        ms_sl = (i, slice(None), slice(row, row + hh), slice(col, col + ww))
        pan_sl = (slice(r * row, r * (row + hh)), slice(r * col, r * (col + ww)))
        with h._open(self.path) as f:
            ms, pan, gt, _, nodata, _ = h._layout(f, self.path)
            pan_a = np.asarray(pan[(i, 0, *pan_sl)] if pan.ndim == 4 else pan[(i, *pan_sl)])
            gt_a = None if gt is None else np.asarray(gt[(i, slice(None), *pan_sl)])
            mask = None
            if nodata is not None:
                sl = (i, 0, *pan_sl) if nodata.ndim == 4 else (i, *pan_sl)
                mask = np.asarray(nodata[sl]).astype(bool)
            ms_a = np.asarray(ms[ms_sl])
        win = (row, col, hh, ww)
        return Scene(ms=ms_a, pan=pan_a, gt=gt_a, sensor=self.sensor, ratio=r,
                     max_value=self.max_value, band_names=self.band_names, nodata=mask,
                     transform=self.window_transform(win), crs=self.crs, source=self.source,
                     meta={"files": [str(self.path)], "index": i, "ms_window": win})

    def overview(self, max_side: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, int]:
        from tta.io import h5 as h

        r, i = self.ratio, self.index
        f = max(1, math.ceil(max(self.pan_size) / max_side / r))
        hh, ww = self.ms_size[0] // f, self.ms_size[1] // f
        ms_parts, pan_parts, masks = [], [], []
        with h._open(self.path) as fh:
            ms, pan, _, _, nodata, _ = h._layout(fh, self.path)
            step = max(1, 4096 // (f * r)) * f  # MS rows per read: bounded memory
            for y in range(0, hh * f, step):
                y1 = min(y + step, hh * f)
                m = np.asarray(ms[i, :, y:y1, :ww * f], dtype=np.float32)
                ms_parts.append(m.reshape(m.shape[0], -1, f, ww, f).mean(axis=(2, 4)))
                sl = (slice(r * y, r * y1), slice(0, r * ww * f))
                p = np.asarray(pan[(i, 0, *sl)] if pan.ndim == 4 else pan[(i, *sl)],
                               dtype=np.float32)
                pan_parts.append(p.reshape(-1, f * r, ww, f * r).mean(axis=(1, 3)))
                if nodata is not None:
                    k = np.asarray(nodata[(i, 0, *sl)] if nodata.ndim == 4 else nodata[(i, *sl)])
                    masks.append(k.astype(bool).reshape(-1, f * r, ww, f * r).any(axis=(1, 3)))
        mask = np.concatenate(masks) if masks else None
        return (np.concatenate(ms_parts, axis=1), np.concatenate(pan_parts),
                mask if mask is not None and mask.any() else None, f)


def open_source(spec: str | Path, *, sensor: str | Sensor | None = None,
                max_value: float | None = None) -> SceneSource:
    """Open a scene spec (GeoTIFF pair, manifest or h5) for windowed reading.

    Raises:
        InputError: A MATLAB file (read whole with :func:`tta.io.read_scene`), or any error
            :func:`tta.io.read_scene` would raise on opening.
    """
    from tta.io import parse_spec

    parsed = parse_spec(spec)
    sensor = sensor if sensor is not None else parsed.sensor
    max_value = max_value if max_value is not None else parsed.max_value
    if parsed.kind == "h5":
        return H5Source.open(parsed.files[0], parsed.index, sensor=sensor, max_value=max_value)
    if parsed.kind == "geotiff":
        return GeoTiffSource.open(list(parsed.files[:-1]), parsed.files[-1], sensor=sensor,
                                  max_value=max_value)
    raise InputError(f"{spec}: MATLAB scenes are read whole; windowed reading needs a GeoTIFF "
                     "pair or an HDF5 file")
