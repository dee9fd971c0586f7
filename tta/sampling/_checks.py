"""Argument checks shared by the samplers (private)."""

from __future__ import annotations

import torch
from torch import Tensor

from tta.checks import check_int

__all__ = ["check_features", "check_int", "check_k"]


def check_features(features: Tensor) -> Tensor:
    """Raise ``ValueError`` unless ``features`` is a finite, non-empty ``(N, D)`` float tensor.

    Returns:
        ``features`` unchanged.
    """
    if not isinstance(features, Tensor):
        raise TypeError(f"features must be a torch.Tensor, got {type(features).__name__}")
    if features.ndim != 2 or features.shape[0] == 0 or features.shape[1] == 0:
        raise ValueError(f"features must be a non-empty (N, D) tensor, got {tuple(features.shape)}")
    if not features.is_floating_point():
        raise ValueError(f"features must be a floating-point tensor, got {features.dtype}")
    if not bool(torch.isfinite(features).all()):
        raise ValueError("features hold NaN or infinite values (mask nodata patches first)")
    return features


def check_k(k: object, n: int) -> int:
    """Validate the sample count ``k >= 1`` and clip it to the ``n`` available rows."""
    return min(check_int(k, "k", 1), n)
