"""Reduced-resolution (with-reference) quality indexes: SAM, ERGAS, Q, Q2n, SCC, PSNR.

Every function takes the reference first and the fused image second, as the Vivone et al.
pansharpening toolbox (``Quality_Indices/*.m``, ``Tools/indexes_evaluation.m``), as batched
``(B, C, H, W)`` tensors (or ``(C, H, W)`` / ``(H, W)`` arrays or tensors), computes in float64
on the input's device and returns a ``(B,)`` tensor (a 0-d tensor for an unbatched input).
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from tta.metrics._common import (
    MATLAB_EPS,
    box_sum,
    finish,
    pair,
    symmetric_index,
    toolbox_cut,
    uint16_cast,
)

__all__ = [
    "ergas",
    "onion_mult",
    "psnr",
    "q2n",
    "q_index",
    "rr_metrics",
    "sam",
    "scc",
]


# ----------------------------------------------------------------------------- SAM / ERGAS
def sam(ref: Any, fused: Any) -> Tensor:
    """Spectral Angle Mapper in degrees.

    Per pixel ``acos(<x, y> / (|x| |y|))`` over the bands; pixels where ``|x| |y| == 0`` are
    left out, and the index is the mean angle of the remaining pixels, in degrees. Cosines
    outside [-1, 1] from rounding give 0 / 180 degrees (the toolbox's ``real(acos(.))``).

    Reference:
        Toolbox ``SAM.m`` (Yuhas et al. 1992). Symmetric in its arguments. No difference
        (NaN when every pixel has a zero norm, as the toolbox's 0/0).
    """
    x, y, batched = pair(ref, fused)
    dot = (x * y).sum(dim=1)
    prod_norm = torch.sqrt((x * x).sum(dim=1) * (y * y).sum(dim=1))
    valid = prod_norm != 0
    cos = torch.where(valid, dot / torch.where(valid, prod_norm, 1.0), 1.0).clamp(-1.0, 1.0)
    angle = torch.acos(cos) * valid
    count = valid.sum(dim=(-2, -1)).to(x.dtype)
    return finish(angle.sum(dim=(-2, -1)) / count * (180.0 / math.pi), batched)


def ergas(ref: Any, fused: Any, ratio: float) -> Tensor:
    """Erreur Relative Globale Adimensionnelle de Synthese.

    ``100 / ratio * sqrt(mean_b(mean((x_b - y_b)**2) / mean(x_b)**2))`` with the band means
    ``mean(x_b)`` of the reference. Not symmetric.

    Reference:
        Toolbox ``ERGAS.m`` (Ranchin & Wald 2000). No difference.
    """
    x, y, batched = pair(ref, fused)
    mse = ((x - y) ** 2).mean(dim=(-2, -1))
    mu = x.mean(dim=(-2, -1))
    return finish((100.0 / ratio) * torch.sqrt((mse / mu**2).mean(dim=1)), batched)


# ----------------------------------------------------------------------------- Q (UIQI)
def _img_qi_map(x: Tensor, y: Tensor, block_size: int) -> Tensor:
    """Wang-Bovik quality map on every ``block_size`` window at valid positions (img_qi.m)."""
    n = float(block_size * block_size)
    s1, s2 = box_sum(x, block_size), box_sum(y, block_size)
    s11, s22, s12 = box_sum(x * x, block_size), box_sum(y * y, block_size), box_sum(
        x * y, block_size)
    mul = s1 * s2
    sq_mul = s1 * s1 + s2 * s2
    numerator = 4.0 * (n * s12 - mul) * mul
    denominator1 = n * (s11 + s22) - sq_mul
    denominator = denominator1 * sq_mul
    qmap = torch.ones_like(denominator)
    flat = (denominator1 == 0) & (sq_mul != 0)
    qmap = torch.where(flat, 2.0 * mul / torch.where(flat, sq_mul, 1.0), qmap)
    ok = denominator != 0
    return torch.where(ok, numerator / torch.where(ok, denominator, 1.0), qmap)


def q_index(ref: Any, fused: Any, block_size: int = 32) -> Tensor:
    """Universal image quality index (UIQI / Q), averaged over the bands.

    For each band, the Wang-Bovik index ``4 s_xy m_x m_y / ((s_x^2 + s_y^2)(m_x^2 + m_y^2))``
    on every ``block_size x block_size`` window at every valid position (stride 1, no
    padding: a ``(H-bs+1) x (W-bs+1)`` map); windows where both images are flat get
    ``2 m_x m_y / (m_x^2 + m_y^2)`` and windows where that is 0/0 too get 1. The map is
    averaged, then the band values are averaged. Symmetric in its arguments.

    Reference:
        Toolbox ``Q.m`` calling ``img_qi(I1(:,:,b), I2(:,:,b), 32)`` (Wang & Bovik, IEEE SPL
        2002, their ``img_qi.m``: ``filter2(ones(bs), ., 'valid')`` sums and ``mean2`` of the
        map). No difference (NaN for an image smaller than the block, as ``mean2([])``).
    """
    x, y, batched = pair(ref, fused)
    if min(x.shape[-2:]) < block_size:
        return finish(torch.full(x.shape[:1], float("nan"), dtype=x.dtype,
                                 device=x.device), batched)
    qmap = _img_qi_map(x, y, block_size)
    return finish(qmap.mean(dim=(-2, -1)).mean(dim=1), batched)


# ----------------------------------------------------------------------------- Q2n
def _conj_like(t: Tensor) -> Tensor:
    """``[t_1, -t_2, ..., -t_n]`` along the last axis (the toolbox's partial conjugation)."""
    return torch.cat([t[..., :1], -t[..., 1:]], dim=-1)


def onion_mult(a: Tensor, b: Tensor) -> Tensor:
    """Hypercomplex (Cayley-Dickson) product along the last axis, of length a power of two.

    Reference:
        Toolbox ``onion_mult.m`` / ``onion_mult2D.m`` (same recursion; the 2-D variant
        applies it per pixel), restated on the last axis with broadcasting.
    """
    n = a.shape[-1]
    if n == 1:
        return a * b
    half = n // 2
    a1, b1 = a[..., :half], _conj_like(a[..., half:])
    c1, d1 = b[..., :half], _conj_like(b[..., half:])
    if n == 2:
        return torch.cat([a1 * c1 - d1 * b1, a1 * d1 + c1 * b1], dim=-1)
    ris1 = onion_mult(a1, c1)
    ris2 = onion_mult(d1, _conj_like(b1))
    ris3 = onion_mult(_conj_like(a1), d1)
    ris4 = onion_mult(c1, b1)
    return torch.cat([ris1 - ris2, ris3 + ris4], dim=-1)


@lru_cache(maxsize=8)
def _structure_constants(n: int) -> Tensor:
    """``S[i, j, k]``: component k of ``onion_mult(e_i, e_j)`` (the product is bilinear).

    Built outside inference mode, so that the cached tensor can also enter autograd graphs
    (the differentiable Q2n loss) after a first call under ``torch.inference_mode``.
    """
    with torch.inference_mode(False):
        return _build_structure_constants(n)


def _build_structure_constants(n: int) -> Tensor:
    eye = torch.eye(n, dtype=torch.float64)
    return onion_mult(eye[:, None, :].expand(n, n, n), eye[None, :, :].expand(n, n, n))


def _onions_quality(x: Tensor, y: Tensor) -> Tensor:
    """Hypercomplex quality of blocks: ``x, y (..., N3, n)`` (bands, pixels) -> ``(..., N3)``.

    Restates ``onions_quality.m`` with ``norm_blocco.m``; the per-pixel product ``qu`` is only
    needed through its block mean, obtained from the band cross-moments and the
    (bilinear) product's structure constants.
    """
    n_bands, n = x.shape[-2], x.shape[-1]
    unb = n / (n - 1.0)
    # norm_blocco on the reference block; the fused block takes the reference's statistics.
    a = x.mean(dim=-1, keepdim=True)
    c = x.std(dim=-1, keepdim=True)
    c = torch.where(c == 0, MATLAB_EPS, c)
    xh = (x - a) / c + 1.0
    yh = torch.where(a == 0, y - a + 1.0, (y - a) / c + 1.0)
    sign = torch.ones(n_bands, 1, dtype=x.dtype, device=x.device)
    sign[1:] = -1.0
    dat2 = yh * sign  # conjugate of the normalised fused block
    m1, m2 = xh.mean(dim=-1), dat2.mean(dim=-1)
    mod_q1m = torch.sqrt((m1 * m1).sum(dim=-1))
    mod_q2m = torch.sqrt((m2 * m2).sum(dim=-1))
    mod_q1 = torch.sqrt((xh * xh).sum(dim=-2))
    mod_q2 = torch.sqrt((dat2 * dat2).sum(dim=-2))
    termine2 = mod_q1m * mod_q2m
    termine4 = mod_q1m**2 + mod_q2m**2
    int1 = unb * (mod_q1**2).mean(dim=-1)
    int2 = unb * (mod_q2**2).mean(dim=-1)
    termine3 = int1 + int2 - unb * (mod_q1m**2 + mod_q2m**2)
    mean_bias = 2.0 * termine2 / termine4
    s = _structure_constants(n_bands).to(device=x.device, dtype=x.dtype)
    cross = torch.matmul(xh, dat2.transpose(-1, -2)) / n  # mean_p(xh_i * dat2_j)
    qv = unb * torch.einsum("...ij,ijk->...k", cross, s)
    qm = torch.einsum("...i,...j,ijk->...k", m1, m2, s)
    flat = termine3 == 0
    cbm = 2.0 / torch.where(flat, 1.0, termine3)
    q = (qv - unb * qm) * (mean_bias * cbm)[..., None]
    q_flat = torch.zeros_like(q)
    q_flat[..., -1] = mean_bias
    return torch.where(flat[..., None], q_flat, q)


def q2n(ref: Any, fused: Any, block_size: int = 32, shift: int | None = None, *,
        dn_cast: bool = True, return_map: bool = False) -> Tensor | tuple[Tensor, Tensor]:
    """Q2n (Q4 for 4 bands, Q8 for 8): hypercomplex extension of the UIQI.

    Steps of the toolbox: the images are extended at the bottom/right by mirroring (edge
    pixel repeated) to ``(ceil(H/shift)-1)*shift + block_size`` rows (same for columns);
    both are cast to ``uint16`` (``dn_cast``: round half away from zero, clip to
    [0, 65535], so inputs must be in DN); zero bands are appended up to a power of two; on
    each ``block_size`` block (step ``shift``) every band of both images is normalised with
    the reference block's mean and standard deviation (``(v - m)/s + 1``; ``s = eps`` for a
    flat block; no division when ``m == 0``), the fused block is conjugated, and the
    hypercomplex covariance, times the mean-bias and contrast terms, gives a vector whose
    norm is the block's value; Q2n is the mean of the block map.

    Not symmetric in general (the normalisation uses the reference block's statistics); it
    is invariant to a per-band positive affine change applied to both images (without the
    DN cast) and its block values lie in [0, 1] for up to 8 bands. Being a norm it does not
    see the sign of the correlation (an anticorrelated block can score 1).

    Args:
        ref: Reference image ``(B, C, H, W)`` in DN.
        fused: Fused image, same shape, in DN.
        block_size: Block side (toolbox ``Q_blocks_size``, 32).
        shift: Block step (``Q_shift``); default ``block_size`` (as ``indexes_evaluation.m``),
            must not exceed ``block_size``.
        dn_cast: Apply the toolbox's ``uint16`` cast (default). Off, the index is computed
            on the float values (useful for normalised data, not the toolbox's number).
        return_map: Also return the block map ``(B, ceil(H/shift), ceil(W/shift))``.

    Returns:
        ``(B,)`` tensor (0-d for unbatched input), and the map when asked.

    Reference:
        Toolbox ``q2n.m``, ``onions_quality.m``, ``onion_mult.m``, ``onion_mult2D.m``,
        ``norm_blocco.m`` (Garzelli & Nencini, IEEE GRSL 2009). Differences: none in the
        definition; the block mean of the per-pixel hypercomplex product is computed from
        band cross-moments and the product's structure constants (same value up to
        rounding, ~1e-15), all blocks at once. Mirroring past twice the image size (which
        the toolbox cannot index) repeats periodically.
    """
    x, y, batched = pair(ref, fused)
    shift = block_size if shift is None else int(shift)
    if block_size < 2 or not 1 <= shift <= block_size:
        raise ValueError(f"need block_size >= 2 and 1 <= shift <= block_size, got "
                         f"{block_size}, {shift}")
    b, c, h, w = x.shape
    stepx, stepy = math.ceil(h / shift), math.ceil(w / shift)
    est1 = (stepx - 1) * shift + block_size - h
    est2 = (stepy - 1) * shift + block_size - w
    if est1 != 0 or est2 != 0:
        rows = symmetric_index(h, h + est1, x.device)
        cols = symmetric_index(w, w + est2, x.device)
        x = x.index_select(-2, rows).index_select(-1, cols)
        y = y.index_select(-2, rows).index_select(-1, cols)
    if dn_cast:
        x, y = uint16_cast(x), uint16_cast(y)
    n3 = 1 << (c - 1).bit_length()
    if n3 != c:
        x = F.pad(x, (0, 0, 0, 0, 0, n3 - c))
        y = F.pad(y, (0, 0, 0, 0, 0, n3 - c))

    def tiles(t: Tensor) -> Tensor:  # (B, N3, stepx, stepy, bs, bs) -> (B, sx, sy, N3, bs*bs)
        t = t.unfold(2, block_size, shift).unfold(3, block_size, shift)
        return t.permute(0, 2, 3, 1, 4, 5).reshape(b, stepx, stepy, n3, block_size**2)

    q = _onions_quality(tiles(x), tiles(y))
    qmap = torch.sqrt((q * q).sum(dim=-1))
    value = finish(qmap.mean(dim=(-2, -1)), batched)
    if return_map:
        return value, finish(qmap, batched)
    return value


# ----------------------------------------------------------------------------- SCC / PSNR
def _sobel_magnitude(x: Tensor) -> Tensor:
    """``sqrt(imfilter(I, sobel)^2 + imfilter(I, sobel')^2)`` on ``I(2:end-1, 2:end-1)``."""
    x = x[..., 1:-1, 1:-1]
    b, c, h, w = x.shape
    sob = torch.tensor([[1.0, 2.0, 1.0], [0.0, 0.0, 0.0], [-1.0, -2.0, -1.0]],
                       dtype=x.dtype, device=x.device)
    kernels = torch.stack([sob, sob.t()])[:, None]  # (2, 1, 3, 3); conv2d correlates
    g = F.conv2d(x.reshape(b * c, 1, h, w), kernels, padding=1)  # zero borders ('same')
    return torch.sqrt((g * g).sum(dim=1)).reshape(b, c, h, w)


def scc(ref: Any, fused: Any) -> Tensor:
    """Spatial correlation coefficient of the Sobel gradient magnitudes.

    Both images are cut by one pixel on every side, each band is filtered with the Sobel
    kernel and its transpose (zero padding, same size) and the gradient magnitudes are
    compared with the uncentred correlation ``sum(Gx Gy) / sqrt(sum(Gx^2) sum(Gy^2))`` over
    all bands and pixels at once. Values in [0, 1]; symmetric in its arguments.

    Reference:
        Toolbox ``SCC.m`` (``SCC(I_F, I_GT)``: fused first there; the index is symmetric).
        No difference (NaN when a magnitude image is all zero, as the toolbox's 0/0).
    """
    x, y, batched = pair(ref, fused)
    if min(x.shape[-2:]) < 3:
        raise ValueError(f"SCC needs images of at least 3x3 pixels, got {tuple(x.shape[-2:])}")
    gx, gy = _sobel_magnitude(x), _sobel_magnitude(y)
    num = (gx * gy).sum(dim=(1, 2, 3))
    value = num / torch.sqrt((gy * gy).sum(dim=(1, 2, 3))) / torch.sqrt(
        (gx * gx).sum(dim=(1, 2, 3)))
    return finish(value, batched)


def psnr(ref: Any, fused: Any, max_value: float) -> Tensor:
    """Peak signal-to-noise ratio ``10 log10(max_value^2 / MSE)`` in dB, MSE over all bands.

    Reference:
        Not part of the toolbox; the usual definition with the sensor's nominal maximum DN
        as the peak and one MSE over every band and pixel. ``inf`` for identical images.
    """
    x, y, batched = pair(ref, fused)
    mse = ((x - y) ** 2).mean(dim=(1, 2, 3))
    return finish(10.0 * torch.log10(float(max_value) ** 2 / mse), batched)


# ----------------------------------------------------------------------------- wrapper
def rr_metrics(gt: Any, fused: Any, ratio: int, max_value: float, border: int = 21, *,
               block_size: int = 32, dn_cast: bool = True, clip: bool = False
               ) -> dict[str, Any]:
    """All reduced-resolution indexes of one (batch of) fused image(s) against the GT.

    Args:
        gt: Reference ``(B, C, H, W)`` (or ``(C, H, W)``) in DN.
        fused: Fused image of the same shape, in DN.
        ratio: PAN/MS ratio (ERGAS).
        max_value: Nominal maximum DN (PSNR peak; upper bound of ``clip``).
        border: Border cut of the toolbox: ``I(border:end-border, border:end-border)``
            (1-based), i.e. ``border-1`` pixels off the top/left and ``border`` off the
            bottom/right; 0 disables it.
        block_size: Block of Q2n and window of Q.
        dn_cast: The ``uint16`` cast of Q2n (see :func:`q2n`).
        clip: Clip the fused image to ``[0, max_value]`` first (the toolbox's
            ``th_values``, which clips to ``2^L`` instead); off by default, as in the
            toolbox demos.

    Returns:
        ``{"Q2n", "Q", "SAM", "ERGAS", "SCC", "PSNR"}``: floats for unbatched inputs,
        ``(B,)`` tensors otherwise.

    Reference:
        Toolbox ``Tools/indexes_evaluation.m`` (``flag_cut_bounds = 1``, ``dim_cut = 21``,
        ``Q_blocks_size = 32``, ``q2n(I_GT, I_F, 32, 32)``, ``Q(I_GT, I_F)``, ``SAM``,
        ``ERGAS``, ``SCC``). PSNR is our addition.
    """
    x, y, batched = pair(gt, fused, ("gt", "fused"))
    x, y = toolbox_cut(x, border), toolbox_cut(y, border)
    if clip:
        y = y.clamp(0.0, float(max_value))
    out = {
        "Q2n": q2n(x, y, block_size, block_size, dn_cast=dn_cast),
        "Q": q_index(x, y, block_size),
        "SAM": sam(x, y),
        "ERGAS": ergas(x, y, ratio),
        "SCC": scc(x, y),
        "PSNR": psnr(x, y, max_value),
    }
    if batched:
        return out
    return {k: float(v[0]) for k, v in out.items()}
