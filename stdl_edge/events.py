"""DVS events: the one event type, the one converter to it, its validation, and the one binning function.

Events are numpy structured arrays with tonic's ``events_struct`` layout: fields
``x, y`` (int16 pixels), ``t`` (int64 microseconds, sorted) and ``p`` (bool, True = ON).
A sensor is ``SensorSize(width, height, polarities)`` as in tonic. :func:`as_events` turns
any integer layout of those fields (a reader's, tonic's, aedat's ``on``) into that one type.

Binning turns events into per-step frames ``(T, 2, H, W)``: step ``k`` holds the
events with ``t_start + k*dt <= t < t_start + (k+1)*dt``; channel 0 is OFF, 1 is ON.
:class:`EventBinner` does it in a stream over chunks of any size and gives exactly
the frames of :func:`bin_events` on the whole array. Training, exporters and every
device use these two. A stream classified in windows is binned by :func:`bin_windows`:
one window of frames in memory whatever the gaps between events.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Iterator, Mapping, NamedTuple

import numpy as np
from numpy.typing import ArrayLike

EVENT_DTYPE = np.dtype([("x", np.int16), ("y", np.int16), ("t", np.int64), ("p", bool)])
BIN_MODES = ("binary", "count")


class EventError(ValueError):
    """Events that cannot be used as given; the message names the problem and the fix.

    index: the position of the offending event in the array checked, when one event is to blame
      (``str(e)`` then starts with ``"event <index>"``; ``e.message`` is the rest, so a reader can
      name the event by its byte or line instead).
    """

    def __init__(self, message: str, index: int | None = None) -> None:
        super().__init__(message)
        self.message, self.index = message, index

    def __str__(self) -> str:
        return self.message if self.index is None else f"event {self.index} {self.message}"


class SensorSize(NamedTuple):
    width: int
    height: int
    polarities: int = 2

    @property
    def frame_shape(self) -> tuple[int, int, int]:
        """Shape of one binned frame: ``(2, H, W)``."""
        return (2, self.height, self.width)


#: field names taken as the polarity, in this order (aedat's packets call it ``on``)
POLARITY_FIELDS = ("p", "on", "polarity")

#: microseconds per unit of a ``time_unit=`` option: timestamps are converted to integer us
TIME_UNITS = {"us": 1, "ms": 1_000, "s": 1_000_000}


def as_events(events: np.ndarray | Mapping[str, ArrayLike], time_unit: str = "us") -> np.ndarray:
    """``events`` as :data:`EVENT_DTYPE`: the one converter every reader and data set uses.

    events: a 1-D structured array, or a mapping of field name to equal-length 1-D arrays,
      with fields ``x``, ``y`` (pixels), ``t`` and ``p`` (or ``on`` / ``polarity``), matched by
      name in any order; other fields are ignored. Values may be of any integer or bool dtype,
      or floats holding whole numbers; ``x`` and ``y`` must fit int16, ``t`` int64, and ``p``
      must be 0/1 (or bool). NaN, inf and fractions are errors, never rounded or taken as ON.
    time_unit: the unit of ``t``: ``"us"`` (microseconds, the default: ``t`` must be whole),
      ``"ms"`` or ``"s"``; those are converted to ``round(t * 1000)`` / ``round(t * 1e6)`` us.

    Returns ``events`` itself when it already has :data:`EVENT_DTYPE` in microseconds, else a new
    array (never a view of the caller's). Sensor bounds and time order are checked by
    :func:`validate_events`, not here. Raises :class:`EventError` naming the field and the event.

    >>> raw = np.array([(30, 4, 2, 1)], dtype=[("t", "<u8"), ("x", "<u2"), ("y", "<u2"), ("on", "u1")])
    >>> as_events(raw).tolist()
    [(4, 2, 30, True)]
    >>> as_events({"x": [1], "y": [0], "t": [0.25], "p": [1]}, time_unit="s").tolist()
    [(1, 0, 250000, True)]
    >>> as_events({"x": [1], "y": [0], "t": [7]})
    Traceback (most recent call last):
    ...
    stdl_edge.events.EventError: events lack field(s) p; have x, y, t (need x, y, t and one of p, on, polarity)
    """
    if time_unit not in TIME_UNITS:
        raise EventError(f"time_unit={time_unit!r} is unknown; use one of {', '.join(TIME_UNITS)}")
    if isinstance(events, np.ndarray):
        names = _field_names(events)
        if events.dtype == EVENT_DTYPE and events.ndim == 1 and time_unit == "us":
            return events  # nothing downstream writes into events it did not make
        if events.ndim != 1:
            raise EventError(f"events must be a 1-D array, got shape {events.shape}")
        columns = {f: events[f] for f in names}
    elif isinstance(events, Mapping):
        columns = {str(k): np.asarray(v) for k, v in events.items()}
    else:
        raise EventError(f"events must be a numpy structured array (or a mapping of arrays) with fields "
                         f"x, y, t, p, got {type(events).__name__}")
    pol = next((f for f in POLARITY_FIELDS if f in columns), None)
    missing = [f for f in ("x", "y", "t") if f not in columns] + ([] if pol else ["p"])
    if missing:
        raise EventError(f"events lack field(s) {', '.join(missing)}; have {', '.join(columns) or 'none'} "
                         f"(need x, y, t and one of {', '.join(POLARITY_FIELDS)})")
    picked = {"x": columns["x"], "y": columns["y"], "t": columns["t"], "p": columns[pol]}
    for f, v in picked.items():
        if v.ndim != 1:
            raise EventError(f"events field {f!r} has shape {v.shape}; every field must be 1-D")
    n = len(picked["t"])
    if any(len(v) != n for v in picked.values()):
        raise EventError("x, y, t, p have different lengths (" + ", ".join(str(len(v)) for v in picked.values()) + ")")
    out = np.empty(n, dtype=EVENT_DTYPE)
    for f, v in picked.items():
        out[f] = _to_us(v, time_unit) if f == "t" and time_unit != "us" else _whole(v, f, out.dtype[f])
    return out


def _first(bad: np.ndarray) -> int:
    return int(np.flatnonzero(bad)[0])


def _whole(v: np.ndarray, field: str, target: np.dtype) -> np.ndarray:
    """``v`` checked to convert to ``target`` exactly (whole numbers in range; polarity 0/1)."""
    if v.dtype.kind not in "biuf":
        raise EventError(f"events field {field!r} has dtype {v.dtype}; it must hold integers or bools")
    if len(v) == 0 or np.can_cast(v.dtype, target, "safe"):
        return v  # bool, or an integer type that always fits: nothing to check
    if v.dtype.kind == "f":
        finite = np.isfinite(v)
        if not finite.all():
            i = _first(~finite)
            raise EventError(f"has {field}={v[i]}, not a finite number; the file is corrupt", i)
        fractional = v != np.trunc(v)
        if fractional.any():
            i = _first(fractional)
            if field == "t":
                raise EventError(f"has t={v[i]}, not a whole number of microseconds; if t is in seconds or "
                                 "milliseconds pass time_unit='s' or 'ms' (--time-unit)", i)
            raise EventError(f"has {field}={v[i]}, not a whole number; {field} must hold integers", i)
    lo, hi = (0, 1) if target.kind == "b" else (np.iinfo(target).min, np.iinfo(target).max)
    if v.dtype.kind == "f" or int(v.min()) < lo or int(v.max()) > hi:
        bad = (v < lo) | (v > hi)
        if not bad.any():
            return v
        i = _first(bad)
        if target.kind == "b":
            raise EventError(f"has polarity {v[i]}; polarity must be 0/1 (or bool); map -1/+1 polarities "
                             "with p > 0", i)
        raise EventError(f"has {field}={v[i]}, outside {target} ({lo}..{hi})", i)
    return v


def _to_us(t: np.ndarray, time_unit: str) -> np.ndarray:
    """Timestamps in ``time_unit`` as int64 microseconds, rounded to the nearest microsecond."""
    scale = TIME_UNITS[time_unit]
    limit = np.iinfo(np.int64).max // scale
    if t.dtype.kind in "iub":
        wide = t.astype(np.int64) if t.dtype != np.uint64 else t
        bad = (wide > limit) | (wide < -limit) if len(t) else np.zeros(0, bool)
        if bad.any():
            i = _first(bad)
            raise EventError(f"has t={t[i]} {time_unit}, beyond the int64 microsecond range", i)
        return wide.astype(np.int64) * scale
    if t.dtype.kind != "f":
        raise EventError(f"events field 't' has dtype {t.dtype}; it must hold numbers")
    us = np.rint(t.astype(np.float64) * scale)
    bad = ~(np.abs(us) < 2.0 ** 63)  # NaN compares False: caught here too
    if bad.any():
        i = _first(bad)
        raise EventError(f"has t={t[i]} {time_unit}, not a finite number of microseconds within int64", i)
    return us.astype(np.int64)


def make_events(x: ArrayLike, y: ArrayLike, t: ArrayLike, p: ArrayLike) -> np.ndarray:
    """Pack four equal-length sequences into a new :data:`EVENT_DTYPE` array (see :func:`as_events`)."""
    return as_events({"x": x, "y": y, "t": t, "p": p})


def _field_names(events: object) -> tuple[str, ...]:
    """The field names of a structured array; :class:`EventError` for anything else."""
    if not isinstance(events, np.ndarray) or events.dtype.names is None:
        raise EventError(f"events must be a numpy structured array with fields x, y, t, p "
                         f"(stdl_edge.events.EVENT_DTYPE), got {type(events).__name__}"
                         + (f" of dtype {events.dtype}" if isinstance(events, np.ndarray) else ""))
    return events.dtype.names


def validate_events(events: np.ndarray, sensor_size: SensorSize | tuple[int, int, int] | None = None,
                    *, allow_empty: bool = True, after_t: int | None = None) -> np.ndarray:
    """Check ``events`` and return it unchanged; raise :class:`EventError` naming the problem
    (and, in ``index``, the offending event).

    Checks: a 1-D structured array with fields x, y, t, p of the right kinds; timestamps
    non-negative and sorted (and ``>= after_t`` when given, for streams); polarity 0/1;
    coordinates inside ``sensor_size`` when given; non-empty unless ``allow_empty``.
    """
    names = _field_names(events)
    missing = [f for f in ("x", "y", "t", "p") if f not in names]
    if missing:
        raise EventError(f"events lack field(s) {', '.join(missing)}; have {', '.join(names)}")
    for f in ("x", "y", "t"):
        if events.dtype[f].kind not in "iu":
            raise EventError(f"events field {f!r} has dtype {events.dtype[f]}; it must be an integer "
                             f"(t in microseconds)")
    if events.dtype["p"].kind not in "biu":
        raise EventError(f"events field 'p' has dtype {events.dtype['p']}; it must be bool or 0/1 integers")
    if events.ndim != 1:
        raise EventError(f"events must be a 1-D array, got shape {events.shape}")
    if len(events) == 0:
        if not allow_empty:
            raise EventError("no events: the input is empty")
        return events
    t = np.ascontiguousarray(events["t"])  # one strided read; the comparisons then run contiguous
    if len(t) > 1 and (t[1:] < t[:-1]).any():  # direct comparison: no diff temporary
        i = _first(t[1:] < t[:-1])
        raise EventError(f"at {int(t[i + 1])} us comes after {int(t[i])} us: timestamps are not sorted (sort "
                         "by t first, np.sort(events, order='t'), or the recording's clock jumped back)", i + 1)
    if t[0] < 0:  # sorted, so the first is the smallest
        raise EventError(f"has a negative timestamp {int(t[0])} us; timestamps must be >= 0 microseconds", 0)
    if after_t is not None and t[0] < after_t:
        raise EventError(f"at {int(t[0])} us comes after {int(after_t)} us: timestamps go backwards across "
                         "chunks", 0)
    p = events["p"]
    if p.dtype.kind in "iu" and ((p < 0) | (p > 1)).any():
        i = _first((p < 0) | (p > 1))
        raise EventError(f"has polarity {int(p[i])}; polarity values must be 0/1", i)
    if sensor_size is not None:
        w, h = int(sensor_size[0]), int(sensor_size[1])
        for f, size in (("x", w), ("y", h)):
            v = events[f]
            # one pass: viewed as unsigned, a negative value is huge, so max < size <=> 0 <= v < size
            unsigned = v.view(v.dtype.str.replace("i", "u")) if v.dtype.kind == "i" else v
            if len(v) and unsigned.max() >= size:
                i = _first((v < 0) | (v >= size))
                raise EventError(f"has {f}={int(v[i])} outside the sensor (0..{size - 1}, sensor {w}x{h}); "
                                 "crop or pass the right sensor size", i)
    return events


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


def _accumulate_into(flat: np.ndarray, events: np.ndarray, steps: np.ndarray, first_step: int,
                     sensor: SensorSize, mode: str) -> None:
    """Add events (with their step index) into flat frames starting at ``first_step``."""
    if len(events) == 0:
        return
    h, w = sensor.height, sensor.width
    # flat index ((step * 2 + p) * H + y) * W + x, built in place (no temporaries per field)
    idx = np.subtract(steps, first_step, dtype=np.int64)
    idx *= 2
    idx += events["p"]
    idx *= h
    idx += events["y"]
    idx *= w
    idx += events["x"]
    if mode == "binary":
        flat[idx] = 1.0
    else:
        flat += np.bincount(idx, minlength=flat.size).astype(np.float32)


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


def bin_windows(chunks: Iterable[np.ndarray], sensor_size: SensorSize | tuple[int, int, int], spec: BinSpec,
                window_steps: int, *, restart_gap_us: int | None = None) -> Iterator[Window]:
    """Bin a stream of sorted chunks into windows of ``window_steps`` steps, in bounded memory.

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
    open_k: int | None = None  # the window being filled (index since origin), its events, last step
    open_events = open_last = 0
    restarted = False
    last_t: int | None = None

    def emit(final: bool) -> Window:
        steps = open_last + 1 if final else window_steps
        view = buffer[:steps * frame_size].reshape(steps, *sensor.frame_shape)
        return Window(base + open_k, origin + open_k * window_us, view, open_events, restarted)

    for chunk in chunks:
        validate_events(chunk, sensor, after_t=last_t)
        if len(chunk) == 0:
            continue
        t = chunk["t"]
        starts = [0]
        if restart_gap_us is not None:
            starts += (np.flatnonzero(t[1:] - t[:-1] > restart_gap_us) + 1).tolist()
        gap_before = last_t is not None and restart_gap_us is not None and int(t[0]) - last_t > restart_gap_us
        last_t = int(t[-1])
        for j, a in enumerate(starts):
            piece = chunk[a:starts[j + 1]] if j + 1 < len(starts) else chunk[a:]
            if j > 0 or gap_before:  # restart the grid at this piece's first event
                if open_k is not None:
                    yield emit(final=False)
                    buffer[:] = 0
                    base += open_k + 1
                open_k, open_events, origin, restarted = None, 0, int(piece["t"][0]), True
            piece = piece[int(np.searchsorted(piece["t"], origin, side="left")):]
            if len(piece) == 0:
                continue
            steps = (piece["t"] - origin) // spec.dt_us
            win = steps // window_steps
            cuts = [0, *(np.flatnonzero(win[1:] != win[:-1]) + 1).tolist(), len(piece)]
            for lo, hi in zip(cuts[:-1], cuts[1:]):
                k = int(win[lo])
                if open_k is not None and k != open_k:
                    yield emit(final=False)
                    buffer[:] = 0
                    open_events, restarted = 0, False
                open_k = k
                _accumulate_into(buffer, piece[lo:hi], steps[lo:hi], k * window_steps, sensor, spec.mode)
                open_events += hi - lo
                open_last = int(steps[hi - 1]) - k * window_steps
    if open_k is not None:
        yield emit(final=True)
