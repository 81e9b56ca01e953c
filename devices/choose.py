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

from stdl_edge.artifact import MODEL_RECORD, RUN_FORMAT, ExportFn
from stdl_edge.formats.netx import MODEL_FILE as NETX_MODEL
from stdl_edge.formats.onnx import MANIFEST
from stdl_edge.registry import DEVICES

from .base import Device, open_device


def format_of(artifact: str | Path) -> str:
    """The artifact format of ``artifact``: ``netx`` (``.net``, or a folder holding ``model.net``),
    ``onnx`` (``.onnx``, ``manifest.json`` or a folder holding one) or ``run`` (a run folder)."""
    path = Path(artifact)
    if not path.exists():
        raise FileNotFoundError(f"artifact {path} does not exist")
    if path.is_dir():
        for marker, fmt in ((MODEL_RECORD, RUN_FORMAT), (MANIFEST, "onnx"), (NETX_MODEL, "netx")):
            if (path / marker).exists():
                return fmt
    elif path.suffix == ".net":
        return "netx"
    elif path.suffix == ".onnx" or path.name == MANIFEST:
        return "onnx"
    elif path.name == MODEL_RECORD:
        return RUN_FORMAT
    raise ValueError(f"cannot tell which device runs {path}: expected a run folder ({MODEL_RECORD}), an ONNX "
                     f"export (.onnx, {MANIFEST}) or a netx file (.net); name the device (--device)")


def device_for(artifact: str | Path) -> str:
    """The device that runs ``artifact``: the first one registered for its :func:`format_of`
    (``torch`` for a run folder, ``onnxruntime`` for ONNX, ``loihi-sim`` for netx)."""
    fmt = format_of(artifact)
    name = DEVICES.first_for(fmt)
    if name is None:
        raise ValueError(f"no device reads {fmt} artifacts such as {artifact}; name one with --device")
    return name


def open_artifact(artifact: str | Path, device: str | None = None, *, export: ExportFn | None = None,
                  notify: Callable[[str], None] | None = None, **options: Any) -> Device:
    """Open ``artifact`` on ``device`` (default :func:`device_for`); a run folder opens the
    export that ``device`` reads, written first by ``export`` when missing (``notify(message)``
    is told; see :func:`~stdl_edge.devices.open_device`)."""
    path = Path(artifact)
    if path.name == MODEL_RECORD:
        path = path.parent
    return open_device(device or device_for(path), path, export=export, notify=notify, **options)
