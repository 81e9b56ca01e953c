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

Format choices (see docs/sources.md): Prophesee DAT and EVT2 are read with
``expelliarmus`` (chunked C reader); EVT3 with the vectorised decoder here, because
expelliarmus 1.1.12 adds an extra 4096 us whenever ``EVT_TIME_LOW`` decreases after an
explicit ``EVT_TIME_HIGH`` (the normal case in camera output); AEDAT4 with ``aedat``
(Rust, packet by packet); N-MNIST ``.bin`` with ``tonic.io.read_mnist_file`` on blocks of
records.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from stdl_edge.events import EVENT_DTYPE, EventError, SensorSize, as_events, validate_events

from .aedat4 import Aedat4Source, write_aedat4
from .base import (DEFAULT_CHUNK, ArraySource, EventSource, GeneratorSource, Geometry, SourceError, _check_file,
                   fit_geometry)
from .csv import CsvSource, write_csv
from .dataset import DatasetSource
from .emulated import _IMAGE_SUFFIXES, _VIDEO_SUFFIXES, EmulatedSource
from .hdf5 import Hdf5Source, write_h5
from .live import LiveSource
from .nmnist import NmnistBinSource, write_nmnist
from .numpy_files import NpySource, NpzSource, write_npy, write_npz
from .prophesee import (Evt3Source, ExpelliarmusSource, prophesee_encoding, write_dat, write_evt2,
                        write_evt3)


# --------------------------------------------------------------------------- open_source


FORMATS = ("npy", "npz", "hdf5", "csv", "aedat4", "evt2", "evt3", "dat", "nmnist", "frames", "video",
           "camera", "dataset")
_SUFFIX_FORMAT = {".npy": "npy", ".npz": "npz", ".h5": "hdf5", ".hdf5": "hdf5", ".csv": "csv", ".txt": "csv",
                  ".aedat4": "aedat4", ".dat": "dat", ".bin": "nmnist", ".raw": "raw"}


def open_source(spec: str | os.PathLike | np.ndarray, *, format: str | None = None,
                sensor_size: tuple[int, ...] | None = None, crop: tuple[int, int, int, int] | None = None,
                downsample: int = 1, fit: tuple[int, ...] | SensorSize | None = None,
                chunk_size: int = DEFAULT_CHUNK, fps: float = 30.0, limit: int | None = None,
                duration_s: float | None = None, **options: Any) -> EventSource:
    """Open ``spec`` as an :class:`EventSource`.

    spec: a file (format from the suffix or ``format=``), a folder of frames, a video,
      ``camera:[device]`` / ``aestream:[device]`` / ``dv:[device]`` for a live camera, or
      ``NAME:SPLIT`` for a registered data set (``digits-dvs:test``), or an event array.
    sensor_size: (W, H) when the file does not record it (npy, csv) or to override it.
    crop, downsample: see :class:`Geometry`; ``fit=(W, H)`` chooses them for a model's sensor.
    chunk_size: events (rows, words) per chunk.
    limit: data sets only, the first ``limit`` samples.
    """
    if chunk_size < 1:
        raise SourceError(f"chunk_size={chunk_size} must be >= 1")
    source = _open(spec, format, sensor_size, chunk_size, fps, limit, duration_s, options)
    if fit is not None:
        if crop is not None or downsample != 1:
            raise SourceError("pass either fit= or crop=/downsample=, not both")
        source.geometry = fit_geometry(source.native_size, fit)
    else:
        source.geometry = Geometry(crop, downsample)
    source.sensor_size  # noqa: B018 - validates the geometry against the sensor now
    return source


