"""Out of memory as a one-line error that names the scene size and what to change."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from tta.errors import ResourceError

__all__ = ["guard_memory", "is_out_of_memory", "out_of_memory_error"]

_MARKERS = ("out of memory", "can't allocate memory", "cannot allocate memory",
            "defaultcpuallocator", "unable to allocate")


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is an allocation failure (numpy, torch CPU or CUDA)."""
    if isinstance(exc, MemoryError):
        return True
    try:
        import torch

        if isinstance(exc, torch.OutOfMemoryError):
            return True
    except (ImportError, AttributeError):
        pass
    return isinstance(exc, RuntimeError) and any(m in str(exc).lower() for m in _MARKERS)


def out_of_memory_error(scene: Any = None, device: Any = None) -> ResourceError:
    """The one-line error for an allocation failure, with the scene's size when known."""
    where = f" on {device}" if device is not None else ""
    if scene is None:
        return ResourceError(f"out of memory{where}; free memory or work on a smaller scene")
    c, h, w = scene.shape
    gib = c * h * w * 4 / 2**30
    return ResourceError(
        f"out of memory{where} on {scene.source} (product {c}x{h}x{w}, {gib:.2f} GiB per "
        "float32 copy); free memory, crop the scene, or lower the memory per step (config "
        "tile and inference_batch for tta adapt, another --device)")


@contextlib.contextmanager
def guard_memory(scene: Any = None, device: Any = None) -> Iterator[None]:
    """Turn an allocation failure inside the block into :class:`~tta.errors.ResourceError`."""
    try:
        yield
    except (MemoryError, RuntimeError) as exc:
        if not is_out_of_memory(exc):
            raise
        raise out_of_memory_error(scene, device) from None
