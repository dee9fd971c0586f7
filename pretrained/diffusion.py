"""Conditional diffusion for pansharpening: a DDRF-style teacher and its one-step student.

Both models predict the residual ``x0 = HRMS - lms`` with the same small conditional UNet
(:class:`CondUNet`, two resolution levels, ~0.56 M parameters at the default width 32):

* the *noisy residual* ``x_t`` and the condition ``[lms, pan]`` are concatenated at the input;
* a sinusoidal timestep embedding modulates every residual block by a per-channel FiLM
  (scale, shift);
* a condition encoder turns ``[lms, pan]`` into one feature map per level, which modulates the
  normalised block features per pixel (``h * (1 + gamma(c)) + beta(c)``): the "style transfer
  modulation" idea of DDRF (Cao et al.), written from its description;
* normalisation is per pixel over channels (no image-wide statistics), so the student and Fose
  have a finite receptive field and tile exactly in ``tta adapt``;
* the network is trained to output ``x0`` (DDRF found x0-prediction best on small data) with a
  cosine noise schedule over ``T = 1000`` steps;
* the diffusion runs on the residual times ``residual_scale`` (default 20): in ``/ max_value``
  units the residual is small (std 0.03-0.08 on the WV3 training data), so unit-variance noise
  would drown it at all but the last few timesteps; scaled, its std is O(1). The UNet still
  predicts the unscaled residual (the scale enters ``q_sample`` and the DDIM update only), so
  the output stays ``lms + mapper(features)``.

:class:`DiffusionTeacher` samples with DDIM (eta = 0, deterministic) in ``steps`` (default 50)
evenly spaced timesteps from ``T-1`` to 0. The start ``x_T`` is, by default, a standard normal
drawn from a CPU generator seeded with ``noise_seed`` (0), of shape ``(1, C, H, W)`` and shared
by every sample of the batch, so a given input always gives the same output on any device and
in any batch position; ``init="zeros"`` starts from ``x_T = 0`` instead.

:class:`OneStepStudent` is the same UNet run once from ``t = T-1`` with the fixed input
``x_T = 0``; it is distilled from the teacher's 50-step output (``tta train --stage distill``).

Decomposition (feature extractor | channel mapper, :mod:`tta.decomposition`). The mapper must be
called once per forward. The student calls ``unet.out_conv`` once: it is its mapper. The teacher
calls the UNet 50 times, so its final DDIM step (whose ``x0`` *is* the output, the step to
``alpha_bar = 1``) maps the last step's features with a distinct module, ``head``: a
``Conv2d`` holding its *own copy* of ``unet.out_conv``'s weights (copied at construction and by
:meth:`DiffusionTeacher.sync_head` after training; the earlier 49 steps use ``unet.out_conv``).
The teacher's output is then ``lms + head(f_last)`` with ``f_last`` independent of ``head``,
an additive tail, so test-time adapters attach at ``head`` and change the last step only. A
checkpoint stores both copies (``unet.out_conv.*`` and ``head.*``); they differ only in an
adapted (merged) teacher.

Options (recorded in ``hparams`` only when not the default, so older records and shipped
weights load and behave as before):

* ``precond="edm"``: EDM output preconditioning (Karras et al. 2022) on the VP schedule,
  :func:`edm_coefficients`: ``x0 = (c_skip(t) x_t + c_out(t) F(c_in(t) x_t)) / s``. At
  ``t -> 0`` it copies ``x_t / s`` whatever the UNet says, at ``t -> T`` it is the regression
  ``sigma_data F / s``: the UNet no longer has to learn both a copy and a regression in one
  output. Its ``head`` holds ``c_out(0) / s`` times ``unet.out_conv`` (:attr:`DiffusionTeacher.
  head_scale`), so the last step stays ``c_skip x + head(f)``, an additive tail, but with
  little weight: at ``t = 0`` the output is almost the copy of ``x``; adapt the student or
  Fose, not such a teacher.
* ``cond="detail"``: the condition also holds ``DETAIL_SCALE (pan - lms)`` per band (the
  detail FusionNet regresses from), so the UNet need not learn to amplify a 0.03-sized
  difference of two 0.3-sized inputs.

Tiling. Each DDIM step feeds the next, so the teacher's receptive field grows with the steps
(the untrained one measures ~40 PAN px against ~25 for one pass); ``tta adapt`` measures it
and refuses a tile that is too small, naming the minimum. The teacher is the distillation
source; the student and Fose (50x cheaper) are the networks meant for adaptation.

References:
    Z. Cao, S. Cao, L.-J. Deng, X. Wu, J. Hou, G. Vivone, "Diffusion model with disentangled
    modulations for sharpening multispectral and hyperspectral images", Information Fusion
    2024 (DDRF). J. Song, C. Meng, S. Ermon, "Denoising diffusion implicit models", ICLR 2021.
    A. Nichol, P. Dhariwal, "Improved denoising diffusion probabilistic models", ICML 2021
    (cosine schedule). K. Liu et al., "Fose: Fusion of one-step diffusion and end-to-end
    network for pansharpening", 2025 (one-step distillation).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pretrained._base import PansharpeningNet, same_layout
from pretrained.registry import register_model
from tta.errors import InputError

__all__ = [
    "ChannelNorm",
    "CondResBlock",
    "CondUNet",
    "DiffusionTeacher",
    "OneStepStudent",
    "cosine_alpha_bar",
    "ddim_timesteps",
    "diffusion_student",
    "diffusion_teacher",
    "edm_coefficients",
    "timestep_embedding",
]

#: Largest accepted number of diffusion timesteps (the schedule is a Python list).
MAX_TIMESTEPS = 100_000

#: Output parametrisations of the UNet (``precond``): ``none`` = it outputs ``x0`` directly.
PRECONDS = ("none", "edm")

#: Condition inputs of the UNet (``cond``): ``lms_pan`` = ``[lms, pan]``; ``detail`` adds the
#: per-band PAN detail ``DETAIL_SCALE (pan - lms)`` (FusionNet's input, scaled to O(1)).
CONDS = ("lms_pan", "detail")

#: Factor of ``pan - lms`` in the ``detail`` condition (the residual's std in ``/ max_value``
#: units is 0.03-0.08 on WV3: x20 brings it to O(1), like ``residual_scale``).
DETAIL_SCALE = 20.0


# ----------------------------------------------------------------------------- schedule
def cosine_alpha_bar(timesteps: int = 1000, s: float = 0.008, max_beta: float = 0.999
                     ) -> Tensor:
    """Cumulative signal fraction ``alpha_bar[t]``, ``t = 0..T-1``, of the cosine schedule.

    ``beta_t = min(1 - f(t+1)/f(t), max_beta)`` with ``f(t) = cos(((t/T + s)/(1 + s)) pi/2)^2``,
    ``alpha_bar[t] = prod_{i<=t} (1 - beta_i)``; float64, decreasing from ~1 to ~0.

    Reference:
        Nichol & Dhariwal 2021, eq. 17 and the clipping of beta at 0.999.
    """
    if timesteps < 1:
        raise ValueError(f"timesteps must be >= 1, got {timesteps}")
    t = torch.arange(timesteps + 1, dtype=torch.float64, device="cpu") / timesteps
    f = torch.cos((t + s) / (1 + s) * math.pi / 2) ** 2
    betas = (1 - f[1:] / f[:-1]).clamp(max=max_beta)
    return torch.cumprod(1 - betas, dim=0)


def ddim_timesteps(timesteps: int, steps: int) -> list[int]:
    """``steps`` distinct timesteps from ``T-1`` down to 0, evenly spaced (rounded).

    Raises:
        InputError: ``steps`` outside ``[1, T]``.
    """
    if not 1 <= int(steps) <= timesteps:
        raise InputError(f"DDIM steps must lie in [1, {timesteps}], got {steps}")
    if steps == 1:
        return [timesteps - 1]
    ts = torch.linspace(timesteps - 1, 0, int(steps), dtype=torch.float64,
                        device="cpu").round().long()
    return [int(v) for v in ts.tolist()]


def edm_coefficients(alpha_bar: Sequence[float], sigma_data: float | None
                     ) -> list[tuple[float, float, float]]:
    """Per-timestep ``(c_in, c_skip, c_out)`` of EDM preconditioning on a variance-preserving
    schedule, in the scaled diffusion space (``y = s x0``, ``x_t = sqrt(ab) y + sqrt(1-ab) n``).

    The denoiser is ``y_pred = c_skip x_t + c_out F(c_in x_t, t)`` with, for
    ``d = 1 - ab + sigma_data^2 ab``: ``c_in = 1 / sqrt(d)``, ``c_skip = sigma_data^2 sqrt(ab)
    / d``, ``c_out = sigma_data sqrt(1 - ab) / sqrt(d)``. These are Karras et al.'s
    ``c_in, c_skip, c_out`` (table 1, "ours") for ``x_hat = x_t / sqrt(ab)`` and
    ``sigma^2 = (1 - ab) / ab``, rewritten in ``x_t``; with ``sigma_data = 1`` the denoiser is
    the v-parametrisation ``sqrt(ab) x_t + sqrt(1 - ab) F``. As ``ab -> 1`` it copies ``x_t``;
    as ``ab -> 0`` it is the regression ``sigma_data F``. ``sigma_data=None`` gives the
    identity parametrisation ``(1, 0, 1)`` (``F`` is the prediction).

    Reference:
        T. Karras, M. Aittala, T. Aila, S. Laine, "Elucidating the design space of
        diffusion-based generative models", NeurIPS 2022, section 5 and table 1.
    """
    if sigma_data is None:
        return [(1.0, 0.0, 1.0)] * len(alpha_bar)
    sd2 = float(sigma_data) ** 2
    out = []
    for ab in alpha_bar:
        d = 1.0 - ab + sd2 * ab
        out.append((1.0 / math.sqrt(d), sd2 * math.sqrt(ab) / d,
                    float(sigma_data) * math.sqrt(max(1.0 - ab, 0.0)) / math.sqrt(d)))
    return out


def timestep_embedding(t: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """Sinusoidal embedding ``(B, dim)`` of timesteps ``t`` ``(B,)`` (Transformer style)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device,
                                                           dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=1)
    if dim % 2:
        emb = F.pad(emb, (0, 1))
    return emb


