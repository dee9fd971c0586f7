"""Lists of scenes for ``tta batch``: a folder, a glob pattern, a manifest, or scene specs.

Manifest forms (relative paths are taken from the manifest's folder):

* text (``.txt``, ``.lst``): one scene spec per line; blank lines and lines starting with
  ``#`` are skipped;
* CSV (``.csv``): a header with a ``scene`` column and optional per-scene columns
  (:data:`ENTRY_KEYS`); empty cells mean "not given";
* YAML (``.yaml``/``.yml``): a list of scene specs or mappings ``{scene: SPEC, KEY: VALUE}``,
  or a mapping ``{scenes: [...], defaults: {KEY: VALUE}}``. A YAML mapping with ``ms`` and
  ``pan`` is a single GeoTIFF scene (:func:`tta.io.parse_spec`), not a list.

A folder lists its ``.h5``/``.hdf5``/``.he5``/``.mat`` files (not recursive), sorted by name;
a pattern with ``*``, ``?`` or ``[`` is expanded (``**`` recursive) to the same kinds of file.
"""

from __future__ import annotations

import csv
import glob
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tta.errors import InputError
from tta.io.safety import check_local_path

__all__ = ["ENTRY_KEYS", "SceneEntry", "collect_scenes"]

#: Per-scene keys of a manifest entry besides ``scene``, with their types.
ENTRY_KEYS: dict[str, type] = {
    "name": str, "sensor": str, "bands": str, "max_value": float, "model": str, "weights": str,
    "config": str, "interface": str, "adapter": str, "sampler": str, "fraction": float,
    "steps": int, "lr": float, "patch": int, "seed": int,
}
_PATH_KEYS = ("weights", "config")
_SCENE_SUFFIXES = (".h5", ".hdf5", ".he5", ".mat")
_MANIFEST_SUFFIXES = (".txt", ".lst", ".csv", ".yaml", ".yml")


@dataclass(frozen=True)
class SceneEntry:
    """One scene of a batch: its spec and the options given for it alone.

    Attributes:
        spec: Scene spec (:func:`tta.io.parse_spec`), paths resolved from the manifest.
        options: Per-scene options (keys of :data:`ENTRY_KEYS`), typed.
        origin: Where the entry came from (``list.csv:4``), for messages.
    """

    spec: str
    options: dict[str, Any] = field(default_factory=dict)
    origin: str = ""


def _resolve(spec: str, base: Path) -> str:
    """``spec`` with each relative file path taken from ``base``."""
    def one(part: str) -> str:
        check_local_path(part)
        return part if Path(part).is_absolute() else str(base / part)

    if "+" in spec and all(p.lower().endswith((".tif", ".tiff")) for p in spec.split("+")):
        return "+".join(one(p) for p in spec.split("+"))
    path, sep, index = spec.rpartition("#") if "#" in spec else (spec, "", "")
    return one(path) + sep + index


def _typed(key: str, value: Any, where: str) -> Any:
    kind = ENTRY_KEYS.get(key)
    if kind is None:
        raise InputError(f"{where}: unknown key {key!r} (known: scene, "
                         f"{', '.join(ENTRY_KEYS)})")
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        if kind is int and isinstance(value, str | float) and float(value) != int(float(value)):
            raise ValueError
        out = kind(float(value)) if kind is int else kind(value)
    except (TypeError, ValueError):
        raise InputError(f"{where}: {key} must be {kind.__name__}, got {value!r}") from None
    return out.strip() if isinstance(out, str) else out


def _entry(raw: Any, base: Path, where: str, defaults: dict[str, Any]) -> SceneEntry:
    if isinstance(raw, str):
        raw = {"scene": raw}
    if not isinstance(raw, dict):
        raise InputError(f"{where}: an entry is a scene spec or a mapping with 'scene'")
    raw = {str(k).strip(): v for k, v in raw.items()}
    spec = raw.pop("scene", None)
    if not isinstance(spec, str) or not spec.strip():
        raise InputError(f"{where}: entry without a 'scene'")
    options = dict(defaults)
    for key, value in raw.items():
        typed = _typed(key, value, where)
        if typed is not None:
            options[key] = typed
    for key in _PATH_KEYS:
        if key in options and not Path(options[key]).is_absolute():
            options[key] = str(base / check_local_path(options[key]))
    return SceneEntry(_resolve(spec.strip(), base), options, where)


def _read_text(path: Path) -> str:
    if not path.is_file():
        raise InputError(f"{path}: manifest not found" if not path.exists()
                         else f"{path}: not a file")
    try:
        return path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not a readable text manifest ({type(exc).__name__})"
                         ) from None


