"""Scoring a fused product against its scene with both protocols (library side of `tta eval`).

Reduced resolution: the toolbox indexes against the scene's ``gt``. Full resolution: both
families (toolbox QNR/HQNR and the reprojection protocol), since they can disagree and no
result is to be judged by one family alone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

    from tta.io.scene import Scene

RR_KEYS = ("Q2n", "Q", "SAM", "ERGAS", "SCC", "PSNR")
FR_KEYS = ("HQNR", "D_lambda_K", "D_s", "QNR", "D_lambda", "R-Q2n", "R-Q", "R-SAM", "R-ERGAS",
           "D_rho")
#: Which way is better, shown next to each index.
BETTER = {"Q2n": "up", "Q": "up", "SAM": "down", "ERGAS": "down", "SCC": "up", "PSNR": "up",
          "HQNR": "up", "D_lambda_K": "down", "D_s": "down", "QNR": "up", "D_lambda": "down",
          "R-Q2n": "up", "R-Q": "up", "R-SAM": "down", "R-ERGAS": "down", "D_rho": "down"}


def evaluate(
    scene: Scene, fused: np.ndarray, protocol: str = "auto", device: str = "auto"
) -> dict[str, dict[str, float]]:
    """Scores of a fused ``(C, H, W)`` DN array for a scene: ``{"rr": {...}, "fr": {...}}``.

    ``protocol`` is ``rr`` (needs ``scene.gt``), ``fr`` or ``both``; ``auto`` means ``rr``
    for scenes with a reference and ``fr`` otherwise. The FR indexes of a reduced-resolution
    scene are computed on its (degraded) MS/PAN inputs.
    """
    import torch

    from tta.device import resolve_device
    from tta.errors import InputError
    from tta.metrics import fr_metrics, rr_metrics

    if protocol == "auto":
        protocol = "rr" if scene.is_reduced else "fr"
    if protocol in ("rr", "both") and not scene.is_reduced:
        raise InputError(f"{scene.source}: no reference 'gt' for the reduced-resolution "
                         "protocol; use --protocol fr (or degrade the scene first)")
    if tuple(fused.shape) != scene.shape:
        raise InputError(f"fused product {tuple(fused.shape)} does not match the scene "
                         f"{scene.shape}")
    dev = resolve_device(device)

    def t(a):
        return torch.as_tensor(a, dtype=torch.float64, device=dev)

    out: dict[str, dict[str, float]] = {}
    with torch.inference_mode():
        f = t(fused)
        if protocol in ("rr", "both"):
            out["rr"] = rr_metrics(t(scene.gt), f, scene.ratio, scene.max_value)
        if protocol in ("fr", "both"):
            out["fr"] = fr_metrics(t(scene.ms), t(scene.pan)[None], f, scene.sensor,
                                   scene.max_value)
    return out
