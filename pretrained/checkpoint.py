"""The one checkpoint reader and sha256 helper of the zoo.

:func:`read_checkpoint` reads a weights file once: its bytes give the sha256 (how
:func:`pretrained.find_weights_record` recognises a known file) and the tensors, by suffix a
safetensors file (with its string metadata) or a PyTorch file (plain state_dict, or wrapped in
``{"state_dict" | "model" | "model_state_dict": ...}``, with or without DataParallel's
``module.`` prefix; no metadata).

Reference: safetensors' file layout (8-byte little-endian header length, JSON header whose
``__metadata__`` holds the strings); ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from tta.errors import InputError

__all__ = ["CHECKPOINT_SUFFIXES", "Checkpoint", "read_checkpoint", "sha256_file"]

#: Suffixes that make a ``--model`` text a checkpoint file rather than an architecture name.
CHECKPOINT_SUFFIXES = (".pth", ".pt", ".ckpt", ".safetensors")
_WRAPPERS = ("state_dict", "model", "model_state_dict")


@dataclass(frozen=True)
class Checkpoint:
    """A weights file as read: tensors, metadata (safetensors only) and digest."""

    path: Path
    state_dict: dict[str, Tensor]
    sha256: str
    metadata: dict[str, str] = field(default_factory=dict)


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:160] if text else ""


def _safetensors(data: bytes, path: Path) -> tuple[dict[str, Tensor], dict[str, str]]:
    from safetensors import SafetensorError
    from safetensors.torch import load

    try:
        sd = load(data)
        size = int.from_bytes(data[:8], "little")
        meta = json.loads(data[8:8 + size]).get("__metadata__") or {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise InputError(f"{path}: not a readable safetensors file ({_first_line(exc)})"
                         ) from None
    return sd, {str(k): str(v) for k, v in meta.items()}


def _torch(data: bytes, path: Path) -> dict[str, Tensor]:
    try:
        obj = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is a bad user file
        first = _first_line(exc)
        raise InputError(f"{path}: not a readable PyTorch checkpoint "
                         f"({type(exc).__name__}{': ' + first if first else ''})") from exc
    for wrapper in _WRAPPERS:  # training checkpoints wrap the weights
        if isinstance(obj, Mapping) and isinstance(obj.get(wrapper), Mapping):
            obj = obj[wrapper]
            break
    if not isinstance(obj, Mapping) or not obj or not all(
            isinstance(k, str) and isinstance(v, Tensor) for k, v in obj.items()):
        raise InputError(f"{path}: not a state_dict (expected a mapping of names to tensors, "
                         f"got {type(obj).__name__})")
    sd = dict(obj)
    if all(k.startswith("module.") for k in sd):  # DataParallel / DistributedDataParallel
        sd = {k[len("module."):]: v for k, v in sd.items()}
    return sd


def read_checkpoint(path: str | Path) -> Checkpoint:
    """Read a weights file once (see the module docstring).

    Raises:
        InputError: Missing file, a folder, or not a readable safetensors / PyTorch
            state_dict.
    """
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: checkpoint file not found")
    if not p.is_file():
        raise InputError(f"{p}: checkpoint is not a file")
    data = p.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if p.suffix.lower() == ".safetensors":
        sd, meta = _safetensors(data, p)
        return Checkpoint(p, sd, digest, meta)
    return Checkpoint(p, _torch(data, p), digest)
