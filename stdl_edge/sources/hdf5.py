"""HDF5 event files (``.h5``, ``.hdf5``) through h5py, read by slices."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np

from .base import DEFAULT_CHUNK, EventSource, SourceError, _check_file, _sensor_or_bounds


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


def write_h5(fh, ev, w, h) -> None:
    import h5py

    with h5py.File(fh, "w") as f:
        g = f.create_group("events")
        for k in "xytp":
            g.create_dataset(k, data=ev[k], chunks=True)
        f.attrs["sensor_size"] = np.array([w, h, 2])
