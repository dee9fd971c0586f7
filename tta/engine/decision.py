"""Never harm: an unsupervised choice between the adapted and the direct network.

Both candidates fuse the same check windows, and each is scored on two families that need no
ground truth:

* **reduced resolution (self-check)**: the scene's MS and PAN, Wald-degraded by the ratio,
  are fused and compared with the scene's own MS (Q2n, toolbox definition, 32-px blocks);
* **full resolution**: HQNR (toolbox ``HQNR.m``: Khan's D_lambda and D_s, 32-px blocks) of
  the fusion of windows of the scene itself; D_rho is reported alongside.

The adapted network is kept only where it is not worse than the direct one on either family
by more than ``tolerance``; otherwise the direct network fuses the scene. Where the source
already fits its target, adaptation tends to trade one family for the other (the
reprojection family improves while HQNR drops), and this rule keeps the direct result there.
No file other than the scene's MS and PAN is read: a ``gt`` is never looked at.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

__all__ = ["Decision", "check_windows", "cut_windows", "decide", "fuse_batched",
           "fuse_pair_batched", "score_candidate", "score_outputs", "unchanged", "window_corners",
           "windows_cover"]

Fuse = Callable[[Tensor, Tensor, Tensor], Tensor]


@dataclass
class Decision:
    """What the engine fused the scene with, and why.

    Attributes:
        choice: ``"adapted"`` or ``"direct"``.
        reason: One sentence naming the deciding numbers.
        scores: ``{"direct": {...}, "adapted": {...}}`` with ``rr_Q2n`` (when the scene is
            large enough to degrade), ``fr_HQNR`` and ``fr_D_rho``.
        windows: How many windows each family was scored on, and their side.
        tolerance: Largest loss on one family still accepted.
    """

    choice: str
    reason: str
    scores: dict[str, dict[str, float]] = field(default_factory=dict)
    windows: dict[str, Any] = field(default_factory=dict)
    tolerance: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"choice": self.choice, "reason": self.reason, "scores": self.scores,
                "windows": self.windows, "tolerance": self.tolerance}


def _grid(height: int, width: int, ratio: int, side: int) -> tuple[Tensor, int]:
    """Every check window of the grid: corners ``(N, 2)`` and side (``side``, or the largest
    ratio multiple that fits)."""
    from tta.sampling import patch_grid

    s = min(side, height, width)
    s -= s % ratio
    return patch_grid(height, width, s, ratio=ratio), s


def window_corners(height: int, width: int, ratio: int, *, side: int = 128, count: int = 16,
                   seed: int = 0) -> tuple[Tensor, int]:
    """The check windows of :func:`check_windows` on a ``height`` x ``width`` PAN grid: their
    corners ``(N, 2)`` and side."""
    corners, s = _grid(height, width, ratio, side)
    if corners.shape[0] > count:
        gen = torch.Generator().manual_seed(seed)
        corners = corners[torch.randperm(corners.shape[0], generator=gen)[:count].sort().values]
    return corners, s


def windows_cover(height: int, width: int, ratio: int, *, side: int = 128, count: int = 16
                  ) -> bool:
    """Whether the check windows are every window of the grid (no random subset): then the
    windows cut from whole-scene fusions cost nothing more than the scene's fusion."""
    return _grid(height, width, ratio, side)[0].shape[0] <= count


def check_windows(ms: Tensor, pan: Tensor, lms: Tensor, ratio: int, *, side: int = 128,
                  count: int = 16, seed: int = 0) -> tuple[Tensor, Tensor, Tensor]:
    """Up to ``count`` windows of ``side`` PAN pixels (or the largest ratio multiple that
    fits) tiling the scene, a seeded random subset when there are more."""
    from tta.sampling import extract_scene_patches

    corners, s = window_corners(*pan.shape[-2:], ratio, side=side, count=count, seed=seed)
    ms_c, pan_c, lms_c = extract_scene_patches(ms, pan, lms, corners.to(ms.device), s, ratio)
    assert lms_c is not None
    return ms_c, pan_c, lms_c


def cut_windows(image: Tensor, ratio: int, *, side: int = 128, count: int = 16,
                seed: int = 0) -> Tensor:
    """The check windows of :func:`check_windows` cut from a fused scene ``(1, C, H, W)``:
    ``(N, C, s, s)``, window ``i`` at the corner of the inputs' window ``i``."""
    corners, s = window_corners(*image.shape[-2:], ratio, side=side, count=count, seed=seed)
    return torch.stack([image[0, :, y:y + s, x:x + s] for y, x in corners.tolist()])