# ----------------------------------------------------------------------------- UNet
class ChannelNorm(nn.Module):
    """Per-pixel layer norm over channels with a per-channel affine (``LayerNorm2d``).

    Local (unlike GroupNorm, which pools over the whole image), so the UNet keeps a finite
    receptive field and tiled fusion equals whole-image fusion.
    """

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
            # Channels are the innermost axis: one fused layer norm over them.
            y = F.layer_norm(x.permute(0, 2, 3, 1), (x.shape[1],), self.weight, self.bias,
                             self.eps)
            return y.permute(0, 3, 1, 2)
        u = x.mean(dim=1, keepdim=True)
        v = (x - u).pow(2).mean(dim=1, keepdim=True)
        x = (x - u) * torch.rsqrt(v + self.eps)
        return x * self.weight[:, None, None] + self.bias[:, None, None]


class CondResBlock(nn.Module):
    """Residual block modulated by the timestep (FiLM) and the condition (per-pixel).

    ``h = conv1(silu(norm1(x)))``; ``h = h (1 + s_t) + b_t`` (from the time embedding);
    ``h = norm2(h) (1 + gamma(c)) + beta(c)`` (from the condition features ``c``, 3x3 conv);
    ``out = skip(x) + conv2(silu(h))``.

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        temb_dim: Width of the time embedding.
        cond_channels: Channels of the condition features at this level.
    """

    def __init__(self, in_channels: int, out_channels: int, temb_dim: int,
                 cond_channels: int) -> None:
        super().__init__()
        self.norm1 = ChannelNorm(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.time = nn.Linear(temb_dim, 2 * out_channels)
        self.norm2 = ChannelNorm(out_channels)
        self.style = nn.Conv2d(cond_channels, 2 * out_channels, 3, padding=1)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.skip = (nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels
                     else nn.Identity())

    def forward(self, x: Tensor, temb: Tensor, cond: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.time(F.silu(temb))[:, :, None, None].chunk(2, dim=1)
        h = torch.addcmul(shift, h, 1 + scale)
        gamma, beta = self.style(cond).chunk(2, dim=1)
        h = self.norm2(h)
        h = torch.addcmul(h + beta, h, gamma)  # h (1 + gamma) + beta
        return self.skip(x) + self.conv2(F.silu(h))


class CondUNet(nn.Module):
    """Two-level conditional UNet predicting ``x0`` from ``(x_t, t, lms, pan)``.

    Level 0 (full resolution, ``base`` channels): ``in_conv`` on ``[x_t, lms, pan]``,
    ``down0``; level 1 (half resolution, ``2 base``): ``downsample`` (stride-2 conv),
    ``mid0``, ``mid1``; back to level 0: ``upsample`` (nearest x2 + conv), ``up0`` on the
    concatenated skip; then SiLU and ``out_conv`` (``base -> C``, 3x3). The condition encoder
    gives ``cond0`` (full) and ``cond1`` (half resolution) features for the blocks' per-pixel
    modulation. Odd sizes are padded (replicate) to even and cropped back. Every operation is
    local (per-pixel :class:`ChannelNorm` instead of GroupNorm): one pass has a receptive
    radius of about 30 PAN pixels.

    Args:
        n_bands: Bands ``C`` of ``x_t``, ``lms`` and the output.
        base: Width at full resolution.
        cond: ``"lms_pan"`` (condition ``[lms, pan]``) or ``"detail"`` (``[lms, pan,
            DETAIL_SCALE (pan - lms)]``, ``2 C + 1`` channels; see :data:`CONDS`).
    """

    def __init__(self, n_bands: int, base: int = 32, cond: str = "lms_pan") -> None:
        super().__init__()
        if cond not in CONDS:
            raise InputError(f"cond must be one of {', '.join(CONDS)}, got {cond!r}")
        self.n_bands, self.base, self.cond = n_bands, base, cond
        temb = 4 * base
        c_in = n_bands + 1 if cond == "lms_pan" else 2 * n_bands + 1
        self.time_mlp = nn.Sequential(nn.Linear(base, temb), nn.SiLU(), nn.Linear(temb, temb))
        self.cond0 = nn.Sequential(nn.Conv2d(c_in, base, 3, padding=1), nn.SiLU(),
                                   nn.Conv2d(base, base, 3, padding=1), nn.SiLU())
        self.cond1 = nn.Sequential(nn.Conv2d(base, 2 * base, 3, stride=2, padding=1),
                                   nn.SiLU(), nn.Conv2d(2 * base, 2 * base, 3, padding=1),
                                   nn.SiLU())
        self.in_conv = nn.Conv2d(n_bands + c_in, base, 3, padding=1)
        self.down0 = CondResBlock(base, base, temb, base)
        self.downsample = nn.Conv2d(base, 2 * base, 3, stride=2, padding=1)
        self.mid0 = CondResBlock(2 * base, 2 * base, temb, 2 * base)
        self.mid1 = CondResBlock(2 * base, 2 * base, temb, 2 * base)
        self.upsample = nn.Conv2d(2 * base, base, 3, padding=1)
        self.up0 = CondResBlock(2 * base, base, temb, base)
        self.out_conv = nn.Conv2d(base, n_bands, 3, padding=1)

    def features(self, x_t: Tensor, t: Tensor, lms: Tensor, pan: Tensor) -> Tensor:
        """Features ``(B, base, H, W)`` before ``out_conv`` (after the last SiLU).

        Args:
            x_t: Noisy residual ``(B, C, H, W)``.
            t: Integer timesteps ``(B,)`` (or a scalar tensor).
            lms: ``(B, C, H, W)`` upsampled MS / max_value.
            pan: ``(B, 1, H, W)`` PAN / max_value.
        """
        h, w = x_t.shape[-2:]
        ph, pw = h % 2, w % 2
        parts = [lms, pan] if self.cond == "lms_pan" else [lms, pan, DETAIL_SCALE * (pan - lms)]
        cond = same_layout(torch.cat(parts, dim=1), lms)
        x = same_layout(torch.cat([x_t, cond], dim=1), lms)
        if ph or pw:
            cond = F.pad(cond, (0, pw, 0, ph), mode="replicate")
            x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        t = t.reshape(-1).expand(x.shape[0]) if t.numel() == 1 else t.reshape(-1)
        temb = self.time_mlp(timestep_embedding(t, self.base).to(x.dtype))
        c0 = self.cond0(cond)
        c1 = self.cond1(c0)
        h0 = self.down0(self.in_conv(x), temb, c0)
        h1 = self.mid1(self.mid0(self.downsample(h0), temb, c1), temb, c1)
        up = self.upsample(F.interpolate(h1, scale_factor=2.0, mode="nearest"))
        f = F.silu(self.up0(torch.cat([up, h0], dim=1), temb, c0))
        return f[..., :h, :w]

    def forward(self, x_t: Tensor, t: Tensor, lms: Tensor, pan: Tensor) -> Tensor:
        """Predicted ``x0`` ``(B, C, H, W)``."""
        return self.out_conv(self.features(x_t, t, lms, pan))


# ----------------------------------------------------------------------------- models
class _DiffusionBase(PansharpeningNet):
    """Shared parts: the UNet, the schedule, ``denoise`` and ``q_sample`` for training."""

    adds_lms = True
    uses = ("pan", "lms")

    def __init__(self, n_bands: int = 8, base: int = 32, timesteps: int = 1000,
                 residual_scale: float = 20.0, precond: str = "none",
                 sigma_data: float = 1.0, cond: str = "lms_pan") -> None:
        super().__init__(n_bands)
        if (isinstance(timesteps, bool) or not isinstance(timesteps, int)
                or not 1 <= timesteps <= MAX_TIMESTEPS):
            raise InputError(f"{self.arch}: timesteps must be an integer in 1..{MAX_TIMESTEPS}, "
                             f"got {timesteps!r}")
        if not float(residual_scale) > 0:
            raise InputError(f"{self.arch}: residual_scale must be positive, "
                             f"got {residual_scale!r}")
        if precond not in PRECONDS:
            raise InputError(f"{self.arch}: precond must be one of {', '.join(PRECONDS)}, "
                             f"got {precond!r}")
        if isinstance(sigma_data, bool) or not float(sigma_data) > 0:
            raise InputError(f"{self.arch}: sigma_data must be positive, got {sigma_data!r}")
        self.timesteps = timesteps
        self.residual_scale = float(residual_scale)
        self.precond, self.sigma_data = precond, float(sigma_data)
        self.unet = CondUNet(n_bands, base, cond)
        #: ``alpha_bar[t]`` as Python floats (device-free; read once per sampling loop).
        self.alpha_bar: list[float] = cosine_alpha_bar(timesteps).tolist()
        #: Per-timestep ``(c_in, c_skip, c_out)`` of :func:`edm_coefficients` (``precond``).
        self.coeffs: list[tuple[float, float, float]] = edm_coefficients(
            self.alpha_bar, self.sigma_data if precond == "edm" else None)

    def hparams(self) -> dict:
        """Constructor options (besides ``n_bands``) that rebuild this network.

        ``precond`` / ``sigma_data`` and ``cond`` appear only when not the default, so the
        records of networks trained before the options existed are unchanged.
        """
        hp: dict = {"base": self.unet.base, "timesteps": self.timesteps,
                    "residual_scale": self.residual_scale}
        if self.precond != "none":
            hp.update(precond=self.precond, sigma_data=self.sigma_data)
        if self.unet.cond != "lms_pan":
            hp["cond"] = self.unet.cond
        return hp

    def x0_from_output(self, out: Tensor, x_t: Tensor, t: int | Tensor) -> Tensor:
        """The residual ``x0`` from the UNet's raw output ``out`` at timestep(s) ``t``.

        ``precond="none"``: ``out`` itself. ``"edm"``: ``(c_skip(t) x_t + c_out(t) out) / s``
        (:func:`edm_coefficients`), a copy of ``x_t / s`` as ``t -> 0`` and a regression
        scaled by ``sigma_data / s`` as ``t -> T``.
        """
        if self.precond == "none":
            return out
        c_skip, c_out = self._coeff(t, x_t, 1), self._coeff(t, x_t, 2)
        return (c_skip * x_t + c_out * out) / self.residual_scale

    def _coeff(self, t: int | Tensor, like: Tensor, k: int) -> Tensor | float:
        if not isinstance(t, Tensor):
            return self.coeffs[int(t)][k]
        table = torch.tensor([c[k] for c in self.coeffs], dtype=like.dtype, device=like.device)
        return table[t.to(like.device).reshape(-1)].view(-1, 1, 1, 1)

    def unet_input(self, x_t: Tensor, t: int | Tensor) -> Tensor:
        """``c_in(t) x_t`` (``x_t`` itself without preconditioning)."""
        return x_t if self.precond == "none" else self._coeff(t, x_t, 0) * x_t

    def _t(self, t: int | Tensor, like: Tensor) -> Tensor:
        if isinstance(t, Tensor):
            return t.to(device=like.device)
        return torch.full((like.shape[0],), int(t), device=like.device, dtype=torch.long)

    def denoise(self, x_t: Tensor, t: int | Tensor, lms: Tensor, pan: Tensor) -> Tensor:
        """The UNet's ``x0`` (residual) prediction at timestep(s) ``t`` (training target).

        Args:
            x_t: Noisy residual ``(B, C, H, W)``.
            t: Integer timestep, or ``(B,)`` integer tensor, in ``[0, T)``.
            lms: ``(B, C, H, W)``; pan: ``(B, 1, H, W)`` (both / max_value).
        """
        out = self.unet(self.unet_input(x_t, t), self._t(t, x_t), lms, pan)
        return self.x0_from_output(out, x_t, t)

    def q_sample(self, x0: Tensor, t: Tensor, noise: Tensor) -> Tensor:
        """Forward process ``sqrt(ab_t) s x0 + sqrt(1 - ab_t) noise`` (``s`` the residual
        scale) for timesteps ``t`` (B,); ``x0`` is the unscaled residual."""
        ab = torch.tensor(self.alpha_bar, device=x0.device, dtype=x0.dtype)[t]
        ab = ab.view(-1, 1, 1, 1)
        return ab.sqrt() * (self.residual_scale * x0) + (1 - ab).sqrt() * noise

    def extra_repr(self) -> str:
        text = (f"n_bands={self.n_bands}, base={self.unet.base}, timesteps={self.timesteps}, "
                f"residual_scale={self.residual_scale:g}")
        if self.precond != "none":
            text += f", precond={self.precond!r}, sigma_data={self.sigma_data:g}"
        if self.unet.cond != "lms_pan":
            text += f", cond={self.unet.cond!r}"
        return text


class DiffusionTeacher(_DiffusionBase):
    """DDRF-style conditional diffusion; ``forward`` samples with ``steps``-step DDIM.

    Output ``lms + x0`` where ``x0`` is the last DDIM step's prediction, mapped by ``head``
    (the declared channel mapper; see the module docstring for why it is a separate copy of
    ``unet.out_conv``).

    Args:
        n_bands: Number of MS bands ``C``.
        base: UNet width.
        timesteps: Training schedule length ``T``.
        steps: DDIM steps of ``forward`` (1..T).
        init: ``"noise"`` (seeded standard normal ``x_T``) or ``"zeros"``.
        noise_seed: Seed of the ``x_T`` generator.
        residual_scale: Factor of the residual in the diffusion space (module docstring).
        precond: ``"none"`` (the UNet outputs ``x0``) or ``"edm"`` (output preconditioning,
            :meth:`x0_from_output`, module docstring).
        sigma_data: Data std in the scaled diffusion space, for ``precond="edm"``.
        cond: The UNet's condition inputs (:data:`CONDS`).

    Example:
        >>> net = DiffusionTeacher(4, steps=2)
        >>> net(torch.rand(1, 4, 4, 4), torch.rand(1, 1, 16, 16), torch.rand(1, 4, 16, 16)).shape
        torch.Size([1, 4, 16, 16])
    """

    arch = "diffusion_teacher"
    channel_mappers = ("head",)
    band_key = "head.weight"

    def __init__(self, n_bands: int = 8, base: int = 32, timesteps: int = 1000,
                 steps: int = 50, init: str = "noise", noise_seed: int = 0,
                 residual_scale: float = 20.0, precond: str = "none",
                 sigma_data: float = 1.0, cond: str = "lms_pan") -> None:
        super().__init__(n_bands, base, timesteps, residual_scale, precond, sigma_data, cond)
        if init not in ("noise", "zeros"):
            raise InputError(f"{self.arch}: init must be 'noise' or 'zeros', got {init!r}")
        ddim_timesteps(timesteps, steps)  # validates
        self.steps, self.init, self.noise_seed = int(steps), init, int(noise_seed)
        self.head = nn.Conv2d(base, n_bands, 3, padding=1)
        self.sync_head()

    def hparams(self) -> dict:
        return {**super().hparams(), "steps": self.steps, "init": self.init,
                "noise_seed": self.noise_seed}

    @property
    def head_scale(self) -> float:
        """Factor of ``unet.out_conv`` folded into ``head``: 1, or ``c_out(0) / s`` (``edm``)."""
        return 1.0 if self.precond == "none" else self.coeffs[0][2] / self.residual_scale

    @torch.no_grad()
    def sync_head(self) -> None:
        """Copy ``unet.out_conv``'s weights into ``head`` (after training the UNet), times
        :attr:`head_scale`, so that the last step's output is ``skip + head(f)``."""
        k = self.head_scale
        self.head.weight.copy_(self.unet.out_conv.weight * k)
        self.head.bias.copy_(self.unet.out_conv.bias * k)

    def initial_noise(self, like: Tensor) -> Tensor:
        """``x_T`` for an input shaped like ``like`` ``(B, C, H, W)`` (see ``init``)."""
        if self.init == "zeros":
            return torch.zeros_like(like)
        g = torch.Generator().manual_seed(self.noise_seed)
        z = torch.randn((1, *like.shape[1:]), generator=g, dtype=torch.float32)
        return z.to(device=like.device, dtype=like.dtype).expand_as(like)

    def sample(self, pan: Tensor, lms: Tensor, steps: int | None = None,
               timesteps: Sequence[int] | None = None) -> Tensor:
        """DDIM (eta = 0) residual ``x0`` ``(B, C, H, W)``.

        Args:
            pan: ``(B, 1, H, W)``; lms: ``(B, C, H, W)`` (both / max_value).
            steps: Number of steps (default ``self.steps``).
            timesteps: Explicit descending timesteps (overrides ``steps``).
        """
        ts = list(timesteps) if timesteps is not None else ddim_timesteps(
            self.timesteps, self.steps if steps is None else steps)
        ab, s = self.alpha_bar, self.residual_scale
        x = self.initial_noise(lms)
        x0 = x
        for i, t in enumerate(ts):
            feats = self.unet.features(self.unet_input(x, t), self._t(t, x), lms, pan)
            if i == len(ts) - 1:  # the step to alpha_bar = 1: x0 is the output
                if self.precond == "none":
                    x0 = self.head(feats)
                else:  # head holds c_out(0) / s x out_conv: an additive tail at t = 0
                    c_skip, c_out = self.coeffs[t][1], self.coeffs[t][2]
                    k = c_out / self.coeffs[0][2]
                    x0 = c_skip / self.residual_scale * x + (self.head(feats) if k == 1.0
                                                             else k * self.head(feats))
                break
            x0 = self.x0_from_output(self.unet.out_conv(feats), x, t)
            a_t, a_prev = ab[t], ab[ts[i + 1]]
            eps = (x - math.sqrt(a_t) * s * x0) / math.sqrt(1.0 - a_t)
            x = math.sqrt(a_prev) * s * x0 + math.sqrt(1.0 - a_prev) * eps
        return x0

    def forward(self, ms: Tensor, pan: Tensor, lms: Tensor, steps: int | None = None) -> Tensor:
        """Fuse by DDIM sampling of the residual.

        Args:
            ms: ``(B, C, h, w)``, not read.
            pan: ``(B, 1, H, W)`` PAN / max_value.
            lms: ``(B, C, H, W)`` upsampled MS / max_value.
            steps: DDIM steps (default ``self.steps``, 50).

        Returns:
            ``(B, C, H, W)`` fused image / max_value.
        """
        self.check_inputs(ms, pan, lms)
        return lms + self.sample(pan, lms, steps)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, steps={self.steps}, init={self.init!r}"


class OneStepStudent(_DiffusionBase):
    """The teacher's UNet run once from ``t = T-1`` with ``x_T = 0``: ``lms + unet(0, T-1)``.

    The channel mapper is ``unet.out_conv`` (called once). Distilled from the teacher by
    ``tta train --arch diffusion_student --stage distill --teacher TEACHER.safetensors``.

    Args:
        n_bands: Number of MS bands ``C``.
        base: UNet width (must equal the teacher's for distillation).
        timesteps: Schedule length ``T`` (the student's single step is ``t = T-1``).
        residual_scale: The teacher's (kept for the record; one step from ``x_T = 0`` does
            not depend on it).
        cond: The UNet's condition inputs (:data:`CONDS`, the teacher's). There is no
            ``precond``: :meth:`init_from_teacher` folds a preconditioned teacher's output
            scale into ``out_conv``.

    Example:
        >>> net = OneStepStudent(4)
        >>> net(torch.rand(1, 4, 4, 4), torch.rand(1, 1, 16, 16), torch.rand(1, 4, 16, 16)).shape
        torch.Size([1, 4, 16, 16])
    """

    arch = "diffusion_student"
    channel_mappers = ("unet.out_conv",)
    band_key = "unet.out_conv.weight"

    def __init__(self, n_bands: int = 8, base: int = 32, timesteps: int = 1000,
                 residual_scale: float = 20.0, cond: str = "lms_pan") -> None:
        super().__init__(n_bands, base, timesteps, residual_scale, cond=cond)

    def features(self, pan: Tensor, lms: Tensor) -> Tensor:
        """Interface features ``(B, base, H, W)`` (the input of ``unet.out_conv``)."""
        x = torch.zeros_like(lms)
        return self.unet.features(x, self._t(self.timesteps - 1, x), lms, pan)

    def forward(self, ms: Tensor, pan: Tensor, lms: Tensor) -> Tensor:
        """Fuse in one UNet pass (same arguments and scale as :class:`DiffusionTeacher`)."""
        self.check_inputs(ms, pan, lms)
        return lms + self.unet.out_conv(self.features(pan, lms))

    @torch.no_grad()
    def init_from_teacher(self, teacher: DiffusionTeacher) -> OneStepStudent:
        """Copy the teacher's UNet weights (the distillation starting point).

        A preconditioned teacher (``precond="edm"``) run once from ``x_T = 0`` at ``t = T-1``
        predicts ``c_out(T-1) / s x out_conv(f)`` (its ``c_skip`` term is zero and ``c_in``
        scales a zero input): that factor is folded into the student's ``out_conv``, so the
        student starts equal to the teacher's one-step prediction and stays a plain UNet.
        """
        if (teacher.n_bands, teacher.unet.base, teacher.timesteps, teacher.unet.cond) != (
                self.n_bands, self.unet.base, self.timesteps, self.unet.cond):
            raise InputError(
                f"teacher (bands {teacher.n_bands}, base {teacher.unet.base}, T "
                f"{teacher.timesteps}, cond {teacher.unet.cond}) does not match the student "
                f"(bands {self.n_bands}, base {self.unet.base}, T {self.timesteps}, "
                f"cond {self.unet.cond})")
        self.unet.load_state_dict(teacher.unet.state_dict())
        if teacher.precond != "none":
            k = teacher.coeffs[self.timesteps - 1][2] / teacher.residual_scale
            self.unet.out_conv.weight.mul_(k)
            self.unet.out_conv.bias.mul_(k)
        return self


@register_model
def diffusion_teacher(n_bands: int = 8, **kwargs) -> DiffusionTeacher:
    """DDRF-style conditional diffusion teacher (width 32, T = 1000, 50 DDIM steps)."""
    return DiffusionTeacher(n_bands, **kwargs)


@register_model
def diffusion_student(n_bands: int = 8, **kwargs) -> OneStepStudent:
    """One-step student of :func:`diffusion_teacher` (same UNet, one pass from t = T-1)."""
    return OneStepStudent(n_bands, **kwargs)
