"""Test-time adapters attached at a network's feature | channel-mapper interface.

=========  =================================================================  ==============
kind       what trains                                                        new modules
=========  =================================================================  ==============
``ft``     Feature Tailor: residual conv block on the interface features      yes (small)
``cat``    Conditional Adaptation Tailor: the same, modulated by [lms, pan]   yes (small)
``swift``  the top fraction of model weights ranked by gradient sensitivity  no (masks)
``full``   every weight (Z-PNN-style)                                         no
``mapper`` the channel mapper only                                            no
``none``   nothing (direct transfer)                                          no
=========  =================================================================  ==============

A new adapter is a subclass of :class:`Adapter` registered with :func:`register_adapter`;
the CLI's ``--adapter`` choices and the config validation read :data:`ADAPTERS`.

Example::

    from tta.decomposition import decompose
    from adapters import create_adapter, save_adapter, load_adapter
    adapter = create_adapter("ft").attach(decompose(model))
    ...  # train adapter.trainable_parameters()
    save_adapter(adapter, "wv2.adapter.pt")
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from adapters.base import Adapter, TailoredMapper
from adapters.tailor import ConditionalAdaptationTailor, FeatureTailor
from adapters.weights import FullFineTune, MapperOnly, NoAdapter, Swift
from tta.errors import InputError
from tta.registry import Registry

__all__ = [
    "ADAPTERS",
    "Adapter",
    "ConditionalAdaptationTailor",
    "FeatureTailor",
    "FullFineTune",
    "MapperOnly",
    "NoAdapter",
    "Swift",
    "TailoredMapper",
    "create_adapter",
    "load_adapter",
    "read_adapter_payload",
    "register_adapter",
    "save_adapter",
]

#: Every adapter class by :attr:`Adapter.kind`, in registration order.
ADAPTERS: Registry[type[Adapter]] = Registry("adapter")


def register_adapter(cls: type[Adapter]) -> type[Adapter]:
    """Register an :class:`Adapter` subclass under its ``kind`` (usable as a decorator)."""
    if not (isinstance(cls, type) and issubclass(cls, Adapter)):
        raise TypeError(f"register_adapter takes an Adapter subclass, got {cls!r}")
    return ADAPTERS.register(cls.kind, cls)


for _cls in (FeatureTailor, ConditionalAdaptationTailor, Swift, FullFineTune, MapperOnly,
             NoAdapter):
    register_adapter(_cls)

FORMAT = "tta-adapter/1"


def create_adapter(kind: str, **kwargs: Any) -> Adapter:
    """Build an (unattached) adapter by kind; unknown kinds list the valid ones."""
    cls = ADAPTERS.get(kind)
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise InputError(f"adapter {kind!r}: bad options {kwargs} ({exc})") from None


def save_adapter(adapter: Adapter, path: str | Path, *, overwrite: bool = False,
                 meta: dict[str, Any] | None = None) -> Path:
    """Write the adapter's small state file atomically (torch format).

    Holds the kind, its config, the mapper name, the model class and band count, and only
    the tensors of the adaptation (tailor weights, or SWIFT's selected entries).
    """
    from tta.io.atomic import atomic_output

    dec = adapter.decomposition
    payload = {
        "format": FORMAT,
        "kind": adapter.kind,
        "config": adapter.config(),
        "mapper": dec.mapper_name,
        "model": type(dec.model).__name__,
        "n_bands": dec.n_bands,
        "state": adapter.adapter_state(),
        "meta": dict(meta or {}),
    }
    with atomic_output(path, overwrite=overwrite) as tmp:
        torch.save(payload, tmp)
    return Path(path)


def read_adapter_payload(path: str | Path) -> dict[str, Any]:
    """The payload of a file written by :func:`save_adapter` (tensors only, no code run).

    Raises:
        InputError: Missing or unreadable file, or another format.
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: adapter file not found")
    try:
        payload = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise InputError(f"{p}: not an adapter file ({type(exc).__name__})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise InputError(f"{p}: not a {FORMAT} adapter file")
    return payload


def load_adapter(path: str | Path, decomposition: Any) -> Adapter:
    """Read a file written by :func:`save_adapter` and attach it at ``decomposition``.

    Raises:
        InputError: Missing/unreadable file, another format, or a state for another model.
    """
    p = Path(path)
    payload = read_adapter_payload(p)
    if payload["n_bands"] != decomposition.n_bands:
        raise InputError(f"{p}: adapter is for {payload['n_bands']}-band models, this model "
                         f"has {decomposition.n_bands}")
    if payload["mapper"] != decomposition.mapper_name:
        raise InputError(f"{p}: adapter was attached at {payload['mapper']!r}, this "
                         f"decomposition's interface is {decomposition.mapper_name!r}")
    adapter = create_adapter(payload["kind"], **payload["config"]).attach(decomposition)
    adapter.load_adapter_state(payload["state"])
    return adapter
