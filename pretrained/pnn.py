"""PNN (Masi et al., 2016): three valid convolutions on [lms, pan], no residual.

Input convention (DLPan-Toolbox ``models/PNN/model_pnn.py``, ``PNN.forward(x=cat(lms, pan))``):
the network maps ``cat([lms, pan])`` directly to the fused image (no ``lms`` add). Its convs
are unpadded (9x9, 5x5, 5x5: 16 pixels lost per axis); ``pnn_main.py`` computes
``blk = (8 + 4 + 4 + 1) // 2 = 8`` and training compares the output with
``gt[..., 8:-8, 8:-8]``. For full-size outputs the toolbox's ``val_step`` pads the input by
``blk = 8`` on every side with ``F.pad(..., mode="replicate")`` before the convs; the output
pixel ``(i, j)`` then sits on input pixel ``(i, j)`` (the 17x17 receptive field is centred).
``forward`` does the same. ``ms`` is not read.

Checkpoint keys: the original names, no mapping.

Reference:
    G. Masi, D. Cozzolino, L. Verdoliva, G. Scarpa, "Pansharpening by convolutional neural
    networks", Remote Sensing 8(7), 2016.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pretrained._base import PansharpeningNet
from pretrained._dlpan import dlpan_weights
from pretrained.registry import register_model

__all__ = ["PNN", "pnn"]


class PNN(PansharpeningNet):
    """``conv3(relu(conv2(relu(conv1(replicate_pad_8([lms, pan]))))))``, valid convs.

    Layers: ``conv1`` (C+1 -> 64, 9x9), ``conv2`` (64 -> 32, 5x5), ``conv3`` (32 -> C, 5x5,
    the channel mapper), all without padding; the input is replicate-padded by
    :attr:`pad` = 8 first.

    Args:
        n_bands: Number of MS bands ``C``.
        channels: Width of ``conv1`` (64 in the checkpoints).
    """

    arch = "pnn"
    channel_mappers = ("conv3",)
    band_key = "conv3.weight"
    adds_lms = False
    uses = ("pan", "lms")

    def __init__(self, n_bands: int = 8, channels: int = 64) -> None:
        super().__init__(n_bands)
        self.conv1 = nn.Conv2d(n_bands + 1, channels, 9)
        self.conv2 = nn.Conv2d(channels, 32, 5)
        self.conv3 = nn.Conv2d(32, n_bands, 5)
        #: Replicate padding per side = half the receptive field (toolbox ``blk``).
        self.pad = (9 - 1 + 5 - 1 + 5 - 1) // 2

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
        p = self.pad
        x = F.pad(torch.cat([lms, pan], dim=1), (p, p, p, p), mode="replicate")
        x = torch.relu(self.conv1(x))
        x = torch.relu(self.conv2(x))
        return self.conv3(x)


@register_model
def pnn(n_bands: int = 8, **kwargs) -> PNN:
    """PNN as in the DLPan-Toolbox checkpoints (64/32 channels, 9-5-5 valid kernels)."""
    return PNN(n_bands, **kwargs)


WEIGHTS = dlpan_weights("pnn", {
    "WV3": "d37729c050de34fcc6d80c186f1bf7cb6c506d82d579304f89f66a8a1ffa12b2",
    "WV2": "19e311ac764221e47b048dca1da77260ada9d3eba47b9d9b44a9333f02e3d705",
    "QB": "81cc93ae27c9cd0dede8af032d41719016e90c132843cec3fe6ee4ab8e2817ed",
})
