"""The one binning function: DVS events to per-step frames, whole, streamed, or in windows.

Binning turns events into per-step frames ``(T, 2, H, W)``: step ``k`` holds the
events with ``t_start + k*dt <= t < t_start + (k+1)*dt``; channel 0 is OFF, 1 is ON.
:class:`EventBinner` does it in a stream over chunks of any size and gives exactly
the frames of :func:`bin_events` on the whole array. Training, exporters and every
device use these two. A stream classified in windows is binned by :func:`bin_windows`:
one window of frames in memory whatever the gaps between events.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Callable, Iterable, Iterator, NamedTuple

import numpy as np

from . import jit
from .events import EventColumns, EventError, SensorSize, check_columns, columns_of, validate_events
from .jit import compile_kernel

BIN_MODES = ("binary", "count")


@dataclass(frozen=True)
class BinSpec:
    """How events become frames.

    dt_us: length of one time step in microseconds.
    mode: 'binary' (pixel fires if it had >= 1 event in the step) or 'count'.
    t_start_us: time of the start of step 0.
    """

    dt_us: int
    mode: str = "binary"
    t_start_us: int = 0

    def __post_init__(self) -> None:
        if int(self.dt_us) != self.dt_us or self.dt_us <= 0:
            raise EventError(f"dt_us={self.dt_us} must be a positive whole number of microseconds")
        if self.mode not in BIN_MODES:
            raise EventError(f"binning mode {self.mode!r} is unknown; use one of {BIN_MODES}")


def _accumulate_into(flat: np.ndarray, events: np.ndarray | EventColumns, steps: np.ndarray, first_step: int,
                     sensor: SensorSize, mode: str) -> None:
    """Add events (an event array or its columns, with their step index) into flat frames
    starting at ``first_step``."""
    if len(steps) == 0:
        return
    h, w = sensor.height, sensor.width
    # flat index ((step * 2 + p) * H + y) * W + x, built in place (no temporaries per field), in
    # int32 when the frames allow it (half the memory traffic of int64)
    wide = flat.size >= np.iinfo(np.int32).max
    idx = np.subtract(steps, first_step, dtype=np.int64 if wide else np.int32)
    idx *= 2
    x, y, _, p = events if isinstance(events, EventColumns) else columns_of(events)
    idx += p
    idx *= h
    idx += y
    idx *= w
    idx += x
    if mode == "binary":
        flat[idx] = 1.0
    else:
        flat += np.bincount(idx, minlength=flat.size).astype(np.float32)


def _window_loop(buffer: np.ndarray, x: np.ndarray, y: np.ndarray, t: np.ndarray, p: np.ndarray, start: int,
                 dt: int, h: int, w: int, binary: bool) -> int:  # pragma: no cover - compiled by numba
    """The compiled body of one window in :func:`bin_windows`: sorted events with
    ``start <= t < start + window_steps * dt`` into the flat window ``buffer`` at
    ``((step * 2 + p) * h + y) * w + x``, the step followed as the times pass its edges (no
    division per event); returns the last event's step. What the numpy path computes with
    ``searchsorted`` and :func:`_accumulate_into`, in one pass."""
    step = 0
    edge = start + dt
    for i in range(len(t)):
        while t[i] >= edge:
            step += 1
            edge += dt
        idx = ((step * 2 + np.int64(p[i])) * h + np.int64(y[i])) * w + np.int64(x[i])
        if binary:
            buffer[idx] = 1.0
        else:
            buffer[idx] += 1.0
    return step


@lru_cache(maxsize=None)
def _window_kernel() -> Callable[..., int] | None:
    return compile_kernel(_window_loop)


def _accumulate(events: np.ndarray, steps: np.ndarray, first_step: int, num_steps: int,
                sensor: SensorSize, mode: str) -> np.ndarray:
    """Frames ``(num_steps, 2, H, W)`` float32 for events whose step index is in range."""
    flat = np.zeros(num_steps * 2 * sensor.height * sensor.width, dtype=np.float32)
    _accumulate_into(flat, events, steps, first_step, sensor, mode)
    return flat.reshape(num_steps, 2, sensor.height, sensor.width)


def bin_events(events: np.ndarray, sensor_size: SensorSize | tuple[int, int, int], spec: BinSpec,
               num_steps: int | None = None) -> np.ndarray:
    """Bin a whole event array into frames ``(T, 2, H, W)`` float32.

    ``T = num_steps`` if given (later events are dropped, missing steps are empty),
    else up to the step of the last event. Events before ``t_start_us`` are dropped.

    >>> from stdl_edge.events import make_events
    >>> ev = make_events([0, 1], [0, 0], [5, 15], [True, False])
    >>> bin_events(ev, SensorSize(2, 1), BinSpec(dt_us=10)).shape
    (2, 2, 1, 2)
    """
    sensor = SensorSize(*sensor_size)
    validate_events(events, sensor)
    steps = (events["t"] - spec.t_start_us) // spec.dt_us
    keep = steps >= 0
    if num_steps is None:
        num_steps = int(steps[-1]) + 1 if len(steps) and steps[-1] >= 0 else 0
    elif num_steps < 0:
        raise EventError(f"num_steps={num_steps} must be >= 0")
    keep &= steps < num_steps
    return _accumulate(events[keep], steps[keep], 0, num_steps, sensor, spec.mode)


class EventBinner:
    """Streaming binner: ``push(chunk)`` returns the frames completed so far, ``flush()`` the rest.

    The step still open (it may receive more events) is kept as one partly filled frame,
    and no event is copied or kept after ``push`` returns (a reader may reuse its buffer).
    ``concatenate(push(c) for c in chunks) + flush()`` equals :func:`bin_events` on the
    concatenated chunks. ``push`` returns every step up to the chunk's last event, empty
    ones included, so a gap of G microseconds costs ``G / dt_us`` frames: streams with
    gaps (a paused camera, timestamps far from ``t_start_us``) go through :func:`bin_windows`.
    """

    def __init__(self, sensor_size: SensorSize | tuple[int, int, int], spec: BinSpec) -> None:
        self.sensor = SensorSize(*sensor_size)
        self.spec = spec
        self._frame_size = 2 * self.sensor.height * self.sensor.width
        self._next_step = 0  # the open step: the first one not yet emitted
        self._open = np.zeros(self._frame_size, dtype=np.float32)  # its frame so far (flat)
        self._open_events = 0  # events binned into the open frame
        self._last_t: int | None = None

    @property
    def steps_emitted(self) -> int:
        return self._next_step

    def _empty(self) -> np.ndarray:
        return np.zeros((0, *self.sensor.frame_shape), dtype=np.float32)

    def push(self, chunk: np.ndarray) -> np.ndarray:
        validate_events(chunk, self.sensor, after_t=self._last_t)
        if len(chunk) == 0:
            return self._empty()
        self._last_t = int(chunk["t"][-1])
        # events are sorted (validated above): cut with searchsorted and slices, not masks
        chunk = chunk[int(np.searchsorted(chunk["t"], self.spec.t_start_us, side="left")):]
        if len(chunk) == 0:
            return self._empty()
        steps = (chunk["t"] - self.spec.t_start_us) // self.spec.dt_us
        last_step = int(steps[-1])  # may still receive events: it becomes the open step
        cut = int(np.searchsorted(steps, last_step, side="left"))
        mode = self.spec.mode
        if last_step == self._next_step:  # the whole chunk falls in the open step
            _accumulate_into(self._open, chunk, steps, last_step, self.sensor, mode)
            self._open_events += len(chunk)
            return self._empty()
        n_out = last_step - self._next_step
        flat = np.zeros(n_out * self._frame_size, dtype=np.float32)
        flat[:self._frame_size] = self._open  # the open step is the first frame emitted now
        _accumulate_into(flat, chunk[:cut], steps[:cut], self._next_step, self.sensor, mode)
        self._open = np.zeros(self._frame_size, dtype=np.float32)
        _accumulate_into(self._open, chunk[cut:], steps[cut:], last_step, self.sensor, mode)
        self._open_events = len(chunk) - cut
        self._next_step = last_step
        return flat.reshape(n_out, *self.sensor.frame_shape)

    def flush(self) -> np.ndarray:
        """Emit the open step's frame (if it received any events)."""
        if self._open_events == 0:
            return self._empty()
        frame = self._open.reshape(1, *self.sensor.frame_shape)
        self._open = np.zeros(self._frame_size, dtype=np.float32)
        self._open_events = 0
        self._next_step += 1
        return frame


