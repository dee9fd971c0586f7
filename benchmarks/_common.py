"""Helpers shared by the benchmark scripts: timing, device names, result folders."""

from __future__ import annotations

import datetime as dt
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

RESULTS = Path(__file__).parent / "results"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_time(fn: Callable[[], object], device: torch.device, repeats: int) -> float:
    """Median wall time of ``fn`` over ``repeats`` runs after one warm-up run."""
    fn()
    sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def device_name(device: torch.device) -> str:
    """GPU name, or CPU model and thread count (as in the ``tta bench`` reports)."""
    from tta.device import device_label

    return device_label(device)


def result_folder(device: torch.device, root: Path = RESULTS) -> Path:
    folder = root / f"{dt.date.today().isoformat()}-{device.type}"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def write_results(folder: Path, stem: str, meta: dict, markdown: list[str]) -> None:
    (folder / f"{stem}.json").write_text(json.dumps(meta, indent=2) + "\n")
    (folder / f"{stem}.md").write_text("\n".join(markdown) + "\n")
    print(f"wrote {folder / stem}.md")
