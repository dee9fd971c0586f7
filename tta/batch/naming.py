"""Output names of a batch: one product and one report per scene in one folder.

A scene's name is its file's stem (the MS file of a GeoTIFF pair; ``_K`` appended for sample
``#K`` of an h5 file) with every character other than letters, digits, ``.``, ``-`` and
``_`` replaced by ``_``, or the manifest's ``name``. Derived names that collide (compared
case-insensitively, as on macOS and Windows file systems) all get ``-`` and 8 hex digits of
the SHA-1 of the scene's resolved spec, so each name depends on its scene alone, not on the
order of the list. Two entries of one scene, or a given ``name`` equal to another scene's,
are refused.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections import defaultdict
from pathlib import Path

from tta.errors import InputError

__all__ = ["PRODUCT_SUFFIX", "REPORT_SUFFIX", "scene_names", "scene_stem"]

PRODUCT_SUFFIX = "_fused"
REPORT_SUFFIX = "_report.json"
_UNSAFE = re.compile(r"[^\w.\-]+")
_MAX = 120


def _clean(text: str) -> str:
    name = _UNSAFE.sub("_", unicodedata.normalize("NFC", text)).strip("._") or "scene"
    return name[:_MAX]


def scene_stem(spec: str) -> str:
    """The name derived from a scene spec (see the module docstring)."""
    first = spec.split("+")[0]
    index = ""
    if "+" not in spec and "#" in first:
        first, _, index = first.rpartition("#")
    stem = _clean(Path(first).stem)
    return f"{stem}_{index}" if index else stem


def _key(spec: str) -> str:
    parts = spec.split("+")
    return "+".join(str(Path(p.split("#")[0]).resolve()) + ("#" + p.rpartition("#")[2]
                    if "#" in p and len(parts) == 1 else "") for p in parts)


def scene_names(specs: list[str], given: list[str | None]) -> list[str]:
    """One distinct output name per scene (see the module docstring).

    Raises:
        InputError: A scene listed twice, a given name that is not a plain file name, or two
            scenes on one name.
    """
    keys = [_key(s) for s in specs]
    first: dict[str, int] = {}
    for i, k in enumerate(keys):
        if k in first:
            raise InputError(f"scene {specs[i]} is listed twice (entries {first[k] + 1} and "
                             f"{i + 1})")
        first[k] = i
    names: list[str] = []
    for spec, name in zip(specs, given, strict=True):
        if name is not None and _clean(name) != name:
            raise InputError(f"name {name!r} of scene {spec}: use letters, digits, '.', '-' "
                             "and '_' only")
        names.append(name if name is not None else scene_stem(spec))
    groups: dict[str, list[int]] = defaultdict(list)
    for i, n in enumerate(names):
        groups[n.lower()].append(i)
    for members in groups.values():
        derived = [i for i in members if given[i] is None]
        if len(members) > 1 and derived:
            for i in derived:
                names[i] += "-" + hashlib.sha1(keys[i].encode()).hexdigest()[:8]
    seen: dict[str, int] = {}
    for i, n in enumerate(names):
        if n.lower() in seen:
            j = seen[n.lower()]
            raise InputError(f"scenes {specs[j]} and {specs[i]} both map to output name "
                             f"{n!r}; give one of them another 'name' in the manifest")
        seen[n.lower()] = i
    return names
