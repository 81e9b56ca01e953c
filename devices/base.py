"""The device interface every backend implements, and the helpers that drive it.

A device loads an artifact, then runs one time step at a time on a batch::

    dev = open_device("onnxruntime", "runs/demo/export/onnx")
    dev.reset(batch=4)
    y = dev.step(frame)          # frame (B, 2, H, W) float32 spikes -> y (B, classes)

``latency`` is the number of steps between an input frame and the readout it causes
(0 for torch and ONNX; one step per layer on Loihi). :func:`classify` hides it: it
feeds ``latency`` empty frames after the sample and aligns the outputs, so every
device returns the same time-averaged readout for the same frames.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterable, Iterator

import numpy as np

from stdl_edge.artifact import ExportFn, StreamInfo, resolve_artifact
from stdl_edge.events import BinSpec, EventBinner
from stdl_edge.registry import DEVICES


@dataclass
class LayerStats:
    """Activity counted by a device since the last reset, summed over the batch."""

    names: list[str] = field(default_factory=list)
    spikes: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # per layer
    synops: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # per layer
    neurons: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # per sample, per layer
    steps: int = 0
    batch: int = 0


class Device(ABC):
    """One backend. Subclasses set ``name`` and implement ``reset`` and ``step``."""

    name: ClassVar[str] = "device"
    latency: int = 0
    stream: StreamInfo
    num_classes: int
    input_shape: tuple[int, int, int]
    #: the file the device opened (named in errors), where it has one
    artifact: Path | None = None

    @property
    def bin_spec(self) -> BinSpec:
        """How events become this device's frames: the artifact's ``dt_us`` and binning mode.

        A netx file written by lava-dl (or by hand) records no time step: then a ``ValueError``
        that names the file and how to supply one.
        """
        if self.stream.dt_us is None:
            raise ValueError(f"{self.artifact or self.name} records no time step (dt_us), so events cannot be "
                             f"binned; open it with dt_us=MICROSECONDS (stdl-edge run --dt-us MICROSECONDS)")
        return self.stream.bin_spec

    @abstractmethod
    def reset(self, batch: int) -> None:
        """Zero all state for a batch of ``batch`` independent streams."""

    @abstractmethod
    def step(self, frame: np.ndarray) -> np.ndarray:
        """Advance one time step: ``frame (B, C, H, W)`` -> readout ``(B, classes)`` float32."""

    def run_frames(self, frames: np.ndarray) -> np.ndarray:
        """Readouts ``(T + latency, B, classes)`` of ``frames (T, B, C, H, W)`` from a reset state.

        ``reset(B)``, one ``step`` per frame, then ``latency`` empty frames. :func:`classify`
        uses it; a device that runs a whole sample faster at once (lava) overrides it.
        """
        steps, batch = frames.shape[:2]
        self.reset(batch)
        empty = np.zeros_like(frames[0])
        outputs = [self.step(frames[t] if t < steps else empty) for t in range(steps + self.latency)]
        return np.stack(outputs) if outputs else np.zeros((0, batch, self.num_classes), np.float32)

    def stats(self) -> LayerStats:
        """Per-layer spike and synaptic-operation counts since ``reset`` (if the device counts them)."""
        return LayerStats()

    def recorded(self) -> dict[str, np.ndarray]:
        """With ``record=True`` at load: the last step's per-layer outputs (and states), by name.

        Keys are layer names (spikes, ``(B, ...)``) and ``'<layer>/u'``, ``'<layer>/v'`` for
        states where the device has them. ``verify`` compares the keys two devices share.
        """
        return {}

    def check_frame(self, frame: np.ndarray, batch: int) -> np.ndarray:
        """Validate a frame at the boundary; returns it as float32 ``(B, C, H, W)``."""
        frame = np.asarray(frame)
        expected = (batch, *self.input_shape)
        if frame.shape != expected:
            raise ValueError(f"{self.name}: frame has shape {frame.shape}, expected {expected} "
                             "(batch, polarity channels, height, width); call reset(batch) first "
                             "or crop/downsample the events to the model's sensor")
        if frame.dtype.kind not in "biuf":
            raise ValueError(f"{self.name}: frame dtype {frame.dtype} is not numeric")
        return frame.astype(np.float32, copy=False)


def classify(device: Device, frames: np.ndarray) -> np.ndarray:
    """Time-averaged readout ``(B, classes)`` of ``frames (T, B, C, H, W)``, latency aligned."""
    frames = np.asarray(frames, dtype=np.float32)
    if frames.ndim != 5:
        raise ValueError(f"frames must be (T, B, C, H, W), got shape {frames.shape}")
    steps, batch = frames.shape[:2]
    total = np.zeros((batch, device.num_classes), dtype=np.float64)
    for y in device.run_frames(frames)[device.latency:]:
        total += y
    return (total / max(steps, 1)).astype(np.float32)


def stream_windows(device: Device, chunks: Iterable[np.ndarray], window_steps: int) -> Iterator[tuple[int, np.ndarray]]:
    """Run one event stream (batch 1) and yield ``(window_index, mean readout (classes,))``.

    Events are binned at the artifact's ``dt`` as they arrive, so memory stays bounded.
    Each window is classified independently (state reset at window starts).
    """
    if window_steps < 1:
        raise ValueError(f"window_steps={window_steps} must be >= 1")
    binner = EventBinner(device.stream.sensor, device.bin_spec)
    window: list[np.ndarray] = []
    index = 0

    def frames_of() -> Iterator[np.ndarray]:
        for chunk in chunks:
            yield from binner.push(chunk)
        yield from binner.flush()

    for frame in frames_of():
        window.append(frame)
        if len(window) == window_steps:
            yield index, classify(device, np.stack(window)[:, None])[0]
            index += 1
            window = []
    if window:
        yield index, classify(device, np.stack(window)[:, None])[0]


def open_device(name: str, artifact: str | Path, *, export: ExportFn | None = None,
                notify: Callable[[str], None] | None = None, **options: Any) -> Device:
    """Open ``artifact`` on the device registered as ``name`` (see ``stdl-edge info``).

    ``artifact`` is the device's own artifact or a run folder, whose export for the device's
    format the run folder finds (:func:`stdl_edge.artifact.resolve_artifact`; a missing export
    is written first by ``export`` when given, ``notify(message)`` is told).
    """
    entry = DEVICES.entry(name)
    path = resolve_artifact(artifact, entry.format, export, notify)
    device = entry.target(path, **options)
    if device.artifact is None:
        device.artifact = path
    return device
