"""``stdl-edge export RUN --to onnx|netx``: write a run's deployable artifacts (any registered exporter)."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from .app import app, console


def _size(n: int) -> str:
    return f"{n / 1024:.1f} KiB" if n < 1024 * 1024 else f"{n / 1024 / 1024:.2f} MiB"


def write_export(run: Path, to: str, out_dir: Path, **options: Any) -> list[Path]:
    """Run the registered exporter ``to`` on ``run`` into ``out_dir``; netx also gets the float vs
    fixed-point evaluation on loihi-sim (``quantization.json`` ``accuracy``). verify and bench call
    it for a missing export."""
    import stdl_edge.exporters  # noqa: F401  (registers the exporters)
    from stdl_edge.registry import EXPORTERS

    exporter = EXPORTERS.get(to)
    if to == "netx":
        from stdl_edge.devices.fixed_point import evaluate_fixed_point

        options["evaluate"] = partial(evaluate_fixed_point, run)
    return exporter(run, out_dir, **options)


@app.command()
def export(
    run: Path = typer.Argument(..., help="run folder (model.json + model.safetensors)"),
    to: str = typer.Option(..., "--to", help="exporter: onnx or netx (see `stdl-edge info`)"),
    out: Path = typer.Option(None, "--out", help="output folder (default RUN/export/<exporter>)"),
    sequence_steps: int = typer.Option(None, "--sequence-steps", min=1,
                                       help="also write a fixed-T sequence graph (onnx only)"),
) -> None:
    """Export a trained run: the whole model, each STDL subnetwork and each auxiliary head."""
    if not run.is_dir():
        raise FileNotFoundError(f"run folder {run} does not exist (train one with `stdl-edge train --out {run}`)")
    options = {}
    if sequence_steps is not None:
        if to != "onnx":
            raise ValueError(f"--sequence-steps is an ONNX option; the {to} exporter has no sequence graph")
        options["sequence_steps"] = sequence_steps
    out_dir = out if out is not None else run / "export" / to
    with console.status(f"exporting {run} to {to} ..."):
        files = write_export(run, to, out_dir, **options)
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
