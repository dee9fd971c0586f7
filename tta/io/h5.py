"""PanCollection-convention HDF5 files.

Layout (Deng et al. PanCollection, as used by DLPan-Toolbox): datasets ``ms`` ``(N, C, h, w)``,
``pan`` ``(N, 1, H, W)``, optional ``gt`` ``(N, C, H, W)`` and ``lms`` (ignored: we upsample
ourselves), values in DN. Real PanCollection files carry no attributes, so the sensor (and, if
not the sensor's nominal one, the max value) must be given by the caller. Files written by this
toolkit (and those in the shared data folder) add root attributes ``sensor``, ``ratio``,
``bit_depth``, ``max_value``, ``bands`` and ``resolution``; ours may also hold ``fused``
``(N, C, H, W)`` (a pansharpened product), ``nodata`` ``(N, 1, H, W)`` and, for one-sample
georeferenced files, ``transform``/``crs`` attributes.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tta.errors import InputError
from tta.io.atomic import atomic_output
from tta.io.safety import check_h5_dataset, check_local_path, check_size
from tta.io.scene import Scene
from tta.sensors import Sensor, get_sensor

__all__ = ["count_h5", "iter_h5", "read_h5", "write_h5"]


def _open(path: Path):
    import h5py

    check_local_path(path)
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        reason = str(exc).split("(")[0].strip().rstrip(",") or "cannot be opened"
        raise InputError(f"{path}: not a readable HDF5 file ({reason})") from None


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.ndarray):
        return _text(value.reshape(-1)[0]) if value.size else ""
    return str(value)


def _dataset(f, path: Path, name: str, ndims: tuple[int, ...]):
    if name not in f:
        found = ", ".join(sorted(f.keys())) or "nothing"
        raise InputError(f"{path}: missing dataset '{name}' (found: {found})")
    ds = check_h5_dataset(f, path, name)
    if ds.ndim not in ndims:
        raise InputError(
            f"{path}: dataset '{name}' must have {' or '.join(map(str, ndims))} dimensions, "
            f"got shape {getattr(ds, 'shape', '?')}"
        )
    return ds


def _layout(f, path: Path) -> tuple[Any, Any, Any | None, Any | None, Any | None, int]:
    ms = _dataset(f, path, "ms", (4,))
    pan = _dataset(f, path, "pan", (3, 4))
    gt = _dataset(f, path, "gt", (4,)) if "gt" in f else None
    fused = _dataset(f, path, "fused", (4,)) if "fused" in f else None
    nodata = _dataset(f, path, "nodata", (3, 4)) if "nodata" in f else None
    n = ms.shape[0]
    if pan.ndim == 4 and pan.shape[1] != 1:
        raise InputError(f"{path}: dataset 'pan' must be (N, 1, H, W), got {pan.shape}")
    for name, ds in (("pan", pan), ("gt", gt), ("fused", fused), ("nodata", nodata)):
        if ds is not None and ds.shape[0] != n:
            raise InputError(
                f"{path}: dataset '{name}' holds {ds.shape[0]} samples but 'ms' holds {n}"
            )
    if n == 0:
        raise InputError(f"{path}: empty file (0 samples)")
    return ms, pan, gt, fused, nodata, n


def count_h5(path: str | Path) -> int:
    """Number of samples in a PanCollection h5 file."""
    path = Path(path)
    with _open(path) as f:
        return _layout(f, path)[-1]


def _resolve_sensor(f, path: Path, sensor: str | Sensor | None) -> Sensor:
    if sensor is not None:
        return get_sensor(sensor)
    name = _text(f.attrs["sensor"]) if "sensor" in f.attrs else ""
    if not name or name.upper() == "UNKNOWN":
        raise InputError(
            f"{path}: file does not name its sensor; pass --sensor NAME (see `tta sensors`)"
        )
    return get_sensor(name)


def _number_attr(attrs: Any, path: Path, key: str, *, integer: bool = False) -> Any:
    """A positive finite numeric attribute (None when absent)."""
    if key not in attrs:
        return None
    value = np.asarray(attrs[key])
    ok = value.size == 1 and value.dtype.kind in "iuf"
    number = float(value.reshape(-1)[0]) if ok else float("nan")
    if not (np.isfinite(number) and number > 0 and (not integer or number == int(number))):
        kind = "a positive integer" if integer else "a positive number"
        raise InputError(f"{path}: attribute '{key}' must be {kind}, got {_text(value)!r}")
    return int(number) if integer else number


def _read_sample(
    f, path: Path, index: int, sensor: Sensor, max_value: float | None,
    band_names: Sequence[str] | None = None,
) -> tuple[Scene, np.ndarray | None]:
    ms, pan, gt, fused, nodata, n = _layout(f, path)
    if not -n <= index < n:
        raise InputError(f"{path}: sample #{index} out of range (file holds {n})")
    index %= n
    attrs = f.attrs
    ratio = _number_attr(attrs, path, "ratio", integer=True)
    if max_value is None:
        max_value = _number_attr(attrs, path, "max_value")
    check_size(path, [ds.shape[1:] for ds in (ms, pan, gt, fused, nodata) if ds is not None])
    bands = None
    if "bands" in attrs:
        bands = tuple(b.strip() for b in _text(attrs["bands"]).split(",") if b.strip())
    if bands is not None and len(bands) != ms.shape[1]:
        bands = None  # a stale attribute must not block reading; Scene uses the sensor's
    if band_names is not None:
        bands = tuple(band_names)
    mask = None
    if nodata is not None:
        mask = np.asarray(nodata[index]).reshape(pan.shape[-2:]).astype(bool)
    transform, crs = None, None
    if n == 1 and "transform" in attrs:
        from affine import Affine

        try:
            transform = Affine(*[float(v) for v in np.asarray(attrs["transform"])[:6]])
        except (TypeError, ValueError):
            raise InputError(f"{path}: attribute 'transform' must hold 6 numbers") from None
        crs = _text(attrs["crs"]) if "crs" in attrs else None
    source = f"{path}#{index}" if n > 1 else str(path)
    try:
        scene = Scene(
            ms=np.asarray(ms[index]),
            pan=np.asarray(pan[index]).reshape(pan.shape[-2:]),
            gt=None if gt is None else np.asarray(gt[index]),
            sensor=sensor,
            ratio=ratio,
            max_value=max_value,
            band_names=bands,
            nodata=mask,
            transform=transform,
            crs=crs,
            source=source,
            meta={"files": [str(path)], "index": index, "samples": n,
                  "attrs": {k: _text(v) for k, v in attrs.items() if k not in ("transform",)}},
        )
    except OSError as exc:
        raise InputError(f"{path}: cannot read sample #{index} ({exc})") from None
    fused_arr = None if fused is None else np.asarray(fused[index], dtype=np.float32)
    return scene, fused_arr


def read_h5(
    path: str | Path,
    index: int | None = None,
    *,
    sensor: str | Sensor | None = None,
    max_value: float | None = None,
    with_fused: bool = False,
    bands: Sequence[str] | None = None,
) -> Scene | tuple[Scene, np.ndarray | None]:
    """Read one sample of a PanCollection h5 file as a :class:`Scene`.

    Args:
        path: File path.
        index: Sample to read; may be omitted when the file holds one sample.
        sensor: Sensor name/preset; overrides the file's ``sensor`` attribute (required for
            PanCollection files without attributes).
        max_value: DN scale; overrides the file attribute and the sensor's nominal value.
        with_fused: Also return the file's ``fused`` product (or None).
        bands: MS band names, overriding the file's ``bands`` attribute.

    Raises:
        InputError: Missing file, not HDF5, wrong datasets, index out of range, or a
            validation failure of the scene.
    """
    path = Path(path)
    with _open(path) as f:
        n = _layout(f, path)[-1]
        if index is None:
            if n != 1:
                raise InputError(f"{path}: holds {n} samples; pick one as {path}#K (K < {n})")
            index = 0
        scene, fused = _read_sample(f, path, index, _resolve_sensor(f, path, sensor), max_value,
                                    bands)
    return (scene, fused) if with_fused else scene


def iter_h5(
    path: str | Path, *, sensor: str | Sensor | None = None, max_value: float | None = None,
    bands: Sequence[str] | None = None,
) -> Iterator[Scene]:
    """Iterate over every sample of a PanCollection h5 file (one read per sample)."""
    path = Path(path)
    with _open(path) as f:
        n = _layout(f, path)[-1]
        resolved = _resolve_sensor(f, path, sensor)
        for i in range(n):
            yield _read_sample(f, path, i, resolved, max_value, bands)[0]


def write_h5(
    path: str | Path,
    scenes: Scene | Sequence[Scene],
    *,
    fused: np.ndarray | Sequence[np.ndarray] | None = None,
    overwrite: bool = False,
    notes: str = "",
) -> Path:
    """Write scenes (all of one shape and sensor) to a PanCollection h5 file, atomically.

    Datasets are float32, gzip-compressed and chunked per sample. ``fused`` (one ``(C, H, W)``
    array per scene) is stored as dataset ``fused``.

    Raises:
        OutputError: ``path`` is an input of one of the scenes, or exists without
            ``overwrite``.
        InputError: The scenes differ in shape, sensor or presence of ``gt``.
    """
    import h5py

    scenes = [scenes] if isinstance(scenes, Scene) else list(scenes)
    if not scenes:
        raise InputError("nothing to write: no scenes")
    if fused is not None:
        fused = [fused] if isinstance(fused, np.ndarray) and fused.ndim == 3 else list(fused)
        if len(fused) != len(scenes):
            raise InputError(f"{len(fused)} fused products for {len(scenes)} scenes")
    first = scenes[0]
    for s in scenes[1:]:
        if (s.ms.shape, s.pan.shape, s.sensor.name, s.is_reduced) != (
            first.ms.shape, first.pan.shape, first.sensor.name, first.is_reduced
        ):
            raise InputError(f"{s.source}: differs in shape, sensor or gt from {first.source}")
    inputs = [p for s in scenes for p in s.meta.get("files", [])]

    def stack(arrays: list[np.ndarray]) -> np.ndarray:
        return np.stack([np.asarray(a, dtype=np.float32) for a in arrays])

    with atomic_output(path, inputs, overwrite=overwrite) as tmp:
        with h5py.File(tmp, "w") as f:
            def put(name: str, data: np.ndarray) -> None:
                f.create_dataset(name, data=data, compression="gzip", compression_opts=4,
                                 shuffle=True, chunks=(1, *data.shape[1:]))

            put("ms", stack([s.ms for s in scenes]))
            put("pan", stack([s.pan[None] for s in scenes]))
            if first.is_reduced:
                put("gt", stack([s.gt for s in scenes]))
            if fused is not None:
                for s, x in zip(scenes, fused, strict=True):
                    if x.shape != s.shape:
                        raise InputError(f"fused product {x.shape} does not match {s.shape}")
                put("fused", stack(list(fused)))
            if any(s.nodata is not None for s in scenes):
                masks = [s.nodata if s.nodata is not None else np.zeros(s.pan.shape, bool)
                         for s in scenes]
                put("nodata", np.stack(masks)[:, None].astype(np.uint8))
            f.attrs["sensor"] = first.sensor.name
            f.attrs["ratio"] = first.ratio
            f.attrs["bit_depth"] = first.sensor.bit_depth
            f.attrs["max_value"] = first.max_value
            f.attrs["bands"] = ",".join(first.band_names)
            f.attrs["resolution"] = "reduced" if first.is_reduced else "full"
            f.attrs["source"] = ";".join(s.source for s in scenes)
            f.attrs["notes"] = notes
            if len(scenes) == 1 and first.transform is not None:
                f.attrs["transform"] = np.asarray(list(first.transform)[:6], dtype=np.float64)
                if first.crs:
                    f.attrs["crs"] = first.crs
    return Path(path)
