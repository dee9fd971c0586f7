"""Feature adapters at the interface: Feature Tailor (``ft``) and Conditional Adaptation
Tailor (``cat``).

Both are residual, ``x + B(...)``, with the last projection ``B`` zero-initialised, so the
adapted model starts equal to the source model (peft's identity-at-start convention).

Reference:
    ERFT, T. Xin et al., "Training and inference within 1 second - tackle cross-sensor
    degradation of real-world pansharpening with efficient residual feature tailoring",
    AAAI 2026 (arXiv 2508.07369): a residual Feature Tailor between the frozen feature
    extractor and the channel mapper. CAT: the same authors' conditional adaptation tailor
    (arXiv, "Fast ... cross-sensor ... CAT"); our conditioning is spatial (SFT/FiLM-style
    scale and shift maps computed from the upsampled MS and the PAN), which keeps the
    adapted network translation-equivariant so tiled inference stays seamless; the papers'
    exact layer layout is not public to us, so widths and kernels are ours.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from adapters.base import Adapter
from tta.checks import check_int
from tta.errors import InputError

__all__ = ["CATBlock", "ConditionalAdaptationTailor", "ConditionedModel", "FeatureTailor",
           "TailorBlock"]


def _fit(t: Tensor, size: tuple[int, int]) -> Tensor:
    """Centre-crop or replicate-pad ``t`` to spatial ``size`` (PNN's interface is padded)."""
    dh, dw = size[0] - t.shape[-2], size[1] - t.shape[-1]
    if dh == 0 and dw == 0:
        return t
    if dh >= 0 and dw >= 0:
        return F.pad(t, (dw // 2, dw - dw // 2, dh // 2, dh - dh // 2), mode="replicate")
    top, left = max(-dh, 0) // 2, max(-dw, 0) // 2
    t = t[..., top:top + min(size[0], t.shape[-2]), left:left + min(size[1], t.shape[-1])]
    return _fit(t, size)


#: Largest hidden width and kernel side a tailor accepts.
MAX_WIDTH, MAX_KERNEL = 4096, 31


def _check_block(hidden: int | None, kernel_size: int) -> None:
    """The tailors' options: a positive width (None = the feature width) and an odd kernel."""
    if hidden is not None:
        check_int(hidden, "adapter_options.hidden", 1, MAX_WIDTH)
    if check_int(kernel_size, "adapter_options.kernel_size", 1, MAX_KERNEL) % 2 == 0:
        raise InputError(f"adapter_options.kernel_size must be odd, got {kernel_size}")


class TailorBlock(nn.Module):
    """``x + up(act(down(x)))``: 3x3 conv ``D -> h``, GELU, 1x1 conv ``h -> D`` (zero init)."""

    def __init__(self, channels: int, hidden: int, kernel_size: int = 3) -> None:
        super().__init__()
        self.down = nn.Conv2d(channels, hidden, kernel_size, padding=kernel_size // 2)
        self.up = nn.Conv2d(hidden, channels, 1)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.up(F.gelu(self.down(x)))


class CATBlock(nn.Module):
    """Tailor block whose hidden activations are scaled and shifted by condition maps.

    ``h = gelu(down(x)); h = h * (1 + gamma(c)) + beta(c); x + up(h)`` where ``c`` is a
    small conv encoding of ``[lms, pan]``. ``up`` and the last layer of the condition branch
    are zero-initialised (identity at start, modulation off at start).
    """

    def __init__(self, channels: int, hidden: int, cond_channels: int, cond_hidden: int = 16,
                 kernel_size: int = 3) -> None:
        super().__init__()
        self.down = nn.Conv2d(channels, hidden, kernel_size, padding=kernel_size // 2)
        self.up = nn.Conv2d(hidden, channels, 1)
        self.cond = nn.Sequential(
            nn.Conv2d(cond_channels, cond_hidden, 3, padding=1), nn.GELU(),
            nn.Conv2d(cond_hidden, 2 * hidden, 1),
        )
        for layer in (self.up, self.cond[-1]):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)
        self.condition: Tensor | None = None

    def forward(self, x: Tensor) -> Tensor:
        h = F.gelu(self.down(x))
        if self.condition is not None:
            c = _fit(self.condition.to(dtype=x.dtype), (x.shape[-2], x.shape[-1]))
            if c.shape[0] != x.shape[0]:
                c = c.expand(x.shape[0], *c.shape[1:])
            gamma, beta = self.cond(c).chunk(2, dim=1)
            h = h * (1 + gamma) + beta
        return x + self.up(h)


class FeatureTailor(Adapter):
    """``ft``: a residual conv block on the interface features (identity at start).

    Args:
        hidden: Hidden width; default the feature width ``D``.
        kernel_size: Kernel of the first conv (odd).
    """

    kind = "ft"
    default_lr = 2e-3  # a new zero-initialised module moves fast

    def __init__(self, hidden: int | None = None, kernel_size: int = 3) -> None:
        super().__init__()
        _check_block(hidden, kernel_size)
        self.hidden, self.kernel_size = hidden, kernel_size
        self.block: TailorBlock | None = None

    def build(self, decomposition: Any) -> None:
        d = decomposition.feature_channels
        self.block = TailorBlock(d, self.hidden or d, self.kernel_size)

    def tailor(self, features: Tensor) -> Tensor:
        return self.block(features)

    def merged_tailor(self) -> nn.Module:
        return self.block

    def config(self) -> dict[str, Any]:
        return {"hidden": self.hidden, "kernel_size": self.kernel_size}


class ConditionalAdaptationTailor(Adapter):
    """``cat``: a tailor modulated by spatial conditions from the target's inputs.

    The condition is ``[lms, pan]`` of the current forward pass (set by
    :meth:`set_condition`, which the engine calls before every forward), encoded by a small
    conv branch into per-pixel scales and shifts of the tailor's hidden features.

    Args:
        hidden: Hidden width of the tailor; default ``D``.
        cond_hidden: Width of the condition encoder.
        kernel_size: Kernel of the tailor's first conv.
    """

    kind = "cat"
    default_lr = 2e-3
    conditional = True

    def __init__(self, hidden: int | None = None, cond_hidden: int = 16,
                 kernel_size: int = 3) -> None:
        super().__init__()
        _check_block(hidden, kernel_size)
        check_int(cond_hidden, "adapter_options.cond_hidden", 1, MAX_WIDTH)
        self.hidden, self.cond_hidden, self.kernel_size = hidden, cond_hidden, kernel_size
        self.block: CATBlock | None = None

    def build(self, decomposition: Any) -> None:
        d = decomposition.feature_channels
        self.block = CATBlock(d, self.hidden or d, decomposition.n_bands + 1,
                              self.cond_hidden, self.kernel_size)

    def set_condition(self, ms: Tensor, pan: Tensor, lms: Tensor) -> None:
        self.block.condition = torch.cat([lms, pan], dim=1)

    def tailor(self, features: Tensor) -> Tensor:
        return self.block(features)

    def merged_tailor(self) -> nn.Module:
        return self.block

    def merge(self) -> nn.Module:
        """Merged model wrapped in :class:`ConditionedModel` (the condition is per call)."""
        block = self.block
        block.condition = None
        return ConditionedModel(super().merge(), block)

    def config(self) -> dict[str, Any]:
        return {"hidden": self.hidden, "cond_hidden": self.cond_hidden,
                "kernel_size": self.kernel_size}


class ConditionedModel(nn.Module):
    """A merged CAT model: sets the condition ``[lms, pan]`` and calls the model.

    Assumes the zoo's call convention ``model(ms, pan, lms)``.
    """

    def __init__(self, model: nn.Module, block: CATBlock) -> None:
        super().__init__()
        self.model = model
        self.block = block  # also inside model (the merged mapper); shared, not copied

    def forward(self, ms: Tensor, pan: Tensor, lms: Tensor) -> Tensor:
        self.block.condition = torch.cat([lms, pan], dim=1)
        try:
            return self.model(ms, pan, lms)
        finally:
            self.block.condition = None
