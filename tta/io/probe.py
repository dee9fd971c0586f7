"""Cheap looks at files already written: a product's header, a JSON report, file digests.

Used to decide whether a batch's outputs are complete (:mod:`tta.batch.verify`) without
reading any pixels.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tta.errors import InputError

__all__ = ["product_header", "read_json", "sha256_files"]

_CHUNK = 1 << 20


def sha256_files(paths: Iterable[str | Path]) -> str:
    """SHA-256 over the bytes of ``paths`` in order (each file's name length-prefixed so
    that moving bytes between files changes the digest).

    Raises:
        InputError: A file is missing or unreadable.
    """
    digest = hashlib.sha256()
    for p in map(Path, paths):
        try:
            with p.open("rb") as f:
                digest.update(len(p.name).to_bytes(4, "little") + p.name.encode())
                while block := f.read(_CHUNK):
                    digest.update(block)
        except FileNotFoundError:
            raise InputError(f"{p}: file not found") from None
        except OSError as exc:
            raise InputError(f"{p}: cannot read ({exc.strerror or type(exc).__name__})") from None
    return digest.hexdigest()


def read_json(path: str | Path) -> dict[str, Any]:
    """A JSON object from ``path``.

    Raises:
        InputError: Missing, unreadable, not JSON, or not an object.
    """
    p = Path(path)
    try:
        data = json.loads(p.read_text())
    except FileNotFoundError:
        raise InputError(f"{p}: file not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{p}: not a readable JSON file ({type(exc).__name__})") from None
    if not isinstance(data, dict):
        raise InputError(f"{p}: not a JSON object")
    return data


def product_header(path: str | Path) -> tuple[tuple[int, ...], str]:
    """``(shape (C, H, W), dtype)`` of a fused product, read from its header only.

    An ``.h5`` product is tta's (dataset ``fused``, one sample); a ``.tif`` one is read with
    GDAL's GTiff driver.

    Raises:
        InputError: Missing or unreadable file, no ``fused`` dataset, several samples.
    """
    p = Path(path)
    if p.suffix.lower() in (".tif", ".tiff"):
        from tta.io.geotiff import _open

        with contextlib.ExitStack() as stack:
            ds = _open(stack, p)
            return (int(ds.count), int(ds.height), int(ds.width)), str(ds.dtypes[0])
    from tta.io.h5 import _open
    from tta.io.safety import check_h5_dataset

    with _open(p) as f:
        if "fused" not in f:
            raise InputError(f"{p}: no 'fused' dataset")
        ds = check_h5_dataset(f, p, "fused")
        shape = tuple(int(n) for n in ds.shape)
        if len(shape) == 4 and shape[0] == 1:
            shape = shape[1:]
        if len(shape) != 3:
            raise InputError(f"{p}: 'fused' has shape {shape}, not one (C, H, W) product")
        return shape, str(ds.dtype)
