"""HDF5 event files (``.h5``, ``.hdf5``) through h5py, read by slices."""

from __future__ import annotations

from typing import IO, Iterator

import h5py
import numpy as np

from stdl_edge.events import SensorSize

from .base import FileSource, SourceError, _sensor_or_bounds, check_sensor
from .registry import Format, register_format


class Hdf5Source(FileSource):
    """HDF5 with datasets ``x, y, t, p`` at the root or in group ``events`` (or one structured
    ``events`` dataset), read by slices. Sensor from attributes ``sensor_size``/``width``+``height``."""

    def _read_header(self, sensor_size: tuple[int, ...] | None) -> SensorSize:
        path = self.path
        try:
            with h5py.File(path, "r") as f:
                self.group, self.structured = self._find(f)
                node = f[self.group]
                attrs = dict(f.attrs) | dict(node.attrs)
                found = None
                if "sensor_size" in attrs:
                    found = check_sensor(path, _attr(attrs["sensor_size"]), "the 'sensor_size' attribute")[:2]
                elif "width" in attrs and "height" in attrs:
                    found = check_sensor(path, (_attr(attrs["width"]), _attr(attrs["height"])),
                                         "the 'width', 'height' attributes")
                self.length = len(node) if self.structured else len(node["t"])
        except OSError as e:
            raise SourceError(f"{path}: not a readable HDF5 file ({e}); it is corrupt or truncated") from None
        return _sensor_or_bounds(path, sensor_size, found, self._bounds)

    def _find(self, f: h5py.File) -> tuple[str, bool]:
        """The group (or structured dataset) holding the events, each dataset checked to be 1-D,
        of one length, and written."""
        for group in ("/", "/events", "/CD/events"):
            if group not in f:
                continue
            node = f[group]
            if isinstance(node, h5py.Dataset) and node.dtype.names:
                self._check_dataset(node, group)
                return group, True
            if isinstance(node, h5py.Group) and all(k in node for k in "xytp"):
                for k in "xytp":
                    self._check_dataset(node[k], f"{group.rstrip('/')}/{k}")
                lengths = {len(node[k]) for k in "xytp"}
                if len(lengths) != 1:
                    raise SourceError(f"{self.path}: datasets x, y, t, p in {group} have different lengths "
                                      f"{[len(node[k]) for k in 'xytp']}")
                return group, False
        raise SourceError(f"{self.path}: no x, y, t, p datasets (looked in /, /events, /CD/events)")

    def _check_dataset(self, node: object, name: str) -> None:
        if not isinstance(node, h5py.Dataset):
            raise SourceError(f"{self.path}: {name} is a {type(node).__name__.lower()}, not a dataset; write x, y, "
                              "t, p as 1-D datasets")
        if node.ndim != 1:
            raise SourceError(f"{self.path}: dataset {name} has shape {node.shape}; x, y, t, p must be 1-D datasets "
                              "of equal length")
        if node.chunks is not None:
            written = node.id.get_num_chunks() >= -(-len(node) // node.chunks[0])
        else:
            written = node.id.get_storage_size() >= node.size * node.dtype.itemsize or node.size == 0
        if not written:
            raise SourceError(f"{self.path}: dataset {name} declares {len(node)} elements but not all were written "
                              "(the file was not closed or is truncated)")

    def _raw_chunks(self) -> Iterator[np.ndarray | dict[str, np.ndarray]]:
        try:
            with h5py.File(self.path, "r") as f:
                node = f[self.group]
                for self._start in range(0, self.length, self.chunk_size):
                    end = self._start + self.chunk_size
                    if self.structured:
                        yield node[self._start:end]
                    else:
                        yield {k: node[k][self._start:end] for k in "xytp"}
        except OSError as e:
            raise SourceError(f"{self.path}: read failed ({e}); the file is corrupt or truncated") from None

    def _locate(self, index: int) -> str | None:
        return f"row {self._start + index}"


def _attr(value: object) -> object:
    """An HDF5 attribute as a Python value or list (strings stay strings, for the error message)."""
    return value.tolist() if isinstance(value, np.ndarray) else value


def write_h5(fh: IO[bytes], ev: np.ndarray, w: int, h: int) -> None:
    """Group ``events`` with chunked datasets x, y, t, p; root attribute ``sensor_size`` (W, H, 2)."""
    with h5py.File(fh, "w") as f:
        g = f.create_group("events")
        for k in "xytp":
            g.create_dataset(k, data=ev[k], chunks=True)
        f.attrs["sensor_size"] = np.array([w, h, 2])


register_format(Format("hdf5", (".h5", ".hdf5"), Hdf5Source.open, write_h5,
                       "HDF5: x, y, t, p at /, /events or /CD/events, or a structured events dataset"))
