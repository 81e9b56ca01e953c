"""Crop and downsample: where a sensor's events land in a model's input."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stdl_edge.events import EventColumns, SensorSize, columns_of, pack_events

from .errors import SourceError


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
        return pack_events(self.apply_columns(columns_of(events), sensor))

    def apply_columns(self, columns: EventColumns, sensor: SensorSize) -> EventColumns:
        """:meth:`apply` on columns (coordinates inside ``sensor``, already checked): new x, y
        arrays, the kept events of t and p (``columns`` itself when there is nothing to do)."""
        if self.crop is None and self.downsample == 1:
            return columns
        out_w, out_h = self.output_size(sensor)[:2]
        k = int(self.downsample)
        x0, y0 = (self.crop[0], self.crop[1]) if self.crop is not None else (0, 0)
        # int16 throughout: 0 <= x < 2^15, so x - x0 > -2^15; viewed as uint16 a negative is
        # above any width, so one comparison per axis tests both ends of the crop
        x = np.subtract(columns.x, x0, dtype=np.int16)
        y = np.subtract(columns.y, y0, dtype=np.int16)
        inside = x.view(np.uint16) < out_w * k
        inside &= y.view(np.uint16) < out_h * k
        t, p = columns.t, columns.p
        if not inside.all():
            keep = np.flatnonzero(inside)  # then take: ~3x faster than a boolean mask per column
            x, y, t, p = x.take(keep), y.take(keep), t.take(keep), p.take(keep)
        if k > 1:
            x //= k
            y //= k
        return EventColumns(x, y, t, p)


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
