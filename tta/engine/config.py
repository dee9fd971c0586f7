"""Settings of one adaptation run (``tta adapt --config cfg.yaml`` or keyword arguments)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from tta.errors import InputError

__all__ = ["AdaptConfig", "COMPILE_MODES"]

#: ``compile`` settings: eager (None) or a ``torch.compile`` mode.
COMPILE_MODES = (None, "default", "reduce-overhead", "max-autotune")


@dataclass
class AdaptConfig:
    """Every knob of :func:`tta.engine.adapt` (defaults are the CLI's).

    Attributes:
        adapter: A registered adapter kind (:data:`adapters.ADAPTERS`; ``ft`` by default).
        adapter_options: Keyword arguments of the adapter (e.g. ``{"hidden": 16}``,
            ``{"fraction": 0.1}`` for SWIFT's share of weights).
        sampler: A registered patch sampler (:data:`tta.sampling.SAMPLERS`).
        fraction: Share of the scene's patches to train on.
        min_patches: Lower bound of the number of training patches.
        max_patches: Upper bound of the number of training patches.
        patch: Training patch side on the PAN grid (multiple of the ratio).
        steps: Optimiser steps.
        lr: AdamW learning rate; None = the adapter's ``default_lr``.
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

    def validate(self, ratio: int | None = None) -> None:
        """Check every setting up front; with the scene's ``ratio`` also that tile and patch
        hold whole MS pixels and that the tiles advance.

        Raises:
            InputError: One line naming the setting and the accepted values.
        """
        from adapters import ADAPTERS, create_adapter
        from tta.checks import (
            MAX_LR,
            check_bool,
            check_choice,
            check_int,
            check_multiple,
            check_real,
            check_seed,
        )
        from tta.losses.physics import _check_weights
        from tta.losses.terms import SPATIAL_KINDS
        from tta.sampling import SAMPLERS

        check_choice(self.adapter, "adapter", ADAPTERS)
        check_choice(self.sampler, "sampler", SAMPLERS)
        if self.spatial_loss not in SPATIAL_KINDS:
            raise InputError(f"spatial_loss must be {' or '.join(map(repr, SPATIAL_KINDS))}, "
                             f"got {self.spatial_loss!r}")
        if self.compile not in COMPILE_MODES:
            raise InputError(f"compile must be {', '.join(filter(None, COMPILE_MODES))} (or "
                             f"none), got {self.compile!r}")
        try:
            check_real(self.fraction, "fraction", 0.0, 1.0, low_open=True)
        except InputError:
            raise InputError(f"fraction must lie in (0, 1], got {self.fraction!r}") from None
        check_int(self.min_patches, "min_patches", 1)
        check_int(self.max_patches, "max_patches", 1)
        if self.max_patches < self.min_patches:
            raise InputError(f"need 1 <= min_patches <= max_patches, got {self.min_patches}, "
                             f"{self.max_patches}")
        check_int(self.patch, "patch", 8)
        check_int(self.steps, "steps", 0)
        if self.lr is not None:
            check_real(self.lr, "lr", 0.0, MAX_LR, low_open=True)
        check_real(self.weight_decay, "weight_decay", 0.0)
        for name in ("batch_size", "inference_batch"):
            if getattr(self, name) is not None:
                check_int(getattr(self, name), name, 1)
        if self.loss_weights is not None:
            try:
                _check_weights(self.loss_weights, "loss_weights")
            except ValueError as exc:
                raise InputError(str(exc)) from None
        for name in ("coregister", "amp", "harmonise", "decide"):
            check_bool(getattr(self, name), name)
        check_int(self.calibration_batches, "calibration_batches", 1)
        check_int(self.tile, "tile", 16)
        if self.overlap is not None:
            check_int(self.overlap, "overlap", 0, self.tile - 1)
        check_seed(self.seed)
        check_real(self.max_nodata, "max_nodata", 0.0, 1.0, high_open=True)
        check_real(self.rr_weight, "rr_weight", 0.0)
        check_real(self.decision_tolerance, "decision_tolerance", 0.0, 1.0, high_open=True)
        from tta.classical import list_methods

        if self.other_bands not in list_methods():
            raise InputError(f"other_bands must be a classical method ({', '.join(list_methods())}"
                             f"), got {self.other_bands!r}")
        if not isinstance(self.adapter_options, dict):
            raise InputError(f"adapter_options must be a mapping, got {self.adapter_options!r}")
        create_adapter(self.adapter, **self.adapter_options)  # the adapter checks its options
        if ratio is not None:
            check_multiple(self.tile, ratio, "tile")
            check_multiple(self.patch, ratio, "patch")
            if self.overlap is not None and self.overlap > self.tile - ratio:
                raise InputError(f"overlap {self.overlap} must be at most tile - ratio "
                                 f"({self.tile - ratio}) so that tiles advance")

    @property
    def learning_rate(self) -> float:
        """``lr``, else the adapter's own default (:attr:`adapters.Adapter.default_lr`)."""
        from adapters import ADAPTERS

        return self.lr if self.lr is not None else ADAPTERS.get(self.adapter).default_lr

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
