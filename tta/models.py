"""Turning a user's ``--model`` / ``--weights`` into a loaded network: the CLI's and the
API's door to :mod:`pretrained.spec`, which holds the one grammar (``ARCH --weights FILE``,
``FILE.pth``, ``FILE.safetensors``, ``ARCH[:SENSOR]``) and the one loading path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

__all__ = ["model_files", "resolve_model"]


def resolve_model(spec: str, weights: str | Path | None = None, sensor: Any = None) -> nn.Module:
    """Load the network named by ``spec`` (:func:`pretrained.loader.load_model`), in eval mode
    on CPU.

    Raises:
        InputError: Unknown architecture, unreadable or unrecognised checkpoint, band count
            different from ``sensor``'s, or no shipped weights for the name.
    """
    from pretrained.loader import load_model

    return load_model(spec, weights, sensor=sensor)


def model_files(spec: str, weights: str | Path | None = None) -> list[Path]:
    """The files :func:`resolve_model` reads for ``spec``/``weights`` (outputs must not be
    one of them): the checkpoint, or our shipped weights and card for ``ARCH[:SENSOR]``.

    Raises:
        InputError: Empty ``spec`` or an unknown architecture.
    """
    from pretrained.spec import parse_model_spec

    return parse_model_spec(spec, weights).files()
