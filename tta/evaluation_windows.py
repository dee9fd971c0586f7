"""Scores of a product too large to hold: the indexes on windows, averaged.

The PAN grid is tiled into windows of ``side`` pixels (:func:`tta.sampling.patch_grid`; the
last row/column flush with the border). With ``count`` None, or at least the number of
windows, every window is scored (*block-wise*: the whole product is covered); otherwise a
seeded random ``count`` of them (*sample*). Each window is read from the scene and from the
product alone, scored with the whole-image definitions of :func:`tta.evaluation.evaluate`
(:func:`tta.metrics.fr_metrics`, :func:`tta.metrics.rr_metrics`), and the window scores are
averaged (all windows have the same size).

How this relates to the whole-image values: Q2n, Q, the QNR family (toolbox ``S = 32``
blocks) and R-Q2n/R-Q are themselves means over 32-px blocks, so with ``side`` a multiple of
32 the block-wise mean differs from the whole-image value only through the MTF filtering and
interpolation near window borders; SAM, ERGAS, SCC, PSNR, R-SAM, R-ERGAS and D_rho are
global statistics whose window mean is an estimate, not the same number. The output says
which mode was used, on how many windows.
"""

from __future__ import annotations

from typing import Any

import torch

from tta.errors import InputError

__all__ = ["evaluate_windows"]


def evaluate_windows(src: Any, product: Any, protocol: str = "auto", device: str = "auto", *,
                     side: int = 512, count: int | None = None, seed: int = 0
                     ) -> tuple[dict[str, dict[str, float]], dict[str, Any]]:
    """Window-averaged scores of ``product`` for the scene ``src``.

    Args:
        src: A :class:`tta.io.source.SceneSource`.
        product: A :class:`tta.io.product.ProductWindows` of shape ``src.shape``.
        protocol: As :func:`tta.evaluation.evaluate` (``rr`` needs a ``gt`` in the scene).
        device: Torch device.
        side: Window side, PAN pixels (rounded down to a multiple of the ratio; at most the
            scene's shorter side).
        count: Windows to score; None: all of them.
        seed: Seed of the sample.

    Returns:
        ``(scores, info)``: ``{"rr": {...}, "fr": {...}}`` and ``{"mode": "block-wise" |
        "sample", "windows", "of", "side"}``.

    Raises:
        InputError: Shapes that do not match, or ``rr`` without a reference.
    """
    from tta.evaluation import evaluate
    from tta.sampling import patch_grid

    if tuple(product.shape) != tuple(src.shape):
        raise InputError(f"fused product {tuple(product.shape)} does not match the scene "
                         f"{tuple(src.shape)}")
    r = src.ratio
    big_h, big_w = src.pan_size
    s = min(side, big_h, big_w)
    s -= s % r
    if s < 32:
        raise InputError(f"{src.source}: too small for windowed scores (window {s} px)")
    corners = patch_grid(big_h, big_w, s, ratio=r)
    total = int(corners.shape[0])
    if count is not None and count < total:
        gen = torch.Generator().manual_seed(seed)
        corners = corners[torch.randperm(total, generator=gen)[:count].sort().values]
    sums: dict[str, dict[str, float]] = {}
    for y, x in corners.tolist():
        scene = src.read((y // r, x // r, s // r, s // r))
        fused = product.read(y, x, s, s)
        scores = evaluate(scene, fused, protocol, device)
        for fam, values in scores.items():
            acc = sums.setdefault(fam, {})
            for k, v in values.items():
                acc[k] = acc.get(k, 0.0) + float(v)
    n = int(corners.shape[0])
    out = {fam: {k: v / n for k, v in values.items()} for fam, values in sums.items()}
    info = {"mode": "block-wise" if n == total else "sample", "windows": n, "of": total,
            "side": s, "seed": seed}
    return out, info


def describe(info: dict[str, Any]) -> str:
    """One line naming how the windowed scores were computed."""
    if info["mode"] == "block-wise":
        return (f"scores: block-wise, mean over all {info['windows']} windows of "
                f"{info['side']}² PAN px")
    return (f"scores: on a sample of {info['windows']} of {info['of']} windows of "
            f"{info['side']}² PAN px (seed {info['seed']}), averaged")

