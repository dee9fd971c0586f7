"""Scene I/O: the one place in the toolkit that opens files.

A *scene spec* names what to read:

* ``scene.h5`` or ``scene.h5#3`` - PanCollection HDF5 (sample 3, 0-based);
* ``scene.mat`` - MATLAB file with ``I_MS_LR`` and ``I_PAN`` (v5 or v7.3);
* ``ms.tif+pan.tif`` - GeoTIFF pair; the last file is PAN, the ones before it are MS files
  stacked band-wise in order (``B2.tif+B3.tif+B4.tif+B5.tif+B8.tif`` for Landsat 8);
* ``scene.yaml`` - a manifest ``{ms: FILE or [FILES], pan: FILE, sensor: NAME}`` for GeoTIFFs,
  optionally ``bands: [blue, green, red, nir]``.

Every reader takes ``bands`` (the MS band names, ``--bands`` on the command line), which
overrides the layout a file declares (h5 attribute ``bands``, GeoTIFF band descriptions, MATLAB
variable ``bands``, the manifest's ``bands``); see :class:`Scene` for how names are matched to
the sensor.

Fused products are written by the writer that :data:`WRITERS` holds for the output's suffix
(``.h5`` and ``.tif`` families; :func:`register_writer` adds one).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tta.errors import InputError
from tta.io.atomic import atomic_output, check_output_path
from tta.io.geotiff import read_geotiff_pair, write_geotiff, write_scene_geotiff
from tta.io.h5 import count_h5, iter_h5, read_h5, write_h5
from tta.io.mat import read_mat
from tta.io.safety import check_local_path
from tta.io.scene import Scene
from tta.io.yaml_file import read_yaml
from tta.registry import Registry
from tta.sensors import Sensor

__all__ = [
    "Scene",
    "SceneSpec",
    "WRITERS",
    "atomic_output",
    "check_output_path",
    "count_scenes",
    "iter_scenes",
    "parse_bands",
    "parse_spec",
    "read_geotiff_pair",
    "read_h5",
    "read_mat",
    "read_scene",
    "register_writer",
    "writer_for",
    "write_fused",
    "write_geotiff",
    "write_h5",
    "write_scene_geotiff",
]

_H5 = (".h5", ".hdf5", ".he5")
_TIF = (".tif", ".tiff")
_YAML = (".yaml", ".yml")

#: ``writer(path, scene, fused (C, H, W) DN, *, dtype, overwrite) -> Path``.
Writer = Callable[..., Path]
#: Writers of fused products by lower-case output suffix (``".h5"``).
WRITERS: Registry[Writer] = Registry("output format")


def register_writer(*suffixes: str) -> Callable[[Writer], Writer]:
    """Decorator registering a fused-product writer for each of ``suffixes`` (``".npy"``)."""
    def add(fn: Writer) -> Writer:
        for suffix in suffixes:
            WRITERS.register(suffix.lower(), fn)
        return fn

    return add


def writer_for(path: str | Path) -> Writer:
    """The writer of ``path``'s suffix.

    Raises:
        InputError: No writer for the suffix; names the formats.
    """
    suffix = Path(path).suffix.lower()
    if suffix not in WRITERS:
        firsts = list(dict((id(w), s) for s, w in reversed(list(WRITERS.items()))).values())
        raise InputError(f"{path}: output must end in {' or '.join(reversed(firsts))}")
    return WRITERS[suffix]


@register_writer(*_H5)
def _write_h5_product(path: str | Path, scene: Scene, fused: np.ndarray, *, dtype: str,
                      overwrite: bool) -> Path:
    """The scene's inputs plus dataset ``fused`` (float32; ``dtype`` does not apply)."""
    return write_h5(path, scene, fused=fused, overwrite=overwrite)


@register_writer(*_TIF)
def _write_tif_product(path: str | Path, scene: Scene, fused: np.ndarray, *, dtype: str,
                       overwrite: bool) -> Path:
    """The fused bands on the PAN grid with the scene's georeferencing and nodata."""
    return write_geotiff(path, fused, scene, dtype=dtype, overwrite=overwrite)


@dataclass(frozen=True)
class SceneSpec:
    """A parsed scene spec: its format, files (MS first, PAN last for GeoTIFF) and index."""

    kind: str  # "h5" | "mat" | "geotiff"
    files: tuple[Path, ...]
    index: int | None = None
    sensor: str | None = None
    max_value: float | None = None
    bands: tuple[str, ...] | None = None


def parse_bands(text: str | Sequence[str] | None) -> tuple[str, ...] | None:
    """``"blue,green,red,nir"`` (or a list) as band names; None stays None.

    Raises:
        InputError: Empty names, a name given twice.
    """
    if text is None:
        return None
    items = text.split(",") if isinstance(text, str) else [str(b) for b in text]
    names = tuple(b.strip() for b in items)
    if not names or not all(names):
        raise InputError(f"--bands {text!r}: give comma-separated band names, e.g. "
                         "blue,green,red,nir")
    from tta.sensors.bands import canonical_band

    canon = [canonical_band(b) for b in names]
    if len(set(canon)) != len(canon):
        raise InputError(f"--bands {text!r}: a band is named twice")
    return names


