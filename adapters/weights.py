"""Weight adapters: ``none`` (direct transfer), ``mapper`` (last layer only), ``full``
(Z-PNN-style target adaptation of every weight) and ``swift`` (sensitive weights only).

Reference:
    SWIFT: "Sensitive Weight Identification for Fast Transfer" (cross-sensor pansharpening):
    probe the source model with a few sampled target patches, rank weights by the behaviour
    of their gradients under the unsupervised loss and update only the most sensitive subset.
    Our score is the accumulated squared gradient over the probe batches (a diagonal Fisher
    estimate of how strongly the loss reacts to each weight), ranked globally over all
    weight tensors; ``score="taylor"`` uses ``|w * g|`` instead. Z-PNN: M. Ciotola et al.,
    IEEE TGRS 60, 2022 (the whole network is fine-tuned on the target).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor

from adapters.base import Adapter
from tta.errors import InputError

__all__ = ["FullFineTune", "MapperOnly", "NoAdapter", "Swift"]


class NoAdapter(Adapter):
    """``none``: direct transfer (nothing trains)."""

    kind = "none"
    default_lr = 0.0


class MapperOnly(Adapter):
    """``mapper``: train the channel mapper's weights only (the extractor stays frozen)."""

    kind = "mapper"
    default_lr = 1e-3

    def unfreeze(self, decomposition: Any) -> list[str]:
        prefix = decomposition.mapper_name + "."
        return [n for n, _ in decomposition.model.named_parameters() if n.startswith(prefix)]


class FullFineTune(Adapter):
    """``full``: train every weight of the model (Z-PNN-style target adaptation)."""

    kind = "full"
    default_lr = 1e-4  # pretrained weights need small steps
    trains_extractor = True

    def unfreeze(self, decomposition: Any) -> list[str]:
        return [n for n, _ in decomposition.model.named_parameters()]


