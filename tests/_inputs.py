"""Small generated network inputs shared by the model tests."""

from __future__ import annotations

import torch


def random_inputs(n_bands: int, b: int = 2, h: int = 8, dtype=torch.float32,
                  grad: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Seeded uniform ``(ms, pan, lms)`` at ratio 4: MS ``h``², PAN and LMS ``4h``²."""
    g = torch.Generator().manual_seed(n_bands)
    ms = torch.rand(b, n_bands, h, h, generator=g, dtype=dtype)
    pan = torch.rand(b, 1, 4 * h, 4 * h, generator=g, dtype=dtype)
    lms = torch.rand(b, n_bands, 4 * h, 4 * h, generator=g, dtype=dtype)
    for t in (ms, pan, lms):
        t.requires_grad_(grad)
    return ms, pan, lms
