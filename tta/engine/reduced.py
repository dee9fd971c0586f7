"""Reduced-resolution self-supervision: the target scene, Wald-degraded, supervises itself.

Target-adaptive training after Scarpa et al., "Target-adaptive CNN-based pansharpening"
(IEEE TGRS 2018): degrade the scene's own MS and PAN by the ratio with the sensor's MTF
(:func:`tta.physics.wald_degrade`), so that the real MS becomes the reference of the degraded
inputs. The pairs never involve a ground truth file: only the scene's MS and PAN are read.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["ReducedPairs", "reduced_pairs", "reduced_scene"]


@dataclass
class ReducedPairs:
    """Patches of the degraded scene with their reference (all normalised, on one device).

    Attributes:
        ms, pan, lms: Degraded inputs ``(N, C, p/r, p/r)``, ``(N, 1, p, p)``, ``(N, C, p, p)``.
        ref: The scene's MS on the same windows ``(N, C, p, p)``.
        patch: Patch side ``p`` on the degraded PAN grid (= the MS grid).
        total: Number of candidate windows the patches were chosen from.
    """

    ms: Tensor
    pan: Tensor
    lms: Tensor
    ref: Tensor
    patch: int
    total: int

    def __len__(self) -> int:
        return int(self.ms.shape[0])

    def take(self, idx: Tensor) -> ReducedPairs:
        return ReducedPairs(self.ms[idx], self.pan[idx], self.lms[idx], self.ref[idx],
                            self.patch, self.total)


def reduced_scene(ms: Tensor, pan: Tensor, gains: tuple[float, ...], ratio: int
                  ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Wald-degraded ``(ms_lr, pan_lr, lms_lr, ref)`` of a normalised ``(1, C, h, w)`` MS and
    ``(1, 1, H, W)`` PAN, cropped to a multiple of the ratio; ``ref`` is the (cropped) MS."""
    from tta.physics import interp23tap, wald_degrade

    h, w = ms.shape[-2:]
    h2, w2 = h - h % ratio, w - w % ratio
    ref = ms[..., :h2, :w2]
    ms_lr, pan_lr = wald_degrade(ref.double(), pan[..., :ratio * h2, :ratio * w2].double(),
                                 gains, ratio, clip_min=0.0)
    ms_lr, pan_lr = ms_lr.to(ms.dtype), pan_lr.to(ms.dtype)
    return ms_lr, pan_lr, interp23tap(ms_lr, ratio), ref


def reduced_pairs(reduced: tuple[Tensor, Tensor, Tensor, Tensor], ratio: int, patch: int,
                  count: int, *, seed: int = 0, min_patch: int = 32) -> ReducedPairs | None:
    """Up to ``count`` windows of a :func:`reduced_scene` with the real MS as reference.

    The window side is ``patch`` or, on a small scene, the largest multiple of the ratio that
    fits (at least ``min_patch``; a smaller scene gives None). Windows tile the degraded grid;
    when there are more than ``count``, a seeded random subset is kept.
    """
    from tta.sampling import extract_scene_patches, patch_grid

    ms_lr, pan_lr, lms_lr, ref = reduced
    side = min(patch, *pan_lr.shape[-2:])
    side -= side % ratio
    if side < max(min_patch, 2 * ratio) or count < 1:
        return None
    corners = patch_grid(*pan_lr.shape[-2:], side, ratio=ratio)
    total = int(corners.shape[0])
    if total > count:
        gen = torch.Generator().manual_seed(seed)
        corners = corners[torch.randperm(total, generator=gen)[:count].sort().values]
    corners = corners.to(ms_lr.device)
    ms_p, pan_p, lms_p = extract_scene_patches(ms_lr, pan_lr, lms_lr, corners, side, ratio)
    # the reference lives on the degraded PAN grid: the same windows at ratio 1
    ref_p = extract_scene_patches(ref, ref[:, :1], None, corners, side, 1)[0]
    return ReducedPairs(ms_p, pan_p, lms_p, ref_p, side, total)
