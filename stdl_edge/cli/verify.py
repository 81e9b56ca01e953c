"""``stdl-edge verify RUN --devices torch,onnxruntime,loihi-sim``: do all devices agree?

Argument handling and the report; the work is :func:`stdl_edge.devices.verify.run_verify`
(also :func:`stdl_edge.api.verify`). torch vs onnxruntime and loihi-sim vs lava must be
identical (exit 1 otherwise); float vs fixed point reports agreement and accuracy only.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.table import Table

from .app import app, console

if TYPE_CHECKING:
    from stdl_edge.devices.compare import Comparison


def _fmt(x: float) -> str:
    return "n/a" if x != x else f"{100 * x:.2f} %"


def print_report(comparison: Comparison) -> None:
    """The device table, the pairwise agreement table and the first mismatches of each pair."""
    acc = Table(title=f"devices ({comparison.samples} samples)")
    for col in ("device", "latency (steps)", "accuracy"):
        acc.add_column(col)
    for name, dev in comparison.devices.items():
        acc.add_row(name, str(dev.latency), _fmt(comparison.accuracy(name)))
    console.print(acc)
    pairs = Table(title="pairwise agreement")
    for col in ("pair", "expected", "values equal", "predictions equal", "result"):
        pairs.add_column(col)
    for pair in comparison.pairs.values():
        result = ("[green]ok[/]" if pair.ok else "[red]FAIL[/]") if pair.identity else "info"
        pairs.add_row(f"{pair.a} / {pair.b}", "identical" if pair.identity else "close",
                      _fmt(pair.value_agreement) if pair.traced else "n/a", _fmt(pair.agreement), result)
    console.print(pairs)
    for pair in comparison.pairs.values():
        what = (f"{len(pair.keys)} recorded keys, {pair.compared:,} values compared step by step"
                if pair.traced else "predictions only (the latencies differ)")
        console.print(f"{pair.a} vs {pair.b}: {what}", highlight=False)
        if pair.ties:
            console.print(f"[yellow]{pair.a} vs {pair.b}: {len(pair.tied_samples)} sample(s) reached a float "
                          f"threshold tie (voltages equal within tolerance, one device fires): left out "
                          f"from that step on[/]", highlight=False)
            for m in pair.ties[:5]:
                console.print(f"  tie: layer {m.key} step {m.step} sample {m.sample}: {m.count} spike(s), "
                              f"|v_a - v_b| = {m.max_abs:.2g}", highlight=False, soft_wrap=True)
        if pair.identity and not pair.ok:
            console.print(f"[red]{pair.a} vs {pair.b}: MISMATCH in {len(pair.mismatched_samples)} sample(s); "
                          f"first differences:[/]", highlight=False)
            for m in pair.mismatches:
                console.print(f"  {m.describe()}", highlight=False, soft_wrap=True)


@app.command()
def verify(
    run: Path = typer.Argument(..., help="run folder"),
    devices: str = typer.Option("torch,onnxruntime", "--devices",
                                help="comma-separated devices, e.g. torch,onnxruntime,loihi-sim,lava"),
    samples: int = typer.Option(64, "--samples", help="test samples to run"),
    dataset: str = typer.Option(None, "--dataset",
                                help="data set (default: the run's); 'random' = random frames, no labels"),
    batch: int = typer.Option(16, "--batch", help="samples per batch"),
) -> None:
    """Run the test split through every device and compare spikes, states and predictions."""
    from rich.progress import Progress

    from stdl_edge.api import export
    from stdl_edge.devices.verify import run_verify

    names = [d.strip() for d in devices.split(",") if d.strip()]
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task(f"verifying {run}", total=None)
        comparison = run_verify(run, names, samples=samples, dataset=dataset, batch=batch,
                                export=export, notify=lambda msg: console.print(f"[yellow]{msg}[/]"),
                                on_batch=lambda done, total: progress.update(task, completed=done, total=total))
    print_report(comparison)
    if not comparison.ok:
        console.print("[bold red]verify failed:[/] devices that must be identical differ")
        raise typer.Exit(1)
    console.print("[bold green]verify passed[/]")
