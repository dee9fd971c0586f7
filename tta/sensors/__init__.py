"""Sensor presets: band names, PAN/MS ratio, radiometric scale and MTF Nyquist gains.

Each preset is one explicit YAML record in ``tta/sensors/presets`` (no inheritance between
presets). Users describe their own sensor with a YAML file of the same keys and pass its path
wherever a sensor name is accepted (``--sensor my_sensor.yaml``).

MTF gains follow the Vivone et al. toolbox (``genMTF.m`` for the MS bands, ``MTF_PAN.m`` for
PAN); sensors the toolbox does not cover get its generic values (0.3 MS, 0.15 PAN), and the
record's ``mtf_reference`` says which applies.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from tta.errors import SensorError

__all__ = ["Sensor", "canonical_band", "get_sensor", "list_sensors", "load_sensor_file"]

_REQUIRED = ("name", "bands", "ratio", "bit_depth", "max_value", "mtf_ms", "mtf_pan")


@dataclass(frozen=True)
class Sensor:
    """Description of a pansharpening sensor (a PAN + MS instrument pair).

    Attributes:
        name: Canonical upper-case name, e.g. ``"WV3"``.
        description: Human-readable one-liner.
        bands: MS band names in channel order.
        ratio: PAN/MS ground-sampling-distance ratio (integer, e.g. 4).
        bit_depth: Radiometric depth of the DN values.
        max_value: Nominal maximum DN (used to normalise to [0, 1]).
        mtf_ms: MTF gain at the MS Nyquist frequency for every band.
        mtf_pan: MTF gain at Nyquist of the PAN channel.
        aliases: Other accepted names (upper case).
        mtf_reference: Where the MTF gains come from.
        layouts: Standard products of the sensor with fewer bands, by band count (a 4-band
            WorldView bundle is blue, green, red, nir1): the layout a scene of that many
            bands gets when it does not name its bands.
        subset_of: For a record restricted to some bands (:meth:`restrict`), the full
            preset's bands; empty otherwise.
    """

    name: str
    description: str
    bands: tuple[str, ...]
    ratio: int
    bit_depth: int
    max_value: float
    mtf_ms: tuple[float, ...]
    mtf_pan: float
    aliases: tuple[str, ...] = ()
    mtf_reference: str = ""
    layouts: dict[int, tuple[str, ...]] = field(default_factory=dict, hash=False, compare=False)
    subset_of: tuple[str, ...] = ()

    def restrict(self, bands: tuple[str, ...] | list[str]) -> Sensor:
        """This sensor restricted to ``bands`` (matched by name, synonyms accepted), in that
        order, each with its own MTF gain; ``self`` when they are its bands in its order.

        Raises:
            SensorError: A band is not one of the sensor's (the message names both layouts).
        """
        from tta.sensors.bands import restrict_sensor

        return restrict_sensor(self, bands)

    @property
    def n_bands(self) -> int:
        """Number of MS bands."""
        return len(self.bands)

    @classmethod
    def from_dict(cls, data: dict[str, Any], origin: str = "sensor description") -> Sensor:
        """Build and validate a sensor from a mapping (a parsed YAML record).

        Raises:
            SensorError: A key is missing or a value is out of range.
        """
        if not isinstance(data, dict):
            raise SensorError(f"{origin}: expected a mapping of sensor fields")
        missing = [k for k in _REQUIRED if k not in data]
        if missing:
            raise SensorError(f"{origin}: missing field(s) {', '.join(missing)}")
        try:
            bands = tuple(str(b) for b in data["bands"])
            mtf_ms = data["mtf_ms"]
            mtf_ms = tuple(float(g) for g in (mtf_ms if isinstance(mtf_ms, list) else
                                              [mtf_ms] * len(bands)))
            sensor = cls(
                name=str(data["name"]).upper(),
                description=str(data.get("description", "")),
                bands=bands,
                ratio=int(data["ratio"]),
                bit_depth=int(data["bit_depth"]),
                max_value=float(data["max_value"]),
                mtf_ms=mtf_ms,
                mtf_pan=float(data["mtf_pan"]),
                aliases=tuple(str(a).upper() for a in data.get("aliases") or ()),
                mtf_reference=str(data.get("mtf_reference", "")),
                layouts={int(k): tuple(str(b) for b in v)
                         for k, v in (data.get("layouts") or {}).items()},
            )
        except (TypeError, ValueError) as exc:
            raise SensorError(f"{origin}: invalid value ({exc})") from None
        sensor._validate(origin)
        return sensor

    def _validate(self, origin: str) -> None:
        if not self.bands:
            raise SensorError(f"{origin}: 'bands' is empty")
        if self.ratio < 2:
            raise SensorError(f"{origin}: 'ratio' must be an integer >= 2, got {self.ratio}")
        if not (self.max_value > 0 and math.isfinite(self.max_value)):
            raise SensorError(f"{origin}: 'max_value' must be positive, got {self.max_value}")
        if len(self.mtf_ms) != len(self.bands):
            raise SensorError(
                f"{origin}: 'mtf_ms' has {len(self.mtf_ms)} gains for {len(self.bands)} bands"
            )
        for g in (*self.mtf_ms, self.mtf_pan):
            if not 0.0 < g < 1.0:
                raise SensorError(f"{origin}: MTF Nyquist gains must lie in (0, 1), got {g}")
        for count, layout in self.layouts.items():
            if count != len(layout):
                raise SensorError(f"{origin}: layout {count} lists {len(layout)} bands")
            self.restrict(layout)  # every band of a layout must be one of the sensor's


def canonical_band(name: str) -> str:
    """The canonical name of a band (``nir1`` -> ``nir``, ``red-edge`` -> ``rededge``)."""
    from tta.sensors.bands import canonical_band as _canon

    return _canon(name)


def _preset_files() -> dict[str, Any]:
    folder = resources.files("tta.sensors") / "presets"
    return {p.name[: -len(".yaml")]: p for p in folder.iterdir() if p.name.endswith(".yaml")}


@cache
def _presets() -> dict[str, Sensor]:
    out: dict[str, Sensor] = {}
    for stem, path in sorted(_preset_files().items()):
        sensor = Sensor.from_dict(yaml.safe_load(path.read_text()), origin=f"preset {stem}")
        out[sensor.name] = sensor
    return out


def list_sensors() -> list[Sensor]:
    """All built-in presets, sorted by name."""
    return list(_presets().values())


def load_sensor_file(path: str | Path) -> Sensor:
    """Read a user sensor description from a YAML file (same keys as the presets)."""
    path = Path(path)
    if not path.is_file():
        raise SensorError(f"{path}: sensor file not found")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        line = getattr(getattr(exc, "problem_mark", None), "line", None)
        where = f" (line {line + 1})" if line is not None else ""
        raise SensorError(f"{path}: not valid YAML{where}") from None
    return Sensor.from_dict(data, origin=str(path))


def get_sensor(name: str | Path | Sensor) -> Sensor:
    """Look a sensor up by name or alias (case-insensitive), or load it from a YAML path.

    Raises:
        SensorError: Unknown name (the message lists close matches) or invalid file.
    """
    if isinstance(name, Sensor):
        return name
    text = str(name)
    if text.lower().endswith((".yaml", ".yml")) or Path(text).is_file():
        return load_sensor_file(text)
    key = text.strip().upper()
    presets = _presets()
    if key in presets:
        return presets[key]
    for sensor in presets.values():
        if key in sensor.aliases:
            return sensor
    names = list(presets) + [a for s in presets.values() for a in s.aliases]
    close = difflib.get_close_matches(key, names, n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise SensorError(
        f"unknown sensor {text!r}{hint} (known: {', '.join(presets)}; or a YAML file path)"
    )