def _yaml_entries(path: Path, text: str) -> list[SceneEntry] | None:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        raise InputError(f"{path}: not valid YAML") from None
    if isinstance(data, dict) and "ms" in data and "pan" in data:
        return None  # a single GeoTIFF scene manifest
    defaults: dict[str, Any] = {}
    if isinstance(data, dict):
        extra = set(data) - {"scenes", "defaults"}
        if "scenes" not in data or extra:
            raise InputError(f"{path}: a batch manifest is a list of scenes or a mapping with "
                             "'scenes' (and optional 'defaults')")
        raw_defaults = data.get("defaults") or {}
        if not isinstance(raw_defaults, dict):
            raise InputError(f"{path}: 'defaults' must be a mapping")
        defaults = {str(k): _typed(str(k), v, f"{path}: defaults")
                    for k, v in raw_defaults.items()}
        defaults = {k: v for k, v in defaults.items() if v is not None}
        if "name" in defaults:
            raise InputError(f"{path}: 'name' cannot be a default (each scene needs its own)")
        for key in _PATH_KEYS:
            if key in defaults and not Path(defaults[key]).is_absolute():
                defaults[key] = str(path.parent / defaults[key])
        data = data["scenes"]
    if not isinstance(data, list):
        raise InputError(f"{path}: a batch manifest is a list of scenes")
    return [_entry(raw, path.parent, f"{path}: entry {i + 1}", defaults)
            for i, raw in enumerate(data)]


def _csv_entries(path: Path, text: str) -> list[SceneEntry]:
    try:
        rows = list(csv.DictReader(io.StringIO(text)))
    except csv.Error as exc:
        raise InputError(f"{path}: not a readable CSV file ({exc})") from None
    if not rows and not text.strip():
        return []
    header = next(csv.reader(io.StringIO(text)), [])
    if "scene" not in [h.strip() for h in header]:
        raise InputError(f"{path}: a CSV manifest needs a 'scene' column (found: "
                         f"{', '.join(header) or 'nothing'})")
    out = []
    for line, row in enumerate(rows, start=2):
        if None in row:
            raise InputError(f"{path}:{line}: more cells than header columns")
        out.append(_entry(row, path.parent, f"{path}:{line}", {}))
    return out


def _manifest(path: Path) -> list[SceneEntry] | None:
    """Entries of a manifest file; None when ``path`` is itself one scene (YAML scene)."""
    text = _read_text(path)
    suffix = path.suffix.lower()
    if suffix in (".yaml", ".yml"):
        return _yaml_entries(path, text)
    if suffix == ".csv":
        return _csv_entries(path, text)
    if "\x00" in text:
        raise InputError(f"{path}: not a text manifest (binary data)")
    return [_entry(line.strip(), path.parent, f"{path}:{n}", {})
            for n, line in enumerate(text.splitlines(), start=1)
            if line.strip() and not line.lstrip().startswith("#")]


def _scene_files(paths: list[str]) -> list[SceneEntry]:
    return [SceneEntry(p, {}, p) for p in sorted(paths)
            if Path(p).is_file() and p.lower().endswith(_SCENE_SUFFIXES)]


def collect_scenes(sources: list[str] | tuple[str, ...] | str) -> list[SceneEntry]:
    """The scenes named by ``sources`` (see the module docstring), in the order given.

    Raises:
        InputError: A missing folder or manifest, a pattern or folder with no scene, a
            malformed manifest, or no scene at all. One line naming the source.
    """
    if isinstance(sources, str):
        sources = [sources]
    entries: list[SceneEntry] = []
    for source in sources:
        text = str(source)
        check_local_path(text)
        path = Path(text)
        if any(c in text for c in "*?[") and not path.exists():
            found = _scene_files(glob.glob(text, recursive=True))
            if not found:
                raise InputError(f"{text}: the pattern matches no scene file "
                                 f"({', '.join(_SCENE_SUFFIXES)})")
            entries += found
        elif path.is_dir():
            found = _scene_files([str(p) for p in path.iterdir()])
            if not found:
                raise InputError(f"{path}: the folder holds no scene file "
                                 f"({', '.join(_SCENE_SUFFIXES)})")
            entries += found
        elif path.suffix.lower() in _MANIFEST_SUFFIXES:
            listed = _manifest(path)
            entries += [SceneEntry(text, {}, text)] if listed is None else listed
        else:  # a scene spec itself (e.g. a file the shell expanded from a pattern)
            entries.append(SceneEntry(text, {}, text))
    if not entries:
        raise InputError("no scenes to run: the manifests list none")
    return entries
