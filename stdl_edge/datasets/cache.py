"""Two caches under ``$STDL_EDGE_CACHE`` (:func:`stdl_edge.data.cache_dir`): scan indexes and binned frames.

- ``index/<kind>-<key>.json``: what a pass over the recordings found (events per file, times,
  sensor, window boundaries), keyed by a digest of everything it depends on (each file's path,
  size and modification time, the options), so a changed file or option misses.
- ``frames/<data set>-<key>/``: one split binned into uint8 frames, ``frames.npy``
  ``(N, T, C, H, W)`` with ``labels.npy`` and ``meta.json``. The key digests the recordings'
  fingerprint, the sensor, ``dt_us``, ``num_steps``, ``bin_mode``, the slicing and
  :data:`FRAMES_FORMAT`; changing any binning parameter is a miss and a new folder. The folder is
  written whole (:func:`stdl_edge.io.atomic_dir`) and read one sample at a time with
  ``os.pread`` (no memory map), so memory stays flat however large the split is.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from ..io import atomic_dir, atomic_path
from .samples import digest

#: layout of a frame-cache folder; part of every key
FRAMES_FORMAT = 1


def _root() -> Path:
    from ..data import cache_dir

    return cache_dir()


def cached_index(kind: str, key: Any, compute: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """``compute()``'s JSON result, stored as ``index/<kind>-<digest(key)>.json`` (recomputed if unreadable)."""
    path = _root() / "index" / f"{kind}-{digest(key)}.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        pass
    value = compute()
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(value))
    return value


def frames_folder(name: str, key: Any) -> Path:
    """``frames/<name>-<digest(key, FRAMES_FORMAT)>`` (``name`` made file-safe)."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_")[-60:]
    return _root() / "frames" / f"{safe}-{digest([key, FRAMES_FORMAT])}"


class FrameCache:
    """A written frame-cache folder: ``read(i)`` -> uint8 ``(T, C, H, W)``, ``labels`` int64 ``(N,)``."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.meta = json.loads((self.folder / "meta.json").read_text())
        self.labels = np.load(self.folder / "labels.npy", allow_pickle=False)
        with open(self.folder / "frames.npy", "rb") as fh:
            major, _ = np.lib.format.read_magic(fh)
            read_header = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
            shape, _, dtype = read_header(fh)
            self.offset = fh.tell()
        if dtype != np.uint8 or shape[0] != len(self.labels):
            raise ValueError(f"{self.folder}: frames.npy is {dtype} {shape}, not uint8 with one frame per label")
        self.shape = tuple(shape)
        self._sample_bytes = int(np.prod(shape[1:]))
        self._fd: int | None = None
        self._pid = -1

    def read(self, i: int) -> np.ndarray:
        if self._fd is None or self._pid != os.getpid():  # one descriptor per DataLoader worker
            self._fd, self._pid = os.open(self.folder / "frames.npy", os.O_RDONLY), os.getpid()
        data = os.pread(self._fd, self._sample_bytes, self.offset + i * self._sample_bytes)
        return np.frombuffer(data, dtype=np.uint8).reshape(self.shape[1:])

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_fd": None, "_pid": -1}

    def __del__(self) -> None:
        if getattr(self, "_fd", None) is not None and self._pid == os.getpid():
            os.close(self._fd)


def open_frame_cache(folder: Path) -> FrameCache | None:
    """The cache in ``folder``, or None when it is missing or unreadable (then it is rebuilt)."""
    if not (folder / "meta.json").is_file():
        return None
    try:
        return FrameCache(folder)
    except (OSError, ValueError, KeyError):
        return None


def write_frame_cache(folder: Path, frames: Iterable[np.ndarray], labels: np.ndarray,
                      sample_shape: tuple[int, ...], meta: dict[str, Any]) -> FrameCache:
    """Write ``frames`` (uint8 ``sample_shape`` each, one per label, in order) as a cache folder, atomically."""
    n = len(labels)
    with atomic_dir(folder) as tmp:
        with open(tmp / "frames.npy", "wb") as fh:
            np.lib.format.write_array_header_1_0(fh, {"descr": "|u1", "fortran_order": False,
                                                      "shape": (n, *sample_shape)})
            count = 0
            for f in frames:
                if f.shape != tuple(sample_shape) or f.dtype != np.uint8:
                    raise ValueError(f"frame {count} is {f.dtype} {f.shape}, expected uint8 {sample_shape}")
                fh.write(np.ascontiguousarray(f).tobytes())
                count += 1
            if count != n:
                raise ValueError(f"{count} frames written for {n} labels")
        np.save(tmp / "labels.npy", np.asarray(labels, dtype=np.int64))
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1, default=str))
    return FrameCache(folder)
