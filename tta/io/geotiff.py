"""GeoTIFF pairs (rasterio): one or more MS files plus one PAN file, aligned by georeferencing.

Conventions followed:

* Geotransforms are used as rasterio/GDAL report them, i.e. for pixel *corners* (files tagged
  ``RasterPixelIsPoint`` are converted by GDAL on opening).
* PAN and MS must share one CRS and be north-up without rotation or shear; the MS/PAN pixel-size
  ratio must be one integer ``r >= 1`` in both axes. The position of the MS grid's upper-left
  corner in PAN pixel coordinates is rounded half-up to a PAN index (an exact 0.5 offset goes to
  index 1, which reproduces ``landsat8/landsat8_fr.h5`` = ``PAN[1:, 1:]``); PAN is cropped to
  start there (or, when the MS starts before the PAN, the MS loses whole pixels), then both are
  cropped to the largest common footprint with ``H = r*h`` and ``W = r*w``. The sub-pixel
  residual is kept in ``scene.meta["pan_offset_px"]`` as ``(dy, dx)``: where the MS grid's
  upper-left corner lies relative to the cropped PAN grid's, in PAN pixels, in ``[-0.5, 0.5)``.
* A pair of files without any georeferencing (identity transform, no CRS) is assumed to share
  its upper-left corner, with the sensor's ratio; PAN must then be exactly ratio x MS.
* Nodata comes from each file's nodata value or mask band. The scene mask (PAN grid) is PAN
  nodata OR any MS band's nodata (upsampled by ``r``); PAN pixels under it are set to 0, MS
  pixels whose whole ``r x r`` block is under it are set to 0.
* Values are stored as float32 DN.

Written files are tiled (256x256), deflate-compressed GeoTIFFs on the scene's grid, with band
descriptions. A nodata mask is written as a nodata value (``scene.nodata_value`` if representable
in the output dtype, else 0) when no valid pixel holds that value, else as an internal mask band;
a scene without a mask still declares its ``nodata_value`` when no pixel holds it.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tta.errors import InputError, OutputError
from tta.io.atomic import atomic_output, check_output_path
from tta.io.safety import check_size, open_raster
from tta.io.scene import Scene
from tta.sensors import Sensor, get_sensor

__all__ = ["read_geotiff_pair", "write_geotiff", "write_scene_geotiff"]

_RATIO_TOL = 1e-6  # relative tolerance on the MS/PAN pixel-size ratio
_ROUND_EPS = 1e-6  # PAN px: offsets within this of .5 round up (float noise in transforms)
_BLOCK = 256
_DTYPES = ("uint16", "float32")


@dataclass(frozen=True)
class _Alignment:
    """Where the aligned MS and PAN grids start in their files, and their size."""

    ratio: int
    ms_row: int
    ms_col: int
    pan_row: int
    pan_col: int
    height: int  # MS pixels
    width: int  # MS pixels
    offset: tuple[float, float]  # (dy, dx) residual, PAN px

    def pan_window(self) -> tuple[int, int, int, int]:
        r = self.ratio
        return (self.pan_row, self.pan_col, r * self.height, r * self.width)

    def ms_window(self) -> tuple[int, int, int, int]:
        return (self.ms_row, self.ms_col, self.height, self.width)


# ---------------------------------------------------------------------------------- opening
def _one_line(exc: BaseException) -> str:
    """First line of the message, skipping rasterio's "see previous exception" wrappers."""
    seen: list[BaseException] = []
    while exc is not None and exc not in seen:
        seen.append(exc)
        text = str(exc).strip().splitlines()
        if text and "previous exception" not in text[0]:
            return text[0].strip()
        exc = exc.__cause__ or exc.__context__
    return type(seen[0]).__name__


def _read_errors() -> tuple[type[BaseException], ...]:
    from rasterio._err import CPLE_BaseError
    from rasterio.errors import RasterioError

    return (RasterioError, CPLE_BaseError, OSError, ValueError)


