"""NumPy event files: ``.npy`` (memory-mapped) and ``.npz`` (streamed, never unpickled)."""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path
from typing import IO, Iterator

import numpy as np

from stdl_edge.events import SensorSize

from .base import FileSource, SourceError, _sensor_or_bounds, check_sensor
from .registry import Format, register_format


class NpySource(FileSource):
    """A structured ``.npy`` (fields x, y, t, p), memory-mapped and read by slices."""

    def _read_header(self, sensor_size: tuple[int, ...] | None) -> SensorSize:
        try:
            arr = np.load(self.path, mmap_mode="r", allow_pickle=False)
        except ValueError as e:
            raise SourceError(f"{self.path}: not a readable .npy file ({e}); it is corrupt, truncated "
                              "or holds Python objects") from None
        except OSError as e:
            raise SourceError(f"{self.path}: not a .npy file ({e})") from None
        if arr.dtype.names is None or arr.ndim != 1:
            raise SourceError(f"{self.path}: the array has shape {arr.shape} and dtype {arr.dtype}; save a 1-D "
                              "structured array with fields x, y, t, p (stdl_edge.events.EVENT_DTYPE)")
        self._arr = arr
        return _sensor_or_bounds(self.path, sensor_size, None, self._bounds)

    def _raw_chunks(self) -> Iterator[np.ndarray]:
        for self._start in range(0, len(self._arr), self.chunk_size):
            yield np.asarray(self._arr[self._start:self._start + self.chunk_size])

    def _locate(self, index: int) -> str | None:
        return f"row {self._start + index}"


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
            raise SourceError(f"{self.where}: holds Python objects; refusing to unpickle (save numeric arrays)")
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


class NpzSource(FileSource):
    """An ``.npz`` holding ``events`` (structured) or separate ``x``, ``y``, ``t``, ``p`` arrays."""

    def _read_header(self, sensor_size: tuple[int, ...] | None) -> SensorSize:
        path = self.path
        try:
            with zipfile.ZipFile(path) as zf:
                names = {n[:-4] for n in zf.namelist() if n.endswith(".npy")}
                found = None
                if "sensor_size" in names:
                    found = self._sensor_member(zf)
        except (zipfile.BadZipFile, zlib.error, EOFError) as e:
            raise SourceError(f"{path}: not a readable .npz ({e}); it is corrupt or truncated") from None
        if "events" in names:
            self.members = ("events",)
        elif {"x", "y", "t", "p"} <= names:
            self.members = ("x", "y", "t", "p")
        else:
            raise SourceError(f"{path}: has arrays {sorted(names)}; expected 'events' or 'x', 'y', 't', 'p'")
        return _sensor_or_bounds(path, sensor_size, found, self._bounds, field="the 'sensor_size' array")

    def _sensor_member(self, zf: zipfile.ZipFile) -> tuple[int, int]:
        """The (W, H) of the ``sensor_size`` member: 2 or 3 whole numbers, never unpickled."""
        with zf.open("sensor_size.npy") as fh:
            try:
                size = np.load(fh, allow_pickle=False)
            except ValueError as e:
                raise SourceError(f"{self.path}: the 'sensor_size' array cannot be read ({e}); save it as "
                                  "np.array([W, H, 2])") from None
        if size.ndim != 1 or size.dtype.kind not in "iuf":
            raise SourceError(f"{self.path}: the 'sensor_size' array has shape {size.shape} and dtype {size.dtype}; "
                              "save it as np.array([W, H, 2])")
        return tuple(check_sensor(self.path, size.tolist(), "the 'sensor_size' array")[:2])

    def _raw_chunks(self) -> Iterator[np.ndarray | dict[str, np.ndarray]]:
        try:
            with zipfile.ZipFile(self.path) as zf:
                members = [_NpyMember(zf, m + ".npy", self.path) for m in self.members]
                n = members[0].length
                if any(m.length != n for m in members):
                    raise SourceError(f"{self.path}: x, y, t, p have different lengths "
                                      f"{[m.length for m in members]}")
                while members[0].offset < n:
                    self._start = members[0].offset
                    parts = [m.read(self.chunk_size) for m in members]
                    yield parts[0] if len(parts) == 1 else dict(zip(self.members, parts))
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as e:
            raise SourceError(f"{self.path}: the archive is corrupt or truncated ({e})") from None


    def _locate(self, index: int) -> str | None:
        return f"element {self._start + index}"


def write_npy(fh: IO[bytes], ev: np.ndarray, w: int, h: int) -> None:
    np.save(fh, ev, allow_pickle=False)


def write_npz(fh: IO[bytes], ev: np.ndarray, w: int, h: int) -> None:
    np.savez(fh, x=ev["x"], y=ev["y"], t=ev["t"], p=ev["p"], sensor_size=np.array([w, h, 2]))


register_format(Format("npy", (".npy",), NpySource.open, write_npy,
                       "structured NumPy array (x, y, t, p), memory-mapped"))
register_format(Format("npz", (".npz",), NpzSource.open, write_npz,
                       "NumPy archive: 'events' or x, y, t, p arrays, optional sensor_size; never unpickled"))
