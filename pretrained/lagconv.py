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

Two computations of the same layer: with autograd, ``unfold`` and one matmul (simple, and the
form the shipped weights were trained with); without (inference), per kernel row one matmul
of the channels-last input's shifted slices times their LCA weights, a cache-sized block of
pixels at a time, equal to float rounding (:meth:`LAGConv2d._forward_taps`;
``benchmarks/bench_roofline.py`` measures both, ``benchmarks/bench_lagconv_forms.py`` its
parts and other forms).

Reference:
    Z.-R. Jin, T.-J. Zhang, T.-X. Jiang, G. Vivone, L.-J. Deng, "LAGConv: Local-context
    adaptive convolution kernels with global harmonic bias for pansharpening", AAAI 2022.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pretrained._base import PansharpeningNet, same_layout
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

    def forward(self, x: Tensor, residual: Tensor | None = None, relu: bool = False) -> Tensor:
        """The layer's output, plus ``residual`` (same shape as the output) when given, then
        ``relu`` when asked: ``relu(y + residual)``. The inference form applies both to each
        block of pixels while it is in cache, instead of two more passes over the image."""
        if torch.is_grad_enabled() and (x.requires_grad
                                        or any(p.requires_grad for p in self.parameters())):
            return self._forward_unfold(x, residual, relu)
        return self._forward_taps(x, residual, relu)

    def _forward_unfold(self, x: Tensor, residual: Tensor | None = None,
                        relu: bool = False) -> Tensor:
        """Differentiable form: ``unfold``, per-tap weighting, one batched matmul."""
        b, c, h, w = x.shape
        k = self.kernel_size
        cols = F.unfold(x, k, padding=k // 2).view(b, c, k * k, h * w)
        cols = cols * self.modulation(x).view(b, 1, k * k, h * w)
        y = torch.matmul(self.weight.view(self.out_channels, c * k * k),
                         cols.view(b, c * k * k, h * w))
        y = y.view(b, self.out_channels, h, w) + self._shift(x)
        if residual is not None:
            y = y + residual
        return torch.relu(y) if relu else y

    def _shift(self, x: Tensor) -> Tensor:
        """``gh(pool(x)) + bias``: ``(B, out, 1 or H, 1 or W)``."""
        k = self.kernel_size
        if self.gh_pool == "global":
            pooled = x.mean(dim=(2, 3), keepdim=True)
        else:
            pooled = F.avg_pool2d(x, k, stride=1, padding=k // 2, count_include_pad=False)
        return self.gh(pooled) + self.bias[:, None, None]

    def _forward_taps(self, x: Tensor, residual: Tensor | None = None,
                      relu: bool = False) -> Tensor:
        """Inference form (no autograd): the same sums by one weighted copy per kernel tap and
        one matmul per kernel row, channels-last, with no ``unfold``, a block of pixels at a
        time.

        With channels innermost and rows back to back, the pixels every output pixel reads
        at tap ``(dy, dx)`` form one contiguous ``(H*W, c)`` slice of the input, shifted by
        ``(dy - r) * W + dx - r`` rows (zeros outside the image). The output is built in
        blocks of :attr:`block_pixels` pixels, small enough to stay in the CPU's cache: per
        block, the GH term and both biases start ``y`` (a matmul of the pooled input), then
        per kernel row ``dy`` the ``k`` shifted slices, each times its LCA weight ``m_j``,
        are laid side by side (a ``(pixels, k * c)`` operand) and one matmul with the row's
        ``(k * c, out)`` kernel adds their products to ``y``. A tap that leaves the image
        sideways reads the neighbouring row instead of zero padding; its LCA weight is set
        to 0 there, which gives the zero-padded result. The local GH pooling is a depthwise
        box sum whose border rows and columns are rescaled to the count of pixels inside the
        image. ``residual`` is added to the block when it starts and ``relu`` applied when it
        is complete. Equal to :meth:`_forward_unfold` up to float rounding (sums in another
        order; within 1e-12 in float64). The output has the input's memory format.
        (Weighting the input per tap costs as much as weighting the products of ``k`` taps
        per row, and lets the matmul accumulate: 2-4 % faster, ``speed_17f.md``.)
        """
        b, c, h, w = x.shape
        k, o, r = self.kernel_size, self.out_channels, self.kernel_size // 2
        channels_last = x.is_contiguous(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
        hidden = _conv_act(x, self.lca1, "relu")
        # (B, H, W, k*k) of a channels-last (B, k*k, H, W); the 2 goes into the kernel
        mod = _conv_act(hidden, self.lca2, "sigmoid").permute(0, 2, 3, 1)
        sideways = mod.view(b, h, w, k, k)
        for dx in range(k):
            if dx < r:
                sideways[:, :, :r - dx, :, dx] = 0.0
            elif dx > r:
                sideways[:, :, max(0, w - (dx - r)):, :, dx] = 0.0
        rows = x.permute(0, 2, 3, 1).reshape(b, h * w, c)  # a view: x is channels-last
        n = h * w
        biases = self.bias + self.gh.bias
        gh_t = self.gh.weight.view(o, c).t()
        if self.gh_pool == "local":
            pooled = self._box_mean(x).permute(0, 2, 3, 1).reshape(b, n, c)
        else:
            biases = biases + x.mean(dim=(2, 3)) @ gh_t  # (B, out)
        if residual is not None:  # (B, H*W, out) rows, a view when channels-last
            residual = residual.permute(0, 2, 3, 1).reshape(b, n, o)
        # Per kernel row dy: (k * c, out), the row's k taps stacked (tap dx, then channel).
        kernel = (2.0 * self.weight).permute(2, 3, 1, 0).reshape(k, k * c, o).contiguous()
        y = x.new_empty(b, h, w, o)
        # Cache blocking is for CPU cores (each thread's share of a block stays cache-sized);
        # a GPU takes blocks of up to 2**20 pixels (a 512² tile at once, few kernel launches).
        step = (max(1, self.block_pixels) * torch.get_num_threads() if x.device.type == "cpu"
                else 1 << 20)
        operand = x.new_empty(min(n, step), k * c)
        for i in range(b):
            out, weights = y[i].view(n, o), mod[i].view(n, k * k)
            for s in range(0, n, step):
                m = min(n, s + step) - s
                acc, wts = out[s:s + m], weights[s:s + m]
                if self.gh_pool == "local":  # the matmul writes the block first (no copy)
                    torch.mm(pooled[i, s:s + m], gh_t, out=acc)
                    acc.add_(biases)
                else:
                    acc.copy_(biases[i].expand(m, o))
                if residual is not None:
                    acc.add_(residual[i, s:s + m])
                weighted = operand[:m]
                for dy in range(k):
                    window = _rows(rows[i], s + (dy - r) * w - r, m + 2 * r)
                    for dx in range(k):
                        torch.mul(window[dx:dx + m], wts[:, dy * k + dx:dy * k + dx + 1],
                                  out=weighted[:, dx * c:(dx + 1) * c])
                    acc.addmm_(weighted, kernel[dy])
                if relu:
                    acc.relu_()
        y = y.permute(0, 3, 1, 2)
        return y if channels_last else y.contiguous()

    def _box_mean(self, x: Tensor) -> Tensor:
        """``avg_pool2d(x, k, 1, k // 2, count_include_pad=False)`` for channels-last ``x``:
        a depthwise ``k x k`` sum, its border rows and columns rescaled to the pixels inside
        the image."""
        k, r, (h, w) = self.kernel_size, self.kernel_size // 2, x.shape[-2:]
        box = x.new_full((x.shape[1], 1, k, k), 1.0 / (k * k))
        mean = F.conv2d(x, box, padding=r, groups=x.shape[1])
        for axis, size in ((2, h), (3, w)):
            for j in [*range(min(r, size)), *range(max(r, size - r), size)]:
                inside = min(size - 1, j + r) - max(0, j - r) + 1
                mean.narrow(axis, j, 1).mul_(k / inside)
        return mean

    #: Pixels per block of :meth:`_forward_taps` and CPU thread: a block's operands (about
    #: ``block_pixels * (k + 2) * c`` floats per thread) stay in the cores' L2 caches (2048
    #: was fastest at 1 thread, 2 x 2048 at 2, against 1024-8192; ``speed_17e.md``,
    #: ``speed_17f.md``).
    block_pixels: int = 2048

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"gh={self.gh_pool!r}")


#: oneDNN's convolution with a fused activation (the op Inductor's CPU fusion emits), when
#: this torch build has it.
_ONEDNN_CONV_ACT = getattr(torch.ops.mkldnn, "_convolution_pointwise", None)


def _conv_act(x: Tensor, conv: nn.Conv2d, act: str) -> Tensor:
    """``act(conv(x))`` (``act`` ``"relu"`` or ``"sigmoid"``), channels-last. On a CPU float32
    input, one oneDNN convolution with the activation as its post-op: no second pass over the
    output (3-6 % of a LAGConv network's inference, ``speed_17f.md``); elsewhere the
    convolution, then the activation in place. Equal to float rounding."""
    cl = torch.channels_last
    if (_ONEDNN_CONV_ACT is not None and x.device.type == "cpu" and x.dtype == torch.float32
            and torch.backends.mkldnn.is_available() and isinstance(conv.padding, tuple)):
        y = _ONEDNN_CONV_ACT(x.contiguous(memory_format=cl), conv.weight, conv.bias,
                             list(conv.padding), list(conv.stride), list(conv.dilation),
                             conv.groups, act, [None], "")
    else:
        y = conv(x)
        y = y.relu_() if act == "relu" else y.sigmoid_()
    return y.contiguous(memory_format=cl)


def _rows(rows: Tensor, start: int, length: int) -> Tensor:
    """``rows[start:start + length]`` with zero rows where the range leaves ``rows``."""
    n = rows.shape[0]
    if start >= 0 and start + length <= n:
        return rows[start:start + length]
    window = rows.new_zeros(length, rows.shape[1])
    lo, hi = max(0, start), min(n, start + length)
    if hi > lo:
        window[lo - start:hi - start] = rows[lo:hi]
    return window


class LAGBlock(nn.Module):
    """``x + lag2(relu(lag1(x)))`` with two :class:`LAGConv2d` of equal width (the ReLU and
    the skip are computed by the layers, ``relu=True`` for the whole block's output)."""

    def __init__(self, channels: int = 32, hidden: int = 16, gh: str = "local") -> None:
        super().__init__()
        self.lag1 = LAGConv2d(channels, channels, 3, hidden, gh)
        self.lag2 = LAGConv2d(channels, channels, 3, hidden, gh)

    def forward(self, x: Tensor, relu: bool = False) -> Tensor:
        return self.lag2(self.lag1(x, relu=True), residual=x, relu=relu)


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
        x = torch.relu_(self.conv_in(same_layout(torch.cat([pan, lms], dim=1), lms)))
        last = len(self.blocks) - 1  # its output gets the ReLU (x is one already if none)
        for i, block in enumerate(self.blocks):
            x = block(x, relu=i == last)
        return x

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
