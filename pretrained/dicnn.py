"""DiCNN (He et al., 2019): detail-injection CNN, three 3x3 convs on [lms, pan] plus lms.

Input convention (DLPan-Toolbox ``models/DiCNN/model_dicnn.py``, ``DiCNN.forward(x=lms, y=pan)``):
``cat([lms, pan])`` through conv-relu-conv-relu-conv, and the module itself returns
``lms + out`` (as here). ``ms`` is not read.

Checkpoint keys: the original names, no mapping.

Reference:
    L. He, Y. Rao, J. Li, J. Chanussot, A. Plaza, J. Zhu, B. Li, "Pansharpening via detail
    injection based convolutional neural networks", IEEE JSTARS 12(4), 2019.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from pretrained._base import PansharpeningNet
from pretrained._dlpan import dlpan_weights
from pretrained.registry import register_model

__all__ = ["DiCNN", "dicnn"]


class DiCNN(PansharpeningNet):
    """``lms + conv3(relu(conv2(relu(conv1([lms, pan])))))``, 3x3 convs with padding 1.

    Layers: ``conv1`` (C+1 -> 64), ``conv2`` (64 -> 64), ``conv3`` (64 -> C, the channel
    mapper), then ``+ lms``.

    Args:
        n_bands: Number of MS bands ``C``.
        channels: Feature width (64 in the checkpoints).
    """

    arch = "dicnn"
    channel_mappers = ("conv3",)
    band_key = "conv3.weight"
    adds_lms = True
    uses = ("pan", "lms")

    def __init__(self, n_bands: int = 8, channels: int = 64) -> None:
        super().__init__(n_bands)
        self.conv1 = nn.Conv2d(n_bands + 1, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv3 = nn.Conv2d(channels, n_bands, 3, padding=1)

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
        x = torch.relu(self.conv1(torch.cat([lms, pan], dim=1)))
        x = torch.relu(self.conv2(x))
        return lms + self.conv3(x)


@register_model
def dicnn(n_bands: int = 8, **kwargs) -> DiCNN:
    """DiCNN as in the DLPan-Toolbox checkpoints (64 channels)."""
    return DiCNN(n_bands, **kwargs)


WEIGHTS = dlpan_weights("dicnn", {
    "WV3": "36d1fc48bc68a177587a4583afcf1890d867636266845b9926085bb855be230c",
    "WV2": "4111562672eee3eb6cd9b7e9aa33b2e63842141c83523cec316204a9505e7589",
    "QB": "4daf0036f935bdb16c1e6f0d18fbc59e72fc9d507e5f29590c7184acfe9ef79b",
})
