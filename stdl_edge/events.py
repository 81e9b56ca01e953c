"""DVS events: the one event type, the one converter to it, and its validation.

Events are numpy structured arrays with tonic's ``events_struct`` layout: fields
``x, y`` (int16 pixels), ``t`` (int64 microseconds, sorted) and ``p`` (bool, True = ON).
A sensor is ``SensorSize(width, height, polarities)`` as in tonic. :func:`as_events` turns
any integer layout of those fields (a reader's, tonic's, aedat's ``on``) into that one type.

Binning events into frames is :mod:`stdl_edge.binning`.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Callable, Mapping, NamedTuple

import numpy as np
from numpy.typing import ArrayLike

from . import jit
from .jit import compile_kernel

EVENT_DTYPE = np.dtype([("x", np.int16), ("y", np.int16), ("t", np.int64), ("p", bool)])


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


class EventColumns(NamedTuple):
    """The four fields of events as separate 1-D arrays of one length: ``x``, ``y`` int16
    pixels, ``t`` int64 microseconds, ``p`` bool (True = ON).

    The form readers and the crop/downsample work in (contiguous int16 columns are checked
    and cropped several times faster than the fields of a structured array); :func:`pack_events`
    makes the one event type of them, :func:`columns_of` takes an event array apart (views).
    """

    x: np.ndarray
    y: np.ndarray
    t: np.ndarray
    p: np.ndarray

    @property
    def count(self) -> int:
        """Number of events."""
        return len(self.t)

    def select(self, keep: np.ndarray | slice) -> EventColumns:
        """The events at ``keep`` (a boolean mask or a slice) of every column."""
        return EventColumns(self.x[keep], self.y[keep], self.t[keep], self.p[keep])


def columns_of(events: np.ndarray) -> EventColumns:
    """Views of the fields of an :data:`EVENT_DTYPE` array (no copy; strided)."""
    return EventColumns(events["x"], events["y"], events["t"], events["p"])


def pack_events(columns: EventColumns) -> np.ndarray:
    """A new :data:`EVENT_DTYPE` array of ``columns`` (already of the event dtypes)."""
    out = np.empty(columns.count, dtype=EVENT_DTYPE)
    out["x"], out["y"], out["t"], out["p"] = columns
    return out


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
    if (isinstance(events, np.ndarray) and events.dtype == EVENT_DTYPE and events.ndim == 1
            and time_unit == "us" and time_unit in TIME_UNITS):
        return events  # nothing downstream writes into events it did not make
    return pack_events(event_columns(events, time_unit))


def event_columns(events: np.ndarray | Mapping[str, ArrayLike], time_unit: str = "us") -> EventColumns:
    """:func:`as_events` as :class:`EventColumns`: each column of the event dtype, checked the same
    way (a column that already has it is passed through, not copied)."""
    if time_unit not in TIME_UNITS:
        raise EventError(f"time_unit={time_unit!r} is unknown; use one of {', '.join(TIME_UNITS)}")
    if isinstance(events, np.ndarray):
        names = _field_names(events)
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
    return EventColumns(*(
        _to_us(v, time_unit) if f == "t" and time_unit != "us"
        else _whole(v, f, EVENT_DTYPE[f]).astype(EVENT_DTYPE[f], copy=False)
        for f, v in picked.items()))


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
    check_columns(columns_of(events), sensor_size, allow_empty=allow_empty, after_t=after_t)
    return events


def _columns_pass(x: np.ndarray, y: np.ndarray, t: np.ndarray, p: np.ndarray, w: int, h: int,
                  after_t: int) -> bool:  # pragma: no cover - compiled by numba
    """Whether every check of :func:`check_columns` passes, in one pass over the events (the
    compiled fast path; ``w, h`` < 0: no sensor, ``after_t`` is the smallest allowed first time)."""
    if t[0] < 0 or t[0] < after_t:
        return False
    for i in range(len(t)):
        if i and t[i] < t[i - 1]:
            return False
        if p[i] != 0 and p[i] != 1:
            return False
        if w >= 0 and (x[i] < 0 or x[i] >= w or y[i] < 0 or y[i] >= h):
            return False
    return True


@lru_cache(maxsize=None)
def _columns_kernel() -> Callable[..., bool] | None:
    return compile_kernel(_columns_pass)


def check_columns(columns: EventColumns, sensor_size: SensorSize | tuple[int, int, int] | None = None,
                  *, allow_empty: bool = True, after_t: int | None = None) -> None:
    """The value checks of :func:`validate_events` on columns of integer (or bool ``p``) dtypes:
    timestamps non-negative and sorted (``>= after_t``), polarity 0/1, coordinates inside
    ``sensor_size``; :class:`EventError` with the index of the first offending event.

    With numba (:mod:`stdl_edge.jit`) one compiled pass answers "all good" (the common case);
    anything it flags goes through the numpy checks below, which own every message."""
    if columns.count == 0:
        if not allow_empty:
            raise EventError("no events: the input is empty")
        return
    kernel = _columns_kernel() if columns.count >= jit.MIN_EVENTS else None
    if kernel is not None:
        w, h = (int(sensor_size[0]), int(sensor_size[1])) if sensor_size is not None else (-1, -1)
        lowest = -(1 << 62) if after_t is None else int(after_t)
        if kernel(columns.x, columns.y, columns.t, columns.p, w, h, lowest):
            return
    t = np.ascontiguousarray(columns.t)  # one strided read; the comparisons then run contiguous
    if len(t) > 1 and (t[1:] < t[:-1]).any():  # direct comparison: no diff temporary
        i = _first(t[1:] < t[:-1])
        raise EventError(f"at {int(t[i + 1])} us comes after {int(t[i])} us: timestamps are not sorted (sort "
                         "by t first, np.sort(events, order='t'), or the recording's clock jumped back)", i + 1)
    if t[0] < 0:  # sorted, so the first is the smallest
        raise EventError(f"has a negative timestamp {int(t[0])} us; timestamps must be >= 0 microseconds", 0)
    if after_t is not None and t[0] < after_t:
        raise EventError(f"at {int(t[0])} us comes after {int(after_t)} us: timestamps go backwards across "
                         "chunks", 0)
    p = columns.p
    if p.dtype.kind in "iu" and ((p < 0) | (p > 1)).any():
        i = _first((p < 0) | (p > 1))
        raise EventError(f"has polarity {int(p[i])}; polarity values must be 0/1", i)
    if sensor_size is not None:
        w, h = int(sensor_size[0]), int(sensor_size[1])
        for f, size in (("x", w), ("y", h)):
            v = getattr(columns, f)
            # one pass: viewed as unsigned, a negative value is huge, so max < size <=> 0 <= v < size
            unsigned = v.view(v.dtype.str.replace("i", "u")) if v.dtype.kind == "i" else v
            if len(v) and unsigned.max() >= size:
                i = _first((v < 0) | (v >= size))
                raise EventError(f"has {f}={int(v[i])} outside the sensor (0..{size - 1}, sensor {w}x{h}); "
                                 "crop or pass the right sensor size", i)
