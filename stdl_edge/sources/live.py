"""Live event cameras through aestream or dv-processing."""

from __future__ import annotations

from typing import Iterator

import numpy as np

from stdl_edge.events import SensorSize

from .base import EventSource, SourceError


class LiveSource(EventSource):
    """A live event camera through aestream (``aestream:``/``camera:``) or dv-processing (``dv:``).

    ``duration_s`` bounds the stream (None = until interrupted).
    """

    def __init__(self, backend: str, device: str = "", sensor_size=None, duration_s: float | None = None) -> None:
        self.backend, self.device, self.duration_s = backend, device, duration_s
        self.name = f"{backend}:{device}"
        module = {"aestream": "aestream", "dv": "dv_processing"}[backend]
        import importlib.util

        if importlib.util.find_spec(module) is None:
            raise ImportError(f"live camera input needs {'aestream' if backend == 'aestream' else 'dv-processing'}; "
                              f"install it (pip install {'aestream' if backend == 'aestream' else 'dv-processing'}) "
                              "and connect the camera, or run on a recorded file")
        if backend == "dv":
            import dv_processing as dv

            self._cam = dv.io.CameraCapture(device) if device else dv.io.CameraCapture()
            res = self._cam.getEventResolution()
            self.native_size = SensorSize(int(res[0]), int(res[1]))
        else:
            if sensor_size is None:
                raise SourceError("aestream cameras: pass the sensor size (--sensor W,H)")
            self.native_size = SensorSize(*sensor_size[:2])

    def _raw_chunks(self) -> Iterator[np.ndarray]:  # pragma: no cover - needs a camera
        import time

        end = None if self.duration_s is None else time.monotonic() + self.duration_s
        if self.backend == "dv":
            while self._cam.isRunning() and (end is None or time.monotonic() < end):
                batch = self._cam.getNextEventBatch()
                if batch is not None and len(batch):
                    arr = batch.numpy()
                    yield np.rec.fromarrays([arr["x"], arr["y"], arr["timestamp"], arr["polarity"]], names="x,y,t,p")
        else:
            import aestream

            with aestream.USBInput(tuple(self.native_size[:2]), device=self.device or None) as cam:
                while end is None or time.monotonic() < end:
                    ev = cam.read(backend="numpy") if hasattr(cam, "read") else None
                    if ev is not None and len(ev):
                        yield ev
