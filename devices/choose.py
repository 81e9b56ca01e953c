"""Which device runs an artifact, and opening it from a run folder.

:func:`device_for` reads the kind of artifact from its path: a netx ``.net`` file (or an
export folder holding ``model.net``) runs on ``loihi-sim``, an ``.onnx`` file, an ONNX
``manifest.json`` or its export folder on ``onnxruntime``, a run folder (``model.json``)
on ``torch``. :func:`open_artifact` opens it there; given a run folder and another device
it opens the run's export for that device (``RUN/export/onnx``, ``RUN/export/netx/model.net``),
writing the export first when it is missing::

    dev = open_artifact("runs/demo")                     # torch
    dev = open_artifact("runs/demo", "loihi-sim")        # runs/demo/export/netx/model.net
    dev = open_artifact("runs/demo/export/onnx")         # onnxruntime
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from stdl_edge.artifact import MODEL_RECORD

from .base import Device, open_device
from .compare import ARTIFACTS, resolve_artifact
from .onnxruntime_device import MANIFEST

NETX_MODEL = Path(ARTIFACTS["loihi-sim"][0]).name  # "model.net"


def device_for(artifact: str | Path) -> str:
    """The device that runs ``artifact``: ``loihi-sim`` (``.net``), ``onnxruntime`` (``.onnx``,
    ``manifest.json`` or a folder holding one) or ``torch`` (a run folder)."""
    path = Path(artifact)
    if not path.exists():
        raise FileNotFoundError(f"artifact {path} does not exist")
    if path.is_dir():
        for marker, device in ((MODEL_RECORD, "torch"), (MANIFEST, "onnxruntime"), (NETX_MODEL, "loihi-sim")):
            if (path / marker).exists():
                return device
    elif path.suffix == ".net":
        return "loihi-sim"
    elif path.suffix == ".onnx" or path.name == MANIFEST:
        return "onnxruntime"
    elif path.name == MODEL_RECORD:
        return "torch"
    raise ValueError(f"cannot tell which device runs {path}: expected a run folder ({MODEL_RECORD}), an ONNX "
                     f"export (.onnx, {MANIFEST}) or a netx file (.net); name the device (--device)")


def open_artifact(artifact: str | Path, device: str | None = None, *, notify: Callable[[str], None] | None = None,
                  **options: Any) -> Device:
    """Open ``artifact`` on ``device`` (default :func:`device_for`); a run folder opens the
    export that ``device`` reads, exported first if missing (``notify(message)`` is told)."""
    path = Path(artifact)
    if not path.exists():
        raise FileNotFoundError(f"artifact {path} does not exist")
    name = device or device_for(path)
    return open_device(name, resolve_artifact(path, name, notify=notify) if name in ARTIFACTS else path, **options)
