"""KSDiff (Jin et al., 2026): a regressive CNN with kernels modulated by a latent diffusion prior.

Written from the paper's description (arXiv 2505.18991, figures 2-4 and a third-party note; no
code is public); the layout details below are ours where the paper is silent.

Parts (inference: PLFE2 -> latent DDIM -> kernel generator -> network):

* **Backbone** - our :class:`~pretrained.fusionnet.FusionNet` (``net``): ``lms + conv3(res4(...
  res1(relu(conv1(pan - lms)))))``. The eight 3x3 convolutions of its residual blocks are
  *modulated* per image, ``W1 = W0 * W`` (elementwise), and run as one grouped convolution over
  the batch (``groups = B``); ``conv1`` and the channel mapper ``conv3`` stay plain, so the
  feature -> channel interface is ``net.conv3`` with an additive tail (``+ lms``).
* **Kernel generator** - ``W = 1 + G x1 U_out x2 U_in x3 U_h x4 U_w`` (a Tucker product; the 1
  makes a zero core the plain backbone). The core ``G`` (``rank`` = (4, 4, 2, 2) per layer)
  comes from the prior ``z`` by a mean over its tokens and an MLP whose last layer starts at
  zero. The four factor matrices come from local features: a light shared backbone (two
  stride-2 convolutions on ``pan - lms``, pooled to a ``4 x 4`` token grid) read by four
  attention heads (one per tensor mode) whose queries are learned embeddings of the mode's
  rows (output channel, input channel, kernel row, kernel column) of every layer: the
  "structure-aware multi-head attention".
* **PLFE** - Pyramid Latent Fusion Encoder: a stride-2 convolution pyramid (1/2, 1/4, 1/8),
  each level average-pooled to a token grid; the coarsest tokens attend to the finer ones with
  linear-complexity cross-attention (Shen et al.'s efficient attention: softmax over features
  for queries and over tokens for keys, cost linear in the token count); a per-channel sigmoid
  gate mixes the attended and the coarse tokens; a linear map gives ``z`` ``(B, N, z_dim)``.
  ``plfe1`` reads ``[pan, lms, gt]`` (training only); ``plfe2`` (half the width) reads
  ``[pan, lms]`` and conditions the diffusion.
* **Latent diffusion** - only on ``z``: a token MLP denoiser predicts ``z0`` from ``(z_t, t,
  plfe2(pan, lms))``; cosine schedule over ``timesteps`` (50) steps; DDPM training at a
  uniform ``t``; DDIM (eta = 0) sampling in ``sample_steps`` (4) steps from ``z_T`` drawn from a
  CPU generator seeded with ``seed`` (shape ``(1, N, z_dim)``, shared by the batch), so the
  output is deterministic for a seed, on any device and batch position.

Training (``tta train -a ksdiff``): stage ``pretrain`` trains ``plfe1`` + kernel generator +
network with L1 to ``gt`` (``z = plfe1(pan, lms, gt)``); stage ``diffuse`` (``--init`` the
pretrain weights) freezes ``plfe1`` and trains the diffusion jointly with the regressor,
``L = |z0 - z_theta(z_t, t, c)|_1 + |gt - net(pan, lms; DDIM sample of z)|_1``.

Global prior: ``z`` pools the whole input, so the network has no finite receptive field and no
tiling is exact; ``tta adapt`` overlaps its tiles by half a tile, and each tile samples its own
prior.

Reference:
    H. Jin, Z. Cao, L.-J. Deng, J. Li, "Fast Kernel-Space Diffusion for Remote Sensing
    Pansharpening", arXiv 2505.18991 (CVPR 2026). Z. Shen et al., "Efficient attention:
    attention with linear complexities", WACV 2021. J. Song et al., DDIM, ICLR 2021.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pretrained._base import PansharpeningNet
from pretrained.diffusion import cosine_alpha_bar, ddim_timesteps, timestep_embedding
from pretrained.fusionnet import FusionNet
from pretrained.registry import register_model
from tta.errors import InputError

__all__ = ["KSDiff", "KernelGenerator", "LatentDenoiser", "LinearCrossAttention", "PLFE",
           "ksdiff"]


class LinearCrossAttention(nn.Module):
    """Multi-head cross-attention of linear cost in the token counts (efficient attention).

    ``out = softmax_d(q) @ (softmax_n(k)^T @ v)`` per head: queries normalised over their
    features, keys over the context tokens; the ``(d x d)`` context matrix is built once.

    Reference: Shen et al., "Efficient attention", WACV 2021, eq. 4.
    """

    def __init__(self, dim: int, heads: int = 4) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} must be a multiple of heads {heads}")
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: Tensor, ctx: Tensor) -> Tensor:
        """``x`` ``(B, N, d)`` attends to ``ctx`` ``(B, M, d)``; returns ``(B, N, d)``."""
        b, n, d = x.shape
        h = self.heads
        q = self.q(x).view(b, n, h, d // h).transpose(1, 2).softmax(dim=-1)
        k, v = self.kv(ctx).view(b, -1, 2, h, d // h).permute(2, 0, 3, 1, 4)
        context = k.softmax(dim=-2).transpose(-1, -2) @ v  # (B, h, d/h, d/h)
        return self.out((q @ context).transpose(1, 2).reshape(b, n, d))


class PLFE(nn.Module):
    """Pyramid Latent Fusion Encoder: image -> prior tokens ``z`` ``(B, grid**2, z_dim)``.

    Args:
        in_channels: Input channels (``2C + 1`` for PLFE1, ``C + 1`` for PLFE2).
        width: Pyramid width.
        z_dim: Token width of ``z``.
        grid: Side of the coarsest token grid (``N = grid**2`` tokens).
    """

    def __init__(self, in_channels: int, width: int = 32, z_dim: int = 64, grid: int = 4
                 ) -> None:
        super().__init__()
        self.grid = grid
        self.stem = nn.Conv2d(in_channels, width, 3, stride=2, padding=1)
        self.down1 = nn.Conv2d(width, width, 3, stride=2, padding=1)
        self.down2 = nn.Conv2d(width, width, 3, stride=2, padding=1)
        self.attn = LinearCrossAttention(width, heads=4)
        self.norm_q = nn.LayerNorm(width)
        self.norm_c = nn.LayerNorm(width)
        self.gate = nn.Linear(2 * width, width)
        self.proj = nn.Linear(width, z_dim)

    def forward(self, x: Tensor) -> Tensor:
        f1 = F.gelu(self.stem(x))
        f2 = F.gelu(self.down1(f1))
        f3 = F.gelu(self.down2(f2))
        g = self.grid
        tokens = [F.adaptive_avg_pool2d(f, s).flatten(2).transpose(1, 2)
                  for f, s in ((f1, 2 * g), (f2, 2 * g), (f3, g))]
        coarse = tokens[2]
        attended = self.attn(self.norm_q(coarse), self.norm_c(torch.cat(tokens[:2], dim=1)))
        gate = torch.sigmoid(self.gate(torch.cat([coarse, attended], dim=-1).mean(dim=1)))
        fused = gate[:, None] * attended + (1 - gate[:, None]) * coarse  # per-channel gate
        return self.proj(fused)


class LatentDenoiser(nn.Module):
    """``z0`` prediction from ``(z_t, t, c)`` on tokens: an MLP with residual blocks."""

    def __init__(self, z_dim: int = 64, hidden: int = 128, n_blocks: int = 3) -> None:
        super().__init__()
        self.hidden = hidden
        self.inp = nn.Linear(2 * z_dim, hidden)
        self.temb = nn.Sequential(nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
        self.blocks = nn.ModuleList([
            nn.Sequential(nn.LayerNorm(hidden), nn.Linear(hidden, hidden), nn.SiLU(),
                          nn.Linear(hidden, hidden)) for _ in range(n_blocks)])
        self.out = nn.Linear(hidden, z_dim)

    def forward(self, z_t: Tensor, t: Tensor, c: Tensor) -> Tensor:
        h = self.inp(torch.cat([z_t, c], dim=-1))
        h = h + self.temb(timestep_embedding(t, self.hidden).to(h))[:, None]
        for block in self.blocks:
            h = h + block(h)
        return self.out(h)


class KernelGenerator(nn.Module):
    """Modulation tensors ``W`` ``(L, B, out, in, k, k)`` from the prior and local features.

    Args:
        n_layers: Modulated layers ``L``.
        channels: Their input and output channels.
        kernel_size: Their kernel side ``k``.
        in_channels: Channels of the local-feature input (``pan - lms``: ``C``).
        z_dim: Token width of the prior.
        rank: Tucker core shape ``(r_out, r_in, r_h, r_w)``.
        dim: Width of the factor generator's tokens and queries.
        unit_factors: Scale every factor column to norm ``sqrt(rows)`` (entries of order 1),
            so that ``W - 1`` is of the order of the core; without it the product of four
            small factors keeps the modulation near zero (the shipped weights: False).
    """

    def __init__(self, n_layers: int, channels: int, kernel_size: int, in_channels: int,
                 z_dim: int = 64, rank: tuple[int, int, int, int] = (4, 4, 2, 2),
                 dim: int = 32, unit_factors: bool = False) -> None:
        super().__init__()
        self.unit_factors = bool(unit_factors)
        self.n_layers, self.rank = n_layers, tuple(int(r) for r in rank)
        self.rows = (channels, channels, kernel_size, kernel_size)
        core = math.prod(self.rank)
        self.core_mlp = nn.Sequential(nn.Linear(z_dim, 128), nn.SiLU(),
                                      nn.Linear(128, n_layers * core))
        nn.init.zeros_(self.core_mlp[2].weight)
        nn.init.zeros_(self.core_mlp[2].bias)
        self.local = nn.Sequential(nn.Conv2d(in_channels, 16, 3, stride=2, padding=1), nn.GELU(),
                                   nn.Conv2d(16, dim, 3, stride=2, padding=1), nn.GELU())
        self.key = nn.Linear(dim, dim)
        self.value = nn.Linear(dim, dim)
        self.queries = nn.ParameterList([nn.Parameter(torch.randn(n_layers * r, dim) * 0.5)
                                         for r in self.rows])
        self.heads = nn.ModuleList([nn.Linear(dim, r) for r in self.rank])

    def factors(self, x: Tensor) -> list[Tensor]:
        """The four factor matrices ``(B, L, rows_m, rank_m)`` from local features of ``x``."""
        tokens = F.adaptive_avg_pool2d(self.local(x), 4).flatten(2).transpose(1, 2)
        k, v = self.key(tokens), self.value(tokens)
        out = []
        for q, head, rows in zip(self.queries, self.heads, self.rows, strict=True):
            att = (q @ k.transpose(1, 2) / math.sqrt(q.shape[-1])).softmax(dim=-1)
            u = head(att @ v).view(x.shape[0], self.n_layers, rows, -1)
            if self.unit_factors:
                u = u * (math.sqrt(rows) / u.norm(dim=2, keepdim=True).clamp_min(1e-6))
            out.append(u)
        return out

    def core(self, z: Tensor) -> Tensor:
        """Tucker cores ``(B, L, *rank)`` from the prior tokens ``z`` (mean pool + MLP)."""
        return self.core_mlp(z.mean(dim=1)).view(z.shape[0], self.n_layers, *self.rank)

    def forward(self, z: Tensor, x: Tensor) -> Tensor:
        u_o, u_i, u_h, u_w = self.factors(x)
        w = torch.einsum("blpqrs,blop,bliq,blhr,blws->lboihw", self.core(z), u_o, u_i, u_h,
                         u_w)
        return 1.0 + w


class KSDiff(PansharpeningNet):
    """FusionNet with diffusion-prior kernel modulation (see the module docstring).

    Args:
        n_bands: Number of MS bands ``C``.
        channels: FusionNet width.
        n_blocks: FusionNet residual blocks (their ``2 * n_blocks`` convs are modulated).
        z_dim, grid: Prior token width and grid side (``grid**2`` tokens).
        plfe_width: PLFE1 width (PLFE2 has half).
        rank: Tucker core shape.
        timesteps: Latent diffusion schedule length ``T``.
        sample_steps: DDIM steps at inference.
        seed: Seed of the initial latent noise (inference is deterministic for a seed).
        unit_factors: Unit-scale Tucker factors (:class:`KernelGenerator`); off in the
            shipped weights.

    Example:
        >>> net = KSDiff(4)
        >>> net(torch.rand(1, 4, 8, 8), torch.rand(1, 1, 32, 32), torch.rand(1, 4, 32, 32)).shape
        torch.Size([1, 4, 32, 32])
    """

    arch = "ksdiff"
    channel_mappers = ("net.conv3",)
    band_key = "net.conv3.weight"
    adds_lms = True
    uses = ("pan", "lms")

    def __init__(self, n_bands: int = 8, channels: int = 32, n_blocks: int = 4,
                 z_dim: int = 64, grid: int = 4, plfe_width: int = 32,
                 rank: tuple[int, int, int, int] | list[int] = (4, 4, 2, 2),
                 timesteps: int = 50, sample_steps: int = 4, seed: int = 0,
                 unit_factors: bool = False) -> None:
        super().__init__(n_bands)
        if len(rank) != 4 or any(int(r) < 1 for r in rank):
            raise InputError(f"ksdiff: rank must be four positive integers, got {rank!r}")
        ddim_timesteps(timesteps, sample_steps)  # checks the step count
        self._hparams = {"channels": channels, "n_blocks": n_blocks, "z_dim": z_dim,
                         "grid": grid, "plfe_width": plfe_width, "rank": [int(r) for r in rank],
                         "timesteps": timesteps, "sample_steps": sample_steps, "seed": seed}
        if unit_factors:  # recorded only when set: the shipped files predate the option
            self._hparams["unit_factors"] = True
        self.timesteps, self.sample_steps, self.seed = timesteps, sample_steps, int(seed)
        self.n_tokens, self.z_dim = grid * grid, z_dim
        self.net = FusionNet(n_bands, channels, n_blocks)
        self.kgen = KernelGenerator(2 * n_blocks, channels, 3, n_bands, z_dim, tuple(rank),
                                    unit_factors=unit_factors)
        self.plfe1 = PLFE(2 * n_bands + 1, plfe_width, z_dim, grid)
        self.plfe2 = PLFE(n_bands + 1, max(plfe_width // 2, 4), z_dim, grid)
        self.denoiser = LatentDenoiser(z_dim)
        self.register_buffer("alpha_bar", cosine_alpha_bar(timesteps).float(), persistent=False)

    def hparams(self) -> dict:
        """Constructor options (besides ``n_bands``) that rebuild this network."""
        return {k: (list(v) if isinstance(v, list) else v) for k, v in self._hparams.items()}

    # ------------------------------------------------------------------ network
    def convs(self) -> list[nn.Conv2d]:
        """The modulated convolutions, in order (``res1.conv20``, ``res1.conv21``, ...)."""
        return [getattr(getattr(self.net, f"res{k}"), name)
                for k in range(1, self.net.n_blocks + 1) for name in ("conv20", "conv21")]

    @staticmethod
    def _modulated(conv: nn.Conv2d, x: Tensor, w: Tensor) -> Tensor:
        """``conv`` with per-image kernels ``conv.weight * w`` (``w`` ``(B, out, in, k, k)``):
        one grouped convolution over the batch."""
        b, c, h, wd = x.shape
        weight = (conv.weight[None] * w).reshape(-1, c, *conv.kernel_size)
        bias = conv.bias.repeat(b) if conv.bias is not None else None
        y = F.conv2d(x.reshape(1, b * c, h, wd), weight, bias, padding=conv.padding, groups=b)
        return y.view(b, -1, h, wd)

    def fuse(self, pan: Tensor, lms: Tensor, z: Tensor) -> Tensor:
        """The modulated backbone given prior tokens ``z`` ``(B, N, z_dim)``."""
        d = pan.expand_as(lms) - lms
        mods = self.kgen(z, d)
        convs = self.convs()
        x = torch.relu(self.net.conv1(d))
        for k in range(self.net.n_blocks):
            a, b = 2 * k, 2 * k + 1
            x = x + self._modulated(convs[b], torch.relu(self._modulated(convs[a], x, mods[a])),
                                    mods[b])
        return lms + self.net.conv3(x)

    # ------------------------------------------------------------------ diffusion
    def _t(self, t: int | Tensor, batch: int, device: torch.device) -> Tensor:
        if isinstance(t, Tensor):
            return t.to(device)
        return torch.full((batch,), int(t), device=device, dtype=torch.long)

    def q_sample(self, z0: Tensor, t: Tensor, noise: Tensor) -> Tensor:
        """``z_t = sqrt(ab_t) z0 + sqrt(1 - ab_t) noise``."""
        ab = self.alpha_bar.to(z0)[t].view(-1, 1, 1)
        return ab.sqrt() * z0 + (1 - ab).sqrt() * noise

    def initial_noise(self, batch: int, like: Tensor) -> Tensor:
        """``z_T``: a standard normal from a CPU generator seeded with ``seed``, shared by the
        batch (so an image's output does not depend on its batch position)."""
        g = torch.Generator().manual_seed(self.seed)
        noise = torch.randn((1, self.n_tokens, self.z_dim), generator=g)
        return noise.to(like).expand(batch, -1, -1)

    def sample(self, c: Tensor, noise: Tensor | None = None, steps: int | None = None
               ) -> Tensor:
        """DDIM (eta = 0) from ``z_T = noise`` to ``z0`` conditioned on ``c`` = PLFE2 tokens."""
        z = self.initial_noise(c.shape[0], c) if noise is None else noise
        ts = ddim_timesteps(self.timesteps, steps or self.sample_steps)
        ab = self.alpha_bar.to(c)
        z0 = z
        for i, t in enumerate(ts):
            z0 = self.denoiser(z, self._t(t, c.shape[0], c.device), c)
            if i + 1 == len(ts):
                break
            a_t, a_next = ab[t], ab[ts[i + 1]]
            eps = (z - a_t.sqrt() * z0) / (1 - a_t).sqrt()
            z = a_next.sqrt() * z0 + (1 - a_next).sqrt() * eps
        return z0

    def prior(self, pan: Tensor, lms: Tensor, noise: Tensor | None = None) -> Tensor:
        """The inference prior ``z0`` ``(B, N, z_dim)``: PLFE2 then DDIM."""
        return self.sample(self.plfe2(torch.cat([pan, lms], dim=1)), noise)

    def encode(self, pan: Tensor, lms: Tensor, gt: Tensor) -> Tensor:
        """The training prior ``z`` = PLFE1(pan, lms, gt)."""
        return self.plfe1(torch.cat([pan, lms, gt], dim=1))

    # ------------------------------------------------------------------ API
    def forward(self, ms: Tensor, pan: Tensor, lms: Tensor) -> Tensor:
        """Fuse (PLFE2 -> DDIM -> kernel generator -> modulated FusionNet).

        Args:
            ms: ``(B, C, h, w)``, not read.
            pan: ``(B, 1, H, W)`` PAN / max_value.
            lms: ``(B, C, H, W)`` upsampled MS / max_value.

        Returns:
            ``(B, C, H, W)`` fused image / max_value.
        """
        self.check_inputs(ms, pan, lms)
        return self.fuse(pan, lms, self.prior(pan, lms))

    def pretrain_loss(self, pan: Tensor, lms: Tensor, gt: Tensor) -> Tensor:
        """Stage 1: ``L1(fuse(pan, lms; plfe1(pan, lms, gt)), gt)``."""
        return F.l1_loss(self.fuse(pan, lms, self.encode(pan, lms, gt)), gt)

    def diffusion_loss(self, pan: Tensor, lms: Tensor, gt: Tensor, *,
                       generator: torch.Generator | None = None) -> Tensor:
        """Stage 2: ``L1(z0, z_theta(z_t, t, c)) + L1(fuse(pan, lms; DDIM sample), gt)``.

        ``z0`` comes from the (frozen) PLFE1; ``t`` is uniform; the noise of ``q_sample`` and
        of the sample's ``z_T`` come from ``generator`` (a CPU generator)."""
        b = pan.shape[0]
        with torch.no_grad():
            z0 = self.encode(pan, lms, gt)
        c = self.plfe2(torch.cat([pan, lms], dim=1))
        t = torch.randint(self.timesteps, (b,), generator=generator).to(pan.device)
        noise = torch.randn(z0.shape, generator=generator).to(z0)
        z_theta = self.denoiser(self.q_sample(z0, t, noise), t, c)
        start = torch.randn(z0.shape, generator=generator).to(z0)
        out = self.fuse(pan, lms, self.sample(c, start))
        return F.l1_loss(z_theta, z0) + F.l1_loss(out, gt)

    def extra_repr(self) -> str:
        return (f"n_bands={self.n_bands}, timesteps={self.timesteps}, "
                f"sample_steps={self.sample_steps}, seed={self.seed}")


@register_model
def ksdiff(n_bands: int = 8, **kwargs) -> KSDiff:
    """KSDiff on a FusionNet backbone: Tucker (4, 4, 2, 2) kernel modulation, 4-step DDIM."""
    return KSDiff(n_bands, **kwargs)
