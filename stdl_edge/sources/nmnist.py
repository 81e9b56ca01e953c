"""N-MNIST / N-Caltech101 ``.bin``: 5-byte big-endian records, read with tonic."""

from __future__ import annotations

import io
from typing import IO, Iterator

import numpy as np

from stdl_edge.events import SensorSize

from .base import (FileSource, Format, SourceError, _check_records, _read_blocks, _sensor_or_bounds,
                   optional_import, register_format)


class NmnistBinSource(FileSource):
    """N-MNIST / N-Caltech101 ``.bin`` (5-byte big-endian records) via ``tonic.io.read_mnist_file``,
    on blocks of records; a timestamp-overflow record (y = 240) adds 2^13 us to all later events.
    The sensor is N-MNIST's 34 x 34 unless ``sensor_size`` says otherwise."""

    def _read_header(self, sensor_size: tuple[int, ...] | None) -> SensorSize:
        self._tonic_io = optional_import("tonic.io", "reading N-MNIST .bin", "pip install 'stdl-edge[datasets]'")
        _check_records(self.path, 0, 5, "N-MNIST", "record")
        return _sensor_or_bounds(self.path, sensor_size, (34, 34))

    def _raw_chunks(self) -> Iterator[np.ndarray]:
        dtype = np.dtype([("x", np.int16), ("y", np.int16), ("t", np.int64), ("p", np.int8)])
        overflows = 0
        for _, block in _read_blocks(self.path, 0, 5 * self.chunk_size):
            ev = self._tonic_io.read_mnist_file(io.BytesIO(block), dtype=dtype, is_stream=True)
            ev["t"] += overflows * 2 ** 13  # tonic applies this block's overflow records
            overflows += int((np.frombuffer(block, dtype=np.uint8)[1::5] == 240).sum())
            yield ev


def write_nmnist(fh: IO[bytes], ev: np.ndarray, w: int, h: int) -> None:
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


register_format(Format("nmnist", (".bin",), NmnistBinSource.open, write_nmnist,
                       "N-MNIST / N-Caltech101 .bin, 5-byte records (tonic.io.read_mnist_file)"))
