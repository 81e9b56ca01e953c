"""``stdl-edge export RUN --to onnx|netx|nir [--target if-chip]``: write a run's deployable artifacts
(any registered exporter), after checking a hardware target when one is named."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from .app import app, console


def _size(n: int) -> str:
    return f"{n / 1024:.1f} KiB" if n < 1024 * 1024 else f"{n / 1024 / 1024:.2f} MiB"


@app.command()
def export(
    run: Path = typer.Argument(..., help="run folder (model.json + model.safetensors)"),
    to: str = typer.Option(..., "--to", help="exporter: onnx, netx or nir (see `stdl-edge info`)"),
    out: Path = typer.Option(None, "--out", help="output folder (default RUN/export/<exporter>)"),
    sequence_steps: int = typer.Option(None, "--sequence-steps", min=1,
                                       help="also write a fixed-T sequence graph (onnx only)"),
    target: str | None = typer.Option(None, "--target", help="refuse a network that breaks this hardware "
                                     "target (if-chip; see `stdl-edge check-target`)"),
) -> None:
    """Export a trained run: the whole model, each STDL subnetwork and each auxiliary head."""
    from stdl_edge.api import export as export_run

    options: dict[str, Any] = {}
    if sequence_steps is not None:
        if to != "onnx":
            raise ValueError(f"--sequence-steps is an ONNX option; the {to} exporter has no sequence graph")
        options["sequence_steps"] = sequence_steps
    with console.status(f"exporting {run} to {to} ..."):
        files = export_run(run, to, out, target=target, **options)
    table = Table(title=f"{to} export of {run}")
    table.add_column("file")
    table.add_column("size", justify="right")
    total = 0
    for path in files:
        size = Path(path).stat().st_size
        total += size
        table.add_row(str(path), _size(size))
    table.add_row("[bold]total[/]", f"[bold]{_size(total)}[/]")
    console.print(table)
