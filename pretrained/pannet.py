"""PanNet (Yang et al., 2017): residual CNN on high-passed inputs, transposed-conv upsampling.

Input convention (DLPan-Toolbox ``models/PanNet/model_pannet.py``, ``PanNet.forward(x=ms_hp,
y=pan_hp)``; the high-pass is ``get_edge`` of ``common/dataset_hp.py`` (training) and of
``evaluation/ps_evaluate.py`` (test): ``img - cv2.boxFilter(img, -1, (5, 5))``, a normalised 5x5
mean with OpenCV's default border ``BORDER_REFLECT_101``, applied to the *low-resolution* MS and
to the PAN, each band separately): the network sees the high-passed MS upsampled x4 by its
transposed conv, concatenated with the high-passed PAN, and predicts a residual; the toolbox
adds the (not high-passed) ``lms`` outside the module, here inside ``forward``. The high-pass is
computed inside ``forward`` (:func:`box_highpass`), so callers pass plain ``ms`` and ``pan``.

Checkpoint key mapping: as FusionNet, ``backbone.{K-1}.*`` duplicates of ``resK.*`` are checked
identical and dropped; other names are the original ones.

Reference:
    J. Yang, X. Fu, Y. Hu, Y. Huang, X. Ding, J. Paisley, "PanNet: A deep network architecture
    for pan-sharpening", ICCV 2017.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pretrained._base import PansharpeningNet, ResBlock, drop_backbone_duplicates
from pretrained._dlpan import dlpan_weights
from pretrained.registry import register_model
from tta.errors import InputError

__all__ = ["PanNet", "box_highpass", "pannet"]


def box_highpass(x: Tensor, size: int = 5) -> Tensor:
    """``x - mean_{size x size}(x)`` per band, mirrored borders without edge repetition.

    Args:
        x: ``(B, C, H, W)`` with ``H, W > size // 2``.
        size: Odd box side.

    Returns:
        Tensor like ``x``.

    Reference:
        DLPan-Toolbox ``get_edge``: ``data - cv2.boxFilter(data, -1, (5, 5))`` (normalised box,
        ``BORDER_REFLECT_101`` = torch's ``"reflect"`` padding).
    """
    p = size // 2
    low = F.avg_pool2d(F.pad(x, (p, p, p, p), mode="reflect"), size, stride=1)
    return x - low


class PanNet(PansharpeningNet):
    """``lms + conv3(res4(...res1(relu(conv1([deconv(hp(ms)), hp(pan)])))))``.

    Layers: ``deconv`` (ConvTranspose2d C -> C, kernel 8, stride 4, padding 2: exactly x4),
    ``conv1`` (C+1 -> 32), ``res1..res4``, ``conv3`` (32 -> C, the channel mapper), then
    ``+ lms``. 3x3 convs with zero padding 1. The built-in ratio is 4.

    Args:
        n_bands: Number of MS bands ``C``.
        channels: Feature width (32 in the checkpoints).
        n_blocks: Residual blocks (4 in the checkpoints).
    """

    arch = "pannet"
    channel_mappers = ("conv3",)
    band_key = "conv3.weight"
    adds_lms = True
    uses = ("ms", "pan", "lms")
    ratio = 4

    def __init__(self, n_bands: int = 8, channels: int = 32, n_blocks: int = 4) -> None:
        super().__init__(n_bands)
        self.n_blocks = n_blocks
        self.deconv = nn.ConvTranspose2d(n_bands, n_bands, 8, stride=4, padding=2)
        self.conv1 = nn.Conv2d(n_bands + 1, channels, 3, padding=1)
        for k in range(1, n_blocks + 1):
            self.add_module(f"res{k}", ResBlock(channels))
        self.conv3 = nn.Conv2d(channels, n_bands, 3, padding=1)

    def forward(self, ms: Tensor, pan: Tensor, lms: Tensor) -> Tensor:
        """Fuse.

        Args:
            ms: ``(B, C, h, w)`` MS / max_value (high-passed here), ``h, w >= 3``.
            pan: ``(B, 1, 4h, 4w)`` PAN / max_value (high-passed here).
            lms: ``(B, C, 4h, 4w)`` upsampled MS (23-tap) / max_value.

        Returns:
            ``(B, C, 4h, 4w)`` fused image / max_value.
        """
        self.check_inputs(ms, pan, lms)
        if min(ms.shape[-2:]) < 3:
            raise InputError(f"pannet: ms must be at least 3x3 for the 5x5 high-pass, "
                             f"got {tuple(ms.shape[-2:])}")
        x = torch.cat([self.deconv(box_highpass(ms)), box_highpass(pan)], dim=1)
        x = torch.relu(self.conv1(x))
        for k in range(1, self.n_blocks + 1):
            x = getattr(self, f"res{k}")(x)
        return lms + self.conv3(x)

    @classmethod
    def map_state_dict(cls, state_dict: Mapping[str, Tensor], source: str = "checkpoint"
                       ) -> dict[str, Tensor]:
        """Drop the ``backbone.{K-1}.*`` duplicates of ``resK.*`` (see the module docstring)."""
        return drop_backbone_duplicates(state_dict, source)


@register_model
def pannet(n_bands: int = 8, **kwargs) -> PanNet:
    """PanNet as in the DLPan-Toolbox checkpoints (32 channels, 4 residual blocks, ratio 4)."""
    return PanNet(n_bands, **kwargs)


WEIGHTS = dlpan_weights("pannet", {
    "WV3": "31c46f726c3e54756283c06b52e83223e0b3c99b5a8807131082c95a407206af",
    "WV2": "7901902ae4a39109e9de1af8765dfba804594213d164c96c373b9420f3ece3af",
})
