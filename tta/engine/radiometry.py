"""Radiometric harmonisation: bring a target's DN scale to what the source network expects.

A network trained on 11-bit DN divided by 2047 sees a typical PAN level of about 0.15-0.25
(measured on the WV3, WV2 and QuickBird scenes of ``../shared/data``: 0.16-0.22). An 8-bit
product divided by the same 2047 arrives about eight times darker, a 12-bit or gain-stretched
one about twice brighter, and the direct transfer of such a scene collapses (the DLPan
FusionNet from WV3 on the WV2 scene scaled to 1/8: Q2n 0.78 -> 0.57). Inside a factor of two
that network is insensitive to the scale (same experiment at x0.5 and x2: Q2n 0.77 and
0.76), but the QuickBird FusionNet is not (GaoFen-2 at x2: Q4 0.94 -> 0.85). So:

* the correction is a single gain, applied to MS and PAN alike (band ratios carry the
  sensor's spectral information and the PAN/MS relation the network relies on) and undone on
  the output;
* the candidate gain brings the scene's mean PAN level to the source's (:func:`level_gain`);
* whether to apply it is decided without ground truth (:func:`choose_gain`): the direct
  network fuses the Wald-degraded scene at both gains, and the gain whose fusion matches the
  scene's own MS better (Q2n) wins; gain 1 keeps ties.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

__all__ = ["DEFAULT_PAN_LEVEL", "MIN_CHANGE", "Harmonisation", "choose_gain", "level_gain"]

#: Mean PAN level (DN / max DN) of the data a network was trained on, when its weights record
#: does not say (``pan_level``): the middle of the 0.15-0.25 band of 11-bit VHR products.
DEFAULT_PAN_LEVEL = 0.2

#: A level gain within this factor of 1 is not tried (no measurable effect).
MIN_CHANGE = 1.1

#: Q2n margin the level gain must win by on the self-check to replace gain 1.
MARGIN = 0.01


@dataclass(frozen=True)
class Harmonisation:
    """The gain applied to a scene's normalised inputs (``x / divisor * gain``).

    Attributes:
        gain: Multiplier of the normalised MS and PAN (1.0: unchanged); the output is divided
            by it before returning to DN.
        scene_level: Mean PAN of the scene divided by the divisor (valid pixels).
        source_level: The level the network was trained at.
        divisor: The DN divisor (the network's training max value).
        candidate: The level-matching gain that was considered.
        self_check: Reduced-resolution Q2n of the direct network per gain tried
            (``{"1": q, "<candidate>": q}``); empty when no other gain was tried.
    """

    gain: float
    scene_level: float
    source_level: float
    divisor: float
    candidate: float = 1.0
    self_check: dict[str, float] | None = None

    @property
    def applied(self) -> bool:
        return self.gain != 1.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "applied": self.applied}


def level_gain(pan: np.ndarray, divisor: float, *, source_level: float | None = None,
               nodata: np.ndarray | None = None) -> Harmonisation:
    """The gain that brings the scene's mean PAN level to the source network's (not applied:
    ``gain`` is 1 and ``candidate`` holds it, or 1 when it is within :data:`MIN_CHANGE`).

    Args:
        pan: PAN in DN ``(H, W)``.
        divisor: DN divisor of the network (its training max value).
        source_level: Mean normalised PAN level of the network's training data; None:
            :data:`DEFAULT_PAN_LEVEL`.
        nodata: Optional mask ``(H, W)`` of pixels to leave out of the mean.
    """
    level_src = float(source_level or DEFAULT_PAN_LEVEL)
    valid = pan if nodata is None or not nodata.any() else pan[~nodata]
    mean = float(np.mean(valid, dtype=np.float64)) if valid.size else 0.0
    level = mean / float(divisor)
    candidate = 1.0
    if level > 0 and math.isfinite(level):
        g = level_src / level
        if not 1.0 / MIN_CHANGE <= g <= MIN_CHANGE:
            candidate = g
    return Harmonisation(gain=1.0, scene_level=level, source_level=level_src,
                         divisor=float(divisor), candidate=candidate)


def choose_gain(h: Harmonisation, self_check: Callable[[float], float]) -> Harmonisation:
    """Apply ``h.candidate`` if the self-check scores it above gain 1 by :data:`MARGIN`.

    Args:
        h: From :func:`level_gain`.
        self_check: ``gain -> score`` (higher is better), e.g. the reduced-resolution Q2n of
            the direct network on the degraded scene brought to that gain.
    """
    if h.candidate == 1.0:
        return h
    scores = {"1": self_check(1.0), f"{h.candidate:.4g}": self_check(h.candidate)}
    q1, qc = scores.values()
    gain = h.candidate if qc > q1 + MARGIN else 1.0
    return replace(h, gain=gain, self_check=scores)
