"""Modular decomposition: split a pansharpening network into feature extractor | channel mapper.

Test-time adapters act at the interface where a network's high-dimensional fused features start
mapping to the output's ``C`` bands (ERFT, Xin et al. 2025: "a general yet critical interface
where high-dimensional fused features begin mapping to the channel space of the final image").
:func:`decompose` finds it without editing the model: one probe forward pass with forward hooks
on every leaf module records what each module received and produced; a *channel mapper* is a
module called once whose output has the fused image's shape ``(B, C, H, W)`` and whose input has
more than ``C`` channels. Each candidate is then perturbed (a forward hook adds a small random
``delta`` to its output) to learn how the model's output depends on it:

* ``"add"``: the output moves by exactly ``delta``, i.e. ``y = mapper(f) + rest`` with ``rest``
  independent of the mapper (a plain last layer, or a residual ``+ lms``). Adapters that leave
  the extractor frozen can then train on cached interface features ``f`` and ``rest``.
* ``"nonlinear"``: the output moves, but not by ``delta`` (e.g. MSDCNN's
  ``relu(conv5(deep) + shallow3(shallow))``). Training runs the whole model.
* no effect: not a mapper of the output (discarded).

A model may declare its mapper (the zoo's ``channel_mappers`` class attribute, first entry);
the declaration is used and checked like an override. Otherwise, among several candidates:
those whose effect is ``"add"`` first (the output is an affine function of their output, the
cleanest interface), then the widest input (most feature channels), then the latest call.
The reason is recorded in :attr:`Decomposition.reason`. ``interface=NAME`` overrides the search.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from tta.errors import InputError

__all__ = ["Candidate", "Decomposition", "FeatureCache", "ForwardFn", "decompose",
           "default_forward", "probe_inputs"]

ForwardFn = Callable[[nn.Module, Tensor, Tensor, Tensor], Tensor]


def default_forward(model: nn.Module, ms: Tensor, pan: Tensor, lms: Tensor) -> Tensor:
    """Call convention of the zoo: ``model(ms, pan, lms)``."""
    return model(ms, pan, lms)


@dataclass
class Candidate:
    """One module whose output has the fused image's shape.

    Attributes:
        name: Qualified module name (``model.get_submodule(name)``).
        order: Position of its call in the probe forward pass (0 = first module called).
        in_shape: Shape of its (first tensor) input on the probe.
        out_shape: Shape of its output on the probe.
        effect: ``"add"``, ``"nonlinear"`` or ``"none"`` (see the module docstring).
        deviation: ``max |dy - delta| / max |delta|`` of the perturbation test.
    """

    name: str
    order: int
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    effect: str = "none"
    deviation: float = float("nan")

    @property
    def in_channels(self) -> int:
        return int(self.in_shape[1])


@dataclass(frozen=True)
class FeatureCache:
    """The frozen model's output on fixed inputs (:meth:`Decomposition.cache`).

    Attributes:
        features: Interface features (input of the mapper), or None when not split.
        rest: Output minus the mapper's output, or None when not split.
        reference: The model's output, detached.
    """

    features: Tensor | None
    rest: Tensor | None
    reference: Tensor

    @property
    def split(self) -> bool:
        return self.features is not None

    def select(self, idx: Tensor | None) -> FeatureCache:
        """The rows ``idx`` (all when None)."""
        if idx is None:
            return self
        return FeatureCache(None if self.features is None else self.features[idx],
                            None if self.rest is None else self.rest[idx], self.reference[idx])

    def channels_last(self) -> FeatureCache:
        """The same cache with 4-D features in ``torch.channels_last`` (the layout oneDNN and
        cuDNN convolve fastest; training steps then keep it)."""
        if self.features is None or self.features.ndim != 4:
            return self
        return FeatureCache(self.features.contiguous(memory_format=torch.channels_last),
                            self.rest, self.reference)

    def output(self, mapper: nn.Module) -> Tensor:
        """``mapper(features) + rest``: the output with a (tailored) mapper, from the cache."""
        return mapper(self.features) + self.rest


@dataclass
class Decomposition:
    """Where a network splits into extractor | mapper, found by :func:`decompose`.

    Attributes:
        model: The network (not modified).
        mapper_name: Qualified name of the channel mapper module.
        interface_shape: Shape of the mapper's input (the interface features) on the probe.
        output_shape: Shape of the model output on the probe.
        tail: ``"add"`` (output = mapper output + a term independent of it) or ``"nonlinear"``.
        candidates: Every module that had the output's shape, in call order.
        reason: Why this mapper was chosen (or ``"given"`` for an override).
        forward_fn: How the model is called (``forward_fn(model, ms, pan, lms)``).
    """

    model: nn.Module
    mapper_name: str
    interface_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    tail: str
    candidates: list[Candidate] = field(default_factory=list)
    reason: str = ""
    forward_fn: ForwardFn = default_forward

    @property
    def mapper(self) -> nn.Module:
        return self.model.get_submodule(self.mapper_name)

    @property
    def feature_channels(self) -> int:
        """Channels ``D`` of the interface features."""
        return int(self.interface_shape[1])

    @property
    def n_bands(self) -> int:
        return int(self.output_shape[1])

    @property
    def mapper_parameters(self) -> int:
        return sum(p.numel() for p in self.mapper.parameters())

    @property
    def extractor_parameters(self) -> int:
        """Parameters outside the mapper (the frozen feature extractor)."""
        total = sum(p.numel() for p in self.model.parameters())
        return total - self.mapper_parameters

    def forward(self, ms: Tensor, pan: Tensor, lms: Tensor) -> Tensor:
        return self.forward_fn(self.model, ms, pan, lms)

    @property
    def additive(self) -> bool:
        """Whether the output is ``mapper(features) + rest`` (training can then run on cached
        features)."""
        return self.tail == "add"

    @torch.no_grad()
    def cache(self, ms: Tensor, pan: Tensor, lms: Tensor, *, split: bool) -> FeatureCache:
        """Run the model once on fixed inputs and keep its output; with ``split`` (an
        additive tail, :attr:`additive`) also the interface features and ``rest``, so
        :meth:`FeatureCache.output` recomputes the output from the mapper alone.

        The decomposition hooks its own mapper for the one call and removes the hooks.
        """
        store: dict[str, Tensor] = {}
        handles = []
        if split:
            def grab_in(_m, args):
                store["f"] = args[0].detach()

            def grab_out(_m, _args, out):
                store["m"] = out.detach()

            handles = [self.mapper.register_forward_pre_hook(grab_in),
                       self.mapper.register_forward_hook(grab_out)]
        try:
            ref = self.forward(ms, pan, lms).detach()
        finally:
            for h in handles:
                h.remove()
        if not split:
            return FeatureCache(None, None, ref)
        return FeatureCache(store["f"], ref - store["m"], ref)

    def summary(self) -> dict[str, Any]:
        """Plain-data description (for ``tta inspect`` and reports)."""
        return {
            "model": type(self.model).__name__,
            "mapper": self.mapper_name,
            "mapper_module": repr(self.mapper),
            "interface_shape": list(self.interface_shape),
            "output_shape": list(self.output_shape),
            "tail": self.tail,
            "feature_channels": self.feature_channels,
            "extractor_parameters": self.extractor_parameters,
            "mapper_parameters": self.mapper_parameters,
            "reason": self.reason,
            "candidates": [
                {"name": c.name, "order": c.order, "in_shape": list(c.in_shape),
                 "out_shape": list(c.out_shape), "effect": c.effect,
                 "deviation": c.deviation}
                for c in self.candidates
            ],
        }


def probe_inputs(n_bands: int, ratio: int = 4, size: int = 64, *, seed: int = 0,
                 device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32
                 ) -> tuple[Tensor, Tensor, Tensor]:
    """Random ``(ms, pan, lms)`` in [0.2, 0.7] for probing.

    Shapes ``(1, C, s/r, s/r)``, ``(1, 1, s, s)``, ``(1, C, s, s)``; ``lms`` is the
    nearest-neighbour upsampled ``ms``.
    """
    g = torch.Generator().manual_seed(seed)
    h = size // ratio
    ms = torch.rand(1, n_bands, h, h, generator=g, dtype=torch.float64) * 0.5 + 0.2
    pan = torch.rand(1, 1, size, size, generator=g, dtype=torch.float64) * 0.5 + 0.2
    lms = torch.repeat_interleave(torch.repeat_interleave(ms, ratio, -2), ratio, -1)
    return tuple(t.to(device=device, dtype=dtype) for t in (ms, pan, lms))  # type: ignore[return-value]


def _first_tensor(args: Any) -> Tensor | None:
    if isinstance(args, Tensor):
        return args
    if isinstance(args, (tuple, list)):
        for a in args:
            t = _first_tensor(a)
            if t is not None:
                return t
    return None


def _record_calls(model: nn.Module, run: Callable[[], Tensor]
                  ) -> tuple[Tensor, list[tuple[str, tuple[int, ...], tuple[int, ...]]],
                             dict[str, int]]:
    """Run once with hooks on every leaf module; return output, calls and call counts."""
    calls: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = []
    counts: dict[str, int] = {}
    handles = []

    def make_hook(name: str):
        def hook(_module, args, output):
            counts[name] = counts.get(name, 0) + 1
            x, y = _first_tensor(args), _first_tensor(output)
            if x is not None and isinstance(output, Tensor) and y is not None:
                calls.append((name, tuple(x.shape), tuple(y.shape)))
        return hook

    for name, module in model.named_modules():
        if name and not any(True for _ in module.children()):
            handles.append(module.register_forward_hook(make_hook(name)))
    try:
        with torch.no_grad():
            out = run()
    finally:
        for h in handles:
            h.remove()
    return out, calls, counts


def _perturbation_effect(model: nn.Module, name: str, run: Callable[[], Tensor], base: Tensor,
                         seed: int) -> tuple[str, float]:
    """Add a random delta to module ``name``'s output; classify how the model output moves."""
    module = model.get_submodule(name)
    state: dict[str, Tensor] = {}

    def hook(_module, _args, output):
        g = torch.Generator().manual_seed(seed)
        delta = (torch.randn(output.shape, generator=g, dtype=torch.float64) * 1e-2).to(
            device=output.device, dtype=output.dtype)
        state["delta"] = delta
        return output + delta

    handle = module.register_forward_hook(hook)
    try:
        with torch.no_grad():
            moved = run()
    finally:
        handle.remove()
    delta = state["delta"]
    if not isinstance(moved, Tensor) or moved.shape != base.shape:
        return "none", float("nan")
    dy = (moved - base).double()
    scale = float(delta.abs().max())
    dev = float((dy - delta.double()).abs().max()) / scale
    if float(dy.abs().max()) <= 1e-6 * scale:
        return "none", dev
    tol = 1e-3 if base.dtype == torch.float32 else 1e-2
    return ("add" if dev <= tol else "nonlinear"), dev


