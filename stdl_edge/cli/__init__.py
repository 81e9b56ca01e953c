"""``stdl-edge`` command line. The one place that wires core, exporters and devices together."""

from __future__ import annotations

import sys

from .app import app, err_console

# Each module attaches its command(s) to `app`.
from . import info  # noqa: E402,F401


def _load_commands() -> None:
    import importlib

    for module in ("data", "train", "export", "verify", "run", "bench", "nir_import"):
        try:
            importlib.import_module(f"{__name__}.{module}")
        except ModuleNotFoundError as e:
            if e.name != f"{__name__}.{module}":
                raise


_load_commands()

#: exceptions that are the user's input or environment, shown as one line, exit 2
USER_ERRORS = (ValueError, FileNotFoundError, NotADirectoryError, PermissionError, KeyError,
               RuntimeError, ImportError, OSError)


def main() -> None:
    """Entry point: run the app; user errors print one line and exit non-zero."""
    try:
        app()
    except USER_ERRORS as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        err_console.print(f"[bold red]error:[/] {msg}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)


__all__ = ["app", "main"]
