"""tta: cross-sensor test-time adaptation toolkit for pansharpening.

Light on import: the public names of :mod:`tta.api` load on first attribute access, so
``tta --help`` does not pay for torch, rasterio or h5py.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    api = importlib.import_module("tta.api")

    if name in api.__all__:
        return getattr(api, name)
    raise AttributeError(f"module 'tta' has no attribute {name!r}")


def __dir__() -> list[str]:
    api = importlib.import_module("tta.api")

    return sorted([*globals(), *api.__all__])
