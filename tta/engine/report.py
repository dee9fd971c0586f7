"""The typed report of one adaptation run (:class:`AdaptReport`).

The CLI, the bench runner and the JSON writer all read this one object; :meth:`to_json`
gives the plain-data form written by ``tta adapt --report`` (the same keys, in the same
order, as every earlier report). Each record is also a read-only mapping of its JSON form
(``report["loss"]["curve"]``), so code written against the plain report keeps working.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["AdaptReport", "AdapterInfo", "InferenceInfo", "LossReport", "ModelInfo",
           "SceneInfo"]


class _Record(Mapping[str, Any]):
    """A dataclass that reads as the mapping of its JSON form."""

    def to_json(self) -> dict[str, Any]:  # pragma: no cover - every record overrides
        raise NotImplementedError

    def __getitem__(self, key: str) -> Any:
        return self.to_json()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.to_json())

    def __len__(self) -> int:
        return len(self.to_json())


@dataclass
class ModelInfo(_Record):
    """The source network: class, architecture, weights file and sensor, parameter count, and
    the digests that let a saved adapter find it again (:mod:`tta.engine.reuse`)."""

    cls: str
    arch: str
    weights: str | None
    weights_sensor: str | None
    parameters: int
    state_sha256: str | None = None
    weights_sha256: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"class": self.cls, "arch": self.arch, "weights": self.weights,
                "weights_sensor": self.weights_sensor, "parameters": self.parameters,
                "state_sha256": self.state_sha256, "weights_sha256": self.weights_sha256}


@dataclass
class SceneInfo(_Record):
    """The target scene: source, sensor, shape ``(C, H, W)``, ratio, max value."""

    source: str
    sensor: str
    shape: list[int]
    ratio: int
    max_value: float

    def to_json(self) -> dict[str, Any]:
        return {"source": self.source, "sensor": self.sensor, "shape": self.shape,
                "ratio": self.ratio, "max_value": self.max_value}


@dataclass
class AdapterInfo(_Record):
    """The adapter: kind, options, trainable scalars, calibration summary (JSON key
    ``swift`` for every calibrating adapter)."""

    kind: str
    config: dict[str, Any]
    trainable: int
    calibration: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "config": self.config, "trainable": self.trainable,
                "swift": self.calibration}


@dataclass
class LossReport(_Record):
    """The loss curve, first and last terms, and where the loss diverged (None: it did
    not)."""

    curve: list[float] = field(default_factory=list)
    first: dict[str, float] = field(default_factory=dict)
    last: dict[str, float] = field(default_factory=dict)
    diverged_at_step: int | None = None

    @property
    def diverged(self) -> bool:
        return self.diverged_at_step is not None

    def to_json(self) -> dict[str, Any]:
        return {"curve": self.curve, "first": self.first, "last": self.last,
                "diverged": self.diverged, "diverged_at_step": self.diverged_at_step}


@dataclass
class InferenceInfo(_Record):
    """The inference tiling: the tile side fitted to the scene, the configured largest side,
    overlap and zero-weight margin (PAN pixels)."""

    tile: int
    max_tile: int
    overlap: int
    margin: int

    def to_json(self) -> dict[str, Any]:
        return {"tile": self.tile, "max_tile": self.max_tile, "overlap": self.overlap,
                "margin": self.margin}


@dataclass
class AdaptReport(_Record):
    """Everything an adaptation run reports (see the module docstring).

    ``timings`` holds seconds per stage plus ``adapt`` and ``adapt_and_infer``; the CLI adds
    ``load`` and ``write`` and sets :attr:`output`. ``bands`` says which bands the network
    fused (:mod:`tta.engine.bands`). ``metrics`` is None unless the run compared with direct
    transfer.
    """

    tta_version: str
    date: str
    device: str
    model: ModelInfo
    scene: SceneInfo
    config: dict[str, Any]
    decomposition: dict[str, Any]
    adapter: AdapterInfo
    sampling: dict[str, Any]
    radiometry: dict[str, Any]
    coregistration_phase: list[list[int]] | None
    loss: LossReport
    inference: InferenceInfo
    timings: dict[str, float]
    decision: dict[str, Any] | None = None
    bands: dict[str, Any] | None = None
    metrics: dict[str, Any] | None = None
    output: str | None = None

    def to_json(self) -> dict[str, Any]:
        """Plain data (the ``--report`` file): nested records become dicts; ``metrics`` and
        ``output`` appear only when set."""
        out: dict[str, Any] = {
            "tta_version": self.tta_version, "date": self.date, "device": self.device,
            "model": self.model.to_json(), "scene": self.scene.to_json(),
            "config": self.config, "decomposition": self.decomposition,
            "adapter": self.adapter.to_json(), "sampling": self.sampling,
            "radiometry": self.radiometry, "coregistration_phase": self.coregistration_phase,
            "loss": self.loss.to_json(), "inference": self.inference.to_json(),
            "timings": self.timings, "decision": self.decision, "bands": self.bands,
        }
        if self.metrics is not None:
            out["metrics"] = self.metrics
        if self.output is not None:
            out["output"] = self.output
        return out
