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
from dataclasses import dataclass, field, replace
from pathlib import Path
from itertools import chain
from typing import Any, Callable, ClassVar, Iterable, Iterator

import numpy as np

from stdl_edge.artifact import ExportFn, StreamInfo, resolve_artifact
from stdl_edge.binning import BinSpec, Window, bin_windows
from stdl_edge.registry import DEVICES
from stdl_edge.events import EventColumns, columns_of, validate_events


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

    def start_frames(self, frames: np.ndarray) -> np.ndarray:
        """The check and reset a whole-window ``run_frames`` starts with: ``frames`` as float32
        ``(T, B, *input_shape)`` (one ValueError naming the shape otherwise), the device reset for ``B``."""
        frames = np.asarray(frames)
        if frames.ndim != 2 + len(self.input_shape):
            raise ValueError(f"{self.name}: frames have shape {frames.shape}, expected (T, B, "
                             f"{', '.join(map(str, self.input_shape))})")
        batch = frames.shape[1]
        self.reset(batch)
        if len(frames):
            self.check_frame(frames[0], batch)  # shape and dtype, the same for every frame
        return np.ascontiguousarray(frames, dtype=np.float32)

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


#: whole-window runs (``run_frames``) go layer by layer over chunks of at most this many steps...
CHUNK_STEPS = 32
#: ... and at most this many values of one layer (steps x batch x neurons: 16 MiB of float64);
#: beyond it a chunk leaves the cache and a batch of 64 ran slower per stream than stepping
CHUNK_VALUES = 1 << 21


