"""CSV event files (``.csv``, ``.txt``): a header naming the columns, then integer rows."""

from __future__ import annotations

import itertools
import re
import warnings
from typing import IO, Iterator

import numpy as np

from stdl_edge.events import SensorSize

from .base import FileSource, SourceError, _sensor_or_bounds
from .registry import Format, register_format

_CSV_ALIASES = {"t": "t", "ts": "t", "timestamp": "t", "time": "t", "x": "x", "y": "y",
                "p": "p", "pol": "p", "polarity": "p", "on": "p"}


class CsvSource(FileSource):
    """CSV with a header naming the columns ``t, x, y, p`` in any order (``x,y,t,p`` is common).

    Read in blocks of ``chunk_size`` rows; a malformed row or value raises with its line number.
    Decimal cells are read as floats and must be whole microseconds unless ``time_unit`` says
    ``"ms"`` or ``"s"``.
    Sensor from a ``# sensor_size: W H`` comment line, the flag, or the coordinate bounds.
    """

    def _read_header(self, sensor_size: tuple[int, ...] | None) -> SensorSize:
        found, self.columns, self.header_lines = self._header()
        return _sensor_or_bounds(self.path, sensor_size, found, self._bounds, field="the '# sensor_size' comment")

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

    def _parse(self, lines: list[str], first: int) -> dict[str, np.ndarray]:
        """Columns of the rows in ``lines`` (line ``first`` on; blank and ``#`` lines skipped): int64
        where every cell is an integer (numpy's own int parsing would truncate 1.5 and turn NaN into
        -2^63), else float64 (checked by :func:`~stdl_edge.events.as_events`: whole, finite, or
        converted by ``time_unit``)."""
        self._block, self._first = lines, first
        table = None
        for dtype in (np.int64, np.float64):
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("error", DeprecationWarning)  # "parsing an integer via a float"
                    table = np.loadtxt(lines, delimiter=",", dtype=dtype, ndmin=2, comments="#")
            except (ValueError, DeprecationWarning):
                continue
            if table.shape[1] == self.ncols or len(table) == 0:
                break
            table = None
        if table is None:
            self._bad_row()
        columns = {k: table[:, c] if len(table) else np.zeros(0, table.dtype) for k, c in zip("xytp", self.columns)}
        big = (np.abs(columns["t"]) >= 2.0 ** 53) & np.isfinite(columns["t"]) if table.dtype.kind == "f" else None
        if big is not None and big.any():  # NaN and inf: as_events names them
            i = int(np.flatnonzero(big)[0])
            raise SourceError(f"{self.path}: {self._locate(i)}: t={columns['t'][i]} is beyond the 2^53 that a row "
                              "with decimals can hold exactly; write every cell of such rows as an integer")
        return columns

    def _rows(self) -> list[tuple[int, str]]:
        """(line number, text) of the data rows of the block parsed last."""
        return [(self._first + k, line) for k, line in enumerate(self._block)
                if line.strip() and not line.lstrip().startswith("#")]

    def _bad_row(self) -> None:
        """Raise for the first row that is not ``ncols`` numbers, naming its line."""
        rows = self._rows()
        for lineno, line in rows:
            cells = line.split("#")[0].strip().split(",")
            try:
                [float(c) for c in cells]
            except ValueError:
                raise SourceError(f"{self.path}: line {lineno}: {line.strip()[:60]!r} is not a row of numbers; the "
                                  "file is corrupt") from None
            if len(cells) != self.ncols:
                raise SourceError(f"{self.path}: line {lineno}: {line.strip()[:60]!r} has {len(cells)} columns, the "
                                  f"header has {self.ncols}; the file is truncated or corrupt")
        raise SourceError(f"{self.path}: lines {rows[0][0]}..{rows[-1][0]} cannot be parsed as numbers")

    def _locate(self, index: int) -> str | None:
        return f"line {self._rows()[index][0]}"

    def _raw_chunks(self) -> Iterator[dict[str, np.ndarray]]:
        with open(self.path, encoding="utf-8", errors="replace") as fh:
            for _ in range(self.header_lines):
                next(fh)
            first = self.header_lines + 1
            while block := list(itertools.islice(fh, self.chunk_size)):
                yield self._parse(block, first)
                first += len(block)


def write_csv(fh: IO[bytes], ev: np.ndarray, w: int, h: int) -> None:
    """A ``# sensor_size: W H`` comment, the header ``t,x,y,p``, then one integer row per event."""
    fh.write(f"# sensor_size: {w} {h}\nt,x,y,p\n".encode())
    table = np.stack([ev["t"], ev["x"].astype(np.int64), ev["y"].astype(np.int64), ev["p"].astype(np.int64)], 1)
    np.savetxt(fh, table, fmt="%d", delimiter=",")


register_format(Format("csv", (".csv", ".txt"), CsvSource.open, write_csv,
                       "CSV: a header naming t, x, y, p in any order, '# sensor_size: W H' optional"))
