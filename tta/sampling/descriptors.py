"""Hand-crafted patch descriptors for sample selection (spectral, texture, MS-PAN relation).

The descriptor only has to place similar patches near each other so that the samplers of
:mod:`tta.sampling.samplers` can see the data manifold: it is cheap (a few moments per patch,
no network), computed for every patch of a scene in one vectorised pass, and standardised so
that no group of columns dominates the Euclidean distances by its units.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["describe_patches", "descriptor_names"]

_EPS = 1e-12


def descriptor_names(n_bands: int, with_lms: bool = True) -> list[str]:
    """Names of the columns of :func:`describe_patches`, in order.

    Args:
        n_bands: Number of MS bands ``C``.
        with_lms: Whether the ``lms`` correlation columns are present.

    Returns:
        List of ``3*C + 4`` names (``4*C + 4`` with ``with_lms``).
    """
    names = [f"ms_mean_{b}" for b in range(n_bands)]
    names += [f"ms_std_{b}" for b in range(n_bands)]
    names += [f"ms_shape_{b}" for b in range(n_bands)]
    names += ["pan_mean", "pan_std", "pan_grad", "pan_laplacian"]
    if with_lms:
        names += [f"lms_pan_corr_{b}" for b in range(n_bands)]
    return names


def _standardise(x: Tensor) -> Tensor:
    """Columns to zero mean and unit (population) std over the rows; constant columns -> 0."""
    mean = x.mean(dim=0, keepdim=True)
    std = x.std(dim=0, unbiased=False, keepdim=True)
    constant = std <= 1e-9 * mean.abs()  # also catches std == 0
    return torch.where(constant, torch.zeros_like(x), (x - mean) / torch.where(constant, 1, std))


def describe_patches(ms_p: Tensor, pan_p: Tensor, lms_p: Tensor | None = None) -> Tensor:
    """One standardised descriptor row per patch.

    Columns (``C`` = number of bands; statistics over the pixels of each patch, population
    moments), in the order of :func:`descriptor_names`:

    * ``[0, C)`` ``ms_mean`` - per-band mean of the MS patch (brightness, land cover);
    * ``[C, 2C)`` ``ms_std`` - per-band standard deviation of the MS patch (spectral contrast);
    * ``[2C, 3C)`` ``ms_shape`` - per-band mean divided by the mean over bands (the
      brightness-free spectral signature: vegetation, water, soil, cloud);
    * ``3C`` ``pan_mean`` - PAN mean (saturation, shadows, clouds);
    * ``3C+1`` ``pan_std`` - PAN standard deviation (contrast);
    * ``3C+2`` ``pan_grad`` - mean gradient magnitude of PAN (forward differences; edges);
    * ``3C+3`` ``pan_laplacian`` - root-mean-square 4-neighbour Laplacian of PAN (interior
      pixels; high-frequency energy, the detail pansharpening has to inject);
    * ``[3C+4, 4C+4)`` ``lms_pan_corr`` (only when ``lms_p`` is given) - per-band Pearson
      correlation of the upsampled MS with PAN (how well PAN explains each band's detail;
      0 for a flat patch).

    Each column is then standardised over the ``N`` patches (zero mean, unit population std);
    a constant column becomes all zeros. Statistics are computed in float64.

    Args:
        ms_p: MS patches ``(N, C, h, w)``.
        pan_p: PAN patches ``(N, 1, H, W)`` with ``H, W >= 3``.
        lms_p: Optional upsampled-MS patches ``(N, C, H, W)``.

    Returns:
        float32 Tensor ``(N, 3*C + 4)``, or ``(N, 4*C + 4)`` with ``lms_p``, on the input's
        device. Not meant for back-propagation (selection is not differentiable).

    Raises:
        ValueError: Inconsistent shapes or patches smaller than 3x3 PAN pixels.

    Reference:
        Descriptor design of this toolkit (moments in the spirit of the no-reference QNR
        spectral/spatial terms: MS statistics, PAN detail, MS-PAN correlation), used for the
        manifold-based sampling of SWIFT ("Sensitive Weight Identification for Fast
        Transfer").

    Example:
        >>> ms, pan = torch.rand(5, 4, 8, 8), torch.rand(5, 1, 32, 32)
        >>> describe_patches(ms, pan).shape
        torch.Size([5, 16])
    """
    if ms_p.ndim != 4 or pan_p.ndim != 4 or pan_p.shape[1] != 1:
        raise ValueError(
            f"ms_p must be (N, C, h, w) and pan_p (N, 1, H, W), got {tuple(ms_p.shape)} and "
            f"{tuple(pan_p.shape)}"
        )
    n, c = ms_p.shape[:2]
    if pan_p.shape[0] != n or n == 0:
        raise ValueError(f"ms_p and pan_p must hold the same N >= 1 patches, got {n} and "
                         f"{pan_p.shape[0]}")
    if min(pan_p.shape[-2:]) < 3:
        raise ValueError(f"PAN patches must be at least 3x3, got {tuple(pan_p.shape[-2:])}")
    if lms_p is not None and (lms_p.ndim != 4 or tuple(lms_p.shape) != (n, c, *pan_p.shape[-2:])):
        raise ValueError(f"lms_p must be {(n, c, *pan_p.shape[-2:])}, got {tuple(lms_p.shape)}")

    ms = ms_p.detach().to(torch.float64)
    pan = pan_p.detach().to(torch.float64)[:, 0]  # (N, H, W)

    ms_mean = ms.mean(dim=(-2, -1))  # (N, C)
    ms_std = ms.std(dim=(-2, -1), unbiased=False)
    ms_shape = ms_mean / (ms_mean.mean(dim=1, keepdim=True) + _EPS)

    pan_mean = pan.mean(dim=(-2, -1))
    pan_std = pan.std(dim=(-2, -1), unbiased=False)
    dy = pan[:, 1:, :-1] - pan[:, :-1, :-1]
    dx = pan[:, :-1, 1:] - pan[:, :-1, :-1]
    pan_grad = torch.sqrt(dx * dx + dy * dy).mean(dim=(-2, -1))
    lap = (4 * pan[:, 1:-1, 1:-1] - pan[:, :-2, 1:-1] - pan[:, 2:, 1:-1]
           - pan[:, 1:-1, :-2] - pan[:, 1:-1, 2:])
    pan_lap = torch.sqrt((lap * lap).mean(dim=(-2, -1)))

    columns = [ms_mean, ms_std, ms_shape,
               torch.stack([pan_mean, pan_std, pan_grad, pan_lap], dim=1)]
    if lms_p is not None:
        lms = lms_p.detach().to(torch.float64)
        lc = lms - lms.mean(dim=(-2, -1), keepdim=True)
        pc = (pan - pan.mean(dim=(-2, -1), keepdim=True))[:, None]
        cov = (lc * pc).mean(dim=(-2, -1))
        var = (lc * lc).mean(dim=(-2, -1)) * (pc * pc).mean(dim=(-2, -1))
        columns.append(cov / torch.sqrt(var.clamp_min(_EPS * _EPS)))
    return _standardise(torch.cat(columns, dim=1)).to(torch.float32)
