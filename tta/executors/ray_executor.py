"""The Ray executor: one Ray task per job, on a local Ray or an existing cluster.

Without ``address`` a private local Ray is started (``num_cpus = workers * threads``, no
dashboard, workers' logs not forwarded) and shut down on exit; with ``address``
(``HEAD:6379`` or ``auto``) the driver joins that cluster and leaves it running. A job asks
for one GPU where the cluster has GPUs (Ray then sets ``CUDA_VISIBLE_DEVICES`` for it, so
``device="auto"`` finds it), else for ``threads`` CPUs; torch uses ``threads`` threads inside
the task either way.

Reference: Ray Core tasks, ``ray.init``/``ray.wait``/``ray.shutdown`` (docs.ray.io, Ray 2.x).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from tta.errors import InputError

__all__ = ["RayExecutor"]

_OBJECT_STORE = 128 * 1024**2  # results are small dicts: keep Ray's shared memory small


def _run_job(fn: Callable[[Any], Any], item: Any, threads: int) -> Any:
    """Body of a Ray task: set torch's threads and keep freed memory for reuse
    (:mod:`tta.allocator`, as the ``tta`` command does), then run the job."""
    import torch

    from tta.allocator import retain_freed_memory

    retain_freed_memory(respect_env=True)
    torch.set_num_threads(threads)
    return fn(item)


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """Refuse a ``HOST:PORT`` nobody listens on (``ray.init`` would retry for minutes)."""
    import socket

    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        if address == "auto":
            return
        raise InputError(f"--address {address!r}: give HOST:PORT of the Ray head (e.g. "
                         "10.0.0.1:6379) or auto")
    host = host.removeprefix("ray://").strip("[]")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise InputError(f"cannot reach the Ray head at {address} ({reason}); is `ray start "
                         "--head` running there?") from None


class RayExecutor:
    """Runs each job as a Ray task (see the module docstring).

    Args:
        address: Ray cluster to join (``HOST:PORT`` or ``auto``); None starts a local Ray.
        workers: Jobs at once on the local Ray (default: CPU cores // threads).
        threads: CPU threads (and Ray CPUs) per job.
        gpus: GPUs per job; None = 1 when the cluster has GPUs, else 0.
    """

    name = "ray"

    def __init__(self, address: str | None = None, workers: int | None = None,
                 threads: int = 1, gpus: float | None = None) -> None:
        try:
            import ray  # noqa: F401
        except ImportError:
            raise InputError("the ray executor needs Ray: pip install 'tta-pansharpening[ray]'"
                             " (or use --executor local)") from None
        self.address = address
        self.threads = int(threads)
        self.workers = workers or max(1, (os.cpu_count() or 1) // self.threads)
        self.gpus = gpus
        self._started = False
        self._gpus_per_job = 0.0

    def __enter__(self) -> RayExecutor:
        import ray

        quiet = {"log_to_driver": False, "logging_level": logging.ERROR,
                 "configure_logging": True}
        if not ray.is_initialized():
            try:
                if self.address:
                    _check_reachable(self.address)
                    ray.init(address=self.address, **quiet)
                else:
                    # "local": a new private instance even where `ray start` left a
                    # cluster (running or stale) on this machine
                    ray.init(address="local", num_cpus=self.workers * self.threads,
                             include_dashboard=False,
                             object_store_memory=_OBJECT_STORE, **quiet)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                where = self.address or "a local Ray"
                msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                hint = ""
                if self.address and not os.environ.get("RAY_AUTH_MODE"):
                    hint = (" (a cluster started with token authentication, the default of "
                            "`ray start` since Ray 2.59, needs RAY_AUTH_MODE=token and its "
                            "token here: see `ray get-auth-token`)")
                raise InputError(f"cannot start or reach {where}: {type(exc).__name__}"
                                 f"{': ' + msg if msg else ''}{hint}") from None
            self._started = True
        has_gpu = float(ray.cluster_resources().get("GPU", 0)) > 0
        self._gpus_per_job = float(self.gpus) if self.gpus is not None else (
            1.0 if has_gpu else 0.0)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._started:
            import ray

            ray.shutdown()
            self._started = False

    def map_unordered(self, fn: Callable[[Any], Any], items: Sequence[Any], *,
                      on_error: Callable[[Any, BaseException], Any] | None = None
                      ) -> Iterator[tuple[int, Any]]:
        import ray

        task = ray.remote(_run_job).options(num_cpus=self.threads,
                                            num_gpus=self._gpus_per_job, max_retries=0)
        pending = {task.remote(fn, item, self.threads): i for i, item in enumerate(items)}
        try:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                for ref in done:
                    i = pending.pop(ref)
                    try:
                        result = ray.get(ref)
                    except Exception as exc:
                        if on_error is None:
                            raise
                        cause = getattr(exc, "cause", None)
                        result = on_error(items[i], cause if isinstance(cause, BaseException)
                                          else exc)
                    yield i, result
        finally:
            for ref in pending:  # interrupted: do not leave tasks running on a cluster
                ray.cancel(ref, force=True)

    def describe(self) -> dict[str, Any]:
        return {"executor": self.name, "address": self.address or "local",
                "threads_per_job": self.threads, "gpus_per_job": self._gpus_per_job,
                "workers": None if self.address else self.workers}
