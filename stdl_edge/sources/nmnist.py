"""N-MNIST / N-Caltech101 ``.bin``: 5-byte big-endian records, decoded like tonic's reader."""

from __future__ import annotations

from typing import IO, Iterator

import numpy as np

from stdl_edge.events import SensorSize

from .base import FileSource, SourceError, _check_records, _read_blocks, _sensor_or_bounds
from .registry import Format, register_format


class NmnistBinSource(FileSource):
    """N-MNIST / N-Caltech101 ``.bin``: 5-byte big-endian records (x, y, p << 7 | t bits 16-22,
    t bits 8-15, t bits 0-7), decoded as ``tonic.io.read_mnist_file`` does, on blocks of records;
    a timestamp-overflow record (y = 240) adds 2^13 us to itself and all later events. The sensor
    is N-MNIST's 34 x 34 unless ``sensor_size`` says otherwise."""

    def _read_header(self, sensor_size: tuple[int, ...] | None) -> SensorSize:
        _check_records(self.path, 0, 5, "N-MNIST", "record")
        return _sensor_or_bounds(self.path, sensor_size, (34, 34))

    def _raw_chunks(self) -> Iterator[dict[str, np.ndarray]]:
        overflows = 0
        for offset, block in _read_blocks(self.path, 0, 5 * self.chunk_size):
            rec = np.frombuffer(block, dtype=np.uint8).reshape(-1, 5).astype(np.int64)
            overflow = rec[:, 1] == 240
            t = ((rec[:, 2] & 127) << 16) | (rec[:, 3] << 8) | rec[:, 4]
            t += (overflows + np.cumsum(overflow)) * 2 ** 13
            overflows += int(overflow.sum())
            keep = np.flatnonzero(~overflow)
            self._positions = offset + 5 * keep
            yield {"x": rec[keep, 0], "y": rec[keep, 1], "t": t[keep], "p": rec[keep, 2] >> 7}

    def _locate(self, index: int) -> str | None:
        return f"byte {int(self._positions[index])}"


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
                       "N-MNIST / N-Caltech101 .bin, 5-byte records (decoded as tonic.io.read_mnist_file)"))
