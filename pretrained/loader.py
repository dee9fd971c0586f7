"""The one path from a ``--model`` (and ``--weights``) to a loaded network.

:func:`load_model` takes every form of :mod:`pretrained.spec`'s grammar: our shipped weights
(:func:`pretrained.zoo.load_zoo`), a ``tta train`` safetensors file, or a PyTorch checkpoint
for a named or recognised architecture (:func:`pretrained.load`); each file is read once
(:func:`pretrained.checkpoint.read_checkpoint`) and the band count is checked against the
sensor in one place (:func:`pretrained.registry.check_bands`). A ``tta train`` safetensors file
gets the same weights record whether it is named or given as a path
(:func:`pretrained.zoo.file_record`: sha256, architecture, sensor, bands, ratio, max value),
so reports and saved adapters carry it either way.

A PyTorch checkpoint the registry does not know (no weights record) that sits in a folder named
after a sensor with its band count (DLPan-Toolbox's ``.../wv3/fusionnet.pth``) gets that
sensor's band layout as ``model.band_layout`` (:mod:`tta.engine.bands`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pretrained._base import PansharpeningNet
from pretrained.checkpoint import read_checkpoint
from pretrained.registry import _guess_arch, check_bands, list_models, load
from pretrained.spec import ModelSpec, parse_model_spec
from pretrained.zoo import file_record, load_zoo, model_from_weights
from tta.errors import InputError

__all__ = ["load_model"]


def _from_file(path: Path, arch: str | None, sensor: Any) -> PansharpeningNet:
    """A checkpoint file, for ``arch`` or (None) the architecture it names or fits."""
    if path.suffix.lower() == ".safetensors":
        ck = read_checkpoint(path)
        model = model_from_weights(ck, arch=arch)
        check_bands(model.n_bands, sensor, path)
        model.weights_record = file_record(ck, model.arch, model.n_bands)
        return model
    ck = read_checkpoint(path)
    if arch is None:
        arch = _guess_arch(ck.state_dict, exclude="")
        if arch is None:
            raise InputError(f"{path}: its keys fit no registered architecture "
                             f"({', '.join(list_models())}); pass --model ARCH "
                             "--weights FILE")
    return load(arch, weights=ck, sensor=sensor)


def load_model(spec: str | Path | ModelSpec, weights: str | Path | None = None,
               sensor: Any = None) -> PansharpeningNet:
    """Load the network ``spec`` names (see the module docstring), in eval mode on CPU.

    Args:
        spec: ``--model`` text or a parsed :class:`ModelSpec`.
        weights: ``--weights`` file (with a text ``spec``).
        sensor: Sensor of the scenes the model will fuse: its band count must match.

    Raises:
        InputError: Unknown architecture, unreadable or unrecognised checkpoint, band count
            different from ``sensor``'s, or no shipped weights for the name.
    """
    parsed = spec if isinstance(spec, ModelSpec) else parse_model_spec(spec, weights)
    if parsed.kind == "zoo":
        return load_zoo(parsed.arch, sensor=parsed.zoo_sensor)
    if parsed.kind == "file" and not parsed.path.is_file():
        raise InputError(f"{parsed.path}: checkpoint file not found")
    model = _from_file(parsed.path, parsed.arch, sensor)
    if getattr(model, "weights_record", None) is None and parsed.path.suffix in (
            ".pth", ".pt", ".ckpt"):
        _layout_from_folder(model, parsed.path)
    return model


def _layout_from_folder(model: PansharpeningNet, file: Path) -> None:
    """``model.band_layout`` from a sensor-named parent folder (DLPan-Toolbox layout)."""
    from tta.errors import SensorError
    from tta.sensors import get_sensor

    folder = file.resolve().parent.name
    try:
        found = get_sensor(folder) if folder else None
    except SensorError:
        return
    if found is not None and found.n_bands == getattr(model, "n_bands", None):
        model.band_layout = found.bands
        model.band_layout_source = f"sensor folder {folder}/"
