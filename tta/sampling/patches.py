"""Tiling a scene into patches and cutting them out (vectorised, differentiable).

Corners are ``(y, x)`` top-left pixel indices on the PAN grid. With ``ratio`` the PAN/MS scale
ratio, :func:`patch_grid` only emits corners that are multiples of ``ratio`` and patch sides
that are multiples of ``ratio``, so PAN window ``(y, x, patch)`` matches MS window
``(y // ratio, x // ratio, patch // ratio)`` exactly (MS pixel ``i`` covers PAN rows
``ratio*i .. ratio*i + ratio - 1``).
"""

from __future__ import annotations

import torch
from torch import Tensor

from tta.sampling._checks import check_int

__all__ = ["extract_patches", "extract_scene_patches", "patch_grid"]


def _positions(size: int, patch: int, stride: int) -> Tensor:
    """Window starts along one axis: ``0, stride, 2*stride, ...`` then one flush with the end."""
    starts = torch.arange(0, size - patch + 1, stride, dtype=torch.long)
    if int(starts[-1]) != size - patch:
        starts = torch.cat([starts, torch.tensor([size - patch], dtype=torch.long)])
    return starts


def patch_grid(
    height: int, width: int, patch: int, stride: int | None = None, *, ratio: int = 1
) -> Tensor:
    """Top-left corners of ``patch x patch`` windows tiling a ``height x width`` grid.

    Windows start every ``stride`` pixels along each axis; when the image side is not covered
    exactly, one more window is added flush with the bottom/right border (it overlaps its
    neighbour more than the others do), so the union of the windows covers every pixel.

    Args:
        height: Grid height ``H`` (PAN pixels), a multiple of ``ratio``.
        width: Grid width ``W``, a multiple of ``ratio``.
        patch: Window side, a multiple of ``ratio`` with ``ratio <= patch <= min(H, W)``.
        stride: Step between windows, a multiple of ``ratio`` in ``[ratio, patch]``;
            default ``patch`` (non-overlapping windows, apart from the flush last ones).
        ratio: PAN/MS scale ratio (4, or 2 for Landsat); 1 for a single-resolution grid.

    Returns:
        LongTensor ``(N, 2)`` on the CPU of ``(y, x)`` corners in row-major order (``y`` slowest),
        every value a multiple of ``ratio``, ``0 <= y <= H - patch``, ``0 <= x <= W - patch``.

    Raises:
        ValueError: A non-integer or out-of-range argument; the message names it and the
            allowed range.

    Reference:
        Toolkit convention: sliding windows with a border-flush last window (no padding, so
        every patch holds real pixels), on the PAN grid with ratio-aligned corners.

    Example:
        >>> patch_grid(8, 10, 4).tolist()
        [[0, 0], [0, 4], [0, 6], [4, 0], [4, 4], [4, 6]]
    """
    ratio = check_int(ratio, "ratio", 1)
    height = check_int(height, "height", 1)
    width = check_int(width, "width", 1)
    patch = check_int(patch, "patch", 1)
    stride = patch if stride is None else check_int(stride, "stride", 1)
    if height % ratio or width % ratio:
        raise ValueError(
            f"grid {height}x{width} is not a multiple of ratio {ratio}: give the PAN grid of a "
            f"scene whose PAN is ratio x MS"
        )
    if patch % ratio or patch > min(height, width):
        raise ValueError(
            f"patch must be a multiple of ratio {ratio} no larger than the grid side "
            f"{min(height, width)}, got {patch}"
        )
    if stride % ratio or not ratio <= stride <= patch:
        raise ValueError(
            f"stride must be a multiple of ratio {ratio} in [{ratio}, {patch}] (patch), "
            f"got {stride}"
        )
    ys = _positions(height, patch, stride)
    xs = _positions(width, patch, stride)
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([yy.reshape(-1), xx.reshape(-1)], dim=1)


def _check_corners(corners: Tensor, patch: int, height: int, width: int) -> None:
    if not isinstance(corners, Tensor):
        raise TypeError(f"corners must be a torch.Tensor, got {type(corners).__name__}")
    if corners.ndim != 2 or corners.shape[1] != 2:
        raise ValueError(f"corners must be (N, 2), got shape {tuple(corners.shape)}")
    if corners.is_floating_point() or corners.is_complex() or corners.dtype == torch.bool:
        raise ValueError(f"corners must be an integer tensor, got {corners.dtype}")
    if corners.numel():
        lo = corners.amin(dim=0)
        hi = corners.amax(dim=0)
        if bool(lo.min() < 0) or int(hi[0]) > height - patch or int(hi[1]) > width - patch:
            raise ValueError(
                f"corners must lie in [0, {height - patch}] x [0, {width - patch}] for "
                f"{patch}x{patch} windows of a {height}x{width} image, got rows "
                f"[{int(lo[0])}, {int(hi[0])}] and columns [{int(lo[1])}, {int(hi[1])}]"
            )


