"""What every event source shares: errors, geometry, the :class:`EventSource` interface, its
in-memory and file kinds, and the checks and block readers the file formats use.

The format registry (:mod:`stdl_edge.sources.registry`) maps a spec to a reader and a path
to a writer; a format module defines its reader and writer side by side and ends with one
``register_format`` call.
"""

from __future__ import annotations

import importlib
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Iterator, Mapping

import numpy as np

from stdl_edge.events import EVENT_DTYPE, EventColumns, EventError, SensorSize, check_columns, event_columns, pack_events

from .errors import SourceError
from .geometry import Geometry

DEFAULT_CHUNK = 1 << 18  # events per chunk: 4 MiB of EVENT_DTYPE
#: the largest sensor side a file or ``sensor_size=`` may declare: EVENT_DTYPE's int16 x, y hold 0..32767
MAX_SENSOR_SIDE = int(np.iinfo(EVENT_DTYPE["x"]).max) + 1




# --------------------------------------------------------------------------- sources


class EventSource(ABC):
    """A stream of events. ``chunks()`` yields validated :data:`EVENT_DTYPE` arrays.

    ``sensor_size`` is the size after crop/downsample (what a model sees);
    ``native_size`` the size of the file or camera. Labelled sources (data sets)
    also have ``class_names`` and ``samples()``.
    """

    name: str = "events"
    native_size: SensorSize
    geometry: Geometry = Geometry()
    chunk_size: int = DEFAULT_CHUNK
    time_unit: str = "us"  # the unit of the input's t (see stdl_edge.events.TIME_UNITS)
    wrap_errors: bool = False  # turn a reader's stray exception into a SourceError (files: yes)
    labelled: bool = False
    class_names: tuple[str, ...] = ()

    @property
    def sensor_size(self) -> SensorSize:
        return self.geometry.output_size(self.native_size)

    @abstractmethod
    def _raw_chunks(self) -> Iterator[np.ndarray | Mapping[str, np.ndarray]]:
        """Chunks in source coordinates: anything :func:`stdl_edge.events.as_events` takes (a
        structured array, or a mapping of field name to column)."""

    def chunks(self, on_read: Callable[[EventColumns], None] | None = None) -> Iterator[np.ndarray]:
        """Validated chunks in model coordinates; raises :class:`SourceError` on bad input.

        on_read: called with each chunk as read (source coordinates, before crop/downsample),
          for counting what the file held (``stdl-edge run``'s summary).
        """
        for columns in self.column_chunks(on_read):
            yield pack_events(columns)

    def column_chunks(self, on_read: Callable[[EventColumns], None] | None = None) -> Iterator[EventColumns]:
        """:meth:`chunks` as :class:`~stdl_edge.events.EventColumns`, never packed into the
        structured type: what streaming inference bins (one copy less per event)."""
        last_t: int | None = None
        total = 0
        geometry = self.geometry
        self.sensor_size  # noqa: B018 - checks the geometry fits before reading
        for columns, count in self._converted():
            try:
                check_columns(columns, self.native_size, after_t=last_t)
            except EventError as e:
                raise self._error(e, count, columns.count) from None
            if columns.count == 0:
                continue
            last_t = int(columns.t[-1])
            total += columns.count
            if on_read is not None:
                on_read(columns)
            kept = geometry.apply_columns(columns, self.native_size)
            if kept.count:
                yield kept
        if total == 0:
            raise SourceError(f"{self.name}: no events: the input is empty")

    def _converted(self) -> Iterator[tuple[EventColumns, int]]:
        """(chunk as :class:`EventColumns`, index of its first event) for each raw chunk; a stray
        exception of a reader (``wrap_errors``) or a value :func:`~stdl_edge.events.as_events`
        refuses is a :class:`SourceError`."""
        raws = self._raw_chunks()
        count = 0
        while True:
            try:
                raw = next(raws)
            except StopIteration:
                return
            except (SourceError, ImportError, FileNotFoundError):
                raise
            except Exception as e:  # a third-party reader's own error: one line naming the input
                if not self.wrap_errors:
                    raise
                raise SourceError(f"{self.name}: could not be read after event {count} ({type(e).__name__}: "
                                  f"{_first_line(e)}); the file is corrupt or truncated") from None
            try:
                columns = event_columns(raw, self.time_unit)
            except EventError as e:
                raise self._error(e, count, None) from None
            yield columns, count
            count += columns.count

    def _error(self, e: EventError, count: int, n: int | None) -> SourceError:
        """``e`` about the chunk from event ``count`` (``n`` events, None before conversion) as one
        line naming the source and, where the reader can say (:meth:`_locate`), the byte or row."""
        if e.index is None:
            where = f"the chunk from event {count}" if n is None else f"events {count}..{count + n - 1}"
            return SourceError(f"{self.name}: {e} (in {where})")
        place = self._locate(e.index)
        return SourceError(f"{self.name}: event {count + e.index}{f' ({place})' if place else ''} {e.message}")

    def _locate(self, index: int) -> str | None:
        """Where event ``index`` of the chunk ``_raw_chunks`` yielded last lies in the input (``"byte
        1234"``, ``"line 7"``), for error messages; None where the format cannot say."""
        return None

    def _bounds(self) -> tuple[int, int]:
        """(width, height) covering every event, (0, 0) for none: one pass over the file, for files
        that do not record their sensor size."""
        w = h = 0
        for c, _ in self._converted():
            if c.count:
                w, h = max(w, int(c.x.max()) + 1, 1), max(h, int(c.y.max()) + 1, 1)
        return w, h

    def samples(self) -> Iterator[tuple[np.ndarray, int]]:
        raise SourceError(f"{self.name} has no labels; run it in windows (--window-ms)")

    def close(self) -> None:  # pragma: no cover - sources hold no handle between chunks
        pass