class Swift(Adapter):
    """``swift``: update only the top ``fraction`` of weights ranked by sensitivity.

    After :meth:`attach`, call :meth:`calibrate` with a loss closure (the engine does, on
    the sampled patches); until then no weight trains. Gradients of unselected entries are
    zeroed by tensor hooks, so an optimiser without weight decay leaves them exactly
    unchanged (the engine uses ``weight_decay=0`` for SWIFT).

    Args:
        fraction: Share of all weight entries to update, in (0, 1].
        score: ``"fisher"`` (sum of squared gradients) or ``"taylor"`` (``|w * sum g|``).
        include_bias: Whether biases compete for selection too.
    """

    kind = "swift"
    default_lr = 2e-4
    trains_extractor = True
    calibrates = True

    def __init__(self, fraction: float = 0.2, score: str = "fisher",
                 include_bias: bool = True) -> None:
        super().__init__()
        if not 0.0 < fraction <= 1.0:
            raise InputError(f"swift: fraction must lie in (0, 1], got {fraction}")
        if score not in ("fisher", "taylor"):
            raise InputError(f"swift: score must be 'fisher' or 'taylor', got {score!r}")
        self.fraction, self.score, self.include_bias = fraction, score, include_bias
        self.masks: dict[str, Tensor] = {}
        self._grad_hooks: list[Any] = []

    def unfreeze(self, decomposition: Any) -> list[str]:
        # Every candidate weight is remembered for detach; none trains before calibrate().
        return []

    def _candidates(self) -> dict[str, torch.nn.Parameter]:
        model = self.decomposition.model
        return {n: p for n, p in model.named_parameters()
                if p.is_floating_point() and (self.include_bias or p.ndim > 1)}

    def calibrate(self, loss_fn: Callable[[], Tensor], n_batches: int = 1) -> dict[str, Any]:
        """Rank weights with ``n_batches`` calls of ``loss_fn`` and set the update masks.

        Args:
            loss_fn: Runs the (attached) model on probe data and returns the scalar loss.
            n_batches: Number of calls whose gradients are accumulated.

        Returns:
            Summary: selected count, total, and per-tensor selected shares.
        """
        cands = self._candidates()
        for p in cands.values():
            p.requires_grad_(True)
            p.grad = None
        scores = {n: torch.zeros_like(p) for n, p in cands.items()}
        grads = {n: torch.zeros_like(p) for n, p in cands.items()}
        for _ in range(max(1, n_batches)):
            loss = loss_fn()
            gs = torch.autograd.grad(loss, list(cands.values()), allow_unused=True)
            for (n, _p), g in zip(cands.items(), gs, strict=True):
                if g is None:
                    continue
                if self.score == "fisher":
                    scores[n] += g.detach() ** 2
                else:
                    grads[n] += g.detach()
        if self.score == "taylor":
            scores = {n: (cands[n].detach() * grads[n]).abs() for n in cands}
        flat = torch.cat([s.flatten().float() for s in scores.values()])
        k = max(1, int(round(self.fraction * flat.numel())))
        threshold = torch.topk(flat, k, sorted=True).values[-1]
        masks: dict[str, Tensor] = {}
        taken = 0
        for n, s in scores.items():
            m = s.float() >= threshold
            # ties at the threshold could exceed k; trim deterministically in name order
            over = taken + int(m.sum()) - k
            if over > 0:
                idx = torch.nonzero((s.float() == threshold).flatten()).flatten()
                drop = idx[-over:] if over <= idx.numel() else idx
                m = m.flatten().clone()
                m[drop] = False
                m = m.view_as(s)
            taken += int(m.sum())
            if bool(m.any()):
                masks[n] = m
        self._set_masks(masks)
        total = int(flat.numel())
        return {"selected": taken, "total": total, "fraction": taken / max(total, 1),
                "per_tensor": {n: float(m.float().mean()) for n, m in masks.items()}}

    def _set_masks(self, masks: dict[str, Tensor]) -> None:
        for h in self._grad_hooks:
            h.remove()
        self._grad_hooks.clear()
        params = dict(self.decomposition.model.named_parameters())
        for p in params.values():
            p.requires_grad_(False)
            p.grad = None
        self.masks = masks
        for n, m in masks.items():
            p = params[n]
            if n not in self._originals:
                self._originals[n] = p.detach().clone()
            p.requires_grad_(True)
            mask = m.to(device=p.device, dtype=p.dtype)
            self._grad_hooks.append(p.register_hook(lambda g, mask=mask: g * mask))

    def num_trainable(self) -> int:
        return int(sum(int(m.sum()) for m in self.masks.values()))

    def _remove_grad_hooks(self) -> None:
        for h in self._grad_hooks:
            h.remove()
        self._grad_hooks.clear()

    def detach(self) -> Any:
        self._remove_grad_hooks()
        return super().detach()

    def merge(self) -> Any:
        self._remove_grad_hooks()
        return super().merge()

    def config(self) -> dict[str, Any]:
        return {"fraction": self.fraction, "score": self.score,
                "include_bias": self.include_bias}

    def adapter_state(self) -> dict[str, Tensor]:
        """Only the selected entries: ``mask.NAME`` (flat indices) and ``value.NAME``."""
        params = dict(self.decomposition.model.named_parameters())
        state: dict[str, Tensor] = {}
        for n, m in self.masks.items():
            idx = torch.nonzero(m.flatten()).flatten().cpu()
            state[f"index.{n}"] = idx
            state[f"value.{n}"] = params[n].detach().flatten()[idx.to(m.device)].cpu()
        return state

    def load_adapter_state(self, state: dict[str, Tensor]) -> None:
        params = dict(self.decomposition.model.named_parameters())
        masks: dict[str, Tensor] = {}
        for k, idx in state.items():
            if not k.startswith("index."):
                continue
            n = k[len("index."):]
            if n not in params or f"value.{n}" not in state:
                raise InputError(f"swift adapter state: parameter {n!r} does not fit this model")
            p = params[n]
            if idx.numel() and int(idx.max()) >= p.numel():
                raise InputError(f"swift adapter state: indices of {n!r} exceed its size")
            m = torch.zeros(p.numel(), dtype=torch.bool, device=p.device)
            m[idx.to(p.device)] = True
            masks[n] = m.view_as(p)
        self._set_masks(masks)
        with torch.no_grad():
            for n in masks:
                p = params[n]
                flat = p.view(-1)
                flat[state[f"index.{n}"].to(p.device)] = state[f"value.{n}"].to(p.device,
                                                                                p.dtype)


def frozen_unchanged(before: dict[str, Tensor], model: torch.nn.Module,
                     masks: dict[str, Tensor] | None = None,
                     names: Iterable[str] | None = None) -> bool:
    """Whether no frozen entry moved (test helper; masks give SWIFT's trainable entries)."""
    params = dict(model.named_parameters())
    allowed = set(names or ())
    for n, t in before.items():
        p = params[n].detach()
        if n in allowed:
            continue
        if masks and n in masks:
            if not torch.equal(p[~masks[n]], t[~masks[n]]):
                return False
        elif not torch.equal(p, t):
            return False
    return True
