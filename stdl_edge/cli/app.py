"""The typer application and the shared console; command modules attach to ``app``."""

from __future__ import annotations

import typer
from rich.console import Console

#: every command (and the app) takes -h as well as --help
CONTEXT = {"help_option_names": ["-h", "--help"]}

app = typer.Typer(
    name="stdl-edge",
    help="Train spiking neural networks with STDL, export them to ONNX and Lava netx, "
         "and run them on DVS event streams (torch, onnxruntime, loihi-sim, lava).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    context_settings=CONTEXT,
)
console = Console()
err_console = Console(stderr=True)


def _print_version(value: bool) -> None:
    if value:
        from stdl_edge import __version__

        console.print(f"stdl-edge {__version__}", highlight=False)
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", is_eager=True, callback=_print_version,
                                 help="Print the version and exit."),
    debug: bool = typer.Option(False, "--debug", help="On an error, print the full traceback "
                                                      "(give it before the command)."),
) -> None:
    """Train spiking neural networks with STDL, export them to ONNX and Lava netx, and run them
    on DVS event streams (torch, onnxruntime, loihi-sim, lava)."""
