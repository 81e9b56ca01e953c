"""Event sources' common part: errors, geometry, the EventSource interface and its in-memory kinds."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from stdl_edge.events import EventError, SensorSize, as_events, validate_events


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
