"""Whether a scene's outputs from an earlier run are complete and current (rerun skip).

Complete and current means: the report exists and is JSON, its ``batch.input_sha256`` and
``batch.options_sha256`` equal this run's digests of the scene's files and options, and the
product opens with the shape the report gives for the scene and the expected sample type.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tta.errors import InputError

__all__ = ["verify_outputs"]


def verify_outputs(product: str, report: str, batch: dict[str, Any], dtype: str
                   ) -> tuple[dict[str, Any] | None, str | None]:
    """``(report, None)`` when the outputs verify, else ``(None, reason)``; ``reason`` is
    None when neither output exists (nothing to skip, nothing to replace)."""
    from tta.io.probe import product_header, read_json

    if not Path(product).exists() and not Path(report).exists():
        return None, None
    try:
        data = read_json(report)
    except InputError as exc:
        return None, f"report unusable ({exc})"
    done = data.get("batch") or {}
    for key in ("input_sha256", "options_sha256"):
        if done.get(key) != batch.get(key):
            what = "the scene's files" if key == "input_sha256" else "the options"
            return None, f"{what} changed since the report was written"
    try:
        shape, kind = product_header(product)
    except InputError as exc:
        return None, f"product unusable ({exc})"
    want = tuple((data.get("scene") or {}).get("shape") or ())
    if shape != want:
        return None, f"product has shape {shape}, the scene {want}"
    expect = "float32" if Path(product).suffix.lower() in (".h5", ".hdf5") else dtype
    if kind != expect:
        return None, f"product holds {kind}, expected {expect}"
    return data, None
