"""Training checkpoints: everything an interrupted ``tta train`` run needs to continue exactly.

A checkpoint (``OUT/<name>.ckpt``, :func:`torch.save` of a dict of tensors, numbers and
strings, written atomically by :func:`tta.io.atomic_output`) holds the model, optimiser and
scheduler states, the step reached, the three random states (torch's global one, the patch
sampler's generator = the data order, the stage's noise generator), the running loss of the
current epoch, the log rows so far and the run's config. Resuming from it gives the same final
weights as an uninterrupted run on the same device (tests/test_training_resume.py).

Reference: PyTorch's "Saving and loading a general checkpoint" recipe (state_dicts of the model,
optimiser and scheduler in one dict), plus the RNG states it leaves out.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from tta.errors import InputError

__all__ = ["CHECKPOINT_FORMAT", "checkpoint_path", "read_checkpoint", "write_checkpoint"]

CHECKPOINT_FORMAT = "tta-train-checkpoint/1"


def checkpoint_path(out_dir: str | Path, name: str) -> Path:
    """Where the run ``name`` keeps its checkpoint: ``OUT/<name>.ckpt``."""
    return Path(out_dir) / f"{name}.ckpt"


def write_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Write ``state`` (plus the format tag) atomically, replacing the previous checkpoint."""
    import io

    from tta.io import atomic_output

    buf = io.BytesIO()
    torch.save({"format": CHECKPOINT_FORMAT, **state}, buf)
    with atomic_output(path, overwrite=True) as tmp:
        tmp.write_bytes(buf.getvalue())


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """A checkpoint written by :func:`write_checkpoint` (tensors on the CPU).

    Raises:
        InputError: Unreadable file or not a training checkpoint.
    """
    p = Path(path)
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001  (torch raises several unrelated types)
        first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else ""
        raise InputError(f"{p}: not a readable training checkpoint ({first})") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise InputError(f"{p}: not a tta training checkpoint ({CHECKPOINT_FORMAT})")
    return state
