"""The common interface of the zoo's pansharpening networks.

Every architecture is a :class:`PansharpeningNet`: ``forward(ms, pan, lms) -> hrms`` on images
divided by the sensor's maximum DN (``DN / max_value``, 2047 for the 11-bit WV3/WV2/QB data the
DLPan-Toolbox checkpoints were trained on), returning the fused image on the PAN grid in the same
scale. Networks that predict a residual add ``lms`` inside ``forward``.

The *channel mapper* is the last convolution that maps features to the ``C`` output bands; it
stays a distinct submodule, named in :attr:`PansharpeningNet.channel_mappers`, so that later
stages can split any model into "feature extractor | channel mapper" with forward hooks
(``model.get_submodule(name).register_forward_hook(...)``) without editing it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from tta.errors import InputError

__all__ = ["PansharpeningNet", "ResBlock", "same_layout"]


def same_layout(x: Tensor, like: Tensor) -> Tensor:
    """``x`` in the memory format of ``like``: channels-last when ``like`` is (and has more than
    one channel), else contiguous.

    ``torch.cat`` of a one-channel PAN with channels-last bands returns a contiguous tensor;
    networks use this after such a concatenation so that channels-last inputs (the tiled
    inference feeds them, see :func:`tta.engine.tiling.tiled_fuse`) keep every layer
    channels-last, while the default layout (training, the adaptation engine's cached
    features) stays as it was.
    """
    channels_last = like.ndim == 4 and not like.is_contiguous() and like.is_contiguous(
        memory_format=torch.channels_last)
    return x.contiguous(memory_format=torch.channels_last if channels_last
                        else torch.contiguous_format)


class PansharpeningNet(nn.Module):
    """Base class: uniform ``forward(ms, pan, lms)``, channel-mapper names, band inference.

    Class attributes (set by each architecture):
        arch: Registry name of the architecture, e.g. ``"fusionnet"``.
        channel_mappers: Names (for ``get_submodule``) of the final ``C``-channel convolution(s);
            their outputs make the fused image, followed at most by the ``lms`` add (MSDCNN:
            the sum of its two branches' mappers and a ReLU, see its docstring).
        band_key: State-dict key whose dim 0 is the number of MS bands ``C``.
        adds_lms: Whether ``forward`` adds ``lms`` to the network output (residual learning).
        uses: Which of ``ms``, ``pan``, ``lms`` the network reads.
        ratio: Fixed PAN/MS ratio built into the architecture (PanNet's transposed conv), or
            None when the network only sees PAN-grid inputs.

    Args:
        n_bands: Number of MS bands ``C``.
    """

    arch: ClassVar[str] = ""
    channel_mappers: ClassVar[tuple[str, ...]] = ("conv3",)
    band_key: ClassVar[str] = "conv3.weight"
    adds_lms: ClassVar[bool] = False
    uses: ClassVar[tuple[str, ...]] = ("pan", "lms")
    ratio: ClassVar[int | None] = None

    def __init__(self, n_bands: int) -> None:
        super().__init__()
        if isinstance(n_bands, bool) or not isinstance(n_bands, int) or n_bands < 1:
            raise InputError(f"{self.arch or type(self).__name__}: n_bands must be a positive "
                             f"integer, got {n_bands!r}")
        self.n_bands = n_bands
        #: The :class:`~pretrained.registry.WeightsRecord` of the loaded file, set by ``load``.
        self.weights_record: Any = None

    # ------------------------------------------------------------------ interface
    def forward(self, ms: Tensor, pan: Tensor, lms: Tensor) -> Tensor:  # pragma: no cover
        """Fuse; see the architecture's docstring for which inputs it reads."""
        raise NotImplementedError

    def check_inputs(self, ms: Tensor, pan: Tensor, lms: Tensor) -> None:
        """Shape checks shared by every ``forward``.

        Raises:
            InputError: ``pan`` is not ``(B, 1, H, W)``, ``lms`` not ``(B, C, H, W)`` with this
                model's ``C``, or ``ms`` not ``(B, C, h, w)`` (``H = ratio*h`` when the
                architecture has a built-in ratio).
        """
        name = self.arch or type(self).__name__
        if pan.ndim != 4 or pan.shape[1] != 1:
            raise InputError(f"{name}: pan must be (B, 1, H, W), got {tuple(pan.shape)}")
        b, _, big_h, big_w = pan.shape
        if tuple(lms.shape) != (b, self.n_bands, big_h, big_w):
            raise InputError(f"{name}: lms must be {(b, self.n_bands, big_h, big_w)} for a "
                             f"{self.n_bands}-band model, got {tuple(lms.shape)}")
        if ms.ndim != 4 or ms.shape[:2] != (b, self.n_bands):
            raise InputError(f"{name}: ms must be (B={b}, C={self.n_bands}, h, w), "
                             f"got {tuple(ms.shape)}")
        r = self.ratio
        if r is not None and (big_h, big_w) != (r * ms.shape[2], r * ms.shape[3]):
            raise InputError(f"{name}: PAN {big_h}x{big_w} must be {r} x MS "
                             f"{ms.shape[2]}x{ms.shape[3]} (built-in ratio {r})")

    def mapper_modules(self) -> dict[str, nn.Module]:
        """The channel-mapper submodules by name (see :attr:`channel_mappers`)."""
        return {n: self.get_submodule(n) for n in self.channel_mappers}

    # ------------------------------------------------------------------ checkpoints
    @classmethod
    def bands_in(cls, state_dict: Mapping[str, Tensor]) -> int | None:
        """Number of bands a checkpoint was trained with (dim 0 of :attr:`band_key`), if known."""
        t = state_dict.get(cls.band_key)
        if isinstance(t, Tensor) and t.ndim >= 1:
            return int(t.shape[0])
        return None

    @classmethod
    def map_state_dict(cls, state_dict: Mapping[str, Tensor], source: str = "checkpoint"
                       ) -> dict[str, Tensor]:
        """Checkpoint key mapping to this module's names (identity unless overridden).

        Raises:
            InputError: The checkpoint is internally inconsistent (see overrides).
        """
        return dict(state_dict)

    def extra_repr(self) -> str:
        return f"n_bands={self.n_bands}"


class ResBlock(nn.Module):
    """``x + conv21(relu(conv20(x)))``, two 3x3 convs with padding 1 (FusionNet, PanNet).

    Reference:
        DLPan-Toolbox ``models/FusionNet/model_fusionnet.py`` and ``models/PanNet/
        model_pannet.py``, class ``Resblock`` (32 channels, bias, zero padding 1).
    """

    def __init__(self, channels: int = 32) -> None:
        super().__init__()
        self.conv20 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv21 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv21(torch.relu(self.conv20(x)))


def drop_backbone_duplicates(state_dict: Mapping[str, Tensor], source: str = "checkpoint"
                             ) -> dict[str, Tensor]:
    """Map ``backbone.{k}.*`` onto ``res{k+1}.*`` (FusionNet/PanNet checkpoints).

    The original modules register their residual blocks twice, as attributes ``res1..res4``
    and inside ``self.backbone = nn.Sequential(res1, ..., res4)``, so their state_dicts list
    every block tensor under both names. Here a ``backbone.{k}.<rest>`` key is dropped when
    ``res{k+1}.<rest>`` is present and holds the same tensor, and renamed to it when absent
    (a checkpoint that kept only the ``backbone`` copy).

    Raises:
        InputError: The two copies differ (the checkpoint is not what the mapping assumes).
    """
    out: dict[str, Tensor] = {}
    aliases: dict[str, Tensor] = {}
    for key, value in state_dict.items():
        head, _, rest = key.partition(".")
        idx, _, tail = rest.partition(".")
        if head == "backbone" and idx.isdigit() and tail:
            aliases[f"res{int(idx) + 1}.{tail}"] = value
        else:
            out[key] = value
    for key, value in aliases.items():
        if key not in out:
            out[key] = value
        elif not (isinstance(out[key], Tensor) and isinstance(value, Tensor)
                  and out[key].shape == value.shape and torch.equal(out[key], value)):
            raise InputError(f"{source}: the duplicate 'backbone' copy of '{key}' differs from "
                             "it (expected the same tensor twice)")
    return out
