"""Fose (Liu et al., 2025): a one-step diffusion student fused with an end-to-end network.

Two frozen-then-fused branches predict the residual ``HRMS - lms``:

* ``student``: :class:`~pretrained.diffusion.OneStepStudent` (the DDRF-style UNet distilled to
  one step), whose interface features ``f_s`` (``base`` channels) and residual
  ``r_s = student.unet.out_conv(f_s)`` are read;
* ``e2e``: any registered end-to-end network (default :mod:`~pretrained.lagconv`, or e.g.
  ``fusionnet``), whose channel mapper's input ``f_e`` (captured by a forward pre-hook that
  lives for one call) and residual ``r_e = e2e(ms, pan, lms) - lms`` are read.

The lightweight *adaptor* (ensemble block) fuses them:
``z = silu(fuse_in([f_s, f_e, r_s, r_e]))``, ``z = z + fuse2(silu(fuse1(z)))``, and the output is
``lms + (r_s + r_e) / 2 + head(z)``: the branches' average plus a learned correction. ``head``
(``width -> C``, 3x3) is the declared channel mapper; the tail is additive (the average does not
depend on ``head``). ``head`` starts at a tenth of the default initialisation, so a fresh
adaptor starts near the plain average of the branches.

Training (``tta train``, four stages plus an optional fifth): ``teacher`` (the diffusion
teacher), ``distill`` (teacher -> student), ``e2e`` (the end-to-end branch), ``fuse`` (the
adaptor only, both branches frozen and in eval mode) and ``joint`` (everything, small lr).
Written from the paper's description; the adaptor's exact layout is ours.

Reference:
    K. Liu, Z. Lin, W. Wang, L. Kong, Y. Zhang, "Fose: Fusion of one-step diffusion and
    end-to-end network for pansharpening", arXiv 2512.17202, 2025.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

import pretrained.lagconv  # noqa: F401  (registers the default e2e branch)
from pretrained._base import PansharpeningNet
from pretrained.diffusion import OneStepStudent
from pretrained.registry import create_model, register_model
from tta.errors import InputError

__all__ = ["Fose", "fose"]

#: Architectures that cannot be Fose's end-to-end branch.
_NOT_E2E = ("fose", "diffusion_teacher", "diffusion_student")


class Fose(PansharpeningNet):
    """One-step diffusion student + end-to-end net + adaptor (see the module docstring).

    Args:
        n_bands: Number of MS bands ``C``.
        e2e: Registered name of the end-to-end branch (``lagconv`` by default).
        base: Width of the student's UNet.
        timesteps: The student's schedule length ``T``.
        width: Width of the adaptor.
        e2e_kwargs: Options of the e2e factory.
        cond: The student UNet's condition inputs (:data:`pretrained.diffusion.CONDS`).

    Example:
        >>> net = Fose(4)
        >>> net(torch.rand(1, 4, 4, 4), torch.rand(1, 1, 16, 16), torch.rand(1, 4, 16, 16)).shape
        torch.Size([1, 4, 16, 16])
    """

    arch = "fose"
    channel_mappers = ("head",)
    band_key = "head.weight"
    adds_lms = True
    uses = ("pan", "lms")

    def __init__(self, n_bands: int = 8, e2e: str = "lagconv", base: int = 32,
                 timesteps: int = 1000, width: int = 32,
                 e2e_kwargs: dict | None = None, cond: str = "lms_pan") -> None:
        super().__init__(n_bands)
        if e2e in _NOT_E2E:
            raise InputError(f"fose: the e2e branch must be an end-to-end network, not {e2e!r}")
        self.e2e_arch = e2e
        self._hparams = {"e2e": e2e, "base": base, "timesteps": timesteps, "width": width,
                         "e2e_kwargs": dict(e2e_kwargs or {})}
        if cond != "lms_pan":  # recorded only when not the default (older records unchanged)
            self._hparams["cond"] = cond
        self.student = OneStepStudent(n_bands, base=base, timesteps=timesteps, cond=cond)
        self.e2e = create_model(e2e, n_bands=n_bands, **(e2e_kwargs or {}))
        if not self.e2e.channel_mappers:
            raise InputError(f"fose: e2e branch {e2e!r} declares no channel mapper")
        mapper = self.e2e.get_submodule(self.e2e.channel_mappers[0])
        e2e_channels = getattr(mapper, "in_channels", None)
        if not isinstance(e2e_channels, int):
            raise InputError(f"fose: e2e branch {e2e!r}: its mapper has no in_channels")
        self.uses = tuple(u for u in ("ms", "pan", "lms") if u in {"pan", "lms",
                                                                  *self.e2e.uses})
        self.fuse_in = nn.Conv2d(base + e2e_channels + 2 * n_bands, width, 3, padding=1)
        self.fuse1 = nn.Conv2d(width, width, 3, padding=1)
        self.fuse2 = nn.Conv2d(width, width, 3, padding=1)
        self.head = nn.Conv2d(width, n_bands, 3, padding=1)
        with torch.no_grad():
            self.head.weight.mul_(0.1)
            self.head.bias.zero_()

    # ------------------------------------------------------------------ parts
    def hparams(self) -> dict:
        """Constructor options (besides ``n_bands``) that rebuild this network."""
        hp = dict(self._hparams)
        own = getattr(self.e2e, "hparams", None)
        if callable(own):
            hp["e2e_kwargs"] = own()
        return hp

    def branches(self) -> dict[str, nn.Module]:
        """The two pretrained branches by name (frozen in the ``fuse`` stage)."""
        return {"student": self.student, "e2e": self.e2e}

    def adaptor_parameters(self) -> list[nn.Parameter]:
        """Parameters of the adaptor (``fuse_in``, ``fuse1``, ``fuse2``, ``head``)."""
        return [p for m in (self.fuse_in, self.fuse1, self.fuse2, self.head)
                for p in m.parameters()]

    def _e2e(self, ms: Tensor, pan: Tensor, lms: Tensor) -> tuple[Tensor, Tensor]:
        store: list[Tensor] = []
        mapper = self.e2e.get_submodule(self.e2e.channel_mappers[0])
        handle = mapper.register_forward_pre_hook(lambda _m, args: store.append(args[0]))
        try:
            out = self.e2e(ms, pan, lms)
        finally:
            handle.remove()
        return out, store[0]

    def forward(self, ms: Tensor, pan: Tensor, lms: Tensor) -> Tensor:
        """Fuse.

        Args:
            ms: ``(B, C, h, w)`` (read only if the e2e branch reads it).
            pan: ``(B, 1, H, W)`` PAN / max_value.
            lms: ``(B, C, H, W)`` upsampled MS / max_value.

        Returns:
            ``(B, C, H, W)`` fused image / max_value.
        """
        self.check_inputs(ms, pan, lms)
        f_s = self.student.features(pan, lms)
        r_s = self.student.unet.out_conv(f_s)
        out_e, f_e = self._e2e(ms, pan, lms)
        r_e = out_e - lms
        z = F.silu(self.fuse_in(torch.cat([f_s, f_e, r_s, r_e], dim=1)))
        z = z + self.fuse2(F.silu(self.fuse1(z)))
        return lms + 0.5 * (r_s + r_e) + self.head(z)

    def extra_repr(self) -> str:
        return f"n_bands={self.n_bands}, e2e={self.e2e_arch!r}"


@register_model
def fose(n_bands: int = 8, **kwargs) -> Fose:
    """Fose: one-step diffusion student + LAGConv net + adaptor (~0.75 M params)."""
    return Fose(n_bands, **kwargs)
