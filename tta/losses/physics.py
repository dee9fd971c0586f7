"""The weighted physics loss of test-time adaptation, its registry of terms and its per-sensor
default weights.

A term is a function of :class:`TermInputs` registered in :data:`LOSS_TERMS` with
:func:`register_loss_term`; :class:`PhysicsLoss` computes every registered term whose weight
is not 0, in registration order, and the config's ``loss_weights`` accept every registered
name.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache, cached_property
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import Tensor, nn

from tta.checks import check_gains
from tta.errors import SensorError
from tta.losses.terms import (
    SPATIAL_KINDS,
    ZPNN_THRESHOLD_WINDOW,
    Gains,
    Phase,
    anchor_loss,
    default_border,
    ergas_loss,
    q2n_loss,
    reproject_fused,
    spatial_loss,
    spectral_loss,
)
from tta.physics import MTFDecimation, mtf_kernels
from tta.registry import Registry
from tta.sensors import Sensor, get_sensor

__all__ = ["LOSS_TERMS", "LossTerm", "PhysicsLoss", "TermInputs", "loss_weights",
           "register_loss_term"]


@dataclass
class TermInputs:
    """What one call of :class:`PhysicsLoss` gives each term (normalised DN tensors).

    Attributes:
        loss: The calling loss (ratio, MTF kernels, border, norm, spatial kind, windows).
        fused: ``(B, C, H, W)``; ms ``(B, C, H/r, W/r)``; pan ``(B, 1, H, W)``.
        lms: Upsampled MS or None; reference: the source model's output or None.
        phase: Decimation phase of this call or None; rho_max: Z-PNN threshold or None.
    """

    loss: PhysicsLoss
    fused: Tensor
    ms: Tensor
    pan: Tensor
    lms: Tensor | None
    reference: Tensor | None
    phase: Phase | None
    rho_max: Tensor | None

    @cached_property
    def projected(self) -> Tensor:
        """The fused image filtered and decimated onto the MS grid (computed once a call)."""
        return reproject_fused(self.fused, self.loss.ratio, kernels=self.loss.kernels,
                               phase=self.phase, projector=self.loss.projector)


@dataclass(frozen=True)
class LossTerm:
    """A registered loss term.

    Attributes:
        fn: ``fn(inputs) -> 0-d Tensor``, or None when the call lacks what it needs (the
            anchor without a reference).
        default_weight: Weight when neither ``presets.yaml`` nor the caller gives one.
    """

    fn: Callable[[TermInputs], Tensor | None]
    default_weight: float = 0.0


#: The loss terms by name, in the order they are computed and reported.
LOSS_TERMS: Registry[LossTerm] = Registry("loss term")


def register_loss_term(name: str, *, default_weight: float = 0.0
                       ) -> Callable[[Callable[[TermInputs], Tensor | None]],
                                     Callable[[TermInputs], Tensor | None]]:
    """Decorator registering ``fn(inputs: TermInputs) -> Tensor | None`` as loss term ``name``
    (off unless a weight is given: ``default_weight`` 0)."""
    def add(fn: Callable[[TermInputs], Tensor | None]) -> Callable[[TermInputs], Tensor | None]:
        LOSS_TERMS.register(name, LossTerm(fn, float(default_weight)))
        return fn

    return add


@register_loss_term("spectral")
def _spectral(t: TermInputs) -> Tensor:
    return spectral_loss(t.fused, t.ms, None, t.loss.ratio, phase=t.phase,
                         kernels=t.loss.kernels, border=t.loss.border, norm=t.loss.norm,
                         projector=t.loss.projector)


@register_loss_term("spatial")
def _spatial(t: TermInputs) -> Tensor:
    s = t.loss
    return spatial_loss(t.fused, t.pan, s.ratio, lms=t.lms, window=s.window,
                        kind=s.spatial_kind, border=s.ratio * s.border, rho_max=t.rho_max,
                        kernels=s.kernels, threshold_window=s.threshold_window)


@register_loss_term("ergas")
def _ergas(t: TermInputs) -> Tensor:
    return ergas_loss(t.projected, t.ms, t.loss.ratio, border=t.loss.border)


@register_loss_term("q2n")
def _q2n(t: TermInputs) -> Tensor:
    return q2n_loss(t.projected, t.ms, border=t.loss.border)


@register_loss_term("anchor")
def _anchor(t: TermInputs) -> Tensor | None:
    if t.reference is None:
        return None
    return anchor_loss(t.fused, t.reference, border=t.loss.ratio * t.loss.border)


def _check_weights(weights: Mapping[str, Any], origin: str) -> dict[str, float]:
    if not isinstance(weights, Mapping):
        raise ValueError(f"{origin}: weights must be a mapping of {LOSS_TERMS.names()} to "
                         "numbers")
    unknown = sorted(str(k) for k in set(weights) - set(LOSS_TERMS))
    if unknown:
        raise ValueError(f"{origin}: unknown loss term(s) {unknown}; known: "
                         f"{list(LOSS_TERMS)}")
    out: dict[str, float] = {}
    for key, value in weights.items():
        try:
            v = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{origin}: weight {key!r} must be a number, got {value!r}") from None
        if not (math.isfinite(v) and v >= 0.0):
            raise ValueError(f"{origin}: weight {key!r} must be finite and >= 0, got {value!r}")
        out[key] = v
    return out


@cache
def _presets() -> dict[str, dict[str, float]]:
    text = (resources.files("tta.losses") / "presets.yaml").read_text()
    data = yaml.safe_load(text)
    if not isinstance(data, dict) or "default" not in data:
        raise ValueError("tta/losses/presets.yaml: needs a 'default' entry")
    return {str(k).upper(): _check_weights(v, f"presets.yaml[{k}]") for k, v in data.items()}


def _sensor_key(sensor: Sensor | str | Path) -> str:
    if isinstance(sensor, Sensor):
        return sensor.name
    try:
        return get_sensor(sensor).name  # aliases and YAML files resolve to the canonical name
    except SensorError:
        return str(sensor).strip().upper()


def loss_weights(sensor: Sensor | str | Path | None = None) -> dict[str, float]:
    """Default weights of :class:`PhysicsLoss` for a sensor.

    Read from ``tta/losses/presets.yaml``: its ``default`` entry, updated by the entry named
    after the sensor (upper-case preset name; aliases resolve), if any. Unknown sensors get
    the default. Defaults: ``spectral`` 1.0 and ``spatial`` 0.1 (Z-PNN's loss
    ``L_spec + beta L_struct`` with ``beta`` tuned together with the reduced-resolution
    self-supervision of :mod:`tta.engine`; Z-PNN's own WV2/WV3 ``beta`` is 0.36; GE1 0.07),
    ``anchor`` 0.1 (our choice: weaker per pixel than a consistent spectral push),
    ``ergas`` and ``q2n`` 0 (lambda-PNN's terms); the YAML file says why.

    Args:
        sensor: A :class:`~tta.sensors.Sensor`, a name or alias, or None for the default.

    Returns:
        A new dict of :data:`LOSS_TERMS` to floats.

    Reference:
        Z-PNN ``sensor.py`` (github.com/matciotola/Z-PNN) for the form of ``spatial``.
    """
    presets = _presets()
    out = {name: term.default_weight for name, term in LOSS_TERMS.items()}
    out.update(presets["DEFAULT"])
    if sensor is not None:
        out.update(presets.get(_sensor_key(sensor), {}))
    return out


class PhysicsLoss(nn.Module):
    """Weighted sum of the spectral, spatial and anchor terms for one sensor.

    ``total = w_spectral * spectral_loss + w_spatial * spatial_loss + w_anchor * anchor_loss``
    on the inputs divided by the sensor's max DN. The MTF kernels are built once, held as a
    (non-persistent) float64 buffer and move with ``.to(device)``; so does the decimation
    phase set by :meth:`set_phase`. Terms with weight 0 are not computed; the anchor is
    computed only when a reference is passed.

    Args:
        gnyq_ms: MS Nyquist gains (length C, or one scalar for any band count).
        ratio: PAN/MS resolution ratio.
        weights: Weights of ``"spectral"``, ``"spatial"``, ``"anchor"``; missing keys take
            :func:`loss_weights` ``(None)`` values.
        spatial_kind: ``"zpnn"`` (thresholded correlation; needs ``lms`` or ``rho_max``) or
            ``"drho"``; see :func:`~tta.losses.spatial_loss`.
        border: Border in MS pixels left out of every term (``ratio * border`` PAN pixels for
            the spatial and anchor terms); None: :func:`~tta.losses.default_border` of the
            kernels (2 for every preset sensor: 12 x 12 of the 16 x 16 MS pixels of a 64 x 64
            PAN patch at ratio 4).
        size: Odd MTF kernel side (toolbox 41).
        window: Spatial correlation window side (default ``ratio``).
        threshold_window: Window side of the Z-PNN threshold (16).
        norm: Spectral norm, ``"l1"`` or ``"l2"``.

    Raises:
        ValueError: Bad gains, ratio, weights (unknown key, negative, all zero) or kind.

    Reference:
        Z-PNN full-resolution loss (Ciotola et al., IEEE TGRS 2022) plus an optional anchor;
        the terms' docstrings name their definitions.

    Example:
        >>> loss = PhysicsLoss.from_sensor("WV3").to(device)
        >>> total, parts = loss(fused, ms, pan, lms, reference=source_out)
        >>> total.backward()
    """

    kernels: Tensor
    phase: Tensor | None

    def __init__(
        self,
        gnyq_ms: Gains,
        ratio: int,
        *,
        weights: Mapping[str, float] | None = None,
        spatial_kind: str = "zpnn",
        border: int | None = None,
        size: int = 41,
        window: int | None = None,
        threshold_window: int = ZPNN_THRESHOLD_WINDOW,
        norm: str = "l1",
    ):
        super().__init__()
        self.gains = check_gains(gnyq_ms)
        kernels = mtf_kernels(self.gains, ratio, size, dtype=torch.float64)  # validates
        self.ratio = int(ratio)
        self.register_buffer("kernels", kernels, persistent=False)
        self.register_buffer("phase", None, persistent=False)
        self.projector = MTFDecimation(kernels, self.ratio)  # operators cached per shape/phase
        merged = loss_weights(None)
        merged.update(_check_weights(weights or {}, "PhysicsLoss weights"))
        if not any(merged.values()):
            raise ValueError("PhysicsLoss: every loss weight is 0")
        self.weights = merged
        if spatial_kind not in SPATIAL_KINDS:
            raise ValueError(f"spatial_kind must be one of {SPATIAL_KINDS}, got {spatial_kind!r}")
        if norm not in ("l1", "l2"):
            raise ValueError(f"norm must be 'l1' or 'l2', got {norm!r}")
        self.spatial_kind = spatial_kind
        self.norm = norm
        self.window = window
        self.threshold_window = threshold_window
        if border is None:
            border = default_border(None, self.ratio, kernels=kernels)
        if isinstance(border, bool) or int(border) != border or border < 0:
            raise ValueError(f"border must be an integer >= 0, got {border!r}")
        self.border = int(border)

    @classmethod
    def from_sensor(cls, sensor: Sensor | str | Path, *,
                    weights: Mapping[str, float] | None = None, **kw: Any) -> PhysicsLoss:
        """The loss of a sensor: its MS gains and ratio, weights from :func:`loss_weights`.

        Args:
            sensor: A :class:`~tta.sensors.Sensor`, a preset name/alias or a YAML path.
            weights: Overrides of the sensor's preset weights (missing keys keep them).
            **kw: Other :class:`PhysicsLoss` arguments.

        Raises:
            tta.errors.SensorError: Unknown sensor.
        """
        s = get_sensor(sensor)
        merged = loss_weights(s)
        merged.update(_check_weights(weights or {}, "PhysicsLoss weights"))
        return cls(s.mtf_ms, s.ratio, weights=merged, **kw)

    def set_phase(self, phase: Phase | None) -> None:
        """Set (or clear with None) the decimation phase of the spectral term.

        Args:
            phase: ``(2,)``, ``(C, 2)`` or ``(B, C, 2)`` integer offsets in ``[0, ratio)``
                (e.g. :func:`tta.physics.coregistration_phases` of the scene), stored as a
                LongTensor buffer on the kernels' device.

        Raises:
            ValueError: Non-integer, out-of-range or badly shaped phase.
        """
        if phase is None:
            self.phase = None
            return
        if isinstance(phase, Tensor):
            if phase.is_floating_point() or phase.is_complex():
                raise ValueError(f"phase must hold integers, got {phase.dtype}")
            arr = phase.detach().cpu().numpy()
        else:
            arr = np.asarray(phase)
            if arr.dtype.kind not in "iu":
                raise ValueError(f"phase must hold integers, got {arr.dtype}")
        if arr.ndim not in (1, 2, 3) or arr.shape[-1] != 2:
            raise ValueError(f"phase must be (2,), (C, 2) or (B, C, 2), got {arr.shape}")
        if arr.ndim >= 2 and len(self.gains) > 1 and arr.shape[-2] != len(self.gains):
            raise ValueError(f"phase has {arr.shape[-2]} bands, the loss {len(self.gains)}")
        if arr.size and (arr.min() < 0 or arr.max() >= self.ratio):
            raise ValueError(f"phase offsets must lie in [0, {self.ratio}), got {arr.tolist()}")
        self.phase = torch.as_tensor(arr, dtype=torch.long, device=self.kernels.device)

    def forward(
        self,
        fused: Tensor,
        ms: Tensor,
        pan: Tensor,
        lms: Tensor | None = None,
        reference: Tensor | None = None,
        *,
        phase: Phase | None = None,
        rho_max: Tensor | None = None,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Total loss and its terms.

        Args:
            fused: Fused image ``(B, C, H, W)``.
            ms: MS ``(B, C, H/ratio, W/ratio)``.
            pan: PAN ``(B, 1, H, W)``.
            lms: Upsampled MS ``(B, C, H, W)`` (the Z-PNN threshold; unused by ``"drho"``).
            reference: Source model output ``(B, C, H, W)`` for the anchor term (optional).
            phase: Decimation phase for this call (default: :meth:`set_phase`'s, else
                ``ratio // 2``).
            rho_max: Precomputed Z-PNN threshold (see :func:`~tta.losses.spatial_loss`).

        Returns:
            ``(total, parts)``: a 0-d tensor and ``{name: unweighted term}`` (0-d tensors,
            still in the graph) for the terms computed, with ``total = sum(weights[k] *
            parts[k])``.

        Raises:
            ValueError: Shape mismatches, or no term to compute (anchor only, no reference).
        """
        w = self.weights
        inputs = TermInputs(self, fused, ms, pan, lms, reference,
                            self.phase if phase is None else phase, rho_max)
        parts: dict[str, Tensor] = {}
        for name, term in LOSS_TERMS.items():
            if w.get(name):
                value = term.fn(inputs)
                if value is not None:
                    parts[name] = value
        if not parts:
            raise ValueError("PhysicsLoss: nothing to compute (anchor-only loss without a "
                             "reference)")
        total = sum((w[k] * v for k, v in parts.items()), start=fused.new_zeros(()))
        return total, parts

    def extra_repr(self) -> str:
        return (f"gains={self.gains}, ratio={self.ratio}, size={self.kernels.shape[-1]}, "
                f"weights={self.weights}, spatial_kind={self.spatial_kind!r}, "
                f"border={self.border}, norm={self.norm!r}")
