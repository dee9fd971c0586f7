"""What the readers refuse before they read: only local files of our formats, of a sane size.

* Paths: no GDAL virtual file systems (``/vsicurl/``, ``/vsizip/``, ...) and no URLs
  (``http://``, ``s3://``, ``zip://``): a scene is a local file the user named.
* GeoTIFF: the file must start with a TIFF signature and GDAL must open it with its GTiff
  driver (a VRT or any other format renamed ``.tif`` is refused); sidecar files (``.aux.xml``,
  ``.ovr``, ``.msk``) are neither looked for nor written.
* HDF5 datasets (PanCollection ``.h5``, MATLAB v7.3): hard links only (no external links),
  no external raw storage, no virtual datasets (both read other files), numeric values.
* Sizes: the bytes an array will take once read (as float32) are checked against a limit
  before anything is read or allocated: 16 GiB by default, raised with ``tta --max-input-gb N``
  or the environment variable ``TTA_MAX_INPUT_GB``.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tta.errors import InputError

__all__ = ["DEFAULT_MAX_INPUT_GB", "check_h5_dataset", "check_local_path", "check_size",
           "input_limit_gb", "open_raster", "set_input_limit"]

DEFAULT_MAX_INPUT_GB = 16.0
_ENV = "TTA_MAX_INPUT_GB"
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")
_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
_GDAL_READ = {"GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR", "GDAL_PAM_ENABLED": "NO",
              "GDAL_HTTP_MAX_RETRY": "0", "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".none"}
_limit_gb: float | None = None


# ---------------------------------------------------------------------------------- sizes
def set_input_limit(gb: float | None) -> None:
    """Set the size limit of one read (GiB); None goes back to the environment/default."""
    if gb is not None and not (math.isfinite(gb) and gb > 0):
        raise InputError(f"input size limit must be a positive number of GiB, got {gb}")
    global _limit_gb
    _limit_gb = gb


def input_limit_gb() -> float:
    """The size limit of one read in GiB (``set_input_limit``, else $TTA_MAX_INPUT_GB)."""
    if _limit_gb is not None:
        return _limit_gb
    text = os.environ.get(_ENV)
    if not text:
        return DEFAULT_MAX_INPUT_GB
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not (math.isfinite(value) and value > 0):
        raise InputError(f"{_ENV}={text!r}: expected a positive number of GiB")
    return value


def check_size(source: Any, shapes: Iterable[tuple[int, ...]], itemsize: int = 4) -> None:
    """Refuse to read arrays whose declared ``shapes`` exceed the limit together.

    Raises:
        InputError: Naming the declared size, the limit and how to raise it.
    """
    total = sum(math.prod(int(n) for n in shape) for shape in shapes) * itemsize
    limit = input_limit_gb()
    if total > limit * 2**30:
        raise InputError(f"{source}: declares {total / 2**30:.1f} GiB of arrays, over the "
                         f"{limit:g} GiB limit of one read; if the file is genuine, raise it "
                         f"with tta --max-input-gb N (or {_ENV})")


# ---------------------------------------------------------------------------------- paths
def check_local_path(path: str | Path) -> Path:
    """Refuse GDAL virtual file systems and URLs; return the path.

    Raises:
        InputError: ``/vsi...`` or ``scheme://`` paths.
    """
    text = str(path)
    if text.startswith("/vsi") or _URL.match(text):
        raise InputError(f"{text}: only local files are read (no URLs or GDAL /vsi paths)")
    return Path(text)


# ---------------------------------------------------------------------------------- GeoTIFF
def open_raster(stack: contextlib.ExitStack, path: Path):
    """Open a local GeoTIFF for reading with GDAL's GTiff driver only, sidecars off.

    The dataset (and the GDAL settings that keep sidecar files out) stays open until
    ``stack`` closes.

    Raises:
        InputError: Not a local file, not a TIFF, or GDAL sees another format.
    """
    import rasterio

    check_local_path(path)
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    with path.open("rb") as f:
        magic = f.read(4)
    if magic not in _TIFF_MAGIC:
        raise InputError(f"{path}: not a readable GeoTIFF (no TIFF signature; other formats "
                         "named .tif, such as GDAL VRT, are refused)")
    stack.enter_context(rasterio.Env(**_GDAL_READ))
    ds = stack.enter_context(rasterio.open(path, driver="GTiff"))
    if ds.driver != "GTiff":
        raise InputError(f"{path}: GDAL reads it as {ds.driver}, not GTiff; refused")
    return ds


# ---------------------------------------------------------------------------------- HDF5
def check_h5_dataset(f: Any, path: Path, name: str, *, numeric: bool = True) -> Any:
    """The dataset ``name`` of open h5py file ``f``, refused unless self-contained (and
    numeric, unless ``numeric`` is False).

    Raises:
        InputError: An external or soft link, a group, external raw storage, a virtual
            dataset, or non-numeric values.
    """
    import h5py

    link = f.get(name, getlink=True)
    if not isinstance(link, h5py.HardLink):
        raise InputError(f"{path}: '{name}' is a link to another place ({type(link).__name__});"
                         " only data stored in the file itself is read")
    ds = f[name]
    if not isinstance(ds, h5py.Dataset):
        raise InputError(f"{path}: '{name}' is a group, not a dataset")
    if ds.external:
        raise InputError(f"{path}: dataset '{name}' keeps its data in other files (HDF5 "
                         "external storage); refused")
    if ds.is_virtual:
        raise InputError(f"{path}: dataset '{name}' is a virtual dataset (maps other files); "
                         "refused")
    if numeric and ds.dtype.kind not in "biuf":
        raise InputError(f"{path}: dataset '{name}' holds {ds.dtype} values, not numbers")
    return ds
