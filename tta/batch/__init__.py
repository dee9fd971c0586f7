"""Many scenes, one adaptation + fusion each: ``tta batch`` and :func:`run_batch`.

Modules: :mod:`~tta.batch.runner` (plan, run, summarise), :mod:`~tta.batch.job` (one scene,
in a worker), :mod:`~tta.batch.naming` (output names), :mod:`~tta.batch.verify` (rerun skip),
:mod:`~tta.batch.summary` (CSV + JSON). Where the jobs run: :mod:`tta.executors`.
"""

from __future__ import annotations

from tta.batch.runner import BatchResult, run_batch
from tta.batch.summary import COLUMNS

__all__ = ["COLUMNS", "BatchResult", "run_batch"]