def extract_patches(image: Tensor, corners: Tensor, patch: int) -> Tensor:
    """Cut ``patch x patch`` windows out of an image with one advanced-indexing gather.

    Args:
        image: Tensor ``(B, C, H, W)`` with ``B == 1`` (every window from the same image) or
            ``B == N`` (window ``n`` from image ``n``).
        corners: Integer tensor ``(N, 2)`` of ``(y, x)`` top-left corners on the image's own
            grid (moved to the image's device), with ``0 <= y <= H - patch`` and
            ``0 <= x <= W - patch``.
        patch: Window side in pixels, ``1 <= patch <= min(H, W)``.

    Returns:
        Tensor ``(N, C, patch, patch)`` (contiguous), same dtype and device as ``image``;
        ``out[n] == image[b, :, y:y+patch, x:x+patch]``. Differentiable in ``image``
        (overlapping windows accumulate their gradients).

    Raises:
        ValueError: Bad shapes, non-integer or out-of-range corners, or a batch size that is
            neither 1 nor N.

    Reference:
        Equivalent to ``torch.nn.functional.unfold`` followed by column selection, without
        materialising every window.

    Example:
        >>> img = torch.arange(16.0).reshape(1, 1, 4, 4)
        >>> extract_patches(img, torch.tensor([[1, 2]]), 2)[0, 0].tolist()
        [[6.0, 7.0], [10.0, 11.0]]
    """
    if not isinstance(image, Tensor) or image.ndim != 4:
        shape = tuple(image.shape) if isinstance(image, Tensor) else type(image).__name__
        raise ValueError(f"image must be a (B, C, H, W) tensor, got {shape}")
    b, _, height, width = image.shape
    patch = check_int(patch, "patch", 1)
    if patch > min(height, width):
        raise ValueError(f"patch {patch} exceeds the image side {min(height, width)}")
    _check_corners(corners, patch, height, width)
    n = corners.shape[0]
    if b not in (1, n):
        raise ValueError(f"image batch must be 1 or the number of corners {n}, got {b}")
    corners = corners.to(device=image.device, dtype=torch.long)
    offsets = torch.arange(patch, device=image.device)
    rows = (corners[:, 0, None] + offsets)[:, :, None]  # (N, p, 1)
    cols = (corners[:, 1, None] + offsets)[:, None, :]  # (N, 1, p)
    batch = torch.arange(n, device=image.device) if b == n and b > 1 else corners.new_zeros(n)
    # Advanced indices split by the channel slice: the broadcast (N, p, p) dims come first.
    out = image[batch[:, None, None], :, rows, cols]  # (N, p, p, C)
    return out.permute(0, 3, 1, 2).contiguous()


def extract_scene_patches(
    ms: Tensor,
    pan: Tensor,
    lms: Tensor | None,
    corners: Tensor,
    patch: int,
    ratio: int,
) -> tuple[Tensor, Tensor, Tensor | None]:
    """Cut matching MS, PAN and upsampled-MS windows from a scene.

    Args:
        ms: Low-resolution MS ``(1 or N, C, h, w)``.
        pan: PAN ``(1 or N, 1, H, W)`` with ``H = ratio*h``, ``W = ratio*w``.
        lms: MS upsampled to the PAN grid ``(1 or N, C, H, W)``, or ``None``.
        corners: Integer tensor ``(N, 2)`` of ``(y, x)`` corners on the PAN grid, multiples of
            ``ratio`` (as produced by :func:`patch_grid` with the same ``ratio``).
        patch: PAN window side, a multiple of ``ratio``.
        ratio: PAN/MS scale ratio.

    Returns:
        ``(ms_p, pan_p, lms_p)``: Tensors ``(N, C, patch/ratio, patch/ratio)``,
        ``(N, 1, patch, patch)`` and ``(N, C, patch, patch)`` (``None`` when ``lms`` is
        ``None``); MS window ``n`` starts at ``corners[n] // ratio``.

    Raises:
        ValueError: Inconsistent shapes, a patch or corner that is not a multiple of ``ratio``,
            or corners outside the image.

    Reference:
        PAN/MS block correspondence of the Wald protocol (Vivone et al. toolbox
        ``resize_images.m``: MS pixel ``i`` <-> PAN block ``ratio*i .. ratio*i + ratio - 1``).
    """
    ratio = check_int(ratio, "ratio", 1)
    patch = check_int(patch, "patch", 1)
    for name, x in (("ms", ms), ("pan", pan)):
        if not isinstance(x, Tensor) or x.ndim != 4:
            raise ValueError(f"{name} must be a (B, C, H, W) tensor")
    if pan.shape[1] != 1:
        raise ValueError(f"pan must have one channel, got {pan.shape[1]}")
    h, w = ms.shape[-2:]
    if tuple(pan.shape[-2:]) != (ratio * h, ratio * w):
        raise ValueError(f"pan {tuple(pan.shape[-2:])} is not ratio {ratio} x ms {(h, w)}")
    lms_shape = (ms.shape[1], *pan.shape[-2:])
    if lms is not None and (lms.ndim != 4 or tuple(lms.shape[1:]) != lms_shape):
        raise ValueError(
            f"lms must be (B, {ms.shape[1]}, {pan.shape[-2]}, {pan.shape[-1]}), "
            f"got {tuple(lms.shape)}"
        )
    if patch % ratio:
        raise ValueError(f"patch {patch} is not a multiple of ratio {ratio}")
    if isinstance(corners, Tensor) and corners.numel() and bool((corners % ratio != 0).any()):
        raise ValueError(f"corners must be multiples of ratio {ratio} (use patch_grid(ratio=...))")
    pan_p = extract_patches(pan, corners, patch)
    ms_p = extract_patches(ms, corners.div(ratio, rounding_mode="floor"), patch // ratio)
    lms_p = None if lms is None else extract_patches(lms, corners, patch)
    return ms_p, pan_p, lms_p
