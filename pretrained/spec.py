"""The one grammar of ``--model`` / ``--weights`` and the one path from it to a loaded network.

Forms (:func:`parse_model_spec`):

* ``FILE.pth`` / ``FILE.pt`` / ``FILE.ckpt`` (or any existing file): a checkpoint alone; the
  architecture is recognised from its keys and shapes;
* ``FILE.safetensors``: weights written by ``tta train``, whose metadata names the
  architecture and its options;
* ``ARCH --weights FILE``: a registered architecture (:func:`pretrained.list_models`) loading
  a checkpoint file (a DLPan-Toolbox ``.pth``, or a ``.safetensors``);
* ``ARCH`` or ``ARCH:SENSOR``: our shipped weights of that architecture (WV3 by default).

:func:`load_model` loads any of them (eval mode, CPU) with the band check of
:func:`pretrained.registry.check_bands`; :meth:`ModelSpec.files` names the files it reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pretrained._base import PansharpeningNet
from pretrained.checkpoint import CHECKPOINT_SUFFIXES
from tta.errors import InputError, TtaError

__all__ = ["ModelSpec", "load_model", "parse_model_spec"]


@dataclass(frozen=True)
class ModelSpec:
    """A parsed ``--model`` (and ``--weights``).

    Attributes:
        kind: ``"file"`` (a checkpoint alone), ``"weights"`` (``ARCH --weights FILE``) or
            ``"zoo"`` (``ARCH[:SENSOR]``, our shipped weights).
        text: The ``--model`` text as given (stripped).
        arch: Registered architecture (None for ``"file"``).
        path: The checkpoint file (None for ``"zoo"``).
        sensor: The ``:SENSOR`` tag of a zoo spec, or None.
    """

    kind: Literal["file", "weights", "zoo"]
    text: str
    arch: str | None = None
    path: Path | None = None
    sensor: str | None = None

    @property
    def zoo_sensor(self) -> str:
        """The sensor of a zoo spec (the tag, else the zoo's default)."""
        from pretrained.zoo import DEFAULT_SENSOR

        return self.sensor or DEFAULT_SENSOR

    @property
    def tag(self) -> str:
        """A short name for output files: the checkpoint's stem, else ``ARCH-SENSOR``."""
        if self.kind == "file":
            return self.path.stem
        return self.text.replace(":", "-")

    def files(self) -> list[Path]:
        """The files :func:`load_model` reads (an output must not be one of them): the
        checkpoint, or our shipped weights and card."""
        if self.kind != "zoo":
            return [self.path]
        from pretrained.zoo import CARDS_DIR, WEIGHTS_DIR, zoo_stem

        try:
            stem = zoo_stem(self.arch, self.zoo_sensor)
        except TtaError:  # an unknown sensor fails in load_model, with its message
            return []
        return [WEIGHTS_DIR / f"{stem}.safetensors", CARDS_DIR / f"{stem}.yaml"]


def parse_model_spec(spec: str | Path, weights: str | Path | None = None, *,
                     zoo: bool = False) -> ModelSpec:
    """Parse ``--model`` (and ``--weights``) by the grammar of the module docstring.

    Args:
        spec: The ``--model`` text.
        weights: The ``--weights`` file, or None.
        zoo: Read ``spec`` as ``ARCH[:SENSOR]`` only (never a file).

    Raises:
        InputError: Empty text, or an architecture name that is not registered (close
            matches listed).
    """
    from pretrained.registry import model_class

    text = str(spec).strip()
    if not text:
        raise InputError("--model is empty; give an architecture name or a checkpoint file")
    path = Path(text)
    if not zoo and weights is None and (path.suffix.lower() in CHECKPOINT_SUFFIXES
                                        or path.exists()):
        return ModelSpec("file", text, path=path)
    name, _, tag = text.partition(":")
    arch = name.lower()
    model_class(arch)  # raises with close matches
    if weights is not None:
        return ModelSpec("weights", text, arch=arch, path=Path(weights))
    return ModelSpec("zoo", text, arch=arch, sensor=tag or None)


def _from_file(path: Path, arch: str | None, sensor: Any) -> PansharpeningNet:
    """A checkpoint file, for ``arch`` or (None) the architecture it names or fits."""
    import pretrained
    from pretrained.checkpoint import read_checkpoint
    from pretrained.registry import _guess_arch, check_bands
    from pretrained.zoo import model_from_weights

    if path.suffix.lower() == ".safetensors":
        model = model_from_weights(read_checkpoint(path), arch=arch)
        check_bands(model.n_bands, sensor, path)
        return model
    ck = read_checkpoint(path)
    if arch is None:
        arch = _guess_arch(ck.state_dict, exclude="")
        if arch is None:
            raise InputError(f"{path}: its keys fit no registered architecture "
                             f"({', '.join(pretrained.list_models())}); pass --model ARCH "
                             "--weights FILE")
    return pretrained.load(arch, weights=ck, sensor=sensor)


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
    from pretrained.zoo import load_zoo

    parsed = spec if isinstance(spec, ModelSpec) else parse_model_spec(spec, weights)
    if parsed.kind == "zoo":
        return load_zoo(parsed.arch, sensor=parsed.zoo_sensor)
    if parsed.kind == "file" and not parsed.path.is_file():
        raise InputError(f"{parsed.path}: checkpoint file not found")
    return _from_file(parsed.path, parsed.arch, sensor)
