"""LAGConv net (Jin et al., 2022): residual pansharpening CNN of local-context adaptive convs.

A :class:`LAGConv2d` is a ``k x k`` convolution whose shared kernel is re-weighted at every pixel
by a map computed from that pixel's neighbourhood (the *local-context adaptive*, LCA, kernel) and
whose bias is shifted by a function of the whole input's channel means (the *global harmonic*,
GH, bias). The network stacks residual blocks of two such convolutions between a plain input
convolution on ``[pan, lms]`` and a plain ``C``-channel output convolution (the channel mapper),
and adds ``lms`` (residual learning). ``ms`` is not read.

Written from the paper's description, not from its code: the LCA map here is one weight per
kernel tap (shared by all input/output channel pairs) from a two-layer CNN on the neighbourhood,
squashed to ``(0, 2)`` by ``2 * sigmoid`` (so 1, a plain convolution, is the neutral value);
the GH bias is a linear map of the input's average pool. Pooling: ``gh="global"`` is the
paper's (the whole input), ``gh="local"`` (default) the ``k x k`` neighbourhood (LAConv's
dynamic bias, Jin et al. 2021): image-wide statistics would give the network an unbounded
receptive field, make tiled fusion (``tta adapt``) differ from whole-image fusion and make the
engine refuse its default tiles. No published checkpoint is mapped: weights come from
``tta train --arch lagconv`` (``--arch-option gh=global`` for the paper's form).

Reference:
    Z.-R. Jin, T.-J. Zhang, T.-X. Jiang, G. Vivone, L.-J. Deng, "LAGConv: Local-context
    adaptive convolution kernels with global harmonic bias for pansharpening", AAAI 2022.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pretrained._base import PansharpeningNet
from pretrained.registry import register_model
from tta.errors import InputError

__all__ = ["LAGBlock", "LAGConv2d", "LAGConvNet", "lagconv"]


class LAGConv2d(nn.Module):
    """``k x k`` convolution with a per-pixel, per-tap kernel weighting and a global bias.

    ``y[:, o, p] = sum_{i, j} W[o, i, j] * m[j, p] * x[:, i, p + d_j] + b[o] + g(x)[o, p]``
    where ``m = 2 * sigmoid(lca(x))`` (``(B, k*k, H, W)``, one weight per tap ``j`` and pixel
    ``p``) and ``g = gh(pool(x))``: a 1x1 map of the channel means over the whole input
    (``gh="global"``, constant over ``p``) or over the ``k x k`` window at ``p``
    (``gh="local"``, zero padding not counted). Zero padding ``k // 2``, stride 1.

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        kernel_size: Odd kernel side ``k``.
        hidden: Width of the LCA weight generator.
        gh: ``"local"`` or ``"global"`` pooling of the GH bias.

    Example:
        >>> conv = LAGConv2d(32, 32)
        >>> conv(torch.rand(2, 32, 16, 16)).shape
        torch.Size([2, 32, 16, 16])
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3,
                 hidden: int = 16, gh: str = "local") -> None:
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        if gh not in ("local", "global"):
            raise ValueError(f"gh must be 'local' or 'global', got {gh!r}")
        self.gh_pool = gh
        self.in_channels, self.out_channels, self.kernel_size = (in_channels, out_channels,
                                                                 kernel_size)
        k2 = kernel_size * kernel_size
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, kernel_size,
                                               kernel_size))
        self.bias = nn.Parameter(torch.empty(out_channels))
        # LCA: neighbourhood -> one logit per tap and pixel.
        self.lca1 = nn.Conv2d(in_channels, hidden, kernel_size, padding=kernel_size // 2)
        self.lca2 = nn.Conv2d(hidden, k2, 1)
        # GH: channel means -> bias shift.
        self.gh = nn.Conv2d(in_channels, out_channels, 1)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))  # nn.Conv2d's default
        bound = 1 / math.sqrt(self.in_channels * self.kernel_size ** 2)
        nn.init.uniform_(self.bias, -bound, bound)
        # Start close to a plain convolution: small LCA logits and GH shifts.
        with torch.no_grad():
            self.lca2.weight.mul_(0.1)
            self.lca2.bias.zero_()
            self.gh.weight.mul_(0.1)
            self.gh.bias.zero_()

    def modulation(self, x: Tensor) -> Tensor:
        """The LCA tap weights ``(B, k*k, H, W)`` in ``(0, 2)``."""
        return 2.0 * torch.sigmoid(self.lca2(torch.relu(self.lca1(x))))

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        k = self.kernel_size
        cols = F.unfold(x, k, padding=k // 2).view(b, c, k * k, h * w)
        cols = cols * self.modulation(x).view(b, 1, k * k, h * w)
        y = torch.matmul(self.weight.view(self.out_channels, c * k * k),
                         cols.view(b, c * k * k, h * w))
        if self.gh_pool == "global":
            pooled = x.mean(dim=(2, 3), keepdim=True)
        else:
            pooled = F.avg_pool2d(x, k, stride=1, padding=k // 2, count_include_pad=False)
        shift = self.gh(pooled) + self.bias[:, None, None]  # (B, out, 1 or H, 1 or W)
        return y.view(b, self.out_channels, h, w) + shift

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"gh={self.gh_pool!r}")


class LAGBlock(nn.Module):
    """``x + lag2(relu(lag1(x)))`` with two :class:`LAGConv2d` of equal width."""

    def __init__(self, channels: int = 32, hidden: int = 16, gh: str = "local") -> None:
        super().__init__()
        self.lag1 = LAGConv2d(channels, channels, 3, hidden, gh)
        self.lag2 = LAGConv2d(channels, channels, 3, hidden, gh)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.lag2(torch.relu(self.lag1(x)))


class LAGConvNet(PansharpeningNet):
    """``lms + conv_out(relu(blocks(relu(conv_in([pan, lms])))))``.

    Layers: ``conv_in`` (C+1 -> 32, 3x3), ``blocks.0..blocks.{n-1}`` (:class:`LAGBlock`),
    ``conv_out`` (32 -> C, 3x3, the channel mapper), then ``+ lms``.

    Args:
        n_bands: Number of MS bands ``C``.
        channels: Feature width.
        n_blocks: Residual LAG blocks.
        hidden: Width of each LCA weight generator.
        gh: Pooling of the GH bias, ``"local"`` (default) or ``"global"`` (the paper's).

    Example:
        >>> net = LAGConvNet(8)
        >>> net(torch.rand(1, 8, 8, 8), torch.rand(1, 1, 32, 32), torch.rand(1, 8, 32, 32)).shape
        torch.Size([1, 8, 32, 32])
    """

    arch = "lagconv"
    channel_mappers = ("conv_out",)
    band_key = "conv_out.weight"
    adds_lms = True
    uses = ("pan", "lms")

    def __init__(self, n_bands: int = 8, channels: int = 32, n_blocks: int = 5,
                 hidden: int = 16, gh: str = "local") -> None:
        super().__init__(n_bands)
        if gh not in ("local", "global"):
            raise InputError(f"lagconv: gh must be 'local' or 'global', got {gh!r}")
        self._hparams = {"channels": channels, "n_blocks": n_blocks, "hidden": hidden,
                         "gh": gh}
        self.conv_in = nn.Conv2d(n_bands + 1, channels, 3, padding=1)
        self.blocks = nn.Sequential(*[LAGBlock(channels, hidden, gh) for _ in range(n_blocks)])
        self.conv_out = nn.Conv2d(channels, n_bands, 3, padding=1)

    def hparams(self) -> dict:
        """Constructor options (besides ``n_bands``) that rebuild this network."""
        return dict(self._hparams)

    def features(self, pan: Tensor, lms: Tensor) -> Tensor:
        """Interface features ``(B, channels, H, W)`` (the input of ``conv_out``)."""
        x = torch.relu(self.conv_in(torch.cat([pan, lms], dim=1)))
        return torch.relu(self.blocks(x))

    def forward(self, ms: Tensor, pan: Tensor, lms: Tensor) -> Tensor:
        """Fuse.

        Args:
            ms: ``(B, C, h, w)``, not read (kept for the uniform signature).
            pan: ``(B, 1, H, W)`` PAN / max_value.
            lms: ``(B, C, H, W)`` upsampled MS / max_value.

        Returns:
            ``(B, C, H, W)`` fused image / max_value.
        """
        self.check_inputs(ms, pan, lms)
        return lms + self.conv_out(self.features(pan, lms))


@register_model
def lagconv(n_bands: int = 8, **kwargs) -> LAGConvNet:
    """LAGConv net: 32 channels, 5 residual blocks of two LAGConv layers (~0.16 M params)."""
    return LAGConvNet(n_bands, **kwargs)