def _manifest(path: Path) -> SceneSpec:
    data = read_yaml(path)
    if not isinstance(data, dict) or "pan" not in data or "ms" not in data:
        raise InputError(f"{path}: a scene manifest needs keys 'ms' and 'pan'")
    ms = data["ms"] if isinstance(data["ms"], list) else [data["ms"]]
    files = tuple(path.parent / check_local_path(str(p)) for p in [*ms, data["pan"]])
    max_value = data.get("max_value")
    if max_value is not None:
        try:
            max_value = float(max_value)
        except (TypeError, ValueError):
            max_value = float("nan")
        if not (math.isfinite(max_value) and max_value > 0):
            raise InputError(f"{path}: 'max_value' must be a positive number, got "
                             f"{data['max_value']!r}")
    sensor = data.get("sensor")
    bands = data.get("bands")
    if bands is not None and not isinstance(bands, (list, str)):
        raise InputError(f"{path}: 'bands' must be a list of band names")
    return SceneSpec("geotiff", files, sensor=None if sensor is None else str(sensor),
                     max_value=max_value, bands=parse_bands(bands))


def parse_spec(spec: str | Path) -> SceneSpec:
    """Parse a scene spec (see the module docstring).

    Raises:
        InputError: Unknown extension or malformed index.
    """
    text = str(spec)
    check_local_path(text)
    if "+" in text and all(p.lower().endswith(_TIF) for p in text.split("+")):
        parts = tuple(check_local_path(p) for p in text.split("+"))
        if len(parts) < 2:
            raise InputError(f"{text}: a GeoTIFF scene needs MS file(s) and a PAN file")
        return SceneSpec("geotiff", parts)
    index = None
    if "#" in text:
        text, _, idx = text.rpartition("#")
        try:
            index = int(idx)
        except ValueError:
            raise InputError(f"{spec}: sample index after '#' must be an integer") from None
    path = Path(text)
    suffix = path.suffix.lower()
    if suffix in _H5:
        return SceneSpec("h5", (path,), index)
    if index is not None:
        raise InputError(f"{spec}: '#K' sample selection applies to h5 files only")
    if suffix == ".mat":
        return SceneSpec("mat", (path,))
    if suffix in _YAML:
        return _manifest(path)
    if suffix in _TIF:
        raise InputError(f"{spec}: a GeoTIFF scene is a pair: give MS.tif+PAN.tif")
    raise InputError(
        f"{spec}: unrecognised scene format (expected .h5, .mat, MS.tif+PAN.tif or a .yaml "
        "manifest)"
    )


def read_scene(
    spec: str | Path,
    *,
    sensor: str | Sensor | None = None,
    max_value: float | None = None,
    bands: str | Sequence[str] | None = None,
) -> Scene:
    """Read one scene from a scene spec; ``sensor``/``max_value``/``bands`` (MS band names,
    e.g. ``"blue,green,red,nir"``) override the file's."""
    parsed = parse_spec(spec)
    bands = parse_bands(bands) if bands is not None else parsed.bands
    sensor = sensor if sensor is not None else parsed.sensor
    max_value = max_value if max_value is not None else parsed.max_value
    if parsed.kind == "h5":
        scene = read_h5(parsed.files[0], parsed.index, sensor=sensor, max_value=max_value,
                        bands=bands)
    elif parsed.kind == "mat":
        scene = read_mat(parsed.files[0], sensor=sensor, max_value=max_value, bands=bands)
    else:
        scene = read_geotiff_pair(parsed.files[:-1], parsed.files[-1], sensor=sensor,
                                  max_value=max_value, bands=bands)
    return _check_named(scene, bands)


def _check_named(scene: Scene, bands: Sequence[str] | None) -> Scene:
    """Names given by the user must all be bands this toolkit knows or the sensor's."""
    from tta.sensors.bands import canonical_band, known_band

    if bands is not None:
        own = {canonical_band(b) for b in (scene.sensor.subset_of or scene.sensor.bands)}
        odd = [b for b in bands if not known_band(b) and canonical_band(b) not in own]
        if odd:
            raise InputError(f"{scene.source}: unknown band name(s) {', '.join(odd)} for "
                             f"sensor {scene.sensor.name} "
                             f"({','.join(scene.sensor.subset_of or scene.sensor.bands)})")
    return scene


def iter_scenes(
    spec: str | Path,
    *,
    sensor: str | Sensor | None = None,
    max_value: float | None = None,
    bands: str | Sequence[str] | None = None,
) -> Iterator[Scene]:
    """Iterate over every scene a spec names (all samples of an h5 file without ``#K``)."""
    parsed = parse_spec(spec)
    if parsed.kind == "h5" and parsed.index is None:
        names = parse_bands(bands)
        for scene in iter_h5(parsed.files[0], sensor=sensor, max_value=max_value,
                             bands=names):
            yield _check_named(scene, names)
    else:
        yield read_scene(spec, sensor=sensor, max_value=max_value, bands=bands)


def count_scenes(spec: str | Path) -> int:
    """How many scenes :func:`iter_scenes` yields for a spec."""
    parsed = parse_spec(spec)
    if parsed.kind == "h5" and parsed.index is None:
        return count_h5(parsed.files[0])
    return 1


def write_fused(
    path: str | Path,
    scene: Scene,
    fused: np.ndarray,
    *,
    dtype: str = "uint16",
    overwrite: bool = False,
) -> Path:
    """Write a fused ``(C, H, W)`` product in DN with the writer of its suffix
    (:data:`WRITERS`): the h5 output holds the scene's inputs plus dataset ``fused``; the
    GeoTIFF holds the fused bands on the PAN grid with the scene's georeferencing and nodata.

    Raises:
        InputError: No writer for the suffix, or the product has NaN or infinite values
            outside the nodata mask.
        OutputError: See :func:`tta.io.atomic.check_output_path`.
    """
    from tta.checks import check_finite_product

    writer = writer_for(path)
    check_finite_product(fused, scene)
    return writer(path, scene, fused, dtype=dtype, overwrite=overwrite)
