"""Model registry (timm-style) and checkpoint loading.

* :func:`register_model` - decorator registering a factory ``fn(n_bands=8, **kw)`` under its
  function name; :func:`create_model`, :func:`list_models`, :func:`is_model`.
* :class:`WeightsRecord`, :func:`register_weights`, :func:`list_weights` - the one set of
  frozen records of known checkpoints (file, sha256, sensor, bands, ratio, max value, training
  data, licence, origin): the DLPan-Toolbox files (never shipped: users pass a path) and our
  shipped zoo files (``pretrained/weights``, built once from their cards by a source
  registered with :func:`register_weights_source`, on the first look-up).
* :func:`load` - build a model for a checkpoint file, apply the architecture's documented key
  mapping, assert that no key is missing or unexpected and return it in eval mode.

Example::

    import pretrained
    model = pretrained.load("fusionnet", weights="dlpan/wv3/fusionnet.pth", sensor="WV3")
    hrms = model(ms / 2047, pan / 2047, interp23tap(ms, 4) / 2047)
"""

from __future__ import annotations

import difflib
import fnmatch
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import Tensor

from pretrained._base import PansharpeningNet
from pretrained.checkpoint import Checkpoint, read_checkpoint
from tta.errors import InputError, SensorError

__all__ = [
    "WeightsRecord",
    "build_for_state_dict",
    "check_bands",
    "create_model",
    "find_weights_record",
    "is_model",
    "list_models",
    "list_weights",
    "load",
    "load_state_dict",
    "model_class",
    "register_model",
    "register_weights",
    "register_weights_source",
]

F = TypeVar("F", bound=Callable[..., PansharpeningNet])

_MODELS: dict[str, Callable[..., PansharpeningNet]] = {}
_CLASSES: dict[str, type[PansharpeningNet]] = {}
_WEIGHTS: dict[str, WeightsRecord] = {}
_SOURCES: list[Callable[[], Iterable[WeightsRecord]]] = []


@dataclass(frozen=True)
class WeightsRecord:
    """Provenance of one known checkpoint file (the file itself is not shipped).

    Attributes:
        arch: Registered model name the file loads into.
        file: Path of the file relative to the weights folder it is distributed in.
        sha256: Hex digest of the file; :func:`load` recognises the file by it.
        sensor: Sensor of the training data (a ``tta.sensors`` name).
        bands: Band names in channel order (``len(bands)`` = model input/output bands).
        ratio: PAN/MS ratio of the training data.
        max_value: Divisor the inputs were normalised by in training.
        training_data: What the network was trained on.
        licence: Licence of the checkpoint.
        source: Where the file comes from.
        origin: Which collection the record belongs to: ``"dlpan"`` (DLPan-Toolbox files,
            not shipped) or ``"zoo"`` (our files in ``pretrained/weights``).
        card: File name of the model card (zoo records), else None.
    """

    arch: str
    file: str
    sha256: str
    sensor: str
    bands: tuple[str, ...]
    ratio: int
    max_value: float
    training_data: str
    licence: str
    source: str
    origin: str = "dlpan"
    card: str | None = None

    @property
    def n_bands(self) -> int:
        return len(self.bands)


# ----------------------------------------------------------------------------- registry
def register_model(fn: F) -> F:
    """Register a model factory under its function name.

    The factory takes ``n_bands`` (default 8) and keyword options and returns a
    :class:`~pretrained._base.PansharpeningNet`; its return annotation tells
    :func:`model_class` which architecture it builds.

    Raises:
        ValueError: A model of that name is already registered (a programming error).
    """
    name = fn.__name__
    if name in _MODELS:
        raise ValueError(f"model {name!r} is already registered")
    _MODELS[name] = fn
    return fn


def register_weights(record: WeightsRecord) -> WeightsRecord:
    """Add a checkpoint record (keyed by its sha256)."""
    _WEIGHTS[record.sha256.lower()] = record
    return record


def register_weights_source(source: Callable[[], Iterable[WeightsRecord]]) -> None:
    """Add a function giving records, called once at the first :func:`list_weights` or
    :func:`find_weights_record` (the shipped zoo's records are read from its cards there)."""
    _SOURCES.append(source)


def _records() -> dict[str, WeightsRecord]:
    """The record set, after the pending sources have added theirs (each once)."""
    while _SOURCES:
        for record in _SOURCES.pop(0)():
            register_weights(record)
    return _WEIGHTS


