"""The in-process executor: jobs run one after another in the calling process."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

__all__ = ["LocalExecutor"]


class LocalExecutor:
    """Runs each job in this process, in order, with ``threads`` torch threads.

    Args:
        threads: Torch CPU threads per job (restored afterwards).
        **_: Options of other executors (``address``, ``workers``, ``gpus``) are ignored, so
            one command line works with either.
    """

    name = "local"

    def __init__(self, threads: int = 1, **_: Any) -> None:
        self.threads = int(threads)

    def __enter__(self) -> LocalExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def map_unordered(self, fn: Callable[[Any], Any], items: Sequence[Any], *,
                      on_error: Callable[[Any, BaseException], Any] | None = None
                      ) -> Iterator[tuple[int, Any]]:
        import torch

        before = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        try:
            for i, item in enumerate(items):
                try:
                    result = fn(item)
                except Exception as exc:
                    if on_error is None:
                        raise
                    result = on_error(item, exc)
                yield i, result
        finally:
            torch.set_num_threads(before)

    def describe(self) -> dict[str, Any]:
        return {"executor": self.name, "threads_per_job": self.threads, "gpus_per_job": 0}
