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

import io
import os
import re
import zipfile
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from stdl_edge.events import EVENT_DTYPE, EventError, SensorSize, as_events, validate_events

DEFAULT_CHUNK = 1 << 18  # events per chunk: 4 MiB of EVENT_DTYPE


class SourceError(EventError):
    """An input that cannot be read; the message names the file, the place and the fix."""


# --------------------------------------------------------------------------- geometry


@dataclass(frozen=True)
class Geometry:
    """Crop then downsample, applied to every chunk.

    crop: (x0, y0, width, height) in source pixels, or None.
    downsample: integer factor k >= 1; output pixel = source pixel // k.
    """

    crop: tuple[int, int, int, int] | None = None
    downsample: int = 1

    def __post_init__(self) -> None:
        if int(self.downsample) != self.downsample or self.downsample < 1:
            raise SourceError(f"downsample={self.downsample} must be a whole number >= 1")
        if self.crop is not None:
            if len(self.crop) != 4 or min(self.crop) < 0 or self.crop[2] < 1 or self.crop[3] < 1:
                raise SourceError(f"crop={self.crop} must be (x0, y0, width, height) with width, height >= 1")
            object.__setattr__(self, "crop", tuple(int(v) for v in self.crop))

    def output_size(self, sensor: SensorSize) -> SensorSize:
        w, h = sensor.width, sensor.height
        if self.crop is not None:
            x0, y0, cw, ch = self.crop
            if x0 + cw > w or y0 + ch > h:
                raise SourceError(f"crop={self.crop} does not fit the {w}x{h} sensor")
            w, h = cw, ch
        k = int(self.downsample)
        if w < k or h < k:
            raise SourceError(f"downsample={k} is larger than the {w}x{h} sensor")
        return SensorSize(w // k, h // k, sensor.polarities)

    def apply(self, events: np.ndarray, sensor: SensorSize) -> np.ndarray:
        """Events of ``sensor`` mapped to :meth:`output_size`; a new array, never the caller's.

        Pixels of a partial ``k x k`` block at the right or bottom edge are dropped.
        """
        if self.crop is None and self.downsample == 1:
            return events
        out_w, out_h = self.output_size(sensor)[:2]
        k = int(self.downsample)
        if self.crop is None and out_w * k == sensor.width and out_h * k == sensor.height:
            out = events.copy()  # whole blocks only: no event leaves the sensor
            out["x"] //= k
            out["y"] //= k
            return out
        x0, y0 = (self.crop[0], self.crop[1]) if self.crop is not None else (0, 0)
        x = events["x"].astype(np.int64) - x0
        y = events["y"].astype(np.int64) - y0
        keep = (x >= 0) & (y >= 0) & (x < out_w * k) & (y < out_h * k)
        out = events[keep]  # fancy indexing copies
        out["x"] = x[keep] // k
        out["y"] = y[keep] // k
        return out


def fit_geometry(sensor: SensorSize, target: tuple[int, int] | SensorSize) -> Geometry:
    """Largest integer downsample keeping at least ``target`` pixels, then a centred crop.

    >>> fit_geometry(SensorSize(128, 128), (34, 34))
    Geometry(crop=(13, 13, 102, 102), downsample=3)
    """
    tw, th = int(target[0]), int(target[1])
    if sensor.width < tw or sensor.height < th:
        raise SourceError(f"the {sensor.width}x{sensor.height} sensor is smaller than the model's "
                          f"{tw}x{th} input; pass a source with a larger sensor or pad it")
    k = min(sensor.width // tw, sensor.height // th)
    cw, ch = tw * k, th * k
    if (cw, ch) == (sensor.width, sensor.height):
        return Geometry(None, k)
    return Geometry(((sensor.width - cw) // 2, (sensor.height - ch) // 2, cw, ch), k)


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
    labelled: bool = False
    class_names: tuple[str, ...] = ()

    @property
    def sensor_size(self) -> SensorSize:
        return self.geometry.output_size(self.native_size)

    @abstractmethod
    def _raw_chunks(self) -> Iterator[np.ndarray]:
        """Chunks in source coordinates: anything :func:`stdl_edge.events.as_events` takes."""

    def chunks(self) -> Iterator[np.ndarray]:
        """Validated chunks in model coordinates; raises :class:`SourceError` on bad input."""
        last_t: int | None = None
        count = 0
        geometry = self.geometry
        self.sensor_size  # noqa: B018 - checks the geometry fits before reading
        for raw in self._raw_chunks():
            chunk = None
            try:
                chunk = as_events(raw)
                validate_events(chunk, self.native_size, after_t=last_t)
            except EventError as e:
                where = f"events {count}..{count + len(chunk) - 1}" if chunk is not None else f"the chunk from event {count}"
                raise SourceError(f"{self.name}: {e} (in {where})") from None
            if len(chunk) == 0:
                continue
            last_t = int(chunk["t"][-1])
            count += len(chunk)
            chunk = geometry.apply(chunk, self.native_size)
            if len(chunk):
                yield chunk
        if count == 0:
            raise SourceError(f"{self.name}: no events: the input is empty")

    def _bounds(self) -> tuple[int, int]:
        """(width, height) covering every event: one pass over the file, for files that do not
        record their sensor size."""
        w = h = 0
        for c in self._raw_chunks():
            if len(c):
                w, h = max(w, int(c["x"].max()) + 1), max(h, int(c["y"].max()) + 1)
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


def _sensor_or_bounds(path: Path, given: tuple[int, ...] | None, found: tuple[int, int] | None,
                      scan: Callable[[], tuple[int, int]] | None = None) -> SensorSize:
    """The sensor from the flag, else the file, else (for formats without one) the coordinate bounds."""
    if given is not None:
        return SensorSize(*given) if len(given) == 3 else SensorSize(int(given[0]), int(given[1]))
    if found is not None:
        return SensorSize(int(found[0]), int(found[1]))
    if scan is not None:
        w, h = scan()
        return SensorSize(w, h)
    raise SourceError(f"{path}: the file does not say its sensor size; pass sensor_size=(W, H) "
                      "(--sensor W,H)")


def _check_file(path: Path) -> Path:
    if not path.exists():
        raise FileNotFoundError(f"event file {path} does not exist")
    if path.is_file() and path.stat().st_size == 0:
        raise SourceError(f"{path}: the file is empty (0 bytes)")
    return path


# ---- numpy ---------------------------------------------------------------------


class NpySource(EventSource):
    """A structured ``.npy`` (fields x, y, t, p), memory-mapped and read by slices."""

    def __init__(self, path: Path, sensor_size=None, chunk_size: int = DEFAULT_CHUNK) -> None:
        self.path, self.name, self.chunk_size = _check_file(path), str(path), chunk_size
        self._arr = self._open()
        self.native_size = _sensor_or_bounds(path, sensor_size, None, self._bounds)

    def _open(self) -> np.ndarray:
        try:
            arr = np.load(self.path, mmap_mode="r", allow_pickle=False)
        except ValueError as e:
            raise SourceError(f"{self.path}: not a readable .npy file ({e}); it is corrupt, truncated "
                              "or holds Python objects") from None
        except OSError as e:
            raise SourceError(f"{self.path}: not a .npy file ({e})") from None
        if arr.dtype.names is None:
            raise SourceError(f"{self.path}: the array has dtype {arr.dtype}; save a structured array with "
                              "fields x, y, t, p (stdl_edge.events.EVENT_DTYPE)")
        return arr

    def _raw_chunks(self) -> Iterator[np.ndarray]:
        for i in range(0, len(self._arr), self.chunk_size):
            yield np.asarray(self._arr[i:i + self.chunk_size])


class _NpyMember:
    """One array inside an ``.npz``, streamed from the zip entry without loading it whole."""

    def __init__(self, zf: zipfile.ZipFile, member: str, path: Path) -> None:
        self.fh = zf.open(member)
        self.where = f"{path}:{member}"
        try:
            version = np.lib.format.read_magic(self.fh)
            shape, fortran, dtype = np.lib.format._read_array_header(self.fh, version)  # noqa: SLF001
        except ValueError as e:
            raise SourceError(f"{self.where}: not a .npy member ({e}); the file is corrupt") from None
        if dtype.hasobject:
            raise SourceError(f"{self.where}: holds Python objects; refusing to unpickle")
        if len(shape) != 1:
            raise SourceError(f"{self.where}: shape {shape}, expected a 1-D array")
        self.dtype, self.length, self.offset = dtype, int(shape[0]), 0

    def read(self, n: int) -> np.ndarray:
        n = min(n, self.length - self.offset)
        want = n * self.dtype.itemsize
        data = self.fh.read(want)
        if len(data) != want:
            raise SourceError(f"{self.where}: truncated at element {self.offset + len(data) // self.dtype.itemsize}"
                              f" of {self.length}")
        self.offset += n
        return np.frombuffer(data, dtype=self.dtype)


class NpzSource(EventSource):
    """An ``.npz`` holding ``events`` (structured) or separate ``x``, ``y``, ``t``, ``p`` arrays."""

    def __init__(self, path: Path, sensor_size=None, chunk_size: int = DEFAULT_CHUNK) -> None:
        self.path, self.name, self.chunk_size = _check_file(path), str(path), chunk_size
        try:
            with zipfile.ZipFile(path) as zf:
                names = {n[:-4] for n in zf.namelist() if n.endswith(".npy")}
                found = None
                if "sensor_size" in names:
                    with zf.open("sensor_size.npy") as fh:
                        found = tuple(int(v) for v in np.load(fh, allow_pickle=False)[:2])
        except zipfile.BadZipFile as e:
            raise SourceError(f"{path}: not a readable .npz ({e}); it is corrupt or truncated") from None
        if "events" in names:
            self.members = ("events",)
        elif {"x", "y", "t", "p"} <= names:
            self.members = ("x", "y", "t", "p")
        else:
            raise SourceError(f"{path}: has arrays {sorted(names)}; expected 'events' or 'x', 'y', 't', 'p'")
        self.native_size = _sensor_or_bounds(path, sensor_size, found, self._bounds)

    def _raw_chunks(self) -> Iterator[np.ndarray]:
        try:
            with zipfile.ZipFile(self.path) as zf:
                members = [_NpyMember(zf, m + ".npy", self.path) for m in self.members]
                n = members[0].length
                if any(m.length != n for m in members):
                    raise SourceError(f"{self.path}: x, y, t, p have different lengths "
                                      f"{[m.length for m in members]}")
                while members[0].offset < n:
                    parts = [m.read(self.chunk_size) for m in members]
                    if len(parts) == 1:
                        yield parts[0]
                    else:
                        ev = np.empty(len(parts[0]), dtype=[(k, parts[i].dtype) for i, k in enumerate("xytp")])
                        for i, k in enumerate("xytp"):
                            ev[k] = parts[i]
                        yield ev
        except (zipfile.BadZipFile, EOFError, OSError) as e:
            raise SourceError(f"{self.path}: the archive is corrupt or truncated ({e})") from None


# ---- HDF5 ---------------------------------------------------------------------


class Hdf5Source(EventSource):
    """HDF5 with datasets ``x, y, t, p`` at the root or in group ``events`` (or one structured
    ``events`` dataset), read by slices. Sensor from attributes ``sensor_size``/``width``+``height``."""

    def __init__(self, path: Path, sensor_size=None, chunk_size: int = DEFAULT_CHUNK) -> None:
        import h5py

        self.path, self.name, self.chunk_size = _check_file(path), str(path), chunk_size
        try:
            with h5py.File(path, "r") as f:
                self.group, self.structured = self._locate(f)
                node = f[self.group]
                attrs = dict(f.attrs) | dict(node.attrs)
                found = None
                if "sensor_size" in attrs:
                    found = tuple(int(v) for v in np.asarray(attrs["sensor_size"])[:2])
                elif "width" in attrs and "height" in attrs:
                    found = (int(attrs["width"]), int(attrs["height"]))
                self.length = len(node) if self.structured else len(node["t"])
        except OSError as e:
            raise SourceError(f"{path}: not a readable HDF5 file ({e}); it is corrupt or truncated") from None
        self.native_size = _sensor_or_bounds(path, sensor_size, found, self._bounds)

    def _locate(self, f) -> tuple[str, bool]:
        import h5py

        for group in ("/", "/events", "/CD/events"):
            if group not in f:
                continue
            node = f[group]
            if isinstance(node, h5py.Dataset) and node.dtype.names:
                return group, True
            if isinstance(node, h5py.Group) and all(k in node for k in "xytp"):
                lengths = {len(node[k]) for k in "xytp"}
                if len(lengths) != 1:
                    raise SourceError(f"{self.path}: datasets x, y, t, p in {group} have different lengths "
                                      f"{[len(node[k]) for k in 'xytp']}")
                return group, False
        raise SourceError(f"{self.path}: no x, y, t, p datasets (looked in /, /events, /CD/events)")

    def _raw_chunks(self) -> Iterator[np.ndarray]:
        import h5py

        try:
            with h5py.File(self.path, "r") as f:
                node = f[self.group]
                for i in range(0, self.length, self.chunk_size):
                    if self.structured:
                        yield node[i:i + self.chunk_size]
                    else:
                        parts = [node[k][i:i + self.chunk_size] for k in "xytp"]
                        ev = np.empty(len(parts[0]), dtype=[(k, parts[j].dtype) for j, k in enumerate("xytp")])
                        for j, k in enumerate("xytp"):
                            ev[k] = parts[j]
                        yield ev
        except OSError as e:
            raise SourceError(f"{self.path}: read failed ({e}); the file is corrupt or truncated") from None


# ---- CSV ---------------------------------------------------------------------


_CSV_ALIASES = {"t": "t", "ts": "t", "timestamp": "t", "time": "t", "x": "x", "y": "y",
                "p": "p", "pol": "p", "polarity": "p", "on": "p"}


class CsvSource(EventSource):
    """CSV with a header naming the columns ``t, x, y, p`` in any order (``x,y,t,p`` is common).

    Read in blocks of ``chunk_size`` rows; a malformed row raises with its line number.
    Sensor from a ``# sensor_size: W H`` comment line, the flag, or the coordinate bounds.
    """

    def __init__(self, path: Path, sensor_size=None, chunk_size: int = DEFAULT_CHUNK) -> None:
        self.path, self.name, self.chunk_size = _check_file(path), str(path), chunk_size
        found, self.columns, self.header_lines = self._header()
        self.native_size = _sensor_or_bounds(path, sensor_size, found, self._bounds)

    def _header(self) -> tuple[tuple[int, int] | None, list[int], int]:
        found = None
        with open(self.path, encoding="utf-8", errors="replace") as fh:
            for lineno, line in enumerate(fh, 1):
                s = line.strip()
                if not s:
                    continue
                if s.startswith("#"):
                    m = re.search(r"sensor_size\s*[:=]\s*(\d+)[\s,x]+(\d+)", s)
                    if m:
                        found = (int(m.group(1)), int(m.group(2)))
                    continue
                cols = [_CSV_ALIASES.get(c.strip().lower()) for c in s.split(",")]
                if sorted(c for c in cols if c) != ["p", "t", "x", "y"]:
                    raise SourceError(f"{self.path}: line {lineno} {s[:60]!r} is not a header naming columns "
                                      "t, x, y, p; add one (e.g. 't,x,y,p')")
                self.ncols = len(cols)
                return found, [cols.index(k) for k in "xytp"], lineno
        raise SourceError(f"{self.path}: no header and no rows; the file is empty")

    def _parse(self, lines: list[str], first_line: int) -> np.ndarray:
        try:
            table = np.loadtxt(lines, delimiter=",", dtype=np.int64, ndmin=2, comments="#")
            if table.shape[1] != self.ncols:
                raise ValueError("wrong number of columns")
        except ValueError:
            for k, line in enumerate(lines):
                cells = line.strip().split(",")
                try:
                    [int(c) for c in cells]
                except ValueError:
                    raise SourceError(f"{self.path}: line {first_line + k}: {line.strip()[:60]!r} is not a row "
                                      "of integers; the file is corrupt") from None
                if len(cells) != self.ncols:
                    raise SourceError(f"{self.path}: line {first_line + k}: {line.strip()[:60]!r} has {len(cells)} "
                                      f"columns, the header has {self.ncols}; the file is truncated or corrupt")
            raise
        ev = np.empty(len(table), dtype=[("x", np.int64), ("y", np.int64), ("t", np.int64), ("p", np.int64)])
        for k, c in zip("xytp", self.columns):
            ev[k] = table[:, c]
        return ev

    def _raw_chunks(self) -> Iterator[np.ndarray]:
        with open(self.path, encoding="utf-8", errors="replace") as fh:
            for _ in range(self.header_lines):
                next(fh)
            block: list[str] = []
            start = self.header_lines + 1
            lineno = self.header_lines
            for line in fh:
                lineno += 1
                if not line.strip():
                    continue
                if not block:
                    start = lineno
                block.append(line)
                if len(block) == self.chunk_size:
                    yield self._parse(block, start)
                    block = []
            if block:
                yield self._parse(block, start)


# ---- Prophesee ---------------------------------------------------------------------


def _prophesee_header(path: Path) -> tuple[int, dict[str, str], tuple[int, int] | None]:
    """Read ``% key value`` header lines; returns (body offset, fields, (W, H) if given)."""
    fields: dict[str, str] = {}
    offset = 0
    with open(path, "rb") as fh:
        while True:
            line = fh.readline()
            if not line.startswith(b"%"):
                break
            offset += len(line)
            text = line[1:].decode("latin-1").strip()
            if text == "end":
                break
            key, _, value = text.partition(" ")
            fields[key.lower()] = value.strip()
    size = None
    fmt = fields.get("format", "")
    mw, mh = re.search(r"width=(\d+)", fmt), re.search(r"height=(\d+)", fmt)
    if mw and mh:
        size = (int(mw.group(1)), int(mh.group(1)))
    elif "geometry" in fields and re.match(r"\d+x\d+", fields["geometry"]):
        w, h = fields["geometry"].split("x")[:2]
        size = (int(w), int(h))
    elif "width" in fields and "height" in fields:
        size = (int(fields["width"]), int(fields["height"]))
    return offset, fields, size


def prophesee_encoding(path: Path) -> str:
    """'evt2', 'evt3' or 'dat' from the header (``% evt 3.0``, ``% format EVT3;...``) or the suffix."""
    _, fields, _ = _prophesee_header(path)
    text = (fields.get("evt", "") + " " + fields.get("format", "")).upper()
    if "3" in fields.get("evt", "") or "EVT3" in text:
        return "evt3"
    if "2" in fields.get("evt", "") or "EVT2" in text:
        return "evt2"
    if path.suffix.lower() == ".dat":
        return "dat"
    raise SourceError(f"{path}: the header does not say EVT2 or EVT3 (no '% evt 2.0'/'% evt 3.0' or "
                      "'% format EVT...' line); pass format='evt2' or 'evt3'")


class ExpelliarmusSource(EventSource):
    """Prophesee DAT / EVT2 through expelliarmus' chunked reader."""

    WORD = {"dat": 8, "evt2": 4}

    def __init__(self, path: Path, encoding: str, sensor_size=None, chunk_size: int = DEFAULT_CHUNK) -> None:
        self.path, self.name, self.chunk_size, self.encoding = _check_file(path), str(path), chunk_size, encoding
        body, _, found = _prophesee_header(path)
        if encoding == "dat":
            body += 2  # event type and event size bytes after the text header
            with open(path, "rb") as fh:
                fh.seek(body - 2)
                ev_type = fh.read(2)
            if len(ev_type) == 2 and ev_type[1] != 8:
                raise SourceError(f"{path}: DAT event size is {ev_type[1]} bytes at offset {body - 1}; "
                                  "only 8-byte CD events are supported")
        size = path.stat().st_size
        nbytes = size - body
        if nbytes <= 0:
            raise SourceError(f"{path}: no events after the header (ends at byte {min(body, size)})")
        word = self.WORD[encoding]
        if nbytes % word:
            raise SourceError(f"{path}: truncated: {nbytes} bytes of {encoding.upper()} data after the header is "
                              f"not a whole number of {word}-byte words; the last word starts at byte "
                              f"{size - nbytes % word}")
        self.native_size = _sensor_or_bounds(path, sensor_size, found)

    def _raw_chunks(self) -> Iterator[np.ndarray]:
        from expelliarmus import Wizard

        suffix = ".dat" if self.encoding == "dat" else ".raw"
        path = self.path
        link = None
        if path.suffix.lower() != suffix:  # expelliarmus checks the suffix
            import tempfile

            link = Path(tempfile.mkdtemp()) / ("events" + suffix)
            os.symlink(path.resolve(), link)
            path = link
        try:
            wizard = Wizard(encoding=self.encoding, fpath=path, chunk_size=int(self.chunk_size))
            for arr in wizard.read_chunk():
                yield arr
        except RuntimeError as e:
            raise SourceError(f"{self.path}: expelliarmus could not decode the file ({e}); it is corrupt") from None
        finally:
            if link is not None:
                link.unlink(missing_ok=True)
                link.parent.rmdir()


class Evt3Source(EventSource):
    """Prophesee EVT3 ``.raw``, decoded per the format spec (16-bit little-endian words).

    Word types (top 4 bits): ADDR_Y 0x0 (y in bits 0-10), ADDR_X 0x2 (x 0-10, polarity
    bit 11: one event), VECT_BASE_X 0x3 (x base, polarity), VECT_12 0x4 / VECT_8 0x5
    (a bit mask of events at base_x + i, then base_x += 12 / 8), TIME_LOW 0x6 (t bits
    0-11), TIME_HIGH 0x8 (t bits 12-23; a decrease is a 2^24 us wrap), and 0x7, 0xA, 0xE,
    0xF (continued, trigger, other) skipped. ``t = time_high * 4096 + time_low`` us.
    """

    KNOWN = frozenset((0x0, 0x2, 0x3, 0x4, 0x5, 0x6, 0x7, 0x8, 0xA, 0xE, 0xF))

    def __init__(self, path: Path, sensor_size=None, chunk_size: int = DEFAULT_CHUNK) -> None:
        self.path, self.name, self.chunk_size = _check_file(path), str(path), chunk_size
        self.body, _, found = _prophesee_header(path)
        nbytes = path.stat().st_size - self.body
        if nbytes <= 0:
            raise SourceError(f"{path}: no events after the header (ends at byte {self.body})")
        if nbytes % 2:
            raise SourceError(f"{path}: truncated: EVT3 data is {nbytes} bytes, not a whole number of 2-byte "
                              f"words; the last word starts at byte {path.stat().st_size - 1}")
        self.native_size = _sensor_or_bounds(path, sensor_size, found)

    def _raw_chunks(self) -> Iterator[np.ndarray]:
        state = {"high": 0, "high_raw": None, "low": 0, "y": 0, "bx": 0, "bp": 0, "wraps": 0}
        words_per_chunk = max(int(self.chunk_size), 16)
        with open(self.path, "rb") as fh:
            fh.seek(self.body)
            offset = self.body
            while True:
                data = fh.read(2 * words_per_chunk)
                if not data:
                    break
                words = np.frombuffer(data, dtype="<u2")
                yield _decode_evt3(words, state, offset, self.path)
                offset += len(data)


def _ffill(mask: np.ndarray, values: np.ndarray, carried: int) -> np.ndarray:
    """For each position, the value at the last position where ``mask`` holds (else ``carried``)."""
    idx = np.where(mask, np.arange(len(mask)), -1)
    np.maximum.accumulate(idx, out=idx)
    out = np.where(idx >= 0, values[np.maximum(idx, 0)], carried)
    return out.astype(np.int64)


def _decode_evt3(words: np.ndarray, state: dict[str, Any], offset: int, path: Path) -> np.ndarray:
    typ = (words >> 12).astype(np.int64)
    val = (words & 0x0FFF).astype(np.int64)
    unknown = ~np.isin(typ, list(Evt3Source.KNOWN))
    if unknown.any():
        i = int(np.flatnonzero(unknown)[0])
        raise SourceError(f"{path}: word 0x{int(words[i]):04x} at byte {offset + 2 * i} has reserved type "
                          f"0x{int(typ[i]):x}; the file is not EVT3 or is corrupt")
    # time high with 24-bit wrap: a decrease of the 12-bit value is one wrap
    is_hi = typ == 0x8
    hi_vals = val[is_hi]
    full_hi = hi_vals
    if len(hi_vals):
        prev = hi_vals[0] if state["high_raw"] is None else state["high_raw"]
        wraps = state["wraps"] + np.cumsum(np.diff(np.concatenate([[prev], hi_vals])) < 0)
        full_hi = hi_vals + 4096 * wraps  # a wrap of the 12-bit high part = 2^24 us
        state["wraps"], state["high_raw"] = int(wraps[-1]), int(hi_vals[-1])
    hi_full_at = np.zeros(len(words), np.int64)
    hi_full_at[is_hi] = full_hi
    high = _ffill(is_hi, hi_full_at, state["high"])
    # time low: since the last TIME_HIGH (which zeroes it) or carried
    is_lo = typ == 0x6
    lo_idx = np.where(is_lo, np.arange(len(words)), -1)
    np.maximum.accumulate(lo_idx, out=lo_idx)
    hi_idx = np.where(is_hi, np.arange(len(words)), -1)
    np.maximum.accumulate(hi_idx, out=hi_idx)
    low = np.where(lo_idx > hi_idx, val[np.maximum(lo_idx, 0)], np.where(hi_idx >= 0, 0, state["low"]))
    t = high * 4096 + low
    y = _ffill(typ == 0x0, val & 0x7FF, state["y"])
    # vectors: base_x from the last VECT_BASE_X, advanced by 12/8 per vector word since then
    is_base = typ == 0x3
    inc = np.where(typ == 0x4, 12, np.where(typ == 0x5, 8, 0))
    cum_excl = np.cumsum(inc) - inc
    base_val = _ffill(is_base, val & 0x7FF, -1)
    base_cum = _ffill(is_base, cum_excl, 0)
    base_idx = np.where(is_base, np.arange(len(words)), -1)
    np.maximum.accumulate(base_idx, out=base_idx)
    bx = np.where(base_idx >= 0, base_val + cum_excl - base_cum, state["bx"] + cum_excl)
    bp = _ffill(is_base, (val >> 11) & 1, state["bp"])
    # single events
    single = np.flatnonzero(typ == 0x2)
    parts_pos = [single * 16]
    parts = [(val[single] & 0x7FF, y[single], t[single], (val[single] >> 11) & 1)]
    for code, nbits in ((0x4, 12), (0x5, 8)):
        vi = np.flatnonzero(typ == code)
        if len(vi):
            bits = (val[vi, None] >> np.arange(nbits)) & 1
            w_i, b_i = np.nonzero(bits)
            wi = vi[w_i]
            parts_pos.append(wi * 16 + b_i)
            parts.append((bx[wi] + b_i, y[wi], t[wi], bp[wi]))
    pos = np.concatenate(parts_pos)
    order = np.argsort(pos, kind="stable")
    ev = np.empty(len(pos), dtype=[("x", np.int64), ("y", np.int64), ("t", np.int64), ("p", np.int64)])
    for k, j in zip("xytp", range(4)):
        ev[k] = np.concatenate([p[j] for p in parts])[order]
    # carry state
    state["high"] = int(high[-1])
    state["low"] = int(low[-1])
    state["y"] = int(y[-1])
    state["bx"] = int(bx[-1] + inc[-1])
    state["bp"] = int(bp[-1])
    return ev


# ---- AEDAT4 ---------------------------------------------------------------------


class Aedat4Source(EventSource):
    """iniVation AEDAT 4 through ``aedat`` (Rust), one packet at a time, regrouped into chunks."""

    def __init__(self, path: Path, sensor_size=None, chunk_size: int = DEFAULT_CHUNK) -> None:
        self.path, self.name, self.chunk_size = _check_file(path), str(path), chunk_size
        try:
            import aedat
        except ImportError:
            raise ImportError("reading AEDAT4 needs the 'aedat' package: pip install 'stdl-edge[datasets]'") from None
        with open(path, "rb") as fh:
            if fh.read(14) != b"#!AER-DAT4.0\r\n":
                raise SourceError(f"{path}: not an AEDAT4 file (bytes 0..13 are not '#!AER-DAT4.0\\r\\n')")
        try:
            streams = aedat.Decoder(str(path)).id_to_stream()
        except Exception as e:  # the Rust reader raises a generic exception with its reason
            raise SourceError(f"{path}: the AEDAT4 header is corrupt ({e})") from None
        ev_streams = {k: v for k, v in streams.items() if v.get("type") == "events"}
        if not ev_streams:
            raise SourceError(f"{path}: the AEDAT4 file has no event stream (streams: {streams})")
        self.stream_id = min(ev_streams)
        s = ev_streams[self.stream_id]
        self.native_size = _sensor_or_bounds(path, sensor_size, (int(s["width"]), int(s["height"])))

    def _raw_chunks(self) -> Iterator[np.ndarray]:
        import aedat

        pending: list[np.ndarray] = []
        n = 0
        packet_no = 0
        try:
            for packet in aedat.Decoder(str(self.path)):
                packet_no += 1
                if packet["stream_id"] != self.stream_id or "events" not in packet:
                    continue
                pending.append(packet["events"])
                n += len(packet["events"])
                if n >= self.chunk_size:  # regroup packets into chunks of exactly chunk_size
                    joined = np.concatenate(pending)
                    cut = len(joined) - len(joined) % self.chunk_size
                    for i in range(0, cut, self.chunk_size):
                        yield joined[i:i + self.chunk_size]
                    pending = [joined[cut:]]
                    n = len(pending[0])
        except Exception as e:
            raise SourceError(f"{self.path}: packet {packet_no + 1} is corrupt or truncated ({e})") from None
        if n:
            yield np.concatenate(pending)


# ---- N-MNIST .bin ---------------------------------------------------------------------


class NmnistBinSource(EventSource):
    """N-MNIST / N-Caltech101 ``.bin`` (5-byte big-endian records) via ``tonic.io.read_mnist_file``,
    on blocks of records; a timestamp-overflow record (y = 240) adds 2^13 us to all later events."""

    def __init__(self, path: Path, sensor_size=None, chunk_size: int = DEFAULT_CHUNK) -> None:
        self.path, self.name, self.chunk_size = _check_file(path), str(path), chunk_size
        size = path.stat().st_size
        if size % 5:
            raise SourceError(f"{path}: truncated: {size} bytes is not a whole number of 5-byte records; the "
                              f"last record starts at byte {size - size % 5}")
        self.native_size = _sensor_or_bounds(path, sensor_size, (34, 34) if sensor_size is None else None)

    def _raw_chunks(self) -> Iterator[np.ndarray]:
        from tonic.io import read_mnist_file

        dtype = np.dtype([("x", np.int16), ("y", np.int16), ("t", np.int64), ("p", np.int8)])
        overflows = 0
        with open(self.path, "rb") as fh:
            while True:
                block = fh.read(5 * self.chunk_size)
                if not block:
                    break
                ev = read_mnist_file(io.BytesIO(block), dtype=dtype, is_stream=True)
                ev["t"] += overflows * 2 ** 13  # tonic applies this block's overflow records
                overflows += int((np.frombuffer(block, dtype=np.uint8)[1::5] == 240).sum())
                yield ev


# ---- emulator (video / frames) -------------------------------------------------------


_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
_VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".gif", ".webm")


class EmulatedSource(EventSource):
    """Frames from a folder of images or a video, turned into events by the DVS emulator,
    one frame at a time (memory: one frame plus the emulator's state)."""

    def __init__(self, path: Path, fps: float = 30.0, sensor_size=None, emulator_config: Any = None) -> None:
        if not path.exists():
            raise FileNotFoundError(f"frames {path} do not exist")
        if not fps > 0:
            raise SourceError(f"fps={fps} must be > 0")
        self.path, self.name, self.fps, self.config = path, str(path), float(fps), emulator_config
        if path.is_dir():
            self.files = sorted(p for p in path.iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES)
            if not self.files:
                raise SourceError(f"{path}: no image files ({', '.join(_IMAGE_SUFFIXES)}) in the folder")
        else:
            self.files = []
            try:
                import imageio.v3  # noqa: F401
            except ImportError:
                raise ImportError(f"{path}: reading video needs imageio (pip install imageio imageio-ffmpeg); "
                                  "or pass a folder of PNG frames") from None
        first = next(self._frames())
        self.native_size = SensorSize(first.shape[1], first.shape[0])
        if sensor_size is not None and tuple(sensor_size[:2]) != tuple(self.native_size[:2]):
            raise SourceError(f"{path}: frames are {first.shape[1]}x{first.shape[0]}, not {sensor_size[:2]}; "
                              "use crop/downsample instead of sensor_size")

    def _frames(self) -> Iterator[np.ndarray]:
        if self.files:
            from PIL import Image

            for f in self.files:
                try:
                    with Image.open(f) as im:
                        yield np.asarray(im.convert("L"), dtype=np.float32) / 255.0
                except OSError as e:
                    raise SourceError(f"{f}: not a readable image ({e})") from None
        else:
            import imageio.v3 as iio

            for frame in iio.imiter(self.path):
                frame = np.asarray(frame, dtype=np.float32)
                if frame.ndim == 3:
                    frame = frame[..., :3].mean(axis=-1)
                yield frame / 255.0

    def _raw_chunks(self) -> Iterator[np.ndarray]:
        try:
            from stdl_edge import emulator as emu
        except ImportError:
            raise ImportError("the DVS emulator (stdl_edge.emulator) is not available in this install") from None
        config = self.config if self.config is not None else emu.EmulatorConfig()
        em = emu.Emulator(config, (self.native_size.height, self.native_size.width))
        period = 1e6 / self.fps
        for i, frame in enumerate(self._frames()):
            if frame.shape != (self.native_size.height, self.native_size.width):
                raise SourceError(f"{self.name}: frame {i} is {frame.shape[1]}x{frame.shape[0]}, the first was "
                                  f"{self.native_size.width}x{self.native_size.height}")
            ev = em.step(frame, int(round(i * period)))
            yield ev if len(ev) < 2 or (np.diff(ev["t"]) >= 0).all() else np.sort(ev, order="t", kind="stable")


# ---- live cameras -------------------------------------------------------------------


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


# ---- data sets ----------------------------------------------------------------------


class DatasetSource(EventSource):
    """A registered data set split (``digits-dvs:test``, ``nmnist:test``): samples with labels.

    ``chunks()`` concatenates the samples, sample ``i`` shifted to start at ``i * period_us``
    (``period_us`` = the data set's duration), so a windowed run sees one sample per window.
    """

    labelled = True

    def __init__(self, name: str, split: str, limit: int | None = None, **load_options: Any) -> None:
        from stdl_edge import data

        self.name = f"{name}:{split}"
        self.ds = data.load_dataset(name, split, **load_options)
        info = data.dataset_info(name)
        self.native_size = SensorSize(*info.sensor_size)
        self.class_names = tuple(getattr(info, "class_names", ()) or ())
        self.period_us = int(getattr(info, "duration_us", 0) or 0)
        self.count = len(self.ds) if limit is None else min(int(limit), len(self.ds))

    def samples(self) -> Iterator[tuple[np.ndarray, int]]:
        labels = np.asarray(self.ds.labels)
        for i in range(self.count):
            ev = as_events(self.ds.events(i))
            validate_events(ev, self.native_size)
            yield self.geometry.apply(ev, self.native_size), int(labels[i])

    def _raw_chunks(self) -> Iterator[np.ndarray]:
        offset = 0
        for i in range(self.count):
            ev = as_events(self.ds.events(i)).copy()  # shifted below: never the data set's array
            period = self.period_us or (int(ev["t"].max()) + 1 if len(ev) else 1)
            ev["t"] += offset
            offset += period
            yield ev


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


__all__ = ["DEFAULT_CHUNK", "EventSource", "FORMATS", "Geometry", "SourceError", "fit_geometry", "write_events",
           "open_source", "read_all"]


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
    writers = {"npy": _write_npy, "npz": _write_npz, "hdf5": _write_h5, "csv": _write_csv, "evt2": _write_evt2,
               "evt3": _write_evt3, "dat": _write_dat, "aedat4": _write_aedat4, "nmnist": _write_nmnist}
    if fmt not in writers:
        raise SourceError(f"cannot write {path}: format {fmt!r} unknown; use one of {', '.join(writers)}")
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            writers[fmt](fh, ev, w, h)
    return path


def _write_npy(fh, ev, w, h) -> None:
    np.save(fh, ev, allow_pickle=False)


def _write_npz(fh, ev, w, h) -> None:
    np.savez(fh, x=ev["x"], y=ev["y"], t=ev["t"], p=ev["p"], sensor_size=np.array([w, h, 2]))


def _write_h5(fh, ev, w, h) -> None:
    import h5py

    with h5py.File(fh, "w") as f:
        g = f.create_group("events")
        for k in "xytp":
            g.create_dataset(k, data=ev[k], chunks=True)
        f.attrs["sensor_size"] = np.array([w, h, 2])


def _write_csv(fh, ev, w, h) -> None:
    fh.write(f"# sensor_size: {w} {h}\nt,x,y,p\n".encode())
    table = np.stack([ev["t"], ev["x"].astype(np.int64), ev["y"].astype(np.int64), ev["p"].astype(np.int64)], 1)
    np.savetxt(fh, table, fmt="%d", delimiter=",")


def _prophesee_text(kind: str, w: int, h: int) -> bytes:
    return (f"% date 2026-01-01 00:00:00\n% evt {kind}\n% format EVT{kind[0]};height={h};width={w}\n"
            f"% geometry {w}x{h}\n% end\n").encode()


def _write_evt2(fh, ev, w, h) -> None:
    """32-bit LE words: CD_OFF/CD_ON (type 0x0/0x1, t bits 0-5 at 22-27, x at 11-21, y at 0-10)
    after an EVT_TIME_HIGH (0x8, t bits 6-33 in bits 0-27) whenever t >> 6 changes."""
    t = ev["t"].astype(np.uint64)
    hi = t >> np.uint64(6)
    new_hi = np.ones(len(ev), bool)
    new_hi[1:] = hi[1:] != hi[:-1]
    cd = ((ev["p"].astype(np.uint64) << np.uint64(28)) | ((t & np.uint64(0x3F)) << np.uint64(22))
          | (ev["x"].astype(np.uint64) << np.uint64(11)) | ev["y"].astype(np.uint64))
    th = (np.uint64(0x8) << np.uint64(28)) | (hi & np.uint64(0x0FFFFFFF))
    words = np.empty(len(ev) + int(new_hi.sum()), np.uint64)
    pos = np.arange(len(ev)) + np.cumsum(new_hi)
    words[pos] = cd
    words[pos[new_hi] - 1] = th[new_hi]
    fh.write(_prophesee_text("2.0", w, h))
    fh.write(words.astype("<u4").tobytes())


def _write_evt3(fh, ev, w, h) -> None:
    """16-bit LE words per event: TIME_HIGH (when t bits 12-23 change), TIME_LOW (when t changes),
    ADDR_Y (when y changes), then ADDR_X with the polarity; a VECT_12 word for a run of
    same-(t, y, p) events at x, x+1, ... (at most 12) after a VECT_BASE_X."""
    words: list[int] = []
    hi_prev = lo_prev = y_prev = None
    t, x, y, p = (ev[k].astype(np.int64) for k in "txyp")
    i, n = 0, len(ev)
    while i < n:
        ti = int(t[i])
        hi, lo = (ti >> 12) & 0xFFF, ti & 0xFFF
        if hi != hi_prev:
            words.append(0x8000 | hi)
            hi_prev, lo_prev = hi, None
        if lo != lo_prev:
            words.append(0x6000 | lo)
            lo_prev = lo
        if y[i] != y_prev:
            words.append(int(y[i]))
            y_prev = y[i]
        j = i + 1  # a run of adjacent x with the same t, y, p becomes one vector
        while j < n and j - i < 12 and t[j] == ti and y[j] == y[i] and p[j] == p[i] and x[j] == x[i] + (j - i):
            j += 1
        if j - i >= 2:
            words.append(0x3000 | (int(p[i]) << 11) | int(x[i]))
            words.append(0x4000 | ((1 << (j - i)) - 1))
        else:
            words.append(0x2000 | (int(p[i]) << 11) | int(x[i]))
        i = j
    fh.write(_prophesee_text("3.0", w, h))
    fh.write(np.asarray(words, dtype="<u2").tobytes())


def _write_dat(fh, ev, w, h) -> None:
    """Text header, event type 0x0C (CD) and size 8, then (uint32 t, uint32 x | y << 14 | p << 28)."""
    if int(ev["t"].max()) >= 2 ** 32:
        raise SourceError("DAT stores 32-bit timestamps; the stream is longer than 71 minutes")
    fh.write(f"% Data file containing CD events.\n% Version 2\n% Height {h}\n% Width {w}\n".encode())
    fh.write(bytes([0x0C, 8]))
    rec = np.empty(len(ev), dtype=[("t", "<u4"), ("d", "<u4")])
    rec["t"] = ev["t"]
    rec["d"] = (ev["x"].astype(np.uint32) | (ev["y"].astype(np.uint32) << 14)
                | (ev["p"].astype(np.uint32) << 28))
    fh.write(rec.tobytes())


_AEDAT4_DESCRIPTION = """<dv version="2.0"><node name="outInfo" path="/mainloop/Recorder/outInfo/">\
<node name="0" path="/mainloop/Recorder/outInfo/0/"><attr key="compression" type="string">NONE</attr>\
<attr key="originalModuleName" type="string">stdl-edge</attr>\
<attr key="typeIdentifier" type="string">EVTS</attr><node name="info" path="/mainloop/Recorder/outInfo/0/info/">\
<attr key="sizeX" type="int">{w}</attr><attr key="sizeY" type="int">{h}</attr>\
<attr key="source" type="string">stdl-edge</attr></node></node></node></dv>"""


def _write_aedat4(fh, ev, w, h) -> None:
    """``#!AER-DAT4.0\\r\\n``, a size-prefixed IOHeader flatbuffer (compression NONE, no file data
    table, XML description with one EVTS stream), then packets: (stream id u32, size u32,
    size-prefixed EventPacket flatbuffer of 16-byte structs {t i64, x i16, y i16, on bool})."""
    import flatbuffers

    fh.write(b"#!AER-DAT4.0\r\n")
    b = flatbuffers.Builder(1024)
    desc = b.CreateString(_AEDAT4_DESCRIPTION.format(w=w, h=h))
    b.StartObject(3)
    b.PrependUOffsetTRelativeSlot(2, desc, 0)
    b.PrependInt64Slot(1, -1, -1)
    b.PrependInt32Slot(0, 0, 0)
    b.FinishSizePrefixed(b.EndObject(), b"IOHE")
    fh.write(bytes(b.Output()))
    for i in range(0, len(ev), 4096):
        part = ev[i:i + 4096]
        b = flatbuffers.Builder(16 * len(part) + 64)
        b.StartVector(16, len(part), 8)
        for e in part[::-1]:
            b.Prep(8, 16)
            b.Pad(3)
            b.PrependBool(bool(e["p"]))
            b.PrependInt16(int(e["y"]))
            b.PrependInt16(int(e["x"]))
            b.PrependInt64(int(e["t"]))
        vec = b.EndVector()
        b.StartObject(1)
        b.PrependUOffsetTRelativeSlot(0, vec, 0)
        b.FinishSizePrefixed(b.EndObject(), b"EVTS")
        payload = bytes(b.Output())
        fh.write((0).to_bytes(4, "little") + len(payload).to_bytes(4, "little") + payload)


def _write_nmnist(fh, ev, w, h) -> None:
    """5-byte big-endian records: x, y, (p << 7 | t bits 16-22), t bits 8-15, t bits 0-7;
    a record with y = 240 before each event marks +2^13 us of the 23-bit time (tonic's rule)."""
    if w > 256 or h > 240:
        raise SourceError(f"N-MNIST records hold x < 256, y < 240; the sensor is {w}x{h}")
    t = ev["t"].astype(np.int64)
    overflow = t // 2 ** 13  # overflow records needed before each event
    extra = np.diff(np.concatenate([[0], overflow]))
    recs = []
    for k in range(len(ev)):
        recs.extend([bytes([0, 240, 0, 0, 0])] * int(extra[k]))
        tl = int(t[k] - overflow[k] * 2 ** 13)
        recs.append(bytes([int(ev["x"][k]), int(ev["y"][k]), (int(ev["p"][k]) << 7) | (tl >> 16), (tl >> 8) & 0xFF,
                           tl & 0xFF]))
    fh.write(b"".join(recs))