@contextlib.contextmanager
def _reading(path: Path, what: str = "cannot read") -> Iterator[None]:
    """Turn rasterio/GDAL errors raised inside the block into a one-line InputError."""
    try:
        yield
    except InputError:
        raise
    except _read_errors() as exc:
        raise InputError(f"{path}: {what} ({_one_line(exc)})") from None


@contextlib.contextmanager
def _writing(path: str | Path) -> Iterator[None]:
    """Turn rasterio/GDAL errors raised while writing into a one-line OutputError."""
    try:
        yield
    except _read_errors() as exc:
        raise OutputError(f"{path}: cannot write ({_one_line(exc)})") from None


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    from rasterio.errors import NotGeoreferencedWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        yield


def _open(stack: contextlib.ExitStack, path: Path):
    with _reading(path, "not a readable GeoTIFF"), _quiet():
        return open_raster(stack, path)


def _georeferenced(ds) -> bool:
    from affine import Affine

    return ds.crs is not None or ds.transform != Affine.identity()


# ---------------------------------------------------------------------------------- alignment
def _check_rectilinear(ds) -> None:
    t = ds.transform
    if abs(t.b) > 1e-12 * abs(t.a) or abs(t.d) > 1e-12 * abs(t.e) or t.a == 0 or t.e == 0:
        raise InputError(
            f"{ds.name}: rotated or sheared geotransform is not supported ({tuple(t)[:6]})"
        )


def _check_same_grid(datasets: Sequence[Any]) -> None:
    first = datasets[0]
    for ds in datasets[1:]:
        problems = []
        if ds.shape != first.shape:
            problems.append(f"shape {ds.shape} vs {first.shape}")
        if not ds.transform.almost_equals(first.transform, precision=1e-6 * min(first.res)):
            problems.append("geotransform differs")
        if ds.crs != first.crs:
            problems.append("CRS differs")
        if problems:
            raise InputError(
                f"{ds.name}: MS files must share one grid with {first.name} "
                f"({'; '.join(problems)})"
            )


def _pixel_ratio(ms, pan) -> int:
    rx = ms.transform.a / pan.transform.a
    ry = ms.transform.e / pan.transform.e
    r = round(rx)
    ok = r >= 1 and all(abs(v - r) <= _RATIO_TOL * r for v in (rx, ry))
    if not ok:
        raise InputError(
            f"{ms.name}: MS/PAN pixel ratio {rx:.6g} x {ry:.6g} is not an integer "
            f"(MS pixel {ms.res}, PAN pixel {pan.res})"
        )
    return r


