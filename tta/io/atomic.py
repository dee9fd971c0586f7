"""Safe output: every output checked up front, written to a temporary file and renamed.

* :func:`plan_outputs` checks all outputs of a command before any work: each one is distinct
  from the others and from every input, its folder exists (or can be created) and is
  writable, and an existing file is replaced only with ``overwrite``. It also removes the
  temporary files that killed runs left in those folders.
* :func:`atomic_output` yields a temporary path next to the output and renames it onto the
  output on success; on any exception or signal the temporary file is removed and the output
  is left untouched.

Temporary files are named ``.NAME.tta-tmp-HOST-PID-XXXXXXXX.part`` (hidden, recognisable,
and ending in ``.part`` so no reader takes them for a product; ``HOST`` is a short hash of
the machine's name); one made on this machine by a process ``PID`` that no longer runs is
stale and removed by the next run writing into that folder (files of other machines sharing
the folder are left alone).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import socket
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from tta.errors import OutputError

__all__ = ["OutputPlan", "atomic_output", "check_output_path", "clean_stale_parts",
           "plan_outputs"]

_HOST = hashlib.sha1(socket.gethostname().encode()).hexdigest()[:8]
_TAG = ".tta-tmp-"
_STALE = re.compile(r"^\..+\.tta-tmp-([0-9a-f]{8})-(\d+)-[A-Za-z0-9_]+\.part$")


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def _same(a: Path, b: Path) -> bool:
    return a.resolve() == b.resolve() or _same_file(a, b)


def _temp_file(folder: Path, name: str) -> Path:
    fd, tmp = tempfile.mkstemp(prefix=f".{name}{_TAG}{_HOST}-{os.getpid()}-", suffix=".part",
                               dir=folder)
    os.close(fd)
    return Path(tmp)


def _check_writable(folder: Path, label: Path) -> None:
    """Create and remove a temporary file in ``folder`` (``os.access`` is wrong for root)."""
    from tta.interrupts import deferred_signals

    try:
        with deferred_signals():
            _temp_file(folder, "probe").unlink()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise OutputError(f"{label}: cannot write in folder {folder} ({reason})") from None


def _existing_ancestor(path: Path) -> Path:
    for parent in [path, *path.parents]:
        if parent.exists():
            return parent
    return Path(".")


def check_output_path(
    path: str | Path, inputs: Iterable[str | Path] = (), *, overwrite: bool = False
) -> Path:
    """Validate one output file path before any work is done.

    Raises:
        OutputError: The path is one of the inputs or a folder, exists without ``overwrite``,
            or its folder does not exist or is not writable.
    """
    out = Path(path)
    for src in inputs:
        if _same(out, Path(src)):
            raise OutputError(f"{out}: output path is an input file; choose another name")
    if out.is_dir():
        raise OutputError(f"{out}: is a folder; give a file name")
    if out.exists() and not overwrite:
        raise OutputError(f"{out}: already exists; pass --overwrite to replace it")
    parent = out.parent
    if not parent.exists():
        raise OutputError(f"{out}: folder {parent} does not exist")
    if not parent.is_dir():
        raise OutputError(f"{out}: {parent} is not a folder")
    _check_writable(parent, out)
    return out


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process, or no permission to ask: assume it runs
        return True
    return True


def clean_stale_parts(folder: str | Path) -> list[Path]:
    """Remove the temporary files of this machine's dead ``tta`` processes in ``folder``;
    return them."""
    removed = []
    with contextlib.suppress(OSError):
        for p in Path(folder).iterdir():
            m = _STALE.match(p.name)
            if not m or m.group(1) != _HOST:
                continue
            pid = int(m.group(2))
            if pid != os.getpid() and not _pid_alive(pid):
                with contextlib.suppress(OSError):
                    p.unlink()
                    removed.append(p)
    return removed


@dataclass(frozen=True)
class OutputPlan:
    """The checked outputs of one command.

    Attributes:
        files: Output files by label (e.g. ``{"-o": Path("out.h5")}``).
        folders: Output folders by label (created later by the writer).
        stale: Temporary files of killed runs that were removed from the output folders.
    """

    files: dict[str, Path] = field(default_factory=dict)
    folders: dict[str, Path] = field(default_factory=dict)
    stale: list[Path] = field(default_factory=list)


def _check_folder(label: str, folder: Path, inputs: list[Path]) -> None:
    for src in inputs:
        if _same(folder, src):
            raise OutputError(f"{folder}: {label} folder is an input file; choose another")
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"{folder}: {label} exists and is not a folder")
    base = _existing_ancestor(folder)
    if not base.is_dir():
        raise OutputError(f"{folder}: {base} is not a folder, so {label} cannot be created")
    _check_writable(base, folder)


def plan_outputs(
    files: Mapping[str, str | Path | None],
    inputs: Iterable[str | Path] = (),
    *,
    overwrite: bool = False,
    folders: Mapping[str, str | Path | None] | None = None,
) -> OutputPlan:
    """Check every output of a command before any work (see the module docstring).

    Args:
        files: Output files by the option that names them; None entries are skipped.
        inputs: Every file the command reads.
        overwrite: Whether existing output files may be replaced.
        folders: Output folders by option (need not exist yet; must be creatable).

    Raises:
        OutputError: Two outputs on one path, an output on an input, an existing file
            without ``overwrite``, a missing or unwritable folder. One line each.
    """
    srcs = [Path(p) for p in inputs]
    chosen = {k: Path(v) for k, v in files.items() if v is not None}
    dirs = {k: Path(v) for k, v in (folders or {}).items() if v is not None}
    labels = list(chosen)
    for i, a in enumerate(labels):
        for b in labels[i + 1:]:
            if _same(chosen[a], chosen[b]):
                raise OutputError(f"{chosen[a]}: given to both {a} and {b}; each output needs "
                                  "its own path")
    for path in chosen.values():
        check_output_path(path, srcs, overwrite=overwrite)
    for label, folder in dirs.items():
        _check_folder(label, folder, srcs)
    stale: list[Path] = []
    seen: set[Path] = set()
    for folder in [p.parent for p in chosen.values()] + list(dirs.values()):
        key = folder.resolve()
        if key not in seen and folder.is_dir():
            seen.add(key)
            stale += clean_stale_parts(folder)
    return OutputPlan(chosen, dirs, stale)


@contextlib.contextmanager
def atomic_output(
    path: str | Path, inputs: Iterable[str | Path] = (), *, overwrite: bool = False
) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` on success.

    On any exception (including :class:`~tta.interrupts.Interrupted`) the temporary file is
    removed and ``path`` is left untouched; a signal whose exception C code swallowed during
    the write stops the rename too.
    """
    from tta.interrupts import deferred_signals, raise_pending

    out = check_output_path(path, inputs, overwrite=overwrite)
    tmp: Path | None = None
    try:
        # A signal held back while the file is created is raised as this block ends: tmp is
        # set by then, so the finally below removes the file.
        with deferred_signals():
            tmp = _temp_file(out.parent, out.name)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the usual permissions
        yield tmp
        raise_pending()
        os.replace(tmp, out)
    finally:
        if tmp is not None and tmp.exists():
            tmp.unlink()
