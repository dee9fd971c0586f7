"""FusionNet (Deng et al., 2021): residual CNN on the PAN-minus-upsampled-MS difference.

Input convention (DLPan-Toolbox ``models/FusionNet/model_fusionnet.py``, ``FusionNet.forward(x=lms,
y=pan)`` and ``val_step``): the network sees ``pan.repeat(C) - lms`` only and predicts a
residual; the toolbox adds ``lms`` outside the module (``sr = lms + res``), here inside
``forward``. ``ms`` is not read.

Checkpoint key mapping: the original registers its blocks both as ``res1..res4`` and inside
``backbone = nn.Sequential(res1, ..., res4)``, so its state_dicts hold ``backbone.{K-1}.*`` as a
second copy of ``resK.*``; the copy is checked to be identical and dropped
(:func:`~pretrained._base.drop_backbone_duplicates`). All other names are the original ones.

Reference:
    L.-J. Deng, G. Vivone, C. Jin, J. Chanussot, "Detail injection-based deep convolutional
    neural networks for pansharpening", IEEE TGRS 59(8), 2021.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from pretrained._base import PansharpeningNet, ResBlock, drop_backbone_duplicates
from pretrained._dlpan import dlpan_weights
from pretrained.registry import register_model

__all__ = ["FusionNet", "fusionnet"]


class FusionNet(PansharpeningNet):
    """``lms + conv3(res4(...res1(relu(conv1(pan - lms)))))``, all 3x3 convs with padding 1.

    Layers: ``conv1`` (C -> 32), ``res1..res4`` (:class:`~pretrained._base.ResBlock`, 32 -> 32),
    ``conv3`` (32 -> C, the channel mapper), then ``+ lms``.

    Args:
        n_bands: Number of MS bands ``C``.
        channels: Feature width (32 in the checkpoints).
        n_blocks: Residual blocks (4 in the checkpoints).

    Example:
        >>> net = FusionNet(8)
        >>> net(torch.rand(1, 8, 16, 16), torch.rand(1, 1, 64, 64), torch.rand(1, 8, 64, 64)).shape
        torch.Size([1, 8, 64, 64])
    """

    arch = "fusionnet"
    channel_mappers = ("conv3",)
    band_key = "conv3.weight"
    adds_lms = True
    uses = ("pan", "lms")

    def __init__(self, n_bands: int = 8, channels: int = 32, n_blocks: int = 4) -> None:
        super().__init__(n_bands)
        self.channels, self.n_blocks = channels, n_blocks
        self.conv1 = nn.Conv2d(n_bands, channels, 3, padding=1)
        for k in range(1, n_blocks + 1):
            self.add_module(f"res{k}", ResBlock(channels))
        self.conv3 = nn.Conv2d(channels, n_bands, 3, padding=1)

    def hparams(self) -> dict:
        """Constructor options (besides ``n_bands``) that rebuild this network."""
        return {"channels": self.channels, "n_blocks": self.n_blocks}

    def forward(self, ms: Tensor, pan: Tensor, lms: Tensor) -> Tensor:
        """Fuse.

        Args:
            ms: ``(B, C, h, w)``, not read (kept for the uniform signature).
            pan: ``(B, 1, H, W)`` PAN / max_value.
            lms: ``(B, C, H, W)`` upsampled MS (23-tap) / max_value.

        Returns:
            ``(B, C, H, W)`` fused image / max_value.
        """
        self.check_inputs(ms, pan, lms)
        x = torch.relu(self.conv1(pan.expand_as(lms) - lms))
        for k in range(1, self.n_blocks + 1):
            x = getattr(self, f"res{k}")(x)
        return lms + self.conv3(x)

    @classmethod
    def map_state_dict(cls, state_dict: Mapping[str, Tensor], source: str = "checkpoint"
                       ) -> dict[str, Tensor]:
        """Drop the ``backbone.{K-1}.*`` duplicates of ``resK.*`` (see the module docstring)."""
        return drop_backbone_duplicates(state_dict, source)


@register_model
def fusionnet(n_bands: int = 8, **kwargs) -> FusionNet:
    """FusionNet as in the DLPan-Toolbox checkpoints (32 channels, 4 residual blocks)."""
    return FusionNet(n_bands, **kwargs)


WEIGHTS = dlpan_weights("fusionnet", {
    "WV3": "203113636325d9ba49ea0a65457df96182c85587db3aeb436f53866c188438bc",
    "WV2": "6e21010d83d00d69e06f7ad7559b06fcb65abf14849e4dac0ab5e230c0bac1b8",
    "QB": "8154ac2bcdbf7c443b2e2395c6b01c5823297986e7d788d84d637750299ec4b9",
})
