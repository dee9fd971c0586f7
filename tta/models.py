"""Turning a user's ``--model`` / ``--weights`` into a loaded network.

Accepted forms:

* ``ARCH --weights FILE``: a registered architecture (``pretrained.list_models()``) loading a
  checkpoint file, e.g. a DLPan-Toolbox ``.pth``;
* ``FILE.pth``: a checkpoint alone; the architecture is recognised from its keys and shapes;
* ``FILE.safetensors`` (alone or as ``--weights``): weights written by ``tta train``, whose
  metadata names the architecture and its options;
* ``ARCH[:SENSOR]``: our own shipped weights for that architecture (WV3 by default).

A checkpoint the registry does not know (no weights record) that sits in a folder named after
a sensor with its band count (DLPan-Toolbox's ``.../wv3/fusionnet.pth``) gets that sensor's
band layout as ``model.band_layout`` (:mod:`tta.engine.bands`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from tta.errors import InputError, TtaError

__all__ = ["model_files", "resolve_model"]


def _from_safetensors(path: Path, arch: str | None, sensor: Any) -> nn.Module:
    """A ``tta train`` weights file: its metadata names the architecture and options."""
    from pretrained.zoo import model_from_weights

    model = model_from_weights(path, arch=arch)
    if sensor is not None:
        from tta.sensors import get_sensor

        n = len(get_sensor(sensor).bands)
        if n != model.n_bands:
            raise InputError(f"{path}: a {model.n_bands}-band model cannot fuse a {n}-band "
                             "sensor's scene")
    return model


def resolve_model(spec: str, weights: str | Path | None = None, sensor: Any = None) -> nn.Module:
    """Load the network named by ``spec`` (see the module docstring), in eval mode on CPU."""
    model = _resolve_model(spec, weights, sensor)
    file = Path(weights) if weights is not None else Path(str(spec).strip())
    if getattr(model, "weights_record", None) is None and file.suffix in (".pth", ".pt",
                                                                         ".ckpt"):
        _layout_from_folder(model, file)
    return model


def _layout_from_folder(model: nn.Module, file: Path) -> None:
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


def _resolve_model(spec: str, weights: str | Path | None = None, sensor: Any = None
                   ) -> nn.Module:
    """:func:`resolve_model` without the folder layout.

    Raises:
        InputError: Unknown architecture, unreadable or unrecognised checkpoint, band count
            different from ``sensor``'s, or no shipped weights for the name.
    """
    import pretrained
    from pretrained.registry import _guess_arch, _read_checkpoint

    text = str(spec).strip()
    if not text:
        raise InputError("--model is empty; give an architecture name or a checkpoint file")
    path = Path(text)
    if weights is None and (path.suffix in (".pth", ".pt", ".ckpt", ".safetensors")
                            or path.exists()):
        if not path.is_file():
            raise InputError(f"{path}: checkpoint file not found")
        if path.suffix.lower() == ".safetensors":
            return _from_safetensors(path, None, sensor)
        sd, _digest = _read_checkpoint(path)
        arch = _guess_arch(sd, exclude="")
        if arch is None:
            raise InputError(f"{path}: its keys fit no registered architecture "
                             f"({', '.join(pretrained.list_models())}); pass --model ARCH "
                             "--weights FILE")
        return pretrained.load(arch, weights=path, sensor=sensor)
    name, _, zoo_sensor = text.partition(":")
    name = name.lower()
    if not pretrained.is_model(name):
        pretrained.model_class(name)  # raises with close matches
    if weights is not None:
        if Path(weights).suffix.lower() == ".safetensors":
            return _from_safetensors(Path(weights), name, sensor)
        return pretrained.load(name, weights=weights, sensor=sensor)
    load_zoo = getattr(pretrained, "load_zoo", None)
    if load_zoo is None:
        raise InputError(f"no shipped weights for {name!r} yet; pass --weights FILE (e.g. a "
                         "DLPan-Toolbox checkpoint for this architecture)")
    return load_zoo(name, sensor=zoo_sensor or None)


def model_files(spec: str, weights: str | Path | None = None) -> list[Path]:
    """The files :func:`resolve_model` reads for ``spec``/``weights`` (outputs must not be
    one of them): the checkpoint, or our shipped weights and card for ``ARCH[:SENSOR]``."""
    text = str(spec).strip()
    files = [Path(weights)] if weights is not None else []
    path = Path(text)
    if weights is None and (path.suffix in (".pth", ".pt", ".ckpt", ".safetensors")
                            or path.exists()):
        return [path]
    name, _, sensor = text.partition(":")
    from pretrained.zoo import CARDS_DIR, DEFAULT_SENSOR, WEIGHTS_DIR, zoo_stem

    try:
        stem = zoo_stem(name.lower(), sensor or DEFAULT_SENSOR)
    except TtaError:  # an unknown sensor fails later, in resolve_model, with its message
        return files
    if weights is None:
        files += [WEIGHTS_DIR / f"{stem}.safetensors", CARDS_DIR / f"{stem}.yaml"]
    return files
