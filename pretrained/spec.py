"""The one grammar of ``--model`` / ``--weights``, and where the zoo's files live.

Forms (:func:`parse_model_spec`):

* ``FILE.pth`` / ``FILE.pt`` / ``FILE.ckpt`` (or any existing file): a checkpoint alone; the
  architecture is recognised from its keys and shapes;
* ``FILE.safetensors``: weights written by ``tta train``, whose metadata names the
  architecture and its options;
* ``ARCH --weights FILE``: a registered architecture (:func:`pretrained.list_models`) loading
  a checkpoint file (a DLPan-Toolbox ``.pth``, or a ``.safetensors``);
* ``ARCH`` or ``ARCH:SENSOR``: our shipped weights of that architecture (WV3 by default).

:func:`pretrained.loader.load_model` loads any of them; :meth:`ModelSpec.files` names the files
it reads. Our shipped weights are ``WEIGHTS_DIR/<arch>_<sensor>.safetensors`` with the card
``CARDS_DIR/<arch>_<sensor>.yaml`` (:func:`zoo_stem`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pretrained.checkpoint import CHECKPOINT_SUFFIXES
from tta.errors import InputError, TtaError

__all__ = ["CARDS_DIR", "DEFAULT_SENSOR", "WEIGHTS_DIR", "ModelSpec", "parse_model_spec",
           "sensor_name", "zoo_stem"]

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
CARDS_DIR = Path(__file__).resolve().parent / "cards"
#: Sensor of ``ARCH`` without ``:SENSOR``.
DEFAULT_SENSOR = "WV3"


def sensor_name(sensor: Any) -> str:
    """The canonical name of a sensor (preset, alias, YAML file or :class:`Sensor`)."""
    from tta.sensors import Sensor, get_sensor

    if isinstance(sensor, Sensor):
        return sensor.name
    return get_sensor(str(sensor)).name


def zoo_stem(arch: str, sensor: Any) -> str:
    """File stem ``<arch>_<sensor>`` (sensor lower case), e.g. ``fose_wv3``."""
    return f"{arch}_{sensor_name(sensor).lower()}"


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