def list_models(pattern: str | None = None) -> list[str]:
    """Sorted registered model names, optionally filtered by a shell pattern (``"*net"``)."""
    names = sorted(_MODELS)
    return names if pattern is None else [n for n in names if fnmatch.fnmatch(n, pattern)]


def is_model(name: str) -> bool:
    """Whether ``name`` is a registered model."""
    return name in _MODELS


def list_weights(arch: str | None = None) -> list[WeightsRecord]:
    """Known checkpoint records (DLPan and shipped zoo), optionally those of one
    architecture, sorted by origin then file."""
    recs = [r for r in _records().values() if arch is None or r.arch == arch]
    return sorted(recs, key=lambda r: (r.origin, r.file))


def find_weights_record(sha256: str) -> WeightsRecord | None:
    """The record of a checkpoint digest, or None."""
    return _records().get(sha256.lower())


def _unknown(name: str) -> InputError:
    close = difflib.get_close_matches(str(name), list_models(), n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    return InputError(f"unknown model {name!r}{hint} (available: {', '.join(list_models())})")


def model_class(name: str) -> type[PansharpeningNet]:
    """The architecture class a registered name builds.

    Raises:
        InputError: Unknown name (lists close matches).
    """
    if name not in _MODELS:
        raise _unknown(name)
    if name not in _CLASSES:
        ret = typing.get_type_hints(_MODELS[name]).get("return")
        if isinstance(ret, type) and issubclass(ret, PansharpeningNet):
            _CLASSES[name] = ret
        else:
            _CLASSES[name] = type(_MODELS[name](n_bands=1))
    return _CLASSES[name]


def create_model(name: str, n_bands: int = 8, **kwargs: Any) -> PansharpeningNet:
    """Build a registered model with random initialisation.

    Args:
        name: Registered name (see :func:`list_models`).
        n_bands: Number of MS bands ``C``.
        **kwargs: Architecture options (e.g. ``channels``).

    Raises:
        InputError: Unknown name (with close matches) or invalid ``n_bands``.
    """
    if name not in _MODELS:
        raise _unknown(name)
    return _MODELS[name](n_bands=n_bands, **kwargs)


# ----------------------------------------------------------------------------- checkpoints
def _read_checkpoint(path: Path) -> tuple[dict[str, Tensor], str]:
    """State_dict and sha256 of a weights file (:func:`pretrained.checkpoint.read_checkpoint`)."""
    ck = read_checkpoint(path)
    return ck.state_dict, ck.sha256


def _mismatch(model: PansharpeningNet, sd: Mapping[str, Tensor]) -> str | None:
    """One-line description of key/shape mismatches between a model and a mapped state_dict."""
    own = model.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    shapes = [f"{k} {tuple(sd[k].shape)} vs {tuple(own[k].shape)}"
              for k in own if k in sd and sd[k].shape != own[k].shape]

    def few(items: list[str]) -> str:
        return ", ".join(items[:4]) + (f" (+{len(items) - 4} more)" if len(items) > 4 else "")

    parts = []
    if missing:
        parts.append(f"missing keys {few(missing)}")
    if unexpected:
        parts.append(f"unexpected keys {few(unexpected)}")
    if shapes:
        parts.append(f"shape mismatch {few(shapes)}")
    return "; ".join(parts) or None


def _guess_arch(sd: Mapping[str, Tensor], exclude: str) -> str | None:
    for other in list_models():
        if other == exclude:
            continue
        cls = model_class(other)
        try:
            mapped = cls.map_state_dict(sd)
            bands = cls.bands_in(mapped)
            if bands and _mismatch(create_model(other, n_bands=bands), mapped) is None:
                return other
        except InputError:
            continue
    return None


def _resolve_bands(sensor: Any) -> tuple[str, int]:
    from tta.sensors import Sensor, get_sensor

    if isinstance(sensor, Sensor):
        return sensor.name, sensor.n_bands
    try:
        s = get_sensor(str(sensor))
    except SensorError as exc:
        raise InputError(f"sensor {sensor!r}: {exc}") from None
    return s.name, s.n_bands


def check_bands(n_bands: int | None, sensor: Any, source: str | Path) -> int | None:
    """The one band check of every load: a model's band count against the sensor whose
    scenes it will fuse (nothing to check when either is None).

    Returns:
        ``n_bands``, else the sensor's band count (None when both are None).

    Raises:
        InputError: The counts differ.
    """
    if sensor is None:
        return n_bands
    name, count = _resolve_bands(sensor)
    if n_bands is not None and n_bands != count:
        raise InputError(f"{source}: checkpoint has {n_bands} bands but sensor {name} has "
                         f"{count} (a {n_bands}-band model cannot fuse a {count}-band sensor's "
                         f"scene); use a {n_bands}-band sensor or another checkpoint")
    return count if n_bands is None else n_bands


def load_state_dict(model: PansharpeningNet, state_dict: Mapping[str, Tensor],
                    source: str = "checkpoint") -> PansharpeningNet:
    """Load a raw checkpoint state_dict into ``model`` through the documented key mapping.

    Raises:
        InputError: After the mapping some key is missing, unexpected or of another shape.
    """
    mapped = type(model).map_state_dict(state_dict, source)
    problem = _mismatch(model, mapped)
    if problem:
        raise InputError(f"{source}: does not fit architecture {model.arch!r} "
                         f"({model.n_bands} bands): {problem}")
    bad = [k for k, v in mapped.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise InputError(f"{source}: holds NaN or infinite weights ({', '.join(bad[:3])}"
                         f"{', ...' if len(bad) > 3 else ''}); refused")
    result = model.load_state_dict(mapped, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    return model


def build_for_state_dict(name: str, state_dict: Mapping[str, Tensor], source: str,
                         n_bands: int, **kwargs: Any) -> PansharpeningNet:
    """Build architecture ``name`` and load ``state_dict`` into it, shapes checked first.

    The model is first built on the ``meta`` device (no memory), and its keys and shapes
    are compared with the state_dict before the real one is allocated: options read from a
    file's metadata (band count, widths) cannot make construction allocate more than the
    file's tensors hold.

    Raises:
        InputError: Unknown name, options the architecture refuses, or a state_dict that
            does not fit (missing, unexpected or differently shaped keys; non-finite values).
    """
    cls = model_class(name)
    mapped = cls.map_state_dict(state_dict, source)
    try:
        with torch.device("meta"):
            probe = create_model(name, n_bands=n_bands, **kwargs)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{source}: options {kwargs} do not build a {name!r} model "
                         f"({exc})") from None
    problem = _mismatch(probe, mapped)
    if problem:
        raise InputError(f"{source}: does not fit architecture {name!r} ({n_bands} bands, "
                         f"options {kwargs}): {problem}")
    return load_state_dict(create_model(name, n_bands=n_bands, **kwargs), state_dict, source)


def load(name: str, weights: str | Path | Checkpoint, sensor: Any = None) -> PansharpeningNet:
    """Build architecture ``name`` for a checkpoint file and load it (eval mode, CPU).

    The band count comes from the checkpoint tensors (the architecture's ``band_key``); when it
    cannot be read there, from ``sensor``, else 8. Keys go through the architecture's
    ``map_state_dict`` (e.g. FusionNet/PanNet drop the duplicate ``backbone.K`` copies of
    ``res{K+1}``), then every model key must be present with its shape and no key may be
    left over. A file known to :func:`list_weights` (by sha256) gets its record attached as
    ``model.weights_record`` (else None).

    Args:
        name: Registered architecture name (see :func:`list_models`).
        weights: Path of a PyTorch state_dict file (plain, or wrapped in ``{"state_dict": ...}``,
            with or without a ``module.`` prefix), or that file already read
            (:func:`pretrained.checkpoint.read_checkpoint`).
        sensor: Optional sensor (name or :class:`~tta.sensors.Sensor`) of the data the model
            will fuse; its band count must equal the checkpoint's.

    Returns:
        The model in eval mode, parameters on CPU.

    Raises:
        InputError: Unknown name; missing file; not a torch file / not a state_dict; keys or
            shapes that do not fit the architecture (naming the matching architecture when
            another registered one fits); band count different from the sensor's.
    """
    cls = model_class(name)
    ck = weights if isinstance(weights, Checkpoint) else read_checkpoint(weights)
    path, sd, digest = ck.path, ck.state_dict, ck.sha256
    mapped = cls.map_state_dict(sd, str(path))
    bands = cls.bands_in(mapped)
    bands = check_bands(bands, sensor, path)
    model = create_model(name, n_bands=bands if bands is not None else 8)
    problem = _mismatch(model, mapped)
    if problem:
        other = _guess_arch(sd, exclude=name)
        hint = f"; it loads as {other!r}" if other else ""
        raise InputError(f"{path}: not a {name!r} checkpoint{hint} ({problem})")
    load_state_dict(model, sd, str(path))
    model.weights_record = find_weights_record(digest)
    return model.eval()
