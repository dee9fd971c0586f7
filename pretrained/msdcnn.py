"""MSDCNN (Yuan et al., 2018): multi-scale deep branch plus a shallow PNN-like branch.

Input convention (DLPan-Toolbox ``models/MSDCNN/model_msdcnn.py``, ``MSDCNN.forward(x=lms,
y=pan)``): both branches read ``cat([lms, pan])``; the output is
``relu(conv5(deep) + shallow3(shallow))`` - the fused image itself, no ``lms`` add, with a
final ReLU. ``ms`` is not read. All convs are zero-padded to keep the size.

Channel mappers: the network has two final ``C``-channel convs, ``conv5`` (deep branch) and
``shallow3`` (shallow branch), summed and then passed through a ReLU; both are listed in
:attr:`MSDCNN.channel_mappers`. (Note ``conv3`` here is an inner 60 -> 30 layer.)

Checkpoint keys: the original names, no mapping.

Reference:
    Q. Yuan, Y. Wei, X. Meng, H. Shen, L. Zhang, "A multiscale and multidepth convolutional
    neural network for remote sensing imagery pan-sharpening", IEEE JSTARS 11(3), 2018.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from pretrained._base import PansharpeningNet
from pretrained._dlpan import dlpan_weights
from pretrained.registry import register_model

__all__ = ["MSDCNN", "msdcnn"]


def _conv(cin: int, cout: int, k: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, padding=k // 2)


class MSDCNN(PansharpeningNet):
    """Deep multi-scale branch + shallow branch on ``[lms, pan]``, summed, ReLU.

    Deep branch: ``conv1`` (C+1 -> 60, 7x7), relu; ``conv2_1/2_2/2_3`` (60 -> 20 each,
    3/5/7), concatenated, ``+`` the ``conv1`` output, relu; ``conv3`` (60 -> 30, 3x3), relu;
    ``conv4_1/4_2/4_3`` (30 -> 10 each, 3/5/7), concatenated, ``+`` the ``conv3`` output, relu;
    ``conv5`` (30 -> C, 5x5, channel mapper). Shallow branch: ``shallow1`` (C+1 -> 64, 9x9),
    relu; ``shallow2`` (64 -> 32, 1x1), relu; ``shallow3`` (32 -> C, 5x5, channel mapper).
    Output: ``relu(conv5 + shallow3)``.

    Args:
        n_bands: Number of MS bands ``C``.
    """

    arch = "msdcnn"
    channel_mappers = ("conv5", "shallow3")
    band_key = "conv5.weight"
    adds_lms = False
    uses = ("pan", "lms")

    def __init__(self, n_bands: int = 8) -> None:
        super().__init__(n_bands)
        cin = n_bands + 1
        self.conv1 = _conv(cin, 60, 7)
        self.conv2_1 = _conv(60, 20, 3)
        self.conv2_2 = _conv(60, 20, 5)
        self.conv2_3 = _conv(60, 20, 7)
        self.conv3 = _conv(60, 30, 3)
        self.conv4_1 = _conv(30, 10, 3)
        self.conv4_2 = _conv(30, 10, 5)
        self.conv4_3 = _conv(30, 10, 7)
        self.conv5 = _conv(30, n_bands, 5)
        self.shallow1 = _conv(cin, 64, 9)
        self.shallow2 = _conv(64, 32, 1)
        self.shallow3 = _conv(32, n_bands, 5)

    def forward(self, ms: Tensor, pan: Tensor, lms: Tensor) -> Tensor:
        """Fuse.

        Args:
            ms: ``(B, C, h, w)``, not read (kept for the uniform signature).
            pan: ``(B, 1, H, W)`` PAN / max_value.
            lms: ``(B, C, H, W)`` upsampled MS (23-tap) / max_value.

        Returns:
            ``(B, C, H, W)`` fused image / max_value (non-negative: final ReLU).
        """
        self.check_inputs(ms, pan, lms)
        x = torch.cat([lms, pan], dim=1)
        d1 = torch.relu(self.conv1(x))
        d2 = torch.cat([self.conv2_1(d1), self.conv2_2(d1), self.conv2_3(d1)], dim=1)
        d2 = torch.relu(d2 + d1)
        d3 = torch.relu(self.conv3(d2))
        d4 = torch.cat([self.conv4_1(d3), self.conv4_2(d3), self.conv4_3(d3)], dim=1)
        d4 = torch.relu(d4 + d3)
        s = torch.relu(self.shallow1(x))
        s = torch.relu(self.shallow2(s))
        return torch.relu(self.conv5(d4) + self.shallow3(s))


@register_model
def msdcnn(n_bands: int = 8, **kwargs) -> MSDCNN:
    """MSDCNN as in the DLPan-Toolbox checkpoints."""
    return MSDCNN(n_bands, **kwargs)


WEIGHTS = dlpan_weights("msdcnn", {
    "WV3": "12ed6a74fa15bdcdefdf40de561fcf19d501a78208b23d970117b661a305ffd8",
    "WV2": "22bc1e8d59b1b44a9cce230fe8e255888f6360eaf34e06e441bcce23f5cbbc5e",
    "QB": "10837eb4ef018b6b4c3d8d4830a80d7737177c5a411907a216a2f20c080d93f9",
})
