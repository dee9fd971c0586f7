"""``tta bench``: cross-sensor benchmarks of source models × adapters × samplers × targets.

A YAML matrix (:mod:`tta.bench.matrix`) names the source networks, the adaptation methods,
samplers, seeds and target scenes; :func:`run_bench` adapts, fuses and scores every cell under
the reduced- and full-resolution protocols (:mod:`tta.bench.runner`); :func:`write_report`
writes the CSV, Markdown tables and PNG figures (:mod:`tta.bench.report`,
:mod:`tta.bench.figures`). Built-in matrices: ``quick`` (a CI smoke test, minutes on CPU) and
``cross_sensor`` (the committed report)::

    from tta.bench import load_matrix, run_bench, write_report
    matrix = load_matrix("quick", data_root="../shared/data", weights_root="../shared/weights")
    result = run_bench(matrix, device="cpu", log=print)
    write_report(result, "bench-out")
"""

from tta.bench.matrix import (
    BUILTIN_METHODS,
    BenchMatrix,
    Method,
    Source,
    SpeedSpec,
    Target,
    builtin_matrix,
    load_matrix,
    parse_matrix,
)
from tta.bench.report import aggregate, summary_rows, write_report
from tta.bench.runner import BenchResult, centre_crop, prepare_target, run_bench

__all__ = [
    "BUILTIN_METHODS",
    "BenchMatrix",
    "BenchResult",
    "Method",
    "Source",
    "SpeedSpec",
    "Target",
    "aggregate",
    "builtin_matrix",
    "centre_crop",
    "load_matrix",
    "parse_matrix",
    "prepare_target",
    "run_bench",
    "summary_rows",
    "write_report",
]
