"""A network applied to the bands it was trained on.

A network's *band layout* comes from its weights record (DLPan-Toolbox checkpoints known by
sha256, our zoo's model cards) or, for a checkpoint the registry does not know, from the
sensor folder it sits in (``.../wv3/fusionnet.pth``; :func:`tta.models.resolve_model`). The
scene's layout is its sensor's, restricted to the bands it holds
(:meth:`tta.sensors.Sensor.restrict`). Layouts are matched by name
(:mod:`tta.sensors.bands`):

* the same bands (in any order): the network fuses the scene, bands taken in its order and
  put back in the scene's;
* the network's bands plus others (Landsat SWIR beside a 4-band network): the network fuses
  its bands and a stated classical method (``AdaptConfig.other_bands``, MTF-GLP-HPM by
  default) fuses the others, on the scene restricted to them (its own MTF gains);
* the scene lacks a band the network needs: :class:`~tta.errors.InputError` naming both
  layouts.

A network whose layout is unknown must have the scene's band count; its bands are then taken
to be the scene's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from tta.errors import InputError
from tta.sensors.bands import canonical_band, format_layout, match_layout

__all__ = ["BandPlan", "network_layout", "plan_bands"]


def network_layout(model: Any) -> tuple[tuple[str, ...] | None, str]:
    """``(bands, where from)`` of a network's training layout; ``(None, "unknown")`` when it
    does not say."""
    record = getattr(model, "weights_record", None)
    bands = tuple(getattr(record, "bands", ()) or ())
    n = getattr(model, "n_bands", None)
    if bands and (n is None or len(bands) == n):
        return bands, f"weights of {getattr(record, 'sensor', '?')}"
    layout = tuple(getattr(model, "band_layout", ()) or ())
    if layout and (n is None or len(layout) == n):
        return layout, str(getattr(model, "band_layout_source", "model"))
    return None, "unknown"


@dataclass(frozen=True)
class BandPlan:
    """Which scene bands the network fuses and which a classical method fuses.

    Attributes:
        network: The network's layout (its channel order).
        scene: The scene's layout (sensor band names, channel order).
        net_index: Scene channel of each network band, in the network's order.
        other_index: Scene channels the network was not trained on.
        source: Where the network's layout comes from.
    """

    network: tuple[str, ...]
    scene: tuple[str, ...]
    net_index: tuple[int, ...]
    other_index: tuple[int, ...]
    source: str

    @property
    def split(self) -> bool:
        """Whether the scene is not simply fused by the network as it is."""
        return bool(self.other_index) or self.net_index != tuple(range(len(self.scene)))

    def part(self, scene: Any, index: tuple[int, ...]) -> Any:
        """The scene restricted to channels ``index`` (sensor restricted by name)."""
        idx = list(index)
        return scene.with_(ms=scene.ms[idx], gt=None if scene.gt is None else scene.gt[idx],
                           band_names=tuple(scene.sensor.bands[i] for i in idx),
                           meta=dict(scene.meta))

    def to_dict(self, method: str | None = None) -> dict[str, Any]:
        """Plain-data description (for reports and saved adapters)."""
        return {"network": list(self.network), "scene": list(self.scene),
                "network_source": self.source,
                "fused_by_network": [self.scene[i] for i in self.net_index],
                "other_bands": [self.scene[i] for i in self.other_index],
                "other_method": method if self.other_index else None}

    def describe(self, method: str) -> str:
        """One line for the console."""
        text = (f"bands: network ({format_layout(self.network)}, {self.source}) fuses "
                f"{format_layout([self.scene[i] for i in self.net_index])}")
        if self.other_index:
            text += (f"; {method} fuses {format_layout([self.scene[i] for i in self.other_index])}"
                     " (not in the network's layout)")
        return text


def plan_bands(model: Any, scene: Any) -> BandPlan:
    """Match the network's layout to the scene's (see the module docstring).

    Raises:
        InputError: The scene lacks a band of the network, or (layout unknown) the band counts
            differ; the message names both layouts.
    """
    layout, source = network_layout(model)
    scene_bands = tuple(scene.sensor.bands)
    c = len(scene_bands)
    if layout is None:
        n = getattr(model, "n_bands", c)
        if n != c:
            raise InputError(f"model has {n} bands (layout not recorded) but {scene.source} has "
                             f"{c} ({format_layout(scene_bands)}); use a model trained on a "
                             "sensor with the same bands")
        return BandPlan(scene_bands, scene_bands, tuple(range(c)), (), source)
    idx = match_layout(layout, scene_bands)
    if idx is None:
        have = {canonical_band(b) for b in scene_bands}
        missing = [b for b in layout if canonical_band(b) not in have]
        raise InputError(
            f"network layout {format_layout(layout)} ({source}) does not fit the scene's "
            f"{format_layout(scene_bands)} ({scene.sensor.name}, {scene.source}): the scene "
            f"lacks {', '.join(missing) or 'a band named twice'}")
    other = tuple(i for i in range(c) if i not in idx)
    return BandPlan(tuple(layout), scene_bands, tuple(idx), other, source)


def assemble(plan: BandPlan, shape: tuple[int, int, int], net: np.ndarray,
             other: np.ndarray | None) -> np.ndarray:
    """The scene-order product from the network's bands and the others'."""
    out = np.empty(shape, dtype=np.float32)
    out[list(plan.net_index)] = net
    if plan.other_index:
        out[list(plan.other_index)] = other
    return out