def _open(spec, format, sensor_size, chunk_size, fps, limit, duration_s, options) -> EventSource:
    if isinstance(spec, np.ndarray):
        if sensor_size is None:
            raise SourceError("an event array needs sensor_size=(W, H)")
        return ArraySource(spec, sensor_size, chunk_size=chunk_size)
    text = str(spec)
    m = re.fullmatch(r"(camera|aestream|dv):(.*)", text)
    if m or format == "camera":
        backend = "dv" if m and m.group(1) == "dv" else "aestream"
        return LiveSource(backend, m.group(2) if m else text, sensor_size, duration_s)
    path = Path(text)
    if not path.exists() and ":" in text and format in (None, "dataset"):
        name, split = text.split(":", 1)
        try:
            from stdl_edge import data
        except ImportError:
            raise SourceError(f"{text!r}: no such file, and data sets are not available in this install "
                              "(stdl_edge.data is missing)") from None

        known = _dataset_names(data)
        if name not in known:  # the tonic data sets register on demand (they need tonic installed)
            try:
                from stdl_edge.datasets_tonic import register_tonic_datasets

                register_tonic_datasets()
            except ImportError:
                pass
            known = _dataset_names(data)
        if name not in known:
            raise SourceError(f"{text!r} is neither a file nor a registered data set "
                              f"(known: {', '.join(known) or 'none'})")
        return DatasetSource(name, split, limit=limit, **options)
    if not path.exists():
        raise FileNotFoundError(f"event source {path} does not exist")
    fmt = format
    if fmt is None:
        if path.is_dir():
            fmt = "frames"
        elif path.suffix.lower() in _VIDEO_SUFFIXES:
            fmt = "video"
        elif path.suffix.lower() in _IMAGE_SUFFIXES:
            raise SourceError(f"{path}: a single image is not a stream; pass the folder of frames")
        else:
            fmt = _SUFFIX_FORMAT.get(path.suffix.lower())
            if fmt is None:
                raise SourceError(f"{path}: unknown event file type {path.suffix!r}; known: "
                                  f"{', '.join(sorted(_SUFFIX_FORMAT))}, a frames folder or a video "
                                  "(or pass format=)")
    if fmt == "raw":
        _check_file(path)
        fmt = prophesee_encoding(path)
    if fmt not in FORMATS:
        raise SourceError(f"format={fmt!r} is unknown; use one of {', '.join(FORMATS)}")
    if fmt in ("frames", "video"):
        return EmulatedSource(path, fps=fps, sensor_size=sensor_size, emulator_config=options.get("emulator"))
    if fmt in ("evt2", "dat"):
        return ExpelliarmusSource(path, fmt, sensor_size, chunk_size)
    readers = {"npy": NpySource, "npz": NpzSource, "hdf5": Hdf5Source, "csv": CsvSource,
               "aedat4": Aedat4Source, "evt3": Evt3Source, "nmnist": NmnistBinSource}
    return readers[fmt](path, sensor_size, chunk_size)


def _dataset_names(data_module: Any) -> list[str]:
    for attr in ("dataset_names", "list_datasets"):
        f = getattr(data_module, attr, None)
        if callable(f):
            return list(f())
    reg = getattr(data_module, "DATASETS", None)
    if reg is not None:
        return list(reg.names()) if hasattr(reg, "names") else list(reg)
    return []


def read_all(source: EventSource) -> np.ndarray:
    """Every event of a (small) source in one array; for tests and short files."""
    parts = list(source.chunks())
    return np.concatenate(parts) if parts else np.zeros(0, EVENT_DTYPE)


__all__ = ["DEFAULT_CHUNK", "ArraySource", "EventSource", "FORMATS", "GeneratorSource", "Geometry", "SourceError",
           "fit_geometry", "open_source", "read_all", "write_events"]


# --------------------------------------------------------------------------- writers


def write_events(path: str | os.PathLike, events: np.ndarray, sensor_size: tuple[int, ...],
                 format: str | None = None) -> Path:
    """Write ``events`` (EVENT_DTYPE) to ``path`` in a real on-disk format, atomically.

    Formats (from the suffix or ``format=``): npy, npz, hdf5, csv (``t,x,y,p`` header), evt2, evt3
    (``.raw``, Prophesee header with geometry), dat (Prophesee CD, 8-byte events), aedat4
    (uncompressed, one event stream, packets of 4096 events), nmnist (``.bin``, 34x34 at most
    256x256, overflow records every 2^23 us). Used to record streams and by the tests, which read
    the files back with the maintained readers (expelliarmus, aedat, tonic).
    """
    from stdl_edge.io import atomic_path

    path = Path(path)
    try:
        ev = validate_events(as_events(events), SensorSize(*sensor_size[:2]), allow_empty=False)
    except EventError as e:
        raise SourceError(f"cannot write {path}: {e}") from None
    fmt = format or {".raw": "evt2"}.get(path.suffix.lower()) or _SUFFIX_FORMAT.get(path.suffix.lower())
    w, h = int(sensor_size[0]), int(sensor_size[1])
    writers = {"npy": write_npy, "npz": write_npz, "hdf5": write_h5, "csv": write_csv, "evt2": write_evt2,
               "evt3": write_evt3, "dat": write_dat, "aedat4": write_aedat4, "nmnist": write_nmnist}
    if fmt not in writers:
        raise SourceError(f"cannot write {path}: format {fmt!r} unknown; use one of {', '.join(writers)}")
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            writers[fmt](fh, ev, w, h)
    return path
