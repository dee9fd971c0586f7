"""The one reader of a YAML file named by the user (scene manifests, model cards)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tta.errors import InputError

__all__ = ["read_yaml"]


def read_yaml(path: str | Path, what: str = "file") -> Any:
    """The parsed content of a YAML file (``yaml.safe_load``).

    Args:
        path: The file.
        what: What the file is, for the message of a missing one (``"model card"``).

    Raises:
        InputError: Missing file (``"<path>: <what> not found"``) or not valid YAML.
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: {what} not found")
    try:
        return yaml.safe_load(p.read_text())
    except yaml.YAMLError:
        raise InputError(f"{p}: not valid YAML") from None
