"""Shared fixtures: real scenes from ../shared/data (skipped when absent), devices."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    """The real-data folder: $TTA_SHARED_DATA, else ../shared/data beside the repository."""
    env = os.environ.get("TTA_SHARED_DATA")
    return Path(env) if env else REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    d = shared_data_dir()
    if not (d / "README.md").is_file():
        pytest.skip(f"real data folder {d} is absent (set TTA_SHARED_DATA to its location)")
    return d


@pytest.fixture(scope="session")
def real_file(data_dir):
    """Return a function giving the path of one shared data file, skipping if it is missing."""

    def get(rel: str) -> Path:
        p = data_dir / rel
        if not p.exists():
            pytest.skip(f"real data file {p} is absent")
        return p

    return get


def pytest_addoption(parser):
    parser.addoption("--device", default="cpu", help="torch device for operator tests")


@pytest.fixture(scope="session")
def device(request) -> torch.device:
    dev = torch.device(request.config.getoption("--device"))
    if dev.type == "cuda" and not torch.cuda.is_available():
        pytest.skip("CUDA requested but not available")
    return dev


@pytest.fixture(scope="session")
def dlpan_dir(data_dir) -> Path:
    """The DLPan-Toolbox checkpoints (``dlpan/<sensor>/<arch>.pth``) beside the data folder."""
    d = data_dir.parent / "weights" / "dlpan"
    if not d.is_dir():
        pytest.skip(f"community weights folder {d} is absent")
    return d
