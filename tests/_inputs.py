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


def write_scene_h5(path, bands: int = 4, ms_side: int = 16, *, low: float = 1.0,
                   high: float = 2047.0, seed: int = 0, sensor: str = "QB"):
    """A seeded uniform-DN scene file (ratio 4: MS ``ms_side``², PAN ``4 ms_side``²)."""
    import h5py
    import numpy as np

    rng = np.random.default_rng(seed)
    with h5py.File(path, "w") as f:
        f["ms"] = rng.uniform(low, high, (1, bands, ms_side, ms_side)).astype("f4")
        f["pan"] = rng.uniform(low, high, (1, 1, 4 * ms_side, 4 * ms_side)).astype("f4")
        f.attrs["sensor"] = sensor
    return path
