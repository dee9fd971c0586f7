"""Benchmark outputs: CSV of every run, seed aggregates, Markdown tables per protocol, a summary.

Files written by :func:`write_report` into the output folder:

* ``runs.csv`` - one line per run (every index, times, adaptation facts);
* ``summary.csv`` - mean and std over seeds per (target, protocol, source, method, sampler);
* ``rr.md`` / ``fr.md`` - one table per target, with the gap closed towards the in-sensor model;
* ``summary.md`` - the answers: per target and protocol, how each method compares with direct
  transfer (wins over sources, mean change, time) and the recommended method;
* ``speed.md`` / ``speed.csv`` - the timing part;
* ``bench.json`` - all of the above plus the run metadata;
* the PNG figures of :mod:`tta.bench.figures`.

Every file is written atomically (:func:`tta.io.atomic_output`).
"""

from __future__ import annotations

import csv
import io
import json
import math
import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from tta.bench.runner import TIME_KEYS, BenchResult
from tta.evaluation import BETTER, FR_KEYS, RR_KEYS

__all__ = ["PRIMARY", "aggregate", "gap_closed", "summary_rows", "write_report"]

RR_SHOW = ("Q2n", "Q", "SAM", "ERGAS", "SCC")
FR_SHOW = ("HQNR", "D_lambda_K", "D_s", "QNR", "R-Q2n", "R-SAM", "R-ERGAS", "D_rho")
#: Indexes a method must improve to "beat direct transfer", per protocol. FR uses one index
#: of each family: they disagree in practice, so neither alone decides.
PRIMARY = {"rr": ("Q2n", "SAM", "ERGAS"), "fr": ("HQNR", "R-Q2n", "D_rho")}
ARROW = {"up": "↑", "down": "↓"}
GROUP = ("target", "protocol", "source", "method", "sampler")


# ----------------------------------------------------------------------------- numbers
def _finite(values: Iterable[Any]) -> list[float]:
    return [float(v) for v in values if isinstance(v, int | float) and not isinstance(v, bool)
            and math.isfinite(v)]


def _mean_std(values: Iterable[Any]) -> tuple[float, float]:
    vals = _finite(values)
    if not vals:
        return math.nan, math.nan
    return statistics.fmean(vals), (statistics.stdev(vals) if len(vals) > 1 else 0.0)


def better(key: str, a: float, b: float) -> bool:
    """Whether ``a`` is strictly better than ``b`` for index ``key``."""
    return a > b if BETTER[key] == "up" else a < b


