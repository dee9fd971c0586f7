"""The :class:`Scene` data model: one PAN/MS pair (plus optional ground truth)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from tta.errors import InputError
from tta.sensors import Sensor

__all__ = ["Scene"]


@dataclass
class Scene:
    """A pansharpening scene in sensor digital numbers (DN), validated on construction.

    Attributes:
        ms: Low-resolution multispectral image, float32 ``(C, h, w)``.
        pan: Panchromatic image, float32 ``(H, W)`` with ``H = ratio*h``, ``W = ratio*w``.
        sensor: Sensor preset the data come from.
        gt: Optional reference HRMS ``(C, H, W)`` (reduced-resolution / Wald sets).
        ratio: PAN/MS scale ratio; defaults to the sensor's.
        max_value: Nominal maximum DN; defaults to the sensor's.
        band_names: MS band names; default to the sensor's (or, for fewer bands than the
            sensor's, its standard layout of that many bands, ``Sensor.layouts``). Names that
            are some of the sensor's bands restrict ``sensor`` to them
            (:meth:`tta.sensors.Sensor.restrict`: MTF gains by name), so every operator
            downstream sees the scene's own layout.
        nodata: Optional boolean mask ``(H, W)``, True where PAN or any MS band has no data.
            Values under the mask are not validated and are stored as 0.
        nodata_value: The DN that marks nodata in the source file, when it declared one.
        transform: Affine geotransform of the PAN grid (``affine.Affine``), when known.
        crs: Coordinate reference system as WKT or ``EPSG:n`` text, when known.
        source: Where the scene was read from (used in error messages).
        meta: Free-form provenance (file attributes, alignment notes, ...).

    Raises:
        InputError: One line naming ``source`` and the problem, if the arrays are empty,
            inconsistent with the ratio or the sensor's band count, non-finite or negative.
    """

    ms: np.ndarray
    pan: np.ndarray
    sensor: Sensor
    gt: np.ndarray | None = None
    ratio: int | None = None
    max_value: float | None = None
    band_names: tuple[str, ...] | None = None
    nodata: np.ndarray | None = None
    nodata_value: float | None = None
    transform: Any = None
    crs: str | None = None
    source: str = "<memory>"
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.ratio = int(self.ratio if self.ratio is not None else self.sensor.ratio)
        self.max_value = float(
            self.max_value if self.max_value is not None else self.sensor.max_value
        )
        self.ms = np.ascontiguousarray(self.ms, dtype=np.float32)
        self._fit_layout()
        self.pan = np.ascontiguousarray(self.pan, dtype=np.float32)
        if self.gt is not None:
            self.gt = np.ascontiguousarray(self.gt, dtype=np.float32)
        if self.nodata is not None:
            self.nodata = np.ascontiguousarray(self.nodata, dtype=bool)
        self._validate()

    # ------------------------------------------------------------------ validation
    def _fit_layout(self) -> None:
        """Match the scene's bands to its sensor by name (see ``band_names``)."""
        from tta.errors import SensorError
        from tta.sensors.bands import format_layout, known_band

        names = tuple(self.band_names) if self.band_names else None
        c = self.ms.shape[0] if self.ms.ndim == 3 else None
        if names is None and c is not None and c != self.sensor.n_bands:
            names = self.sensor.layouts.get(c)
        if names is None or len(names) != c:
            self.band_names = tuple(names or self.sensor.bands)
            return  # _validate says what does not fit
        if len(names) == self.sensor.n_bands and not all(known_band(b) for b in names):
            # free-text labels ("Band 1", ...) of a full scene: the sensor's layout
            self.band_names = names
            return
        try:
            self.sensor = self.sensor.restrict(names)
        except SensorError as exc:
            raise self._fail(str(exc)) from None
        self.band_names = names
        if self.sensor.subset_of:
            self.meta.setdefault("bands_of", format_layout(self.sensor.subset_of))

    def _fail(self, problem: str) -> InputError:
        return InputError(f"{self.source}: {problem}")

    def _validate(self) -> None:
        if self.ms.ndim != 3:
            raise self._fail(f"MS must be (C, h, w), got shape {self.ms.shape}")
        if self.pan.ndim != 2:
            raise self._fail(f"PAN must be (H, W), got shape {self.pan.shape}")
        if self.ms.size == 0 or self.pan.size == 0:
            raise self._fail(f"empty image (MS {self.ms.shape}, PAN {self.pan.shape})")
        c, h, w = self.ms.shape
        big_h, big_w = self.pan.shape
        if self.ratio < 1:
            raise self._fail(f"ratio must be a positive integer, got {self.ratio}")
        if (big_h, big_w) != (self.ratio * h, self.ratio * w):
            raise self._fail(
                f"PAN {big_h}x{big_w} is not ratio {self.ratio} x MS {h}x{w} "
                f"(expected {self.ratio * h}x{self.ratio * w})"
            )
        if c != self.sensor.n_bands:
            raise self._fail(
                f"MS has {c} bands but sensor {self.sensor.name} has {self.sensor.n_bands} "
                f"({','.join(self.sensor.bands)}); name the scene's bands (--bands "
                "B1,B2,...)"
            )
        if len(self.band_names) != c:
            raise self._fail(f"{len(self.band_names)} band names given for {c} MS bands")
        if not self.max_value > 0:
            raise self._fail(f"max value must be positive, got {self.max_value}")
        if self.gt is not None and self.gt.shape != (c, big_h, big_w):
            raise self._fail(f"GT must be {(c, big_h, big_w)}, got {self.gt.shape}")
        if self.nodata is not None and self.nodata.shape != (big_h, big_w):
            raise self._fail(f"nodata mask must be {(big_h, big_w)}, got {self.nodata.shape}")
        valid_pan = ~self.nodata if self.nodata is not None else None
        valid_ms = self.ms_valid() if self.nodata is not None else None
        for name, arr, valid in (
            ("MS", self.ms, valid_ms),
            ("PAN", self.pan, valid_pan),
            ("GT", self.gt, valid_pan),
        ):
            if arr is None:
                continue
            vals = arr[..., valid] if valid is not None else arr
            if not np.isfinite(vals).all():
                raise self._fail(f"{name} holds NaN or infinite values")
            if vals.size and float(vals.min()) < 0:
                raise self._fail(f"{name} holds negative DN (min {float(vals.min()):g})")

    # ------------------------------------------------------------------ helpers
    @property
    def n_bands(self) -> int:
        """Number of MS bands."""
        return self.ms.shape[0]

    @property
    def shape(self) -> tuple[int, int, int]:
        """Shape of the fused product ``(C, H, W)``."""
        return (self.n_bands, *self.pan.shape)

    @property
    def is_reduced(self) -> bool:
        """True for a reduced-resolution (Wald) scene carrying a reference ``gt``."""
        return self.gt is not None

    def ms_valid(self) -> np.ndarray:
        """Validity mask on the MS grid ``(h, w)``: an MS pixel is valid if its PAN block is."""
        if self.nodata is None:
            return np.ones(self.ms.shape[1:], dtype=bool)
        r = self.ratio
        h, w = self.ms.shape[1:]
        return ~self.nodata.reshape(h, r, w, r).any(axis=(1, 3))

    def nodata_fraction(self) -> float:
        """Share of PAN-grid pixels flagged as nodata."""
        return 0.0 if self.nodata is None else float(self.nodata.mean())

    def with_(self, **changes: Any) -> Scene:
        """A validated copy with some fields replaced."""
        return replace(self, **changes)

    def summary(self) -> dict[str, Any]:
        """Plain-dict description (shapes, sensor, DN ranges, nodata share, georeferencing)."""

        def rng(a: np.ndarray | None) -> list[float] | None:
            return None if a is None else [float(a.min()), float(a.max())]

        return {
            "source": self.source,
            "sensor": self.sensor.name,
            "ratio": self.ratio,
            "max_value": self.max_value,
            "bands": list(self.band_names),
            "sensor_bands": list(self.sensor.subset_of or self.sensor.bands),
            "mtf_ms": list(self.sensor.mtf_ms),
            "resolution": "reduced" if self.is_reduced else "full",
            "ms_shape": list(self.ms.shape),
            "pan_shape": list(self.pan.shape),
            "gt_shape": None if self.gt is None else list(self.gt.shape),
            "ms_range": rng(self.ms),
            "pan_range": rng(self.pan),
            "gt_range": rng(self.gt),
            "nodata_fraction": self.nodata_fraction(),
            "crs": self.crs,
            "transform": None if self.transform is None else list(self.transform)[:6],
        }
