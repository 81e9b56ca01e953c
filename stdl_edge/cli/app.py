"""The typer application and the shared console; command modules attach to ``app``."""

from __future__ import annotations

import typer
from rich.console import Console

app = typer.Typer(
    name="stdl-edge",
    help="Train spiking neural networks with STDL, export them to ONNX and Lava netx, "
         "and run them on DVS event streams (torch, onnxruntime, loihi-sim, lava).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)
console = Console()
err_console = Console(stderr=True)


@app.callback()
def _root() -> None:
    """Train spiking neural networks with STDL, export them to ONNX and Lava netx, and run them
    on DVS event streams (torch, onnxruntime, loihi-sim, lava)."""