def aggregate(runs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean and std over seeds per (target, protocol, source, method, sampler), in run order."""
    groups: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for r in runs:
        groups[tuple(r[k] for k in GROUP)].append(r)
    rows = []
    for ident, rs in groups.items():
        row: dict[str, Any] = dict(zip(GROUP, ident, strict=True))
        row.update({"kind": rs[0]["kind"], "n": len(rs), "sensor": rs[0]["sensor"],
                    "pan_shape": rs[0]["pan_shape"]})
        for k in (*RR_KEYS, *FR_KEYS, *(f"t_{t}" for t in TIME_KEYS), "t_wall"):
            if k in rs[0]:
                row[k], row[f"{k}_std"] = _mean_std(r.get(k) for r in rs)
        rows.append(row)
    return rows


def _find(rows: Sequence[dict[str, Any]], **match: Any) -> dict[str, Any] | None:
    for r in rows:
        if all(r.get(k) == v for k, v in match.items()):
            return r
    return None


def gap_closed(row: dict[str, Any], direct: dict[str, Any], ref: dict[str, Any],
               key: str) -> float:
    """(method − direct) / (in-sensor − direct) for index ``key``: 0 = direct, 1 = in-sensor.

    NaN when the two references are closer than 1e-3 (the ratio would be noise).
    """
    gap = ref[key] - direct[key]
    if not math.isfinite(gap) or abs(gap) < 1e-3:
        return math.nan
    return (row[key] - direct[key]) / gap


def summary_rows(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (target, protocol, method, sampler): wins over direct across sources and changes.

    For each primary index of the protocol (:data:`PRIMARY`): ``wins/total`` sources on which
    the seed mean is better than that source's direct transfer, the mean change, and the mean
    gap closed (where an in-sensor row exists); plus the mean adapt+infer time.
    """
    out = []
    seen: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        if r["kind"] == "adapted":
            seen[(r["target"], r["protocol"], r["method"], r["sampler"])].append(r)
    for (target, protocol, method, sampler), rs in seen.items():
        entry: dict[str, Any] = {"target": target, "protocol": protocol, "method": method,
                                 "sampler": sampler, "sources": len(rs)}
        all_win = True
        for key in PRIMARY[protocol]:
            wins, deltas, gaps = 0, [], []
            for r in rs:
                d = _find(rows, target=target, protocol=protocol, source=r["source"],
                          kind="direct")
                if d is None or key not in r:
                    continue
                wins += better(key, r[key], d[key])
                deltas.append(r[key] - d[key])
                ref = _find(rows, target=target, protocol=protocol, source=r["source"],
                            kind="reference")
                if ref is not None:
                    gaps.append(gap_closed(r, d, ref, key))
            entry[f"{key}_wins"] = f"{wins}/{len(deltas)}"
            entry[f"{key}_delta"] = statistics.fmean(deltas) if deltas else math.nan
            g = _finite(gaps)
            entry[f"{key}_gap_closed"] = statistics.fmean(g) if g else math.nan
            all_win &= bool(deltas) and wins == len(deltas)
        entry["beats_direct_everywhere"] = all_win
        entry["t_adapt_and_infer"] = statistics.fmean(r["t_adapt_and_infer"] for r in rs)
        out.append(entry)
    return out


# ----------------------------------------------------------------------------- text
def _col(key: str) -> str:
    return f"{key} {ARROW[BETTER[key]]}" if key in BETTER else key


def _cell(mean: float, std: float, n: int, digits: int = 4, bold: bool = False) -> str:
    if not isinstance(mean, int | float) or not math.isfinite(mean):
        return "—"
    text = f"{mean:.{digits}f}" + (f" ± {std:.{digits}f}" if n > 1 and math.isfinite(std)
                                   else "")
    return f"**{text}**" if bold else text


def _table(head: Sequence[str], body: Iterable[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in body]
    return lines


def _target_table(rows: list[dict[str, Any]], protocol: str) -> list[str]:
    keys = [k for k in (RR_SHOW if protocol == "rr" else FR_SHOW) if k in rows[0]]
    best = {}
    for k in keys:
        vals = _finite(r.get(k) for r in rows if r["kind"] != "reference")
        best[k] = (max(vals) if BETTER[k] == "up" else min(vals)) if vals else None
    gap_key = PRIMARY[protocol][0]
    has_ref = any(r["kind"] == "reference" for r in rows)
    head = ["source", "method", "sampler", "n", *map(_col, keys), "adapt s", "infer s"]
    if has_ref:
        head.append(f"gap closed ({gap_key})")
    body = []
    for r in rows:
        vals = [r["source"], r["method"], str(r["sampler"]), str(r["n"])]
        vals += [_cell(r.get(k, math.nan), r.get(f"{k}_std", math.nan), r["n"],
                       bold=r["kind"] != "reference" and r.get(k) == best[k]) for k in keys]
        vals += [_cell(r.get("t_adapt", math.nan), r.get("t_adapt_std", math.nan), r["n"], 2),
                 _cell(r.get("t_infer", math.nan), r.get("t_infer_std", math.nan), r["n"], 2)]
        if has_ref:
            d = _find(rows, source=r["source"], kind="direct")
            ref = _find(rows, source=r["source"], kind="reference")
            g = (gap_closed(r, d, ref, gap_key) if d is not None and ref is not None
                 and r["kind"] in ("adapted", "direct") else math.nan)
            vals.append(f"{100 * g:.0f} %" if math.isfinite(g) else "—")
        body.append(vals)
    return _table(head, body)


def _header(result: BenchResult, title: str, command: str | None) -> list[str]:
    m = result.meta
    load = m.get("load_average_start") or [math.nan]
    lines = [f"# {title}", "",
             f"- matrix `{m.get('matrix')}`"
             + (f" (`{m['matrix_file']}`)" if m.get("matrix_file") else ""),
             f"- device: {m.get('device')}; torch {m.get('torch')}; date {m.get('date')}; "
             f"load average at start {load[0]:.2f}; wall time {m.get('wall_s', 0) / 60:.1f} min",
             f"- seeds {m.get('seeds')}; samplers {m.get('samplers')}; methods "
             f"{m.get('methods')}; shared config {m.get('config')}"]
    if command:
        lines.append(f"- command: `{command}`")
    if result.skipped:
        lines += ["- skipped: " + "; ".join(result.skipped)]
    return lines


def protocol_markdown(result: BenchResult, rows: list[dict[str, Any]], protocol: str,
                      command: str | None = None) -> list[str]:
    name = {"rr": "reduced resolution (Wald protocol, scored against the original MS)",
            "fr": "full resolution (toolbox family and reprojection family)"}[protocol]
    md = _header(result, f"Cross-sensor benchmark: {name}", command)
    md += ["", "Cells: mean ± std over seeds (`n` runs). **Bold**: best of the column "
           "(in-sensor rows excluded). `direct` = the source network as is; `in-sensor` = "
           "the same architecture trained on the target's sensor (upper reference); gap "
           f"closed = (method − direct) / (in-sensor − direct) on {PRIMARY[protocol][0]}. "
           "Times in seconds per run: `adapt` = sampling + decomposition + caching + "
           "calibration + training, `infer` = tiled fusion of the whole scene (classical "
           "rows: fusion time)."]
    for target in dict.fromkeys(r["target"] for r in rows if r["protocol"] == protocol):
        trows = [r for r in rows if r["target"] == target and r["protocol"] == protocol]
        md += ["", f"## {target} ({trows[0]['sensor']}, PAN {trows[0]['pan_shape']}, "
                   f"{protocol.upper()})", ""]
        md += _target_table(trows, protocol)
    return md


def summary_markdown(result: BenchResult, rows: list[dict[str, Any]],
                     summary: list[dict[str, Any]], command: str | None = None) -> list[str]:
    md = _header(result, "Cross-sensor benchmark: summary", command)
    md += ["", "For each target and protocol: on how many source networks each method's seed "
           "mean beats direct transfer, per index (RR: Q2n, SAM, ERGAS; FR: HQNR of the "
           "toolbox family, R-Q2n and D_ρ of the reprojection family, which can disagree), "
           "the mean change of each index, the gap closed towards the in-sensor model where "
           "one exists, and the time. The recommended method beats direct on every index "
           "and source and has the best mean first index; cells where a method loses to "
           "direct are listed below each table."]
    for (target, protocol) in dict.fromkeys((s["target"], s["protocol"]) for s in summary):
        ents = [s for s in summary if (s["target"], s["protocol"]) == (target, protocol)]
        keys = PRIMARY[protocol]
        head = ["method", "sampler", *(f"{_col(k)} wins" for k in keys),
                *(f"Δ{k}" for k in keys), f"gap closed ({keys[0]})", "adapt+infer s"]
        body = []
        for e in ents:
            g = e.get(f"{keys[0]}_gap_closed", math.nan)
            body.append([e["method"], str(e["sampler"]), *(e[f"{k}_wins"] for k in keys),
                         *(f"{e[f'{k}_delta']:+.4f}" for k in keys),
                         f"{100 * g:.0f} %" if math.isfinite(g) else "—",
                         f"{e['t_adapt_and_infer']:.2f}"])
        md += ["", f"## {target}, {protocol.upper()}", "", *_table(head, body), ""]
        first = keys[0]
        sign = 1 if BETTER[first] == "up" else -1
        good = [e for e in ents if e["beats_direct_everywhere"]]
        if good:
            best = max(good, key=lambda e: sign * e[f"{first}_delta"])
            fastest = min(good, key=lambda e: e["t_adapt_and_infer"])
            md.append(f"Recommended: **{best['method']}** (sampler {best['sampler']}): "
                      f"{first} {best[f'{first}_delta']:+.4f} over direct, "
                      f"{best['t_adapt_and_infer']:.2f} s per scene. Fastest method that "
                      f"beats direct everywhere: {fastest['method']} "
                      f"({fastest['t_adapt_and_infer']:.2f} s).")
        else:
            md.append("No method beats direct transfer on every index and source here.")
        losses = [f"{e['method']} [{e['sampler']}] on {k} ({e[f'{k}_wins']} sources better)"
                  for e in ents for k in keys if _not_all(e[f"{k}_wins"])]
        if losses:
            md.append("Not better than direct on every source: " + "; ".join(losses) + ".")
    return md


def _not_all(wins: str) -> bool:
    won, total = (int(x) for x in wins.split("/"))
    return won < total


def speed_markdown(result: BenchResult, command: str | None = None) -> list[str]:
    md = _header(result, "Adaptation speed", command)
    md += ["", "One `adapt_scene` call (adapt + tiled inference of the whole crop); wall = "
           "median of the timed repeats after one warm-up; stage columns are medians of the "
           "report's timings. Crops larger than the scene mirror it (`np.pad` symmetric, PAN "
           "and MS kept aligned).", ""]
    cols = ["PAN size", "method", "patches", "steps", "wall s", "sample", "cache",
            "calibrate", "train", "infer"]
    body = [[f"{r['size']}²", r["method"], str(r["patches"]), str(r["steps"]),
             f"{r['wall_s']:.3f}", *(f"{r[k]:.3f}" for k in ("sample", "cache", "calibrate",
                                                              "train", "infer"))]
            for r in result.speed]
    return md + _table(cols, body)


# ----------------------------------------------------------------------------- files
def _csv_text(rows: Sequence[dict[str, Any]]) -> str:
    fields: list[str] = []
    for r in rows:
        fields += [k for k in r if k not in fields]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields)
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def _write(path: Path, text: str | bytes, overwrite: bool) -> None:
    from tta.io import atomic_output

    with atomic_output(path, overwrite=overwrite) as tmp:
        if isinstance(text, bytes):
            tmp.write_bytes(text)
        else:
            tmp.write_text(text)


def write_report(result: BenchResult, out: str | Path, *, command: str | None = None,
                 figures: bool = True, overwrite: bool = False) -> list[Path]:
    """Write every output of a benchmark run into folder ``out`` (created); return the paths.

    Raises:
        OutputError: A file exists and ``overwrite`` is False (nothing is written then).
    """
    from tta.errors import OutputError

    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    rows = aggregate(result.runs)
    summary = summary_rows(rows)
    files: dict[str, str | bytes] = {}
    if result.runs:
        files["runs.csv"] = _csv_text(result.runs)
        files["summary.csv"] = _csv_text(rows)
        for protocol in ("rr", "fr"):
            if any(r["protocol"] == protocol for r in rows):
                files[f"{protocol}.md"] = "\n".join(
                    protocol_markdown(result, rows, protocol, command)) + "\n"
        files["summary.md"] = "\n".join(summary_markdown(result, rows, summary,
                                                         command)) + "\n"
    if result.speed:
        files["speed.csv"] = _csv_text(result.speed)
        files["speed.md"] = "\n".join(speed_markdown(result, command)) + "\n"
    files["bench.json"] = json.dumps(
        {"meta": {**result.meta, "command": command}, "rows": rows, "summary": summary,
         "runs": result.runs, "speed": result.speed}, indent=1, default=str) + "\n"
    if figures and result.runs:
        from tta.bench.figures import quicklook_png, tradeoff_png

        for (target, protocol), prod in result.products.items():
            if prod["fused"]:
                files[f"quicklook_{target}_{protocol}.png"] = quicklook_png(
                    prod["scene"], prod["fused"], title=f"{target} {protocol.upper()}, "
                                                        f"source {prod['source']}")
        for protocol in ("rr", "fr"):
            prow = [r for r in rows if r["protocol"] == protocol]
            if prow:
                files[f"tradeoff_{protocol}.png"] = tradeoff_png(prow, protocol,
                                                                 PRIMARY[protocol][0])
    existing = [n for n in files if (folder / n).exists()]
    if existing and not overwrite:
        raise OutputError(f"{folder / existing[0]} exists; pass --overwrite to replace the "
                          "results in this folder")
    paths = []
    for name, text in files.items():
        _write(folder / name, text, overwrite=True)
        paths.append(folder / name)
    return paths