def _batches(ms: Tensor, pan: Tensor, lms: Tensor, batch: int
             ) -> list[tuple[Tensor, Tensor, Tensor]]:
    """Window batches in the channels-last layout the tiled inference feeds (the zoo's
    convolutions run about twice as fast on a CPU that way)."""
    cl = torch.channels_last
    return [tuple(t[i:i + batch].contiguous(memory_format=cl) for t in (ms, pan, lms))
            for i in range(0, ms.shape[0], batch)]


def fuse_batched(fn: Fuse, ms: Tensor, pan: Tensor, lms: Tensor, batch: int = 8) -> Tensor:
    """``fn`` on windows ``batch`` at a time, without autograd, concatenated (float32)."""
    with torch.inference_mode():
        return torch.cat([fn(*b).float().contiguous() for b in _batches(ms, pan, lms, batch)])


def fuse_pair_batched(fn: Callable[[Tensor, Tensor, Tensor], tuple[Tensor, Tensor]],
                      ms: Tensor, pan: Tensor, lms: Tensor, batch: int = 8
                      ) -> tuple[Tensor, Tensor]:
    """:func:`fuse_batched` for a function giving both candidates' outputs at once."""
    with torch.inference_mode():
        pairs = [fn(*b) for b in _batches(ms, pan, lms, batch)]
    return (torch.cat([a.float().contiguous() for a, _ in pairs]),
            torch.cat([b.float().contiguous() for _, b in pairs]))


def score_candidate(fn: Fuse, fr: tuple[Tensor, Tensor, Tensor], rr: Any, *,
                    gains: tuple[float, ...], ratio: int, dn: float) -> dict[str, float]:
    """No-reference scores of one candidate network.

    Args:
        fn: ``fn(ms, pan, lms) -> fused``, normalised inputs and output.
        fr: Full-resolution check windows ``(ms, pan, lms)`` (normalised).
        rr: :class:`~tta.engine.reduced.ReducedPairs` of the degraded scene, or None.
        gains: MS Nyquist gains of the sensor.
        ratio: PAN/MS ratio.
        dn: DN per normalised unit (the toolbox indexes cast to DN).
    """
    fused_rr = None if rr is None else fuse_batched(fn, rr.ms, rr.pan, rr.lms)
    return score_outputs(fuse_batched(fn, *fr), fused_rr, fr, rr, gains=gains, ratio=ratio,
                         dn=dn)


def score_outputs(fused_fr: Tensor, fused_rr: Tensor | None, fr: tuple[Tensor, Tensor, Tensor],
                  rr: Any, *, gains: tuple[float, ...], ratio: int, dn: float
                  ) -> dict[str, float]:
    """The scores of :func:`score_candidate` from a candidate's outputs on the windows."""
    from tta.metrics import d_rho, hqnr, q2n

    out: dict[str, float] = {}
    if rr is not None and fused_rr is not None:
        out["rr_Q2n"] = float(q2n(rr.ref.double() * dn, fused_rr.double() * dn).mean())
    ms_c, pan_c, lms_c = fr
    fused = fused_fr.double() * dn
    h, _, _ = hqnr(lms_c.double() * dn, pan_c.double() * dn, fused, gains, ratio)
    out["fr_HQNR"] = float(h.mean())
    out["fr_D_rho"] = float(d_rho(pan_c.double() * dn, fused, ratio).mean())
    return out


def decide(direct: dict[str, float], adapted: dict[str, float], *, tolerance: float,
           windows: dict[str, Any] | None = None) -> Decision:
    """Keep the adapted network unless it loses more than ``tolerance`` on a family."""
    keys = [k for k in ("rr_Q2n", "fr_HQNR") if k in direct and k in adapted]
    deltas = {k: adapted[k] - direct[k] for k in keys}
    worse = [k for k, d in deltas.items() if d < -tolerance]
    shown = ", ".join(f"{k} {direct[k]:.4f} -> {adapted[k]:.4f}" for k in keys)
    if worse:
        choice = "direct"
        reason = (f"adaptation lowers {' and '.join(worse)} by more than {tolerance:g} "
                  f"({shown}): the source network is kept")
    else:
        choice = "adapted"
        reason = f"adaptation loses on no family ({shown})"
    return Decision(choice, reason, {"direct": direct, "adapted": adapted}, windows or {},
                    tolerance)


def unchanged(diverged_at_step: int | None, tolerance: float) -> Decision:
    """The decision when the adapted network *is* the direct one (no step was taken, or the
    loss diverged and the parameters were reset to their start): there is nothing to
    compare, so no check window is fused and the direct network fuses the scene."""
    why = ("no adaptation step was taken" if diverged_at_step is None else
           f"the loss diverged at step {diverged_at_step} and the parameters were reset")
    return Decision("direct", f"{why}: the adapted network equals the source network, "
                    "which fuses the scene (nothing scored)", {}, {}, tolerance)
