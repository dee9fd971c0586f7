"""``tta batch``: adapt and fuse many scenes, one task each, in-process or on Ray."""

from __future__ import annotations

import click

from tta.cli.options import FiniteFloat, adaptation_options, dtype_option, run_options


def _line(row: dict, finished: int, total: int) -> str:
    head = f"[{finished}/{total}] {row['name']}: {row['status']}"
    if row["status"] == "failed":
        return f"{head}: {row['error']}"
    parts = []
    if row["status"] == "done":
        parts.append(f"{row['wall_s']:.1f} s")
    if row.get("decision"):
        parts.append(f"decision {row['decision']}")
    if row.get("HQNR") is not None:
        parts.append(f"HQNR {row['HQNR']:.4f}")
    return head + (f" ({', '.join(parts)})" if parts else "")


@click.command("batch")
@click.argument("sources", nargs=-1, required=True, metavar="SCENES...")
@click.option("-o", "--output-dir", required=True, metavar="DIR",
              help="Folder of the products, reports and summary.csv/summary.json.")
@click.option("--model", "-m", "model_spec", default=None, metavar="NAME|FILE",
              help="As `tta adapt --model`; a manifest entry's 'model' overrides it.")
@click.option("--weights", "-w", default=None, metavar="FILE", help="As `tta adapt`.")
@adaptation_options
@click.option("--compare/--no-compare", default=True, show_default=True,
              help="Also fuse by direct transfer and score both (as `tta adapt`).")
@click.option("--format", "fmt", type=click.Choice(["h5", "tif"]), default="h5",
              show_default=True, help="Product format.")
@dtype_option
@click.option("--executor", type=click.Choice(["auto", "local", "ray"]), default="auto",
              show_default=True,
              help="Where scenes run: ray (one Ray task each), local (one by one in this "
                   "process); auto = ray when installed.")
@click.option("--address", default=None, metavar="HOST:PORT",
              help="Ray cluster to use (`ray start --head` prints it); default: a local Ray.")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Scenes at once on the local Ray (default: CPU cores // threads).")
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True,
              help="Torch CPU threads per scene.")
@click.option("--gpus", type=FiniteFloat(min=0), default=None,
              help="GPUs per scene on Ray (default 1 where the cluster has GPUs, else 0).")
@run_options
@click.pass_context
def command(ctx: click.Context, sources: tuple[str, ...], output_dir: str,
            model_spec: str | None, weights: str | None, adapter: str | None,
            sampler: str | None, fraction: float | None, steps: int | None,
            lr: float | None, patch: int | None, seed: int | None, config_path: str | None,
            interface: str | None, compare: bool, fmt: str, dtype: str, executor: str,
            address: str | None, workers: int | None, threads: int, gpus: float | None,
            sensor: str | None, bands: str | None, max_value: float | None, device: str,
            overwrite: bool) -> None:
    """Adapt a pretrained model to every scene of a list and fuse each, as `tta adapt` does.

    SCENES are scene specs, folders (their .h5/.mat files), quoted glob patterns, or
    manifests: .txt (one spec a line), .csv (column 'scene' plus per-scene columns such as
    sensor, model, steps, name) or .yaml (a list of specs or {scene: ..., KEY: ...}). A rerun
    skips the scenes whose outputs exist and verify; a failed scene does not stop the others
    (exit status 1). Examples:

    \b
        tta batch 'scenes/*.h5' -o out --model fose --steps 50
        tta batch list.yaml -o out --address HEAD:6379   # an existing Ray cluster
    """
    from tta.batch import run_batch

    quiet = (ctx.find_root().obj or {}).get("quiet", False)

    def report(row: dict, finished: int, total: int) -> None:
        if not quiet or row["status"] == "failed":
            click.echo(_line(row, finished, total), err=row["status"] == "failed")

    result = run_batch(sources, output_dir, model=model_spec, weights=weights, sensor=sensor,
                       bands=bands,
                       max_value=max_value, config_path=config_path, interface=interface,
                       compare=compare, fmt=fmt, dtype=dtype, device=device,
                       executor=executor, address=address, workers=workers, threads=threads,
                       gpus=gpus, overwrite=overwrite, on_result=report, adapter=adapter,
                       sampler=sampler, fraction=fraction, steps=steps, lr=lr, patch=patch,
                       seed=seed)
    counts = result.counts
    where = (result.executor or {}).get("executor", "none needed")
    n = len(result.rows)
    click.echo(f"{n} scene{'s' if n != 1 else ''}: {counts['done']} done, {counts['skipped']} "
               f"skipped, {counts['failed']} failed in {result.wall_s:.1f} s (executor "
               f"{where}); summary {result.summary_csv}, {result.summary_json}")
    if result.failed:
        ctx.exit(1)