class ArraySource(EventSource):
    """Events already in memory (one array), served in chunks."""

    def __init__(self, events: np.ndarray, sensor_size: tuple[int, ...], name: str = "array",
                 chunk_size: int = DEFAULT_CHUNK) -> None:
        self.events = events
        self.native_size = SensorSize(*sensor_size)
        self.name = name
        self.chunk_size = chunk_size

    def _raw_chunks(self) -> Iterator[np.ndarray]:
        for i in range(0, len(self.events), self.chunk_size):
            yield self.events[i:i + self.chunk_size]


class GeneratorSource(EventSource):
    """Events from a callable returning an iterator of chunks (synthetic streams, cameras)."""

    def __init__(self, make_chunks: Callable[[], Iterator[np.ndarray]], sensor_size: tuple[int, ...],
                 name: str = "generator") -> None:
        self.make_chunks = make_chunks
        self.native_size = SensorSize(*sensor_size)
        self.name = name

    def _raw_chunks(self) -> Iterator[np.ndarray]:
        return self.make_chunks()


class FileSource(EventSource):
    """A recording on disk. Subclasses implement :meth:`_read_header` (checks, sensor size) and
    ``_raw_chunks``; :meth:`open` is their registry reader."""

    wrap_errors = True

    def __init__(self, path: str | os.PathLike, sensor_size: tuple[int, ...] | None = None,
                 chunk_size: int = DEFAULT_CHUNK, time_unit: str = "us") -> None:
        self.path = _check_file(Path(path))
        self.name, self.chunk_size, self.time_unit = str(path), chunk_size, time_unit
        try:
            self.native_size = self._read_header(sensor_size)
        except (SourceError, ImportError, FileNotFoundError):
            raise
        except Exception as e:  # a third-party reader's own error on a corrupt file: one line
            raise SourceError(f"{path}: could not be read ({type(e).__name__}: {_first_line(e)}); the file is "
                              "corrupt or not a "
                              f"{type(self).__name__.removesuffix('Source')} file") from None

    @abstractmethod
    def _read_header(self, sensor_size: tuple[int, ...] | None) -> SensorSize:
        """Check the file's layout (raising :class:`SourceError` with the byte, row or member) and
        return its sensor: ``sensor_size`` if given, else the file's, else the coordinate bounds."""

    @classmethod
    def open(cls, path: Path, options: ReadOptions) -> FileSource:
        return cls(path, options.sensor_size, options.chunk_size, options.time_unit)


def _sensor_or_bounds(path: Path, given: tuple[int, ...] | None, found: tuple[int, int] | None,
                      scan: Callable[[], tuple[int, int]] | None = None, field: str = "the header") -> SensorSize:
    """The sensor from the flag, else the file (``field`` names where it says so), else (for
    formats without one) the coordinate bounds; each checked with :func:`check_sensor`."""
    if given is not None:
        w, h, *pol = check_sensor(path, given, "sensor_size= (--sensor)")
        return SensorSize(w, h, *pol)
    if found is not None:
        return SensorSize(*check_sensor(path, found, field)[:2])
    if scan is not None:
        w, h = scan()
        if w == 0 or h == 0:
            raise SourceError(f"{path}: no events: the file holds no events to read")
        return SensorSize(w, h)
    raise SourceError(f"{path}: the file does not say its sensor size; pass sensor_size=(W, H) "
                      "(--sensor W,H)")


