"""CSV event files (``.csv``, ``.txt``): a header naming the columns, then integer rows."""

from __future__ import annotations

import re
from typing import IO, Iterator

import numpy as np

from stdl_edge.events import SensorSize

from .base import FileSource, Format, SourceError, _sensor_or_bounds, register_format

_CSV_ALIASES = {"t": "t", "ts": "t", "timestamp": "t", "time": "t", "x": "x", "y": "y",
                "p": "p", "pol": "p", "polarity": "p", "on": "p"}


class CsvSource(FileSource):
    """CSV with a header naming the columns ``t, x, y, p`` in any order (``x,y,t,p`` is common).

    Read in blocks of ``chunk_size`` rows; a malformed row raises with its line number.
    Sensor from a ``# sensor_size: W H`` comment line, the flag, or the coordinate bounds.
    """

    def _read_header(self, sensor_size: tuple[int, ...] | None) -> SensorSize:
        found, self.columns, self.header_lines = self._header()
        return _sensor_or_bounds(self.path, sensor_size, found, self._bounds)

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

    def _parse(self, lines: list[str], first_line: int) -> dict[str, np.ndarray]:
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
        return {k: table[:, c] for k, c in zip("xytp", self.columns)}

    def _raw_chunks(self) -> Iterator[dict[str, np.ndarray]]:
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


def write_csv(fh: IO[bytes], ev: np.ndarray, w: int, h: int) -> None:
    """A ``# sensor_size: W H`` comment, the header ``t,x,y,p``, then one integer row per event."""
    fh.write(f"# sensor_size: {w} {h}\nt,x,y,p\n".encode())
    table = np.stack([ev["t"], ev["x"].astype(np.int64), ev["y"].astype(np.int64), ev["p"].astype(np.int64)], 1)
    np.savetxt(fh, table, fmt="%d", delimiter=",")


register_format(Format("csv", (".csv", ".txt"), CsvSource.open, write_csv,
                       "CSV: a header naming t, x, y, p in any order, '# sensor_size: W H' optional"))
