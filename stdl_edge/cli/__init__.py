"""``stdl-edge`` command line. The one place that wires core, exporters and devices together.

Errors: a user error (:data:`USER_ERRORS`: a bad value, a missing or corrupt file, a missing
optional package) prints one line ``error: <message>`` and exits 2; anything else is a bug
in stdl-edge and prints ``internal error: <type>: <message>`` and exits 1. ``stdl-edge
--debug CMD ...`` prints the full traceback of either.
"""

from __future__ import annotations

import sys
import traceback

from rich.markup import escape

from stdl_edge.io import DiskFullError

from .app import app, err_console

# Each module attaches its command(s) to `app`, in this order in `--help`. They import their
# heavy dependencies (torch, numpy, devices, exporters) inside the commands: `--help` stays fast.
from . import info, data, train, export, verify, run, bench, nir_import  # noqa: E402,F401,I001

#: the user's input or environment: one line on stderr, exit 2. ``ValueError`` covers the
#: project's own errors (EventError, SourceError, QuantError, NetxError, UnknownNameError,
#: UnavailableError, ...); an ``ImportError`` counts only when stdl-edge raised it with an
#: install hint (Python's own "No module named x" means a broken install: internal).
USER_ERRORS = (ValueError, FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError, ImportError,
               DiskFullError)


def is_user_error(error: BaseException) -> bool:
    """Whether ``error`` is the user's (see :data:`USER_ERRORS`) rather than a bug in stdl-edge."""
    if isinstance(error, ImportError):
        return error.name is None  # set by the import system, None when raised with a message of ours
    return isinstance(error, USER_ERRORS)


def _debug_requested(argv: list[str]) -> bool:
    """``--debug`` among the global options, i.e. before the command name."""
    for arg in argv:
        if arg == "--debug":
            return True
        if not arg.startswith("-"):
            return False
    return False


def main() -> None:
    """Entry point: run the app; user errors exit 2 with one line, internal errors exit 1."""
    try:
        app()
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)
    except Exception as e:  # noqa: BLE001  (the one place that turns exceptions into exit codes)
        debug = _debug_requested(sys.argv[1:])
        if debug:
            traceback.print_exception(e)
        if is_user_error(e):
            err_console.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False, soft_wrap=True)
            sys.exit(2)
        err_console.print(f"[bold red]internal error:[/] {type(e).__name__}: {escape(str(e))}",
                          highlight=False, soft_wrap=True)
        if not debug:
            err_console.print("run with --debug for the traceback", highlight=False)
        sys.exit(1)


__all__ = ["USER_ERRORS", "app", "is_user_error", "main"]
