"""Settings of one adaptation run (``tta adapt --config cfg.yaml`` or keyword arguments)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from tta.errors import InputError

__all__ = ["AdaptConfig", "DEFAULT_LR"]

#: Learning rate per adapter kind when ``lr`` is not given: new zero-initialised tailor
#: modules move fast; pretrained weights need small steps.
DEFAULT_LR = {"ft": 2e-3, "cat": 2e-3, "mapper": 1e-3, "swift": 2e-4, "full": 1e-4, "none": 0.0}


@dataclass
class AdaptConfig:
    """Every knob of :func:`tta.engine.adapt` (defaults are the CLI's).

    Attributes:
        adapter: ``ft``, ``cat``, ``swift``, ``full``, ``mapper`` or ``none``.
        adapter_options: Keyword arguments of the adapter (e.g. ``{"hidden": 16}``,
            ``{"fraction": 0.1}`` for SWIFT's share of weights).
        sampler: Patch selection: ``swift``, ``fps``, ``kmeans`` or ``random``.
        fraction: Share of the scene's patches to train on.
        min_patches: Lower bound of the number of training patches.
        max_patches: Upper bound of the number of training patches.
        patch: Training patch side on the PAN grid (multiple of the ratio).
        steps: Optimiser steps.
        lr: AdamW learning rate; None = :data:`DEFAULT_LR` of the adapter.
        weight_decay: AdamW weight decay of new adapter modules (0 for model weights, so
            SWIFT's unselected entries stay exactly unchanged).
        batch_size: Patches per step; None = all selected patches every step.
        loss_weights: Override of the sensor's loss weights (``spectral``, ``spatial``,
            ``anchor``); None = ``tta/losses/presets.yaml``.
        spatial_loss: ``zpnn`` (thresholded correlation, Z-PNN) or ``drho``.
        coregister: Use each band's coregistration phase in the spectral loss.
        calibration_batches: SWIFT's gradient-probe batches.
        tile: Largest inference tile side on the PAN grid; the engine fits the tile to the
            scene at or below it (:func:`tta.engine.tiling.fitted_tile`: a scene that fits
            runs as one tile).
        overlap: Inference tile overlap; None = from the model's measured receptive field.
        inference_batch: Tiles per inference batch; None = from free memory (CUDA) or 256² px.
        amp: bf16 autocast and TF32 on CUDA (ignored on CPU).
        compile: ``torch.compile`` the training step's forward and loss: ``"default"``, or
            ``"reduce-overhead"`` (CUDA graphs, for many small steps on a GPU); None = eager.
            Compilation costs seconds once per run, so it pays off on long or GPU runs. Applies
            to the cached-feature path (``ft``, ``cat``, ``mapper`` on an additive tail);
            adapters that train through the whole network (``swift``, ``full``) run eagerly.
        seed: Seed of sampling, adapter initialisation and batching.
        max_nodata: Patches with a larger nodata share are never selected.
        rr_weight: Weight of the reduced-resolution self-supervision (Scarpa et al. 2018):
            the scene, Wald-degraded, must be fused back into its own MS (L1, normalised
            DN); 0 turns it off. :mod:`tta.engine.reduced`.
        harmonise: Bring a scene whose PAN level is far from the network's training level
            (another bit depth or gain) to that level when the reduced-resolution
            self-check prefers it; :mod:`tta.engine.radiometry`.
        decide: Never harm: keep the direct network when adaptation loses on the
            reduced-resolution self-check or the full-resolution HQNR;
            :mod:`tta.engine.decision`.
        decision_tolerance: Largest loss on one family the decision accepts.
        other_bands: Classical method (``tta.classical``) that fuses the scene's bands the
            network was not trained on (Landsat SWIR beside a 4-band network);
            :mod:`tta.engine.bands`.
    """

    adapter: str = "ft"
    adapter_options: dict[str, Any] = field(default_factory=dict)
    sampler: str = "swift"
    fraction: float = 0.03
    min_patches: int = 8
    max_patches: int = 256
    patch: int = 64
    steps: int = 100
    lr: float | None = None
    weight_decay: float = 1e-4
    batch_size: int | None = None
    loss_weights: dict[str, float] | None = None
    spatial_loss: str = "zpnn"
    coregister: bool = True
    calibration_batches: int = 1
    tile: int = 512
    overlap: int | None = None
    inference_batch: int | None = None
    amp: bool = True
    compile: str | None = None
    seed: int = 0
    max_nodata: float = 0.0
    rr_weight: float = 2.0
    harmonise: bool = True
    decide: bool = True
    decision_tolerance: float = 0.002
    other_bands: str = "mtf-glp-hpm"

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise :class:`~tta.errors.InputError` on an impossible setting."""
        from adapters import ADAPTERS
        from tta.sampling import SAMPLERS

        if self.adapter not in ADAPTERS:
            raise InputError(f"unknown adapter {self.adapter!r}; choose one of "
                             f"{', '.join(ADAPTERS)}")
        if self.sampler not in SAMPLERS:
            raise InputError(f"unknown sampler {self.sampler!r}; choose one of "
                             f"{', '.join(SAMPLERS)}")
        if not 0.0 < self.fraction <= 1.0:
            raise InputError(f"fraction must lie in (0, 1], got {self.fraction}")
        if self.min_patches < 1 or self.max_patches < self.min_patches:
            raise InputError(f"need 1 <= min_patches <= max_patches, got {self.min_patches}, "
                             f"{self.max_patches}")
        if self.patch < 8:
            raise InputError(f"patch must be at least 8 PAN pixels, got {self.patch}")
        if self.steps < 0:
            raise InputError(f"steps must be >= 0, got {self.steps}")
        if self.lr is not None and not self.lr > 0:
            raise InputError(f"lr must be positive, got {self.lr}")
        if self.batch_size is not None and self.batch_size < 1:
            raise InputError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.spatial_loss not in ("zpnn", "drho"):
            raise InputError(f"spatial_loss must be 'zpnn' or 'drho', got {self.spatial_loss!r}")
        if self.tile < 16:
            raise InputError(f"tile must be at least 16, got {self.tile}")
        if self.compile not in (None, "default", "reduce-overhead", "max-autotune"):
            raise InputError(f"compile must be default, reduce-overhead or max-autotune, got "
                             f"{self.compile!r}")
        if not (math.isfinite(self.rr_weight) and self.rr_weight >= 0):
            raise InputError(f"rr_weight must be finite and >= 0, got {self.rr_weight}")
        if not (math.isfinite(self.decision_tolerance) and 0 <= self.decision_tolerance < 1):
            raise InputError(f"decision_tolerance must lie in [0, 1), got "
                             f"{self.decision_tolerance}")
        from tta.classical import list_methods

        if self.other_bands not in list_methods():
            raise InputError(f"other_bands must be a classical method ({', '.join(list_methods())}"
                             f"), got {self.other_bands!r}")
        if not 0.0 <= self.max_nodata < 1.0:
            raise InputError(f"max_nodata must lie in [0, 1), got {self.max_nodata}")

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else DEFAULT_LR[self.adapter]

    def replace(self, **changes: Any) -> AdaptConfig:
        """A copy with ``changes`` applied (None values are ignored: 'not given')."""
        data = asdict(self)
        data.update({k: v for k, v in changes.items() if v is not None})
        return AdaptConfig(**data)

    @classmethod
    def from_yaml(cls, path: str | Path) -> AdaptConfig:
        """Read a YAML mapping of these fields; unknown keys are an error."""
        import yaml

        p = Path(path)
        try:
            data = yaml.safe_load(p.read_text())
        except FileNotFoundError:
            raise InputError(f"{p}: config file not found") from None
        except (OSError, yaml.YAMLError, UnicodeDecodeError) as exc:
            raise InputError(f"{p}: not a readable YAML file ({type(exc).__name__})") from None
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise InputError(f"{p}: a config must be a YAML mapping of settings")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InputError(f"{p}: unknown setting(s) {', '.join(unknown)}; known: "
                             f"{', '.join(sorted(known))}")
        try:
            return cls(**data)
        except TypeError as exc:
            raise InputError(f"{p}: {exc}") from None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
