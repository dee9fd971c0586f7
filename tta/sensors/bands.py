"""Band layouts matched by name.

A scene, a network and a sensor preset each have a *band layout*: band names in channel order.
Names are compared in canonical form, so the usual spellings of one band match
(``nir``/``nir1``/``NIR-1``, ``coastal``/``coastal-blue``, ``rededge``/``red-edge``,
``swir1``/``swir-1``/``swir``). A scene whose bands are some of its sensor's (a 4-band
WorldView-2 bundle) gets the sensor record restricted to them, each band with its own MTF gain
taken by name from the full preset.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from tta.errors import SensorError

__all__ = ["SYNONYMS", "canonical_band", "format_layout", "known_band", "match_layout",
           "restrict_sensor", "same_layout"]

#: Canonical name -> accepted spellings (compared after lower-casing and removing spaces,
#: ``-``, ``_`` and ``.``).
SYNONYMS: dict[str, tuple[str, ...]] = {
    "coastal": ("coastal", "coastalblue", "coastalaerosol", "aerosol", "cb", "deepblue"),
    "blue": ("blue",),
    "green": ("green",),
    "yellow": ("yellow",),
    "red": ("red",),
    "rededge": ("rededge", "re"),
    "nir": ("nir", "nir1", "nearinfrared", "nearir"),
    "nir2": ("nir2",),
    "swir1": ("swir1", "swir"),
    "swir2": ("swir2",),
    "pan": ("pan", "panchromatic"),
}
_LOOKUP = {alias: canon for canon, aliases in SYNONYMS.items() for alias in aliases}


def _squash(name: str) -> str:
    return re.sub(r"[\s\-_.]", "", str(name).strip().lower())


def canonical_band(name: str) -> str:
    """Canonical form of a band name (unknown names come back squashed, lower case)."""
    key = _squash(name)
    return _LOOKUP.get(key, key)


def known_band(name: str) -> bool:
    """Whether ``name`` is a spelling of a band this module knows."""
    return _squash(name) in _LOOKUP


def format_layout(bands: Sequence[str]) -> str:
    """``blue,green,red,nir`` (for messages)."""
    return ",".join(bands)


def same_layout(a: Sequence[str], b: Sequence[str]) -> bool:
    """Whether two layouts name the same bands in the same order."""
    return [canonical_band(x) for x in a] == [canonical_band(x) for x in b]


def match_layout(wanted: Sequence[str], available: Sequence[str]) -> list[int] | None:
    """Index in ``available`` of every band of ``wanted`` (by canonical name), or None when
    one is missing (or named twice)."""
    index = {canonical_band(b): i for i, b in enumerate(available)}
    keys = [canonical_band(b) for b in wanted]
    if len(set(keys)) != len(keys) or any(k not in index for k in keys):
        return None
    return [index[k] for k in keys]


def restrict_sensor(sensor: Any, bands: Sequence[str]) -> Any:
    """``sensor`` restricted to ``bands`` (in that order), MTF gains picked by name.

    Returns ``sensor`` itself when ``bands`` is its layout. The restricted record keeps the
    sensor's name (so files and networks still name it), takes the preset's spelling of each
    band and lists the full layout in ``subset_of``.

    Raises:
        SensorError: A band is not the sensor's, or is named twice (naming both layouts).
    """
    bands = tuple(str(b) for b in bands)
    if same_layout(bands, sensor.bands):
        return sensor
    idx = match_layout(bands, sensor.bands)
    if idx is None:
        have = {canonical_band(b) for b in sensor.bands}
        missing = [b for b in bands if canonical_band(b) not in have]
        what = (f"{', '.join(missing)} not among them" if missing
                else "a band is named twice")
        raise SensorError(f"bands {format_layout(bands)} do not fit sensor {sensor.name} "
                          f"({format_layout(sensor.bands)}): {what}")
    return replace(
        sensor,
        bands=tuple(sensor.bands[i] for i in idx),
        mtf_ms=tuple(sensor.mtf_ms[i] for i in idx),
        layouts={},
        subset_of=sensor.subset_of or sensor.bands,
    )