def _first_line(e: BaseException) -> str:
    text = str(e)
    return text.splitlines()[0] if text else ""


def check_sensor(where: object, size: object, field: str) -> tuple[int, ...]:
    """``size`` as (W, H[, P]) whole numbers with 1 <= W, H <= :data:`MAX_SENSOR_SIDE` (P: 1 or 2);
    else :class:`SourceError` naming ``where`` (the file) and ``field`` (what declared it)."""
    try:
        values = None if isinstance(size, (str, bytes)) else [v.item() if isinstance(v, np.generic) else v
                                                               for v in size]  # type: ignore[union-attr]
    except TypeError:
        values = None
    ok = (values is not None and len(values) in (2, 3) and all(isinstance(v, (int, float)) and not
                                                                  isinstance(v, bool) and float(v).is_integer()
                                                                  for v in values))
    if ok:
        w, h, *pol = (int(v) for v in values)
        ok = 1 <= w <= MAX_SENSOR_SIDE and 1 <= h <= MAX_SENSOR_SIDE and pol in ([], [1], [2])
    if not ok:
        raise SourceError(f"{where}: {field} gives the sensor size {size!r}; it must be (width, height) whole "
                          f"numbers from 1 to {MAX_SENSOR_SIDE} (EVENT_DTYPE's int16 coordinates); pass the "
                          "right size with sensor_size=(W, H) (--sensor W,H)")
    return (w, h, *pol)


def _check_file(path: Path) -> Path:
    if not path.exists():
        raise FileNotFoundError(f"event file {path} does not exist")
    if not path.is_file():
        raise SourceError(f"{path}: is {'a folder' if path.is_dir() else 'not a regular file'}; pass an event "
                          "file (a folder is read as frames only when it holds images)")
    try:
        with open(path, "rb"):
            pass
    except OSError as e:
        raise SourceError(f"{path}: cannot be opened ({e.strerror}); check its permissions") from None
    if path.stat().st_size == 0:
        raise SourceError(f"{path}: the file is empty (0 bytes)")
    return path


def _check_records(path: Path, start: int, size: int, what: str, unit: str) -> int:
    """Bytes from ``start`` to the end: a non-empty whole number of ``size``-byte records (else
    :class:`SourceError` with the byte where the partial record starts); returns how many."""
    total = path.stat().st_size
    nbytes = total - start
    if nbytes <= 0:
        raise SourceError(f"{path}: no events after the header (ends at byte {min(start, total)})")
    if nbytes % size:
        raise SourceError(f"{path}: truncated: {nbytes} bytes of {what} data from byte {start} is not a whole "
                          f"number of {size}-byte {unit}s; the last {unit} starts at byte {total - nbytes % size}")
    return nbytes // size


def _read_blocks(path: Path, start: int, block_bytes: int) -> Iterator[tuple[int, bytes]]:
    """``(offset, data)`` for consecutive blocks of at most ``block_bytes`` from byte ``start``."""
    with open(path, "rb") as fh:
        fh.seek(start)
        offset = start
        while data := fh.read(block_bytes):
            yield offset, data
            offset += len(data)


def optional_import(module: str, needed_for: str, install: str) -> ModuleType:
    """Import an optional third-party package, or raise one ImportError line naming it and ``install``.

    >>> optional_import("no_such_pkg", "reading X", "pip install 'stdl-edge[datasets]'")
    Traceback (most recent call last):
    ...
    ImportError: reading X needs the 'no_such_pkg' package: pip install 'stdl-edge[datasets]'
    """
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ImportError(f"{needed_for} needs the {module.split('.')[0]!r} package: {install}") from None


@dataclass(frozen=True)
class ReadOptions:
    """What :func:`stdl_edge.sources.open_source` hands every reader; each takes what applies to it.

    sensor_size: (W, H[, P]) pixels, for files that do not record it or to override it; None.
    chunk_size: events (rows, words, records) per chunk, >= 1.
    fps: frames per second of a frames folder or video (emulated sources).
    duration_s: seconds a live camera streams (None: until interrupted).
    limit: data sets only: the first ``limit`` samples (None: all).
    time_unit: the unit of the input's timestamps (``"us"``, ``"ms"``, ``"s"``; see ``TIME_UNITS``).
    extra: other keyword options: ``emulator=`` (an EmulatorConfig) for frames and video, load
      options for a data set.
    """

    sensor_size: tuple[int, ...] | None = None
    chunk_size: int = DEFAULT_CHUNK
    fps: float = 30.0
    duration_s: float | None = None
    limit: int | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    time_unit: str = "us"
