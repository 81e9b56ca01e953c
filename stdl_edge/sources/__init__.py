"""Event sources: recorded files, emulated video, live cameras and data sets, read in chunks.

One entry point::

    src = open_source("recording.raw", fit=(34, 34))   # or .npy .npz .h5 .csv .aedat4 .dat .bin,
    src.sensor_size                                      # a frames folder, a video, "camera:", "digits-dvs:test"
    for chunk in src.chunks():                          # EVENT_DTYPE arrays, sorted across chunks
        ...

Every reader holds at most ``chunk_size`` events (plus one block of the file) in memory,
so multi-GB recordings stream with bounded memory. Each chunk is checked with
:func:`stdl_edge.events.validate_events` against the file's sensor and against the
previous chunk's last timestamp. A corrupt, truncated or empty input raises
:class:`SourceError` (a ``ValueError``) naming the file and, where the format allows, the
byte offset or the row.

Geometry: the sensor size comes from the file (header, metadata) or from
``sensor_size=``. ``crop=(x0, y0, width, height)`` keeps a window and shifts it to the
origin; ``downsample=k`` maps pixel ``(x, y)`` to ``(x // k, y // k)`` (events are then
binned by ``k x k`` pixel blocks); ``fit=(W, H)`` picks the largest integer factor that
keeps the sensor at least ``W x H`` and centre-crops the rest, so any recording can feed a
model trained on a smaller sensor. Crop is applied before downsampling.

Layout: one module per format family, holding its reader (an :class:`EventSource`) and its
writer side by side and ending with one :func:`~stdl_edge.sources.base.register_format` call
(``numpy_files``, ``hdf5``, ``csv``, ``aedat4``, ``prophesee``, ``nmnist``, ``emulated``,
``live``, ``dataset``); :data:`FORMATS`, filled by those calls, is the only dispatch of
:func:`open_source` and :func:`write_events`. ``base`` holds what they share. Event formats
live in the core, not in ``stdl_edge.devices``, because data sets read recordings too.

Format choices (see docs/sources.md): Prophesee EVT2, EVT3 and DAT are decoded by the
vectorised decoders in ``prophesee`` (expelliarmus prints its own errors and cannot name a byte;
its EVT3 reader adds 4096 us after an explicit ``EVT_TIME_HIGH``); AEDAT4 packets are framed and
checked in ``aedat4`` and decoded by ``aedat`` (Rust, packet by packet); N-MNIST ``.bin`` by
tonic's rule on blocks of records. Timestamps come out absolute, as the file holds them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from stdl_edge.events import EVENT_DTYPE, TIME_UNITS, EventError, SensorSize, as_events, validate_events
from stdl_edge.io import atomic_path

# the format modules register themselves on import, in this order: FORMATS lists them so, and
# formats that claim specs are tried so ("camera:" before the NAME:SPLIT of a data set)
from . import numpy_files, hdf5, csv, aedat4, prophesee, nmnist, emulated, live, dataset  # noqa: F401,E401
from .base import DEFAULT_CHUNK, MAX_SENSOR_SIDE, ArraySource, EventSource, GeneratorSource, ReadOptions, check_sensor
from .errors import SourceError
from .geometry import Geometry, fit_geometry
from .registry import FORMATS, Format, reader_for, register_format, writer_for


def open_source(spec: str | os.PathLike | np.ndarray, *, format: str | None = None,
                sensor_size: tuple[int, ...] | None = None, crop: tuple[int, int, int, int] | None = None,
                downsample: int = 1, fit: tuple[int, ...] | SensorSize | None = None,
                chunk_size: int = DEFAULT_CHUNK, fps: float = 30.0, limit: int | None = None,
                duration_s: float | None = None, time_unit: str = "us", **options: Any) -> EventSource:
    """Open ``spec`` as an :class:`EventSource`.

    spec: a file (format from the suffix, for ``.raw`` from the header, or ``format=``), a folder
      of frames, a video, ``camera:[device]`` / ``aestream:[device]`` / ``dv:[device]`` for a live
      camera, ``NAME:SPLIT`` for a registered data set (``digits-dvs:test``), or an event array.
    format: a name in :data:`FORMATS` or a file suffix (``"raw"``, ``"h5"``).
    sensor_size: (W, H) when the file does not record it (npy, csv) or to override it.
    crop, downsample: see :class:`Geometry`; ``fit=(W, H)`` chooses them for a model's sensor.
    chunk_size: events (rows, words) per chunk.
    fps: frames per second of a frames folder or video; duration_s: seconds of a live camera.
    limit: data sets only, the first ``limit`` samples.
    time_unit: the unit of the input's timestamps, ``"us"`` (the default: whole microseconds), ``"ms"``
      or ``"s"`` (a float ``t`` column in seconds); converted to integer microseconds, rounded.
    options: ``emulator=`` (EmulatorConfig) for frames and video; load options for a data set.
    """
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1:
        raise SourceError(f"chunk_size={chunk_size!r} must be a whole number >= 1")
    if time_unit not in TIME_UNITS:
        raise SourceError(f"time_unit={time_unit!r} is unknown; use one of {', '.join(TIME_UNITS)} (--time-unit)")
    if isinstance(spec, np.ndarray):
        if sensor_size is None:
            raise SourceError("an event array needs sensor_size=(W, H)")
        source: EventSource = ArraySource(spec, check_sensor("the event array", sensor_size, "sensor_size="),
                                          chunk_size=chunk_size)
    else:
        fmt, target = reader_for(spec, format)
        source = fmt.reader(target, ReadOptions(sensor_size, chunk_size, fps, duration_s, limit, options, time_unit))
    if fit is not None:
        if crop is not None or downsample != 1:
            raise SourceError("pass either fit= or crop=/downsample=, not both")
        source.geometry = fit_geometry(source.native_size, fit)
    else:
        source.geometry = Geometry(crop, downsample)
    source.time_unit = time_unit
    source.sensor_size  # noqa: B018 - validates the geometry against the sensor now
    return source


def read_all(source: EventSource) -> np.ndarray:
    """Every event of a (small) source in one array; for tests and short files."""
    parts = list(source.chunks())
    return np.concatenate(parts) if parts else np.zeros(0, EVENT_DTYPE)


def write_events(path: str | os.PathLike, events: np.ndarray | Mapping[str, np.ndarray],
                 sensor_size: tuple[int, ...], format: str | None = None) -> Path:
    """Write ``events`` (anything :func:`~stdl_edge.events.as_events` takes) to ``path`` in a real
    on-disk format, atomically; returns ``path``.

    Formats (from the suffix or ``format=``, see :data:`FORMATS`): npy, npz, hdf5, csv (``t,x,y,p``
    header), evt2 (the default for ``.raw``), evt3 (Prophesee header with geometry), dat (Prophesee
    CD, 8-byte events), aedat4 (as DV lays it out, uncompressed, one event stream, packets of 4096 events, the file data table), nmnist
    (``.bin``, 34x34, at most 256x240, overflow records every 2^13 us). Used to record streams and
    by the tests, which read the files back with the maintained readers (expelliarmus, aedat, tonic).
    """
    path = Path(path)
    try:
        ev = validate_events(as_events(events), SensorSize(*sensor_size[:2]), allow_empty=False)
    except EventError as e:
        raise SourceError(f"cannot write {path}: {e}") from None
    writer = writer_for(path, format)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            writer(fh, ev, int(sensor_size[0]), int(sensor_size[1]))
    return path


__all__ = ["DEFAULT_CHUNK", "MAX_SENSOR_SIDE", "ArraySource", "EventSource", "FORMATS", "Format", "GeneratorSource", "Geometry",
           "ReadOptions", "SourceError", "fit_geometry", "open_source", "read_all", "register_format", "write_events"]
