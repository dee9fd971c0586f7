"""The batch summary: one row per scene, written as CSV and JSON (atomically).

Columns (:data:`COLUMNS`): ``name``, ``scene``, ``status`` (``done``, ``skipped``: outputs of
an earlier run verified, ``failed``), ``error`` (one line), ``product``, ``report``,
``sensor``, ``model``, ``adapter``, ``device``, ``wall_s`` (this run's time for the scene;
0 when skipped), ``load_s``, ``adapt_s``, ``infer_s`` (from the report, also for skipped
scenes), ``decision`` and ``decision_reason`` (``report["decision"]``), ``radiometry_gain``
and ``radiometry_applied`` (``report["radiometry"]``), and the no-reference indexes of the
product ``HQNR``, ``D_lambda``, ``D_s``, ``QNR``, ``D_rho``, with ``direct_HQNR`` of the
direct network when the run compared.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

__all__ = ["COLUMNS", "summary_row", "write_summary"]

COLUMNS = ["name", "scene", "status", "error", "product", "report", "sensor", "model",
           "adapter", "device", "wall_s", "load_s", "adapt_s", "infer_s", "decision",
           "decision_reason", "radiometry_gain", "radiometry_applied", "HQNR", "D_lambda",
           "D_s", "QNR", "D_rho", "direct_HQNR"]


def summary_row(result: dict[str, Any], report_path: str | None = None) -> dict[str, Any]:
    """A summary row from a job result (``report`` holding the report dict, or None)."""
    report = result.get("report") or {}
    row: dict[str, Any] = dict.fromkeys(COLUMNS)
    row.update(name=result["name"], scene=result["scene"], status=result["status"],
               error=result.get("error"), product=result.get("product") if report else None,
               report=report_path if report else None, wall_s=result.get("wall_s", 0.0))
    if not report:
        return row
    timings = report.get("timings") or {}
    decision = report.get("decision") or {}
    radiometry = report.get("radiometry") or {}
    metrics = report.get("metrics") or {}
    fr = (metrics.get("adapted") or {}).get("fr") or {}
    direct = (metrics.get("direct") or {}).get("fr") or {}
    row.update(sensor=(report.get("scene") or {}).get("sensor"),
               model=(report.get("model") or {}).get("arch"),
               adapter=(report.get("adapter") or {}).get("kind"),
               device=report.get("device"), load_s=timings.get("load"),
               adapt_s=timings.get("adapt"), infer_s=timings.get("infer"),
               decision=decision.get("choice"), decision_reason=decision.get("reason"),
               radiometry_gain=radiometry.get("gain"),
               radiometry_applied=radiometry.get("applied"),
               HQNR=fr.get("HQNR"), D_lambda=fr.get("D_lambda"), D_s=fr.get("D_s"),
               QNR=fr.get("QNR"), D_rho=fr.get("D_rho"), direct_HQNR=direct.get("HQNR"))
    return row


def _csv_text(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if row.get(k) is None else row[k] for k in COLUMNS})
    return buf.getvalue()


def write_summary(folder: str | Path, rows: list[dict[str, Any]], meta: dict[str, Any]
                  ) -> tuple[Path, Path]:
    """Write ``summary.csv`` and ``summary.json`` (``meta`` plus the rows) into ``folder``,
    each atomically, replacing an earlier run's."""
    from tta.io import atomic_output

    folder = Path(folder)
    paths = folder / "summary.csv", folder / "summary.json"
    with atomic_output(paths[0], overwrite=True) as tmp:
        tmp.write_text(_csv_text(rows))
    with atomic_output(paths[1], overwrite=True) as tmp:
        tmp.write_text(json.dumps({**meta, "scenes": rows}, indent=2) + "\n")
    return paths