class Window(NamedTuple):
    """One window of binned frames from :func:`bin_windows`.

    index: window number since the stream's origin (windows without events are not
      yielded; after a restart the numbering goes on from the last window).
    t_us: start of the window's first step, absolute microseconds (the file's clock).
    frames: ``(steps, 2, H, W)`` float32, ``steps = window_steps`` except for the stream's
      last window, which ends at its last event's step. A view of one buffer that the next
      window overwrites: copy it to keep it.
    events: events binned into the window.
    restarted: the window grid restarted at this window's first event (a gap longer
      than ``restart_gap_us`` came before it).
    """

    index: int
    t_us: int
    frames: np.ndarray
    events: int
    restarted: bool


def bin_windows(chunks: Iterable[np.ndarray | EventColumns], sensor_size: SensorSize | tuple[int, int, int], spec: BinSpec,
                window_steps: int, *, restart_gap_us: int | None = None) -> Iterator[Window]:
    """Bin a stream of sorted chunks into windows of ``window_steps`` steps, in bounded memory.

    ``chunks``: event arrays, or :class:`~stdl_edge.events.EventColumns` (what a source's
    ``column_chunks()`` yields: no packing into the structured type), checked either way.

    Window ``k`` holds steps ``k * window_steps ..`` of :func:`bin_events` from ``spec.t_start_us``
    (the origin; earlier events are dropped): window ``k`` starts at
    ``t = t_start_us + k * window_steps * dt_us``. Only windows with events are yielded, and all
    share one buffer of ``window_steps`` frames, so memory is one window whatever the gaps
    between events (a camera paused for an hour costs nothing).

    restart_gap_us: when two consecutive events are more than this apart, the open window is
      yielded and the grid restarts at the later event (its window starts at that event's time).
    """
    if int(window_steps) != window_steps or window_steps < 1:
        raise EventError(f"window_steps={window_steps} must be a whole number >= 1")
    if restart_gap_us is not None and restart_gap_us <= 0:
        raise EventError(f"restart_gap_us={restart_gap_us} must be > 0 microseconds")
    sensor = SensorSize(*sensor_size)
    frame_size = 2 * sensor.height * sensor.width
    buffer = np.zeros(window_steps * frame_size, dtype=np.float32)  # the one window in memory
    origin, base = int(spec.t_start_us), 0  # window index = base + (t - origin) // window_us
    window_us = window_steps * spec.dt_us
    step_index = np.arange(window_steps, dtype=np.int32)
    step_edges = spec.dt_us * step_index[1:].astype(np.int64)  # step starts after the first, from the window's
    open_k: int | None = None  # the window being filled (index since origin), its events, last step
    open_events = open_last = 0
    restarted = False
    last_t: int | None = None

    def emit(final: bool) -> Window:
        steps = open_last + 1 if final else window_steps
        view = buffer[:steps * frame_size].reshape(steps, *sensor.frame_shape)
        return Window(base + open_k, origin + open_k * window_us, view, open_events, restarted)

    for chunk in chunks:
        if isinstance(chunk, EventColumns):
            check_columns(chunk, sensor, after_t=last_t)
            columns = chunk
        else:
            columns = columns_of(validate_events(chunk, sensor, after_t=last_t))
        if columns.count == 0:
            continue
        t = columns.t
        starts = [0]
        if restart_gap_us is not None:
            starts += (np.flatnonzero(t[1:] - t[:-1] > restart_gap_us) + 1).tolist()
        gap_before = last_t is not None and restart_gap_us is not None and int(t[0]) - last_t > restart_gap_us
        last_t = int(t[-1])
        for j, a in enumerate(starts):
            piece = columns.select(slice(a, starts[j + 1] if j + 1 < len(starts) else None))
            if j > 0 or gap_before:  # restart the grid at this piece's first event
                if open_k is not None:
                    yield emit(final=False)
                    buffer[:] = 0
                    base += open_k + 1
                open_k, open_events, origin, restarted = None, 0, int(piece.t[0]), True
            piece = piece.select(slice(int(np.searchsorted(piece.t, origin, side="left")), None))
            if piece.count == 0:
                continue
            # window by window (a few per chunk): the window's end and its steps' edges found by
            # binary search in the sorted times, so no per-event division
            t, lo = piece.t, 0
            while lo < len(t):
                k = (int(t[lo]) - origin) // window_us
                start = origin + k * window_us
                hi = lo + int(np.searchsorted(t[lo:], start + window_us, side="left"))
                if open_k is not None and k != open_k:
                    yield emit(final=False)
                    buffer[:] = 0
                    open_events, restarted = 0, False
                open_k = k
                events = piece.select(slice(lo, hi))
                # compiled for big pieces; numpy (searchsorted for the step edges, then _accumulate_into) else
                kernel = _window_kernel() if hi - lo >= jit.MIN_EVENTS else None
                if kernel is not None:
                    last = kernel(buffer, events.x, events.y, events.t, events.p, start, spec.dt_us, sensor.height,
                                  sensor.width, spec.mode == "binary")
                else:
                    cuts = np.searchsorted(events.t, start + step_edges, side="left")
                    local = np.repeat(step_index, np.diff(cuts, prepend=0, append=hi - lo))
                    _accumulate_into(buffer, events, local, 0, sensor, spec.mode)
                    last = int(local[-1])
                open_events += hi - lo
                open_last = int(last)
                lo = hi
    if open_k is not None:
        yield emit(final=True)
