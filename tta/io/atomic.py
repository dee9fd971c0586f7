"""Safe output: never overwrite an input, write to a temporary file and rename."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from tta.errors import OutputError

__all__ = ["atomic_output", "check_output_path"]


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def check_output_path(
    path: str | Path, inputs: Iterable[str | Path] = (), *, overwrite: bool = False
) -> Path:
    """Validate an output path before any work is done.

    Raises:
        OutputError: The path is one of the inputs, exists without ``overwrite``, or its
            folder does not exist.
    """
    out = Path(path)
    for src in inputs:
        src = Path(src)
        if out.resolve() == src.resolve() or _same_file(out, src):
            raise OutputError(f"{out}: output path is an input file; choose another name")
    if out.is_dir():
        raise OutputError(f"{out}: is a folder; give a file name")
    if out.exists() and not overwrite:
        raise OutputError(f"{out}: already exists; pass --overwrite to replace it")
    if not out.parent.exists():
        raise OutputError(f"{out}: folder {out.parent} does not exist")
    return out


@contextlib.contextmanager
def atomic_output(
    path: str | Path, inputs: Iterable[str | Path] = (), *, overwrite: bool = False
) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` on success.

    On any exception the temporary file is removed and ``path`` is left untouched.
    """
    out = check_output_path(path, inputs, overwrite=overwrite)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".part", dir=out.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the usual permissions
    try:
        yield tmp
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            tmp.unlink()
