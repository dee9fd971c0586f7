"""MATLAB ``.mat`` scenes in the common pansharpening-toolbox convention.

Convention (Vivone et al. toolbox and its derivatives): variables ``I_MS_LR`` ``(h, w, C)``
(low-resolution MS), ``I_PAN`` ``(H, W)``, optional ``I_GT`` ``(H, W, C)`` (reference), and
optional scalars ``ratio``, ``L`` (bit depth: the DN scale becomes ``2**L - 1``) and ``sensor``
(a string). Arrays are channel-last in the file and are transposed to channel-first. Upsampled
MS (``I_MS``) and other variables are ignored.

Both containers are read: v4/v5/v7 files with :func:`scipy.io.loadmat`, v7.3 files (HDF5 with a
512-byte MATLAB userblock) with ``h5py``. MATLAB writes v7.3 arrays in column-major order, so
h5py shows them with all axes reversed (``(C, w, h)`` for a MATLAB ``(h, w, C)``); they are
transposed back. v7.3 strings are uint16 character arrays (``MATLAB_class`` ``char``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tta.errors import InputError, SensorError
from tta.io.safety import check_h5_dataset, check_local_path, check_size
from tta.io.scene import Scene
from tta.sensors import Sensor, get_sensor

__all__ = ["read_mat"]

_V73_TAG = b"MATLAB 7.3 MAT-file"
_WANTED = ("I_MS_LR", "I_PAN", "I_GT", "ratio", "L", "sensor", "bands")
_REQUIRED = ("I_MS_LR", "I_PAN")


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0].strip() if text else type(exc).__name__


def _is_v73(path: Path) -> bool:
    with path.open("rb") as f:
        return _V73_TAG in f.read(128)


# ---------------------------------------------------------------------------------- v5 (scipy)
def _check_v5_complete(path: Path) -> None:
    """Walk the top-level v5 data elements; a truncated file ends inside one of them.

    Needed because :func:`scipy.io.loadmat` seeks past the variables it is not asked for, so a
    file cut inside one of those would otherwise load without complaint.
    """
    size = path.stat().st_size
    with path.open("rb") as f:
        header = f.read(128)
        if not header.startswith(b"MATLAB 5.0 MAT-file") or len(header) < 128:
            return  # v4 files have no header; let scipy judge
        order = "<" if header[126:128] == b"IM" else ">"
        pos = 128
        while pos < size:
            tag = f.read(8)
            if len(tag) < 8:
                raise InputError(f"{path}: truncated MAT file (ends inside a variable header)")
            _, nbytes = np.frombuffer(tag, dtype=f"{order}u4")
            pos += 8 + int(nbytes)
            if pos > size:
                raise InputError(
                    f"{path}: truncated MAT file (a variable needs {pos} bytes, the file has "
                    f"{size})"
                )
            f.seek(pos)


def _load_v5(path: Path, want: tuple[str, ...] = _WANTED) -> tuple[dict[str, Any], list[str]]:
    """Variables of interest (as numpy values) and the names of all variables."""
    import scipy.io

    _check_v5_complete(path)
    try:
        entries = scipy.io.whosmat(path)
        names = [entry[0] for entry in entries]
        wanted = [n for n in want if n in names]
        check_size(path, [e[1] for e in entries if e[0] in wanted], itemsize=8)
        data = scipy.io.loadmat(path, variable_names=wanted) if wanted else {}
    except InputError:
        raise
    except Exception as exc:  # scipy raises many types for corrupt files
        raise InputError(f"{path}: not a readable MAT file ({_one_line(exc)})") from None
    return {k: _v5_value(data[k]) for k in wanted if k in data}, names


def _v5_value(value: Any) -> Any:
    arr = np.asarray(value)
    if arr.dtype.kind in "US":
        return "".join(str(s) for s in arr.reshape(-1)).strip()
    return arr


# ---------------------------------------------------------------------------------- v7.3 (h5py)
def _load_v73(path: Path, want: tuple[str, ...] = _WANTED) -> tuple[dict[str, Any], list[str]]:
    import h5py

    try:
        with h5py.File(path, "r") as f:
            names = sorted(k for k in f.keys() if not k.startswith("#"))
            present = [n for n in want if n in f]
            datasets = {n: check_h5_dataset(f, path, n, numeric=False) for n in present}
            check_size(path, [ds.shape for ds in datasets.values()], itemsize=8)
            out = {n: _v73_value(ds, path, n) for n, ds in datasets.items()}
    except InputError:
        raise
    except Exception as exc:  # h5py raises OSError/KeyError/... for damaged files
        raise InputError(f"{path}: not a readable MAT v7.3 file ({_one_line(exc)})") from None
    return out, names


def _v73_value(ds: Any, path: Path, name: str) -> Any:
    if not hasattr(ds, "shape"):
        raise InputError(f"{path}: variable '{name}' is a struct or group, not an array")
    cls = ds.attrs.get("MATLAB_class", b"")
    cls = cls.decode() if isinstance(cls, bytes) else str(cls)
    if ds.attrs.get("MATLAB_empty", 0):
        return "" if cls == "char" else np.zeros((0,))
    if cls == "char":
        codes = np.asarray(ds[()]).T.reshape(-1)
        return "".join(chr(int(c)) for c in codes).strip()
    arr = np.asarray(ds[()])
    if arr.dtype.kind in "OV":
        raise InputError(f"{path}: variable '{name}' is a cell or struct, not a numeric array")
    return arr.T  # column-major storage: reverse all axes


# ---------------------------------------------------------------------------------- scene
def _load(path: Path, want: tuple[str, ...] = _WANTED) -> tuple[dict[str, Any], list[str], str]:
    check_local_path(path)
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    if _is_v73(path):
        return (*_load_v73(path, want), "7.3")
    try:
        return (*_load_v5(path, want), "5")
    except InputError:
        import h5py

        if not h5py.is_hdf5(path):
            raise
        return (*_load_v73(path, want), "7.3")


def _scalar(values: dict[str, Any], path: Path, name: str) -> float | None:
    if name not in values:
        return None
    arr = np.asarray(values[name])
    if arr.size != 1 or arr.dtype.kind not in "biuf":
        raise InputError(f"{path}: variable '{name}' must be a number, got {arr.shape} "
                         f"{arr.dtype}")
    value = float(arr.reshape(-1)[0])
    if not np.isfinite(value):
        raise InputError(f"{path}: variable '{name}' must be finite, got {value}")
    return value


def _channel_first(arr: Any, path: Path, name: str, ndims: tuple[int, ...]) -> np.ndarray:
    arr = np.asarray(arr)
    if arr.dtype.kind not in "biuf" or arr.ndim not in ndims:
        raise InputError(
            f"{path}: variable '{name}' must be a numeric array with "
            f"{' or '.join(map(str, ndims))} dimensions, got shape {arr.shape} ({arr.dtype})"
        )
    if arr.ndim == 2:
        arr = arr[:, :, None]
    return np.moveaxis(arr, -1, 0)


def _pan(arr: Any, path: Path) -> np.ndarray:
    pan = _channel_first(arr, path, "I_PAN", (2, 3))
    if pan.shape[0] != 1:
        raise InputError(f"{path}: variable 'I_PAN' must be (H, W), got {np.shape(arr)}")
    return pan[0]


def _resolve_sensor(values: dict[str, Any], path: Path, sensor: str | Sensor | None) -> Sensor:
    if sensor is not None:
        return get_sensor(sensor)
    name = values.get("sensor")
    if not isinstance(name, str) or not name or name.lower() in ("none", "unknown"):
        raise InputError(
            f"{path}: file does not name its sensor; pass --sensor NAME (see `tta sensors`)"
        )
    try:
        return get_sensor(name)
    except SensorError:
        raise InputError(
            f"{path}: file names sensor {name!r}, which is not a known preset; pass --sensor "
            "NAME (see `tta sensors`)"
        ) from None


def _ratio(values: dict[str, Any], path: Path) -> int | None:
    ratio = _scalar(values, path, "ratio")
    if ratio is None:
        return None
    if ratio != int(ratio) or ratio < 1:
        raise InputError(f"{path}: variable 'ratio' must be a positive integer, got {ratio:g}")
    return int(ratio)


def read_mat(
    path: str | Path,
    *,
    sensor: str | Sensor | None = None,
    max_value: float | None = None,
    bands: Sequence[str] | None = None,
) -> Scene:
    """Read a toolbox-convention ``.mat`` file (v5/v7 or v7.3) as a :class:`Scene`.

    Args:
        path: File path.
        sensor: Sensor name/preset; overrides the file's ``sensor`` string (required when the
            file has none or names an unknown sensor).
        max_value: DN scale; overrides ``2**L - 1`` from the file's ``L`` and the sensor's
            nominal value.
        bands: MS band names; override the file's ``bands`` variable (a comma-separated
            string, e.g. ``'blue,green,red,nir'``).

    Raises:
        InputError: Missing or unreadable file, missing ``I_MS_LR``/``I_PAN`` (the message
            lists the variables found), malformed variables, no usable sensor, or a scene
            validation failure. One line each.
    """
    path = Path(path)
    values, names, version = _load(path)
    missing = [k for k in _REQUIRED if k not in values]
    if missing:
        found = ", ".join(names) or "nothing"
        raise InputError(f"{path}: missing variable(s) {', '.join(missing)} (found: {found})")
    resolved = _resolve_sensor(values, path, sensor)
    bit_depth = _scalar(values, path, "L")
    if bit_depth is not None and not (bit_depth == int(bit_depth) and 1 <= bit_depth <= 32):
        raise InputError(f"{path}: variable 'L' (bit depth) must be an integer in 1..32, got "
                         f"{bit_depth:g}")
    if max_value is None and bit_depth is not None:
        max_value = 2.0 ** bit_depth - 1
    gt = values.get("I_GT")
    if bands is None and isinstance(values.get("bands"), str) and values["bands"]:
        bands = [b.strip() for b in values["bands"].split(",") if b.strip()]
    return Scene(
        ms=_channel_first(values["I_MS_LR"], path, "I_MS_LR", (2, 3)),
        pan=_pan(values["I_PAN"], path),
        gt=None if gt is None else _channel_first(gt, path, "I_GT", (2, 3)),
        sensor=resolved,
        ratio=_ratio(values, path),
        max_value=max_value,
        band_names=None if bands is None else tuple(bands),
        source=str(path),
        meta={"files": [str(path)], "mat_version": version, "variables": names},
    )