def chunk_steps(batch: int, largest_layer: int) -> int:
    """Steps per chunk of a whole-window run: :data:`CHUNK_STEPS`, fewer where ``batch`` streams
    of the largest layer (``largest_layer`` neurons) would pass :data:`CHUNK_VALUES` (at least 1).

    >>> chunk_steps(1, 16 * 17 * 17), chunk_steps(64, 16 * 17 * 17), chunk_steps(64, 16 * 64 * 64)
    (32, 7, 1)
    """
    return max(1, min(CHUNK_STEPS, CHUNK_VALUES // max(batch * largest_layer, 1)))


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


@dataclass(frozen=True)
class TimeSpan:
    """The part of a stream to run, in microseconds of the file's clock.

    start_us / stop_us: absolute times (``None``: from the first event / to the last); with
      ``start_relative`` / ``stop_relative``, microseconds after the stream's first event.
    Events with ``start <= t < stop`` are kept; time 0 of the run (``t_us`` of the
    predictions) is ``start``, or the first event when no start is given.
    """

    start_us: int | None = None
    stop_us: int | None = None
    start_relative: bool = False
    stop_relative: bool = False

    @classmethod
    def parse(cls, start: str | None, stop: str | None) -> TimeSpan:
        """From ``--t-start`` / ``--t-stop`` text: ``913000000`` is absolute, ``+20000`` relative
        to the first event (both in microseconds)."""
        values = []
        for name, text in (("--t-start", start), ("--t-stop", stop)):
            if text is None:
                values.append((None, False))
                continue
            body = text.strip()
            relative = body.startswith("+")
            try:
                value = int(body[1:] if relative else body)
            except ValueError:
                raise ValueError(f"{name} {text!r} must be whole microseconds: absolute (913000000) or "
                                 "relative to the first event with a + prefix (+20000)") from None
            if value < 0:
                raise ValueError(f"{name} {text!r} must be >= 0 microseconds")
            values.append((value, relative))
        return cls(values[0][0], values[1][0], values[0][1], values[1][1])

    def resolve(self, first_t_us: int) -> tuple[int, int | None]:
        """``(origin, stop)`` in absolute microseconds for a stream whose first event is at ``first_t_us``."""
        start = first_t_us if self.start_us is None else self.start_us + (first_t_us if self.start_relative else 0)
        stop = None if self.stop_us is None else self.stop_us + (first_t_us if self.stop_relative else 0)
        if stop is not None and stop <= start:
            raise ValueError(f"the span ends at {stop} us, not after its start at {start} us; "
                             "--t-stop must be after --t-start")
        return start, stop


@dataclass
class StreamCounts:
    """What a window run read, filled as the stream goes (events, absolute microseconds).

    read: events the source delivered; cropped: of those, what its crop/downsample passed on;
    outside_crop: dropped by the crop/downsample (first); outside_span: of the rest, dropped
    before ``--t-start`` or at/after ``--t-stop`` (the file is read up to the chunk that passes
    the stop); kept: classified.
    first_t_us / last_t_us: the first and last event read; origin_us: time 0 of the run.
    """

    read: int = 0
    cropped: int = 0
    outside_span: int = 0
    first_t_us: int | None = None
    last_t_us: int | None = None
    origin_us: int | None = None

    @property
    def outside_crop(self) -> int:
        return self.read - self.cropped

    @property
    def kept(self) -> int:
        return self.cropped - self.outside_span

    @property
    def span_us(self) -> int:
        """Microseconds from the first event read to the last (inclusive), 0 before any."""
        return 0 if self.first_t_us is None else self.last_t_us - self.first_t_us + 1


def read_counted(source: Any, counts: StreamCounts) -> Iterator[EventColumns]:
    """``source.column_chunks()`` (an :class:`~stdl_edge.sources.EventSource`), counting into ``counts``
    the events read before its crop/downsample, the ones it drops, and the first and last time."""

    def on_read(columns: EventColumns) -> None:
        if counts.first_t_us is None:
            counts.first_t_us = int(columns.t[0])
        counts.read += columns.count
        counts.last_t_us = int(columns.t[-1])

    for chunk in source.column_chunks(on_read=on_read):
        counts.cropped += chunk.count
        yield chunk


@dataclass(frozen=True)
class WindowPrediction:
    """One classified window of :func:`stream_windows`.

    t_us / t_end_us: the window's span relative to the run's origin (microseconds);
    t_abs_us: its start on the file's clock. empty: no events (the readout of an empty
    window, computed once). restarted: the first window after a gap reset.
    """

    index: int
    t_us: int
    t_end_us: int
    t_abs_us: int
    events: int
    scores: np.ndarray
    empty: bool = False
    restarted: bool = False


def stream_windows(device: Device, chunks: Iterable[np.ndarray | EventColumns], window_steps: int, *,
                   span: TimeSpan = TimeSpan(), skip_empty: bool = False, reset_after_gap_us: int | None = None,
                   counts: StreamCounts | None = None) -> Iterator[WindowPrediction]:
    """Run one event stream (batch 1) and yield a :class:`WindowPrediction` per window.

    Time 0 is the first event (or ``span``'s start), so a file whose clock starts at 913 s or
    at Unix-epoch microseconds runs from its first event. Events are binned at the artifact's
    ``dt`` by :func:`stdl_edge.binning.bin_windows`: one window of frames in memory whatever
    the gaps. Each window is classified independently (state reset at window starts); a
    window without events, between two with events, gets the readout of an empty window,
    classified once and reused (from a reset state, no input always gives the same readout),
    or is left out with ``skip_empty``. ``reset_after_gap_us``: a gap between events longer
    than this ends the open window, and the next window starts at the next event (no empty
    windows for the gap). ``counts`` gets the events dropped outside the span and the origin.
    """
    if window_steps < 1:
        raise ValueError(f"window_steps={window_steps} must be >= 1")
    if reset_after_gap_us is not None and reset_after_gap_us <= 0:
        raise ValueError(f"reset_after_gap_us={reset_after_gap_us} must be > 0 (--reset-after-gap-ms)")
    counts = counts if counts is not None else StreamCounts()
    spec = device.bin_spec
    window_us = window_steps * spec.dt_us
    empty_scores: list[np.ndarray] = []
    chunks = (c if isinstance(c, EventColumns) else columns_of(validate_events(c)) for c in chunks)
    first = next((c for c in chunks if c.count), None)
    if first is None:
        return
    origin, stop = span.resolve(int(first.t[0]))
    counts.origin_us = origin

    def in_span() -> Iterator[EventColumns]:
        for chunk in chain([first], chunks):
            t = chunk.t
            lo = int(np.searchsorted(t, origin, side="left"))
            hi = len(t) if stop is None else int(np.searchsorted(t, stop, side="left"))
            counts.outside_span += lo + len(t) - hi
            if hi > lo:
                yield chunk.select(slice(lo, hi))
            if hi < len(t):
                return  # the span ends here: the rest of the file is not read

    def record(index: int, t_abs: int, events: int, scores: np.ndarray, restarted: bool) -> WindowPrediction:
        rel = t_abs - origin
        return WindowPrediction(index, rel, rel + window_us, t_abs, events, scores, events == 0, restarted)

    def empty() -> np.ndarray:
        if not empty_scores:  # one window of zeros, classified once
            empty_scores.append(classify(device, np.zeros((window_steps, 1, *device.input_shape), np.float32))[0])
        return empty_scores[0]

    previous: Window | None = None
    for win in bin_windows(in_span(), device.stream.sensor, replace(spec, t_start_us=origin),
                           window_steps, restart_gap_us=reset_after_gap_us):
        gap_from = previous.index + 1 if previous is not None else 0  # windows without events before this
        if not win.restarted and not skip_empty:
            t0 = previous.t_us + window_us if previous is not None else origin
            for i in range(gap_from, win.index):
                yield record(i, t0 + (i - gap_from) * window_us, 0, empty(), False)
        yield record(win.index, win.t_us, win.events, classify(device, win.frames[:, None])[0], win.restarted)
        previous = win


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
