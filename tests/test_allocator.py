"""tta.allocator: glibc keeps freed blocks for reuse; the command line sets it unless told not to.

The settings change the allocator of the process that makes them, so each check runs in a
fresh interpreter and asks where a 64 MiB block (above glibc's largest adaptive mmap
threshold, 32 MiB) was placed: inside the ``[heap]`` of ``/proc/self/maps`` when freed memory
is retained, in a mapping of its own otherwise.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tta.allocator import ENV_VAR, _glibc, retain_freed_memory

needs_glibc = pytest.mark.skipif(_glibc() is None, reason="glibc only (mallopt)")


def _run(code: str, env: dict[str, str] | None = None) -> str:
    """stdout of ``code`` in a fresh interpreter with ``env`` added to the environment."""
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, check=True,
                          timeout=120).stdout.strip()


_MAPS = """
import ctypes
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
{setup}
p = libc.malloc(64 << 20)
heap = [l for l in open('/proc/self/maps') if '[heap]' in l]
lo, hi = (int(x, 16) for x in heap[0].split()[0].split('-'))
print(lo <= p < hi)
"""


@needs_glibc
@pytest.mark.parametrize("setup, in_heap", [
    ("", "False"),
    ("from tta.allocator import retain_freed_memory\nassert retain_freed_memory()", "True"),
    ("from tta.allocator import retain_freed_memory\nassert retain_freed_memory(32 << 20)",
     "False"),
])
def test_threshold_decides_heap_or_mapping(setup, in_heap):
    assert _run(_MAPS.format(setup=setup)) == in_heap


@needs_glibc
@pytest.mark.parametrize("value, changed", [("0", False), ("no", False), ("1", True),
                                            ("", True)])
def test_environment_turns_it_off_for_the_command(value, changed):
    code = ("from tta.allocator import retain_freed_memory\n"
            "print(retain_freed_memory(respect_env=True), retain_freed_memory())")
    assert _run(code, {ENV_VAR: value}) == f"{changed} True"


@needs_glibc
@pytest.mark.parametrize("value, in_heap", [("1", "True"), ("0", "False")])
def test_cli_sets_it_at_start(value, in_heap):
    code = ("from tta.cli import cli\n"
            "try:\n    cli.main(['sensors'], standalone_mode=False)\n"
            "except SystemExit:\n    pass\n" + _MAPS.format(setup=""))
    assert _run(code, {ENV_VAR: value}).splitlines()[-1] == in_heap


@pytest.mark.parametrize("limit", [0, -1, 2**31])
def test_bad_limit(limit):
    with pytest.raises(ValueError, match="limit"):
        retain_freed_memory(limit)
