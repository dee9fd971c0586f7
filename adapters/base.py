"""The common adapter interface: attach at a decomposition, train, merge or detach, save/load.

An :class:`Adapter` never edits the model's code. It attaches by module name (the channel
mapper found by :func:`tta.decomposition.decompose`), with a forward *pre*-hook that passes the
interface features through :meth:`Adapter.tailor` (feature adapters) and/or by unfreezing
chosen model weights (weight adapters). Every adapter is the identity at start: the adapted
model's output equals the source model's until a training step moves it.

Life cycle::

    dec = decompose(model)
    adapter = create_adapter("ft").attach(dec)   # model output unchanged
    ...train adapter.trainable_parameters()...
    plain = adapter.merge()     # a plain nn.Module with the adaptation baked in, no hooks
    # or: source = adapter.detach()  # hooks removed, original weights restored
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from tta.errors import InputError

__all__ = ["Adapter", "TailoredMapper"]


class TailoredMapper(nn.Module):
    """``mapper(tailor(x))`` as one plain module: what :meth:`Adapter.merge` puts in place of
    the mapper for feature adapters (``base_layer`` is the original mapper, as in peft)."""

    def __init__(self, tailor: nn.Module, base_layer: nn.Module) -> None:
        super().__init__()
        self.tailor = tailor
        self.base_layer = base_layer

    def forward(self, x: Tensor, *args: Any, **kwargs: Any) -> Tensor:
        return self.base_layer(self.tailor(x), *args, **kwargs)


class Adapter(nn.Module):
    """Base class of the adapters (``ft``, ``cat``, ``swift``, ``full``, ``mapper``, ``none``).

    Subclasses set :attr:`kind`, may build modules in :meth:`build`, transform the interface
    features in :meth:`tailor`, and choose which model weights train in :meth:`unfreeze`.

    An adapter owns its behaviour, so the engine never asks which kind it runs: its default
    learning rate (:attr:`default_lr`), whether and how it calibrates (:attr:`calibrates`,
    :meth:`calibrate`) and its conditioning on the inputs (:meth:`set_condition`).

    Attributes:
        kind: Registry name (:data:`adapters.ADAPTERS`).
        default_lr: AdamW learning rate when the config gives none.
        trains_extractor: True when weights before the interface train (SWIFT, full): the
            engine cannot cache interface features and runs the whole model per step.
        conditional: True when :meth:`tailor` needs :meth:`set_condition` first (CAT).
        calibrates: True when :meth:`calibrate` must run on probe batches before training.
    """

    kind: ClassVar[str] = ""
    default_lr: ClassVar[float] = 1e-3
    trains_extractor: ClassVar[bool] = False
    conditional: ClassVar[bool] = False
    calibrates: ClassVar[bool] = False

    def __init__(self) -> None:
        super().__init__()
        self._dec: Any = None
        self._hooks: list[Any] = []
        self._frozen_flags: dict[str, bool] = {}
        self._originals: dict[str, Tensor] = {}

    # ------------------------------------------------------------------ attach / detach
    @property
    def decomposition(self) -> Any:
        if self._dec is None:
            raise InputError(f"{self.kind} adapter is not attached; call attach(decomposition)")
        return self._dec

    @property
    def attached(self) -> bool:
        return self._dec is not None

    def attach(self, decomposition: Any) -> Adapter:
        """Attach at ``decomposition`` (a :class:`tta.decomposition.Decomposition`); returns self.

        Freezes every model weight, then unfreezes what the adapter trains; the output stays
        equal to the source model's.
        """
        if self._dec is not None:
            raise InputError(f"{self.kind} adapter is already attached")
        model = decomposition.model
        self._dec = decomposition
        self._frozen_flags = {n: p.requires_grad for n, p in model.named_parameters()}
        for p in model.parameters():
            p.requires_grad_(False)
        ref = next(iter(decomposition.mapper.parameters()), None)
        self.build(decomposition)
        if ref is not None:
            self.to(device=ref.device, dtype=ref.dtype)
        names = self.unfreeze(decomposition)
        params = dict(model.named_parameters())
        self._originals = {n: params[n].detach().clone() for n in names}
        for n in names:
            params[n].requires_grad_(True)
        if self.has_tailor:
            self._hooks.append(decomposition.mapper.register_forward_pre_hook(self._pre_hook))
        return self

    def _pre_hook(self, _module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
        return (self.tailor(args[0]), *args[1:])

    def _remove_hooks(self) -> None:
        for h in self._hooks:
            h.remove()
        self._hooks.clear()

    def _restore_flags(self, model: nn.Module) -> None:
        for n, p in model.named_parameters():
            p.requires_grad_(self._frozen_flags.get(n, True))

    def detach(self) -> nn.Module:
        """Remove hooks, restore the original weights; return the source model unchanged."""
        dec = self.decomposition
        self._remove_hooks()
        params = dict(dec.model.named_parameters())
        with torch.no_grad():
            for n, t in self._originals.items():
                params[n].copy_(t)
        self._restore_flags(dec.model)
        self._dec = None
        return dec.model

    def merge(self) -> nn.Module:
        """Bake the adaptation into the model and return it as a plain module (no hooks).

        Feature adapters replace the mapper by a :class:`TailoredMapper`; weight adapters keep
        the trained weights. The adapter is detached afterwards.
        """
        dec = self.decomposition
        self._remove_hooks()
        if self.has_tailor:
            tailor = self.merged_tailor()
            dec.model.set_submodule(dec.mapper_name, TailoredMapper(tailor, dec.mapper))
        self._restore_flags(dec.model)
        self._dec = None
        return dec.model

    # ------------------------------------------------------------------ subclass API
    @property
    def has_tailor(self) -> bool:
        """Whether the adapter transforms the interface features."""
        return type(self).tailor is not Adapter.tailor

    def build(self, decomposition: Any) -> None:
        """Create the adapter's modules for this decomposition (feature channels etc.)."""

    def unfreeze(self, decomposition: Any) -> list[str]:
        """Names of model parameters to train (default none)."""
        return []

    def tailor(self, features: Tensor) -> Tensor:
        """Transform the interface features (identity by default)."""
        return features

    def merged_tailor(self) -> nn.Module:
        """A plain module doing :meth:`tailor` (used by :meth:`merge`)."""
        raise NotImplementedError

    def set_condition(self, ms: Tensor, pan: Tensor, lms: Tensor) -> None:
        """Give a conditional adapter the inputs of the coming forward pass (no-op here)."""

    def calibrate(self, loss_fn: Callable[[], Tensor], n_batches: int = 1
                  ) -> dict[str, Any] | None:
        """Prepare training from ``n_batches`` calls of the probe ``loss_fn`` (only when
        :attr:`calibrates`); returns a summary for the report (None here)."""
        return None

    def config(self) -> dict[str, Any]:
        """Constructor arguments (saved with the adapter state)."""
        return {}

    def trainable_parameters(self) -> list[nn.Parameter]:
        """The adapter's own parameters plus the model weights it unfroze."""
        own = [p for p in self.parameters() if p.requires_grad]
        if self._dec is None:
            return own
        return own + [p for p in self._dec.model.parameters() if p.requires_grad]

    def num_trainable(self) -> int:
        """Number of scalars that training may change (masked ones only for SWIFT)."""
        return sum(p.numel() for p in self.trainable_parameters())

    # ------------------------------------------------------------------ state
    def adapter_state(self) -> dict[str, Tensor]:
        """The tensors that make this adaptation (small; see :func:`adapters.save_adapter`)."""
        state = {f"adapter.{k}": v.detach().cpu() for k, v in self.state_dict().items()}
        params = dict(self.decomposition.model.named_parameters())
        for n in self._originals:
            state[f"model.{n}"] = params[n].detach().cpu()
        return state

    def load_adapter_state(self, state: dict[str, Tensor]) -> None:
        """Inverse of :meth:`adapter_state` (the adapter must be attached)."""
        own = {k[len("adapter."):]: v for k, v in state.items() if k.startswith("adapter.")}
        if own or len(self.state_dict()):
            missing, unexpected = self.load_state_dict(own, strict=False)
            if missing or unexpected:
                raise InputError(f"{self.kind} adapter state does not fit: missing {missing}, "
                                 f"unexpected {unexpected}")
        params = dict(self.decomposition.model.named_parameters())
        with torch.no_grad():
            for k, v in state.items():
                if not k.startswith("model."):
                    continue
                name = k[len("model."):]
                if name not in params or params[name].shape != v.shape:
                    raise InputError(f"{self.kind} adapter state: model parameter {name!r} "
                                     "does not fit this model")
                params[name].copy_(v)