def _axis(offset: float, r: int, ms_len: int, pan_len: int) -> tuple[int, int, int, float]:
    """Align one axis: (MS start, PAN start, length in MS px, residual offset in PAN px)."""
    pan_start = math.floor(offset + 0.5 + _ROUND_EPS)
    residual = offset - pan_start
    ms_start = 0
    if pan_start < 0:
        ms_start = -(pan_start // r)  # ceil(-pan_start / r)
        pan_start += ms_start * r
    length = min(ms_len - ms_start, (pan_len - pan_start) // r)
    return ms_start, pan_start, length, residual


def _align(ms, pan, sensor: Sensor, source: str) -> _Alignment:
    if pan.count != 1:
        raise InputError(f"{pan.name}: a PAN file must hold 1 band, found {pan.count}")
    geo_ms, geo_pan = _georeferenced(ms), _georeferenced(pan)
    if geo_ms != geo_pan:
        which, other = (ms, pan) if geo_ms else (pan, ms)
        raise InputError(f"{which.name} is georeferenced but {other.name} is not")
    if geo_ms:
        if ms.crs != pan.crs:
            raise InputError(
                f"{source}: MS and PAN have different CRS ({_crs_text(ms.crs)} vs "
                f"{_crs_text(pan.crs)})"
            )
        _check_rectilinear(ms)
        _check_rectilinear(pan)
        r = _pixel_ratio(ms, pan)
        col, row = (~pan.transform) @ (ms.transform.c, ms.transform.f)
    else:
        r, col, row = sensor.ratio, 0.0, 0.0
        if pan.shape != (r * ms.height, r * ms.width):
            raise InputError(
                f"{source}: without georeferencing PAN {pan.height}x{pan.width} must be exactly "
                f"ratio {r} x MS {ms.height}x{ms.width} (the grids cannot be aligned otherwise)"
            )
    ms_row, pan_row, h, dy = _axis(row, r, ms.height, pan.height)
    ms_col, pan_col, w, dx = _axis(col, r, ms.width, pan.width)
    if h < 1 or w < 1:
        raise InputError(
            f"{source}: MS and PAN footprints do not overlap (by at least one MS pixel)"
        )
    return _Alignment(r, ms_row, ms_col, pan_row, pan_col, h, w, (float(dy), float(dx)))


def _sub_window(al: _Alignment, window: tuple[int, int, int, int], source: str) -> _Alignment:
    try:
        row, col, height, width = (int(v) for v in window)
    except (TypeError, ValueError):
        raise InputError(f"{source}: window must be (row, col, height, width)") from None
    if row < 0 or col < 0 or height < 1 or width < 1 or row + height > al.height or (
        col + width > al.width
    ):
        raise InputError(
            f"{source}: window {(row, col, height, width)} (MS px) lies outside the aligned "
            f"{al.height}x{al.width} MS grid"
        )
    r = al.ratio
    return _Alignment(r, al.ms_row + row, al.ms_col + col, al.pan_row + r * row,
                      al.pan_col + r * col, height, width, al.offset)


# ---------------------------------------------------------------------------------- reading
def _window(row: int, col: int, height: int, width: int):
    from rasterio.windows import Window

    return Window(col, row, width, height)


def _read_bands(ds, win: tuple[int, int, int, int]) -> tuple[np.ndarray, np.ndarray | None]:
    """Bands as float32 ``(count, h, w)`` and a nodata mask ``(h, w)`` (None if all valid)."""
    from rasterio.enums import MaskFlags

    window = _window(*win)
    with _reading(Path(ds.name)), _quiet():
        data = ds.read(window=window, out_dtype="float32")
        if all(flags == [MaskFlags.all_valid] for flags in ds.mask_flag_enums):
            return data, None
        masks = ds.read_masks(window=window)
    return data, (masks == 0).any(axis=0)


def _descriptions(datasets: Sequence[Any]) -> tuple[str, ...] | None:
    names = [d for ds in datasets for d in ds.descriptions]
    return tuple(names) if all(names) else None


def _crs_text(crs) -> str | None:
    """``EPSG:n`` when that names exactly the same CRS, else WKT."""
    from rasterio.crs import CRS

    if crs is None:
        return None
    epsg = crs.to_epsg(confidence_threshold=100)
    if epsg is not None:
        text = f"EPSG:{epsg}"
        with contextlib.suppress(Exception):
            if CRS.from_user_input(text) == crs:
                return text
    return crs.to_wkt()


def _combine_masks(
    pan_mask: np.ndarray | None, ms_masks: list[np.ndarray | None], r: int
) -> np.ndarray | None:
    mask = None if pan_mask is None else pan_mask.copy()
    for m in ms_masks:
        if m is None:
            continue
        up = np.repeat(np.repeat(m, r, axis=0), r, axis=1)
        mask = up if mask is None else mask | up
    return mask if mask is not None and mask.any() else None


def _full_blocks(mask: np.ndarray, r: int) -> np.ndarray:
    """MS-grid mask of the pixels whose whole ``r x r`` PAN block is masked."""
    big_h, big_w = mask.shape
    return mask.reshape(big_h // r, r, big_w // r, r).all(axis=(1, 3))


def _ms_list(ms_paths: Sequence[str | Path] | str | Path) -> list[Path]:
    items = [ms_paths] if isinstance(ms_paths, str | Path) else list(ms_paths)
    if not items:
        raise InputError("a GeoTIFF scene needs at least one MS file")
    return [Path(p) for p in items]


def read_geotiff_pair(
    ms_paths: Sequence[str | Path] | str | Path,
    pan_path: str | Path,
    *,
    sensor: str | Sensor | None = None,
    max_value: float | None = None,
    window: tuple[int, int, int, int] | None = None,
    bands: Sequence[str] | None = None,
) -> Scene:
    """Read an MS/PAN GeoTIFF pair as a :class:`Scene`, aligned by its georeferencing.

    See the module docstring for the alignment and nodata conventions. Only the needed
    windows of the files are read.

    Args:
        ms_paths: One multi-band MS file, or several MS files stacked band-wise in order (all
            on one grid). A single path is accepted too.
        pan_path: The PAN file.
        sensor: Sensor name/preset; required (GeoTIFF files do not name their sensor).
        max_value: DN scale; overrides the sensor's nominal value.
        window: ``(row, col, height, width)`` in MS pixels of the aligned grid: read only this
            sub-region (PAN: ``ratio`` times it).
        bands: MS band names, overriding the files' band descriptions.

    Returns:
        The scene, with ``transform`` (the cropped PAN grid's ``Affine``), ``crs`` (``EPSG:n``
        or WKT), ``nodata``/``nodata_value`` and ``meta`` keys ``files``, ``pan_offset_px``
        ``(dy, dx)``, ``ms_window``/``pan_window`` (``(row, col, height, width)`` in each
        file's pixels) and ``georeferenced``.

    Raises:
        InputError: No sensor, missing/unreadable file, MS files on different grids, pair not
            alignable (CRS, rotation, non-integer ratio, no overlap), bad window, or a scene
            validation failure (e.g. band count not matching the sensor). One line each.
    """
    ms_files = _ms_list(ms_paths)
    pan_file = Path(pan_path)
    files = [*ms_files, pan_file]
    source = "+".join(str(p) for p in files)
    if sensor is None:
        raise InputError(
            f"{source}: GeoTIFF files do not name their sensor; pass --sensor NAME "
            "(see `tta sensors`)"
        )
    from affine import Affine

    band_names = bands
    resolved = get_sensor(sensor)
    with contextlib.ExitStack() as stack:
        ms_ds = [_open(stack, p) for p in ms_files]
        pan_ds = _open(stack, pan_file)
        _check_same_grid(ms_ds)
        al = _align(ms_ds[0], pan_ds, resolved, source)
        if window is not None:
            al = _sub_window(al, window, source)
        check_size(source, [(ds.count, *al.ms_window()[2:]) for ds in ms_ds]
                   + [(pan_ds.count, *al.pan_window()[2:])])
        pan, pan_mask = _read_bands(pan_ds, al.pan_window())
        ms_parts = [_read_bands(ds, al.ms_window()) for ds in ms_ds]
        georef = _georeferenced(pan_ds)
        transform = None
        if georef:
            transform = pan_ds.transform @ Affine.translation(al.pan_col, al.pan_row)
        crs = _crs_text(pan_ds.crs)
        nodata_value = next((ds.nodata for ds in (pan_ds, *ms_ds) if ds.nodata is not None),
                            None)
        bands = _descriptions(ms_ds)
    ms = np.concatenate([p[0] for p in ms_parts], axis=0)
    pan = pan[0]
    mask = _combine_masks(pan_mask, [p[1] for p in ms_parts], al.ratio)
    if mask is not None:
        pan[mask] = 0
        ms[:, _full_blocks(mask, al.ratio)] = 0
    if bands is not None and len(bands) != ms.shape[0]:
        bands = None
    if band_names is not None:
        bands = tuple(band_names)
    return Scene(
        ms=ms,
        pan=pan,
        sensor=resolved,
        ratio=al.ratio,
        max_value=max_value,
        band_names=bands,
        nodata=mask,
        nodata_value=None if nodata_value is None else float(nodata_value),
        transform=transform,
        crs=crs,
        source=source,
        meta={
            "files": [str(p) for p in files],
            "pan_offset_px": al.offset,
            "ms_window": al.ms_window(),
            "pan_window": al.pan_window(),
            "georeferenced": georef,
        },
    )


# ---------------------------------------------------------------------------------- writing
def _convert(image: np.ndarray, dtype: str) -> np.ndarray:
    if dtype == "uint16":
        x = np.nan_to_num(np.asarray(image, dtype=np.float64), nan=0.0, posinf=65535.0,
                          neginf=0.0)
        return np.clip(np.rint(x), 0, 65535).astype(np.uint16)
    return np.asarray(image, dtype=np.float32)


def _representable(value: float | None, dtype: str) -> bool:
    if value is None:
        return False
    if dtype == "uint16":
        return math.isfinite(value) and value == int(value) and 0 <= value <= 65535
    return math.isnan(value) or float(np.float32(value)) == value


def _collides(data: np.ndarray, valid: np.ndarray | None, value: float) -> bool:
    vals = data if valid is None else data[:, valid]
    return bool(np.isnan(vals).any() if math.isnan(value) else (vals == value).any())


def _nodata_value(
    data: np.ndarray, mask: np.ndarray | None, preferred: float | None, dtype: str
) -> float | None:
    """The nodata value to declare, or None (then a mask band is written if ``mask``)."""
    if mask is None:
        value = preferred if _representable(preferred, dtype) else None
        return None if value is None or _collides(data, None, value) else value
    value = preferred if _representable(preferred, dtype) else 0.0
    return None if _collides(data, ~mask, value) else value


def _profile(data: np.ndarray, dtype: str, transform: Any, crs: str | None) -> dict[str, Any]:
    profile: dict[str, Any] = {
        "driver": "GTiff",
        "dtype": dtype,
        "count": data.shape[0],
        "height": data.shape[1],
        "width": data.shape[2],
        "tiled": True,
        "blockxsize": _BLOCK,
        "blockysize": _BLOCK,
        "compress": "deflate",
        "predictor": 3 if dtype == "float32" else 2,
    }
    if transform is not None:
        profile["transform"] = transform
        if crs:
            from rasterio.crs import CRS

            profile["crs"] = CRS.from_user_input(crs)
    return profile


def _write_raster(
    tmp: Path,
    data: np.ndarray,
    *,
    transform: Any,
    crs: str | None,
    mask: np.ndarray | None,
    preferred_nodata: float | None,
    descriptions: Sequence[str],
) -> None:
    """Write a converted ``(C, H, W)`` array as a GeoTIFF at ``tmp`` (GTiff driver)."""
    import rasterio

    dtype = str(data.dtype)
    profile = _profile(data, dtype, transform, crs)
    nodata = _nodata_value(data, mask, preferred_nodata, dtype)
    if nodata is not None:
        profile["nodata"] = nodata
    if mask is not None:
        data = data.copy()
        data[:, mask] = 0 if nodata is None else nodata
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), _quiet():
        with rasterio.open(tmp, "w", **profile) as dst:
            dst.write(data)
            for i, name in enumerate(descriptions, start=1):
                dst.set_band_description(i, name)
            if mask is not None and nodata is None:
                dst.write_mask(np.where(mask, 0, 255).astype(np.uint8))


def _check_dtype(dtype: str) -> str:
    if dtype not in _DTYPES:
        raise InputError(f"output dtype must be one of {', '.join(_DTYPES)}, got {dtype!r}")
    return dtype


def write_geotiff(
    path: str | Path,
    image: np.ndarray,
    scene: Scene,
    *,
    dtype: str = "uint16",
    overwrite: bool = False,
) -> Path:
    """Write a ``(C, H, W)`` DN image (e.g. a fused product) on the scene's PAN grid.

    The file is a tiled (256x256), deflate-compressed GeoTIFF with the scene's transform and CRS
    (none if the scene has none), band descriptions ``scene.band_names`` and, when the scene has
    a nodata mask, the nodata value ``scene.nodata_value`` (if representable, else 0) written
    under the mask (an internal mask band instead if valid pixels hold that value).

    Args:
        path: Output file; written atomically.
        image: ``(C, H, W)`` array in DN, matching ``scene.shape``.
        scene: The scene that gives grid, band names and nodata.
        dtype: ``"uint16"`` (rounded and clipped to [0, 65535]) or ``"float32"``.
        overwrite: Replace an existing file.

    Raises:
        InputError: Shape not matching the scene, or unknown dtype.
        OutputError: ``path`` is an input of the scene, exists without ``overwrite``, or
            GDAL fails to write it.
    """
    dtype = _check_dtype(dtype)
    image = np.asarray(image)
    if image.shape != scene.shape:
        raise InputError(f"image {image.shape} does not match the scene's {scene.shape}")
    data = _convert(image, dtype)
    inputs = scene.meta.get("files", [])
    with _writing(path), atomic_output(path, inputs, overwrite=overwrite) as tmp:
        _write_raster(tmp, data, transform=scene.transform, crs=scene.crs, mask=scene.nodata,
                      preferred_nodata=scene.nodata_value, descriptions=scene.band_names)
    return Path(path)


def _ms_transform(scene: Scene) -> Any:
    """MS grid: the PAN grid scaled by the ratio, shifted by the residual ``pan_offset_px``."""
    from affine import Affine

    dy, dx = 0.0, 0.0
    offset = scene.meta.get("pan_offset_px")
    with contextlib.suppress(TypeError, ValueError):
        oy, ox = (float(v) for v in offset)
        if all(abs(v) <= 0.5 + _ROUND_EPS for v in (oy, ox)):
            dy, dx = oy, ox
    return scene.transform @ Affine.translation(dx, dy) @ Affine.scale(scene.ratio)


def write_scene_geotiff(
    scene: Scene,
    ms_path: str | Path,
    pan_path: str | Path,
    *,
    dtype: str = "uint16",
    overwrite: bool = False,
) -> tuple[Path, Path]:
    """Write a scene as an MS GeoTIFF (MS grid) and a PAN GeoTIFF (PAN grid).

    ``read_geotiff_pair(ms_path, pan_path, sensor=scene.sensor)`` gives back the same arrays,
    transform, CRS and nodata mask (lossless for integer DN with ``uint16``, for any float DN
    with ``float32``). The MS transform is ``scene.transform @ Affine.scale(ratio)``, shifted by
    the scene's sub-pixel ``pan_offset_px`` when it has one so that the MS keeps its true
    position. An MS pixel is written as nodata when its whole PAN block is nodata; PAN carries
    the scene's mask. Both files are written atomically; on failure neither is created.

    Raises:
        InputError: Unknown dtype.
        OutputError: An output is an input of the scene, both outputs are one path, an
            output exists without ``overwrite``, or GDAL fails to write.
    """
    dtype = _check_dtype(dtype)
    inputs = scene.meta.get("files", [])
    ms_out, pan_out = Path(ms_path), Path(pan_path)
    if ms_out.resolve() == pan_out.resolve():
        raise OutputError(f"{ms_out}: MS and PAN outputs must be different files")
    for out in (ms_out, pan_out):
        check_output_path(out, inputs, overwrite=overwrite)
    georef = scene.transform is not None
    mask = scene.nodata
    ms_mask = None if mask is None else _full_blocks(mask, scene.ratio)
    if ms_mask is not None and not ms_mask.any():
        ms_mask = None
    with (
        _writing(f"{ms_out}+{pan_out}"),
        atomic_output(ms_out, inputs, overwrite=overwrite) as ms_tmp,
        atomic_output(pan_out, inputs, overwrite=overwrite) as pan_tmp,
    ):
        _write_raster(ms_tmp, _convert(scene.ms, dtype),
                      transform=_ms_transform(scene) if georef else None, crs=scene.crs,
                      mask=ms_mask, preferred_nodata=scene.nodata_value,
                      descriptions=scene.band_names)
        _write_raster(pan_tmp, _convert(scene.pan[None], dtype), transform=scene.transform,
                      crs=scene.crs, mask=mask, preferred_nodata=scene.nodata_value,
                      descriptions=("pan",))
    return ms_out, pan_out