def decompose(model: nn.Module, *, n_bands: int | None = None, ratio: int = 4,
              interface: str | None = None, forward_fn: ForwardFn = default_forward,
              probe: tuple[Tensor, Tensor, Tensor] | None = None, probe_size: int = 64
              ) -> Decomposition:
    """Find the feature-extractor | channel-mapper interface of ``model``.

    Args:
        model: Any pansharpening ``nn.Module`` (not modified; put in eval mode by the caller).
        n_bands: Number of MS bands; default ``model.n_bands`` when present, else 8.
        ratio: PAN/MS ratio of the probe input.
        interface: Qualified module name to use as the mapper (skips the search, still
            checked to produce the output's shape and to affect the output). Default: the
            model's declared ``channel_mappers[0]`` when it has one, else the search.
        forward_fn: How to call the model, ``forward_fn(model, ms, pan, lms) -> fused``.
        probe: Optional probe ``(ms, pan, lms)``; default :func:`probe_inputs` on the model's
            device and dtype.
        probe_size: PAN-grid side of the default probe.

    Returns:
        The :class:`Decomposition`.

    Raises:
        InputError: The model fails on the probe, does not return a ``(B, C, H, W)`` tensor,
            has no channel mapper (the message lists the modules and suggests
            ``--interface NAME``), or ``interface`` names no module / an unusable one.
    """
    label = type(model).__name__
    if n_bands is None:
        n_bands = int(getattr(model, "n_bands", 8))
    if probe is None:
        param = next(iter(model.parameters()), None)
        dev = param.device if param is not None else torch.device("cpu")
        dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
        probe = probe_inputs(n_bands, ratio, probe_size, device=dev, dtype=dtype)
    ms, pan, lms = probe

    def run() -> Tensor:
        return forward_fn(model, ms, pan, lms)

    try:
        base, calls, counts = _record_calls(model, run)
    except InputError:
        raise
    except Exception as exc:  # the model rejects the probe: say so in one line
        raise InputError(f"{label}: probe forward pass failed ({type(exc).__name__}: {exc}); "
                         "check the model's input convention (ms, pan, lms)") from None
    if not isinstance(base, Tensor) or base.ndim != 4:
        raise InputError(f"{label}: forward must return a (B, C, H, W) tensor, got "
                         f"{type(base).__name__} {getattr(base, 'shape', '')}")
    out_shape = tuple(base.shape)
    c = out_shape[1]
    order = {name: i for i, (name, _, _) in enumerate(calls)}
    seen: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {}
    for name, ishape, oshape in calls:
        seen.setdefault(name, (ishape, oshape))
    candidates = [
        Candidate(name, order[name], ishape, oshape)
        for name, (ishape, oshape) in seen.items()
        if oshape == out_shape and len(ishape) == 4 and ishape[1] > c and counts[name] == 1
    ]
    for k, cand in enumerate(candidates):
        cand.effect, cand.deviation = _perturbation_effect(model, cand.name, run, base, 1234 + k)

    declared = tuple(getattr(model, "channel_mappers", ()) or ())
    from_spec = interface is None and bool(declared)
    if from_spec:
        interface = declared[0]
    if interface is not None:
        names = dict(model.named_modules())
        if interface not in names or not interface:
            raise InputError(f"{label}: no module named {interface!r}; modules: "
                             f"{', '.join(n for n in names if n)}")
        if interface not in seen:
            raise InputError(f"{label}: module {interface!r} is not called by forward (or "
                             "not on a tensor)")
        if counts.get(interface, 0) != 1:
            raise InputError(f"{label}: module {interface!r} is called "
                             f"{counts.get(interface, 0)} times; the interface must be called once")
        ishape, oshape = seen[interface]
        if oshape != out_shape or len(ishape) != 4:
            raise InputError(f"{label}: module {interface!r} outputs {oshape}, not the fused "
                             f"image's shape {out_shape}; it is not a channel mapper")
        chosen = next((cd for cd in candidates if cd.name == interface), None)
        if chosen is None:
            chosen = Candidate(interface, order[interface], ishape, oshape)
            chosen.effect, chosen.deviation = _perturbation_effect(model, interface, run, base,
                                                                   999)
            candidates.append(chosen)
        if chosen.effect == "none":
            raise InputError(f"{label}: module {interface!r} does not affect the output")
        if from_spec:
            auto = [cd for cd in candidates if cd.effect != "none"]
            auto.sort(key=lambda cd: (cd.effect == "add", cd.in_channels, cd.order), reverse=True)
            agree = "the search agrees" if auto and auto[0].name == interface else (
                f"the search alone would pick {auto[0].name!r}" if auto else "")
            reason = f"declared by the model (channel_mappers[0]); {agree}"
        else:
            reason = "given"
    else:
        usable = [cd for cd in candidates if cd.effect != "none"]
        if not usable:
            listing = ", ".join(f"{n}{tuple(o)}" for n, (_, o) in seen.items()) or "none"
            raise InputError(
                f"{label}: no channel mapper found (no module called once maps more than {c} "
                f"feature channels to the output's shape {out_shape}); module outputs: "
                f"{listing}. Pass --interface NAME (interface= in Python) to name one")
        usable.sort(key=lambda cd: (cd.effect == "add", cd.in_channels, cd.order), reverse=True)
        chosen = usable[0]
        if len(usable) == 1:
            reason = (f"the only module mapping features to the output ({chosen.effect} "
                      "tail)")
        else:
            others = ", ".join(cd.name for cd in usable[1:])
            reason = (f"{len(usable)} candidates ({chosen.name}, {others}); chosen: "
                      + ("the output is affine in it ('add' tail), " if chosen.effect == "add"
                         else "no candidate has an additive tail; ")
                      + f"widest input ({chosen.in_channels} channels), latest call")
    ishape = seen[chosen.name][0]
    return Decomposition(model=model, mapper_name=chosen.name, interface_shape=ishape,
                         output_shape=out_shape, tail=chosen.effect, candidates=candidates,
                         reason=reason, forward_fn=forward_fn)
