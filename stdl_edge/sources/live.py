"""Live event cameras through aestream (``camera:``, ``aestream:``) or dv-processing (``dv:``)."""

from __future__ import annotations

import re
import time
from typing import Iterator

import numpy as np

from stdl_edge.events import SensorSize

from .base import EventSource, ReadOptions, SourceError, optional_import
from .registry import Format, register_format

_SPEC = re.compile(r"(camera|aestream|dv):(.*)")
#: backend -> (module, pip package)
_DRIVERS = {"aestream": ("aestream", "aestream"), "dv": ("dv_processing", "dv-processing")}


class LiveSource(EventSource):
    """A live event camera through aestream (``aestream:``/``camera:``) or dv-processing (``dv:``).

    ``duration_s`` bounds the stream (None = until interrupted).
    """

    def __init__(self, backend: str, device: str = "", sensor_size: tuple[int, ...] | None = None,
                 duration_s: float | None = None) -> None:
        self.backend, self.device, self.duration_s = backend, device, duration_s
        self.name = f"{backend}:{device}"
        module, package = _DRIVERS[backend]
        self._driver = optional_import(module, "live camera input",
                                       f"pip install {package}, connect the camera, or run on a recorded file")
        if backend == "dv":
            io = self._driver.io
            self._cam = io.CameraCapture(device) if device else io.CameraCapture()
            res = self._cam.getEventResolution()
            self.native_size = SensorSize(int(res[0]), int(res[1]))
        else:
            if sensor_size is None:
                raise SourceError("aestream cameras: pass the sensor size (--sensor W,H)")
            self.native_size = SensorSize(*sensor_size[:2])

    @classmethod
    def open(cls, spec: str, options: ReadOptions) -> LiveSource:
        """``camera:[device]`` / ``aestream:[device]`` (aestream), ``dv:[device]`` (dv-processing);
        with ``format="camera"`` the whole spec is an aestream device."""
        m = _SPEC.fullmatch(spec)
        backend = "dv" if m and m.group(1) == "dv" else "aestream"
        return cls(backend, m.group(2) if m else spec, options.sensor_size, options.duration_s)

    def _raw_chunks(self) -> Iterator[np.ndarray | dict[str, np.ndarray]]:  # pragma: no cover - needs a camera
        end = None if self.duration_s is None else time.monotonic() + self.duration_s
        if self.backend == "dv":
            while self._cam.isRunning() and (end is None or time.monotonic() < end):
                batch = self._cam.getNextEventBatch()
                if batch is not None and len(batch):
                    arr = batch.numpy()
                    yield {"x": arr["x"], "y": arr["y"], "t": arr["timestamp"], "p": arr["polarity"]}
        else:
            with self._driver.USBInput(tuple(self.native_size[:2]), device=self.device or None) as cam:
                while end is None or time.monotonic() < end:
                    ev = cam.read(backend="numpy") if hasattr(cam, "read") else None
                    if ev is not None and len(ev):
                        yield ev


register_format(Format("camera", (), LiveSource.open, None,
                       "a live camera: camera:[device] or aestream:[device] (aestream), dv:[device] (dv-processing)",
                       claims=lambda spec: _SPEC.fullmatch(spec) is not None))
