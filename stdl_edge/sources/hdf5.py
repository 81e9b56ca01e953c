"""HDF5 event files (``.h5``, ``.hdf5``) through h5py, read by slices."""

from __future__ import annotations

from typing import IO, Iterator

import h5py
import numpy as np

from stdl_edge.events import SensorSize

from .base import FileSource, Format, SourceError, _sensor_or_bounds, register_format


class Hdf5Source(FileSource):
    """HDF5 with datasets ``x, y, t, p`` at the root or in group ``events`` (or one structured
    ``events`` dataset), read by slices. Sensor from attributes ``sensor_size``/``width``+``height``."""

    def _read_header(self, sensor_size: tuple[int, ...] | None) -> SensorSize:
        path = self.path
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
        return _sensor_or_bounds(path, sensor_size, found, self._bounds)

    def _locate(self, f: h5py.File) -> tuple[str, bool]:
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

    def _raw_chunks(self) -> Iterator[np.ndarray | dict[str, np.ndarray]]:
        try:
            with h5py.File(self.path, "r") as f:
                node = f[self.group]
                for i in range(0, self.length, self.chunk_size):
                    if self.structured:
                        yield node[i:i + self.chunk_size]
                    else:
                        yield {k: node[k][i:i + self.chunk_size] for k in "xytp"}
        except OSError as e:
            raise SourceError(f"{self.path}: read failed ({e}); the file is corrupt or truncated") from None


def write_h5(fh: IO[bytes], ev: np.ndarray, w: int, h: int) -> None:
    """Group ``events`` with chunked datasets x, y, t, p; root attribute ``sensor_size`` (W, H, 2)."""
    with h5py.File(fh, "w") as f:
        g = f.create_group("events")
        for k in "xytp":
            g.create_dataset(k, data=ev[k], chunks=True)
        f.attrs["sensor_size"] = np.array([w, h, 2])


register_format(Format("hdf5", (".h5", ".hdf5"), Hdf5Source.open, write_h5,
                       "HDF5: x, y, t, p at /, /events or /CD/events, or a structured events dataset"))
