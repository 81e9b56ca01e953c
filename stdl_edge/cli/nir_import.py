"""``stdl-edge import model.nir --out RUN`` (a NIR graph from any framework becomes a run folder)
and ``stdl-edge check-target RUN --target if-chip`` (the target constraints a network breaks)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .app import app, console
from .options import int_tuple


@app.command("import")
def import_nir(
    graph: Path = typer.Argument(..., help="NIR file (.nir, HDF5) written by stdl-edge, snnTorch, Norse, ..."),
    out: Path = typer.Option(..., "--out", help="run folder to write (model.json + model.safetensors)"),
    dt_us: Optional[int] = typer.Option(None, "--dt-us", min=1,
                                        help="simulation step in us (default: the graph's; snnTorch graphs: 100)"),
    steps: Optional[int] = typer.Option(None, "--steps", min=1, help="time steps per sample (default: the graph's)"),
    input_shape: Optional[str] = typer.Option(None, "--input-shape", help="C,H,W of the event frames a flat-input "
                                              "graph reads"),
    classes: Optional[str] = typer.Option(None, "--classes", help="comma-separated class names"),
) -> None:
    """Import a NIR graph as a run folder: then export it to ONNX/netx, verify it and run it on any device."""
    from stdl_edge.api import import_nir as import_graph

    names = tuple(c.strip() for c in classes.split(",")) if classes else ()
    shape = int_tuple(input_shape, "--input-shape", 3, "C,H,W, e.g. 2,34,34")
    folder = import_graph(graph, out, dt_us=dt_us, num_steps=steps, input_shape=shape, class_names=names)
    console.print(f"imported {graph} -> {folder} (model.json, model.safetensors); next: "
                  f"stdl-edge export {folder} --to onnx|netx|nir")


@app.command("check-target")
def check_target(
    run: Path = typer.Argument(..., help="run folder"),
    target: str = typer.Option("if-chip", "--target", help="hardware-target preset (if-chip)"),
) -> None:
    """Say which constraints of a hardware target the run's network breaks, naming each layer."""
    from stdl_edge.api import check_target as check

    violations = check(run, target)
    for line in violations:
        console.print(f"[red]x[/] {line}", highlight=False)
    if violations:
        raise typer.Exit(1)
    console.print(f"[green]ok[/] {run} meets every {target} constraint")
