"""Prophesee recordings: EVT2 and EVT3 ``.raw``, CD ``.dat``, and their ``%`` text header.

EVT2 and DAT are read with expelliarmus' chunked C reader; EVT3 with the vectorised decoder
here, because expelliarmus 1.1.12 adds 4096 us whenever ``EVT_TIME_LOW`` decreases after an
explicit ``EVT_TIME_HIGH`` (see docs/sources.md). The writers follow the same specs byte for
byte; the tests read their files back with expelliarmus.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import IO, Any, Iterator

import numpy as np

from stdl_edge.events import SensorSize

from .base import (FileSource, Format, SourceError, _check_records, _read_blocks, _sensor_or_bounds,
                   optional_import, register_format)


def _prophesee_header(path: Path) -> tuple[int, dict[str, str], tuple[int, int] | None]:
    """Read ``% key value`` header lines; returns (body offset, fields, (W, H) if given)."""
    fields: dict[str, str] = {}
    offset = 0
    with open(path, "rb") as fh:
        while True:
            line = fh.readline()
            if not line.startswith(b"%"):
                break
            offset += len(line)
            text = line[1:].decode("latin-1").strip()
            if text == "end":
                break
            key, _, value = text.partition(" ")
            fields[key.lower()] = value.strip()
    size = None
    fmt = fields.get("format", "")
    mw, mh = re.search(r"width=(\d+)", fmt), re.search(r"height=(\d+)", fmt)
    if mw and mh:
        size = (int(mw.group(1)), int(mh.group(1)))
    elif "geometry" in fields and re.match(r"\d+x\d+", fields["geometry"]):
        w, h = fields["geometry"].split("x")[:2]
        size = (int(w), int(h))
    elif "width" in fields and "height" in fields:
        size = (int(fields["width"]), int(fields["height"]))
    return offset, fields, size


def _prophesee_text(kind: str, w: int, h: int) -> bytes:
    """The header the writers put first: ``kind`` is the ``% evt`` version (``"2.0"``, ``"3.0"``)."""
    return (f"% date 2026-01-01 00:00:00\n% evt {kind}\n% format EVT{kind[0]};height={h};width={w}\n"
            f"% geometry {w}x{h}\n% end\n").encode()


def prophesee_encoding(path: Path) -> str:
    """'evt2', 'evt3' or 'dat' from the header (``% evt 3.0``, ``% format EVT3;...``) or the suffix."""
    _, fields, _ = _prophesee_header(path)
    text = (fields.get("evt", "") + " " + fields.get("format", "")).upper()
    if "3" in fields.get("evt", "") or "EVT3" in text:
        return "evt3"
    if "2" in fields.get("evt", "") or "EVT2" in text:
        return "evt2"
    if path.suffix.lower() == ".dat":
        return "dat"
    raise SourceError(f"{path}: the header does not say EVT2 or EVT3 (no '% evt 2.0'/'% evt 3.0' or "
                      "'% format EVT...' line); pass format='evt2' or 'evt3'")


class ExpelliarmusSource(FileSource):
    """Prophesee DAT / EVT2 through expelliarmus' chunked reader; see :class:`Evt2Source`, :class:`DatSource`."""

    encoding = ""  # expelliarmus' name of the encoding
    suffix = ""  # the suffix expelliarmus insists on
    word = 0  # bytes per word (EVT2) or event (DAT)

    def _read_header(self, sensor_size: tuple[int, ...] | None) -> SensorSize:
        self._expelliarmus = optional_import("expelliarmus", f"reading Prophesee {self.encoding.upper()}",
                                             "pip install 'stdl-edge[datasets]'")
        self.body, _, found = _prophesee_header(self.path)
        if self.encoding == "dat":
            self.body += 2  # event type and event size bytes after the text header
            with open(self.path, "rb") as fh:
                fh.seek(self.body - 2)
                ev_type = fh.read(2)
            if len(ev_type) == 2 and ev_type[1] != 8:
                raise SourceError(f"{self.path}: DAT event size is {ev_type[1]} bytes at offset {self.body - 1}; "
                                  "only 8-byte CD events are supported")
        _check_records(self.path, self.body, self.word, self.encoding.upper(), "word")
        return _sensor_or_bounds(self.path, sensor_size, found)

    def _raw_chunks(self) -> Iterator[np.ndarray]:
        path = self.path
        link = None
        if path.suffix.lower() != self.suffix:  # expelliarmus checks the suffix
            link = Path(tempfile.mkdtemp()) / ("events" + self.suffix)
            os.symlink(path.resolve(), link)
            path = link
        try:
            wizard = self._expelliarmus.Wizard(encoding=self.encoding, fpath=path, chunk_size=int(self.chunk_size))
            yield from wizard.read_chunk()
        except RuntimeError as e:
            raise SourceError(f"{self.path}: expelliarmus could not decode the file ({e}); it is corrupt") from None
        finally:
            if link is not None:
                link.unlink(missing_ok=True)
                link.parent.rmdir()


class Evt2Source(ExpelliarmusSource):
    """Prophesee EVT 2.0 ``.raw``: 32-bit words (see :func:`write_evt2`)."""

    encoding, suffix, word = "evt2", ".raw", 4


def write_evt2(fh: IO[bytes], ev: np.ndarray, w: int, h: int) -> None:
    """32-bit LE words: CD_OFF/CD_ON (type 0x0/0x1, t bits 0-5 at 22-27, x at 11-21, y at 0-10)
    after an EVT_TIME_HIGH (0x8, t bits 6-33 in bits 0-27) whenever t >> 6 changes."""
    t = ev["t"].astype(np.uint64)
    hi = t >> np.uint64(6)
    new_hi = np.ones(len(ev), bool)
    new_hi[1:] = hi[1:] != hi[:-1]
    cd = ((ev["p"].astype(np.uint64) << np.uint64(28)) | ((t & np.uint64(0x3F)) << np.uint64(22))
          | (ev["x"].astype(np.uint64) << np.uint64(11)) | ev["y"].astype(np.uint64))
    th = (np.uint64(0x8) << np.uint64(28)) | (hi & np.uint64(0x0FFFFFFF))
    words = np.empty(len(ev) + int(new_hi.sum()), np.uint64)
    pos = np.arange(len(ev)) + np.cumsum(new_hi)
    words[pos] = cd
    words[pos[new_hi] - 1] = th[new_hi]
    fh.write(_prophesee_text("2.0", w, h))
    fh.write(words.astype("<u4").tobytes())


class DatSource(ExpelliarmusSource):
    """Prophesee CD ``.dat``: 8-byte events after the text header (see :func:`write_dat`)."""

    encoding, suffix, word = "dat", ".dat", 8


def write_dat(fh: IO[bytes], ev: np.ndarray, w: int, h: int) -> None:
    """Text header, event type 0x0C (CD) and size 8, then (uint32 t, uint32 x | y << 14 | p << 28)."""
    if int(ev["t"].max()) >= 2 ** 32:
        raise SourceError("DAT stores 32-bit timestamps; the stream is longer than 71 minutes")
    fh.write(f"% Data file containing CD events.\n% Version 2\n% Height {h}\n% Width {w}\n".encode())
    fh.write(bytes([0x0C, 8]))
    rec = np.empty(len(ev), dtype=[("t", "<u4"), ("d", "<u4")])
    rec["t"] = ev["t"]
    rec["d"] = (ev["x"].astype(np.uint32) | (ev["y"].astype(np.uint32) << 14)
                | (ev["p"].astype(np.uint32) << 28))
    fh.write(rec.tobytes())


class Evt3Source(FileSource):
    """Prophesee EVT3 ``.raw``, decoded per the format spec (16-bit little-endian words).

    Word types (top 4 bits): ADDR_Y 0x0 (y in bits 0-10), ADDR_X 0x2 (x 0-10, polarity
    bit 11: one event), VECT_BASE_X 0x3 (x base, polarity), VECT_12 0x4 / VECT_8 0x5
    (a bit mask of events at base_x + i, then base_x += 12 / 8), TIME_LOW 0x6 (t bits
    0-11), TIME_HIGH 0x8 (t bits 12-23; a decrease is a 2^24 us wrap), and 0x7, 0xA, 0xE,
    0xF (continued, trigger, other) skipped. ``t = time_high * 4096 + time_low`` us.
    """

    KNOWN = frozenset((0x0, 0x2, 0x3, 0x4, 0x5, 0x6, 0x7, 0x8, 0xA, 0xE, 0xF))

    def _read_header(self, sensor_size: tuple[int, ...] | None) -> SensorSize:
        self.body, _, found = _prophesee_header(self.path)
        _check_records(self.path, self.body, 2, "EVT3", "word")
        return _sensor_or_bounds(self.path, sensor_size, found)

    def _raw_chunks(self) -> Iterator[dict[str, np.ndarray]]:
        state = {"high": 0, "high_raw": None, "low": 0, "y": 0, "bx": 0, "bp": 0, "wraps": 0}
        for offset, data in _read_blocks(self.path, self.body, 2 * max(int(self.chunk_size), 16)):
            yield _decode_evt3(np.frombuffer(data, dtype="<u2"), state, offset, self.path)


def _ffill(mask: np.ndarray, values: np.ndarray, carried: int) -> np.ndarray:
    """For each position, the value at the last position where ``mask`` holds (else ``carried``)."""
    idx = np.where(mask, np.arange(len(mask)), -1)
    np.maximum.accumulate(idx, out=idx)
    out = np.where(idx >= 0, values[np.maximum(idx, 0)], carried)
    return out.astype(np.int64)


def _decode_evt3(words: np.ndarray, state: dict[str, Any], offset: int, path: Path) -> dict[str, np.ndarray]:
    """Events (x, y, t, p columns) of one block of EVT3 words at byte ``offset``; ``state`` carries
    the time, row and vector base across blocks."""
    typ = (words >> 12).astype(np.int64)
    val = (words & 0x0FFF).astype(np.int64)
    unknown = ~np.isin(typ, list(Evt3Source.KNOWN))
    if unknown.any():
        i = int(np.flatnonzero(unknown)[0])
        raise SourceError(f"{path}: word 0x{int(words[i]):04x} at byte {offset + 2 * i} has reserved type "
                          f"0x{int(typ[i]):x}; the file is not EVT3 or is corrupt")
    # time high with 24-bit wrap: a decrease of the 12-bit value is one wrap
    is_hi = typ == 0x8
    hi_vals = val[is_hi]
    full_hi = hi_vals
    if len(hi_vals):
        prev = hi_vals[0] if state["high_raw"] is None else state["high_raw"]
        wraps = state["wraps"] + np.cumsum(np.diff(np.concatenate([[prev], hi_vals])) < 0)
        full_hi = hi_vals + 4096 * wraps  # a wrap of the 12-bit high part = 2^24 us
        state["wraps"], state["high_raw"] = int(wraps[-1]), int(hi_vals[-1])
    hi_full_at = np.zeros(len(words), np.int64)
    hi_full_at[is_hi] = full_hi
    high = _ffill(is_hi, hi_full_at, state["high"])
    # time low: since the last TIME_HIGH (which zeroes it) or carried
    is_lo = typ == 0x6
    lo_idx = np.where(is_lo, np.arange(len(words)), -1)
    np.maximum.accumulate(lo_idx, out=lo_idx)
    hi_idx = np.where(is_hi, np.arange(len(words)), -1)
    np.maximum.accumulate(hi_idx, out=hi_idx)
    low = np.where(lo_idx > hi_idx, val[np.maximum(lo_idx, 0)], np.where(hi_idx >= 0, 0, state["low"]))
    t = high * 4096 + low
    y = _ffill(typ == 0x0, val & 0x7FF, state["y"])
    # vectors: base_x from the last VECT_BASE_X, advanced by 12/8 per vector word since then
    is_base = typ == 0x3
    inc = np.where(typ == 0x4, 12, np.where(typ == 0x5, 8, 0))
    cum_excl = np.cumsum(inc) - inc
    base_val = _ffill(is_base, val & 0x7FF, -1)
    base_cum = _ffill(is_base, cum_excl, 0)
    base_idx = np.where(is_base, np.arange(len(words)), -1)
    np.maximum.accumulate(base_idx, out=base_idx)
    bx = np.where(base_idx >= 0, base_val + cum_excl - base_cum, state["bx"] + cum_excl)
    bp = _ffill(is_base, (val >> 11) & 1, state["bp"])
    # single events
    single = np.flatnonzero(typ == 0x2)
    parts_pos = [single * 16]
    parts = [(val[single] & 0x7FF, y[single], t[single], (val[single] >> 11) & 1)]
    for code, nbits in ((0x4, 12), (0x5, 8)):
        vi = np.flatnonzero(typ == code)
        if len(vi):
            bits = (val[vi, None] >> np.arange(nbits)) & 1
            w_i, b_i = np.nonzero(bits)
            wi = vi[w_i]
            parts_pos.append(wi * 16 + b_i)
            parts.append((bx[wi] + b_i, y[wi], t[wi], bp[wi]))
    order = np.argsort(np.concatenate(parts_pos), kind="stable")
    ev = {k: np.concatenate([p[j] for p in parts])[order] for j, k in enumerate("xytp")}
    # carry state
    state["high"] = int(high[-1])
    state["low"] = int(low[-1])
    state["y"] = int(y[-1])
    state["bx"] = int(bx[-1] + inc[-1])
    state["bp"] = int(bp[-1])
    return ev


def write_evt3(fh: IO[bytes], ev: np.ndarray, w: int, h: int) -> None:
    """16-bit LE words per event: TIME_HIGH (when t bits 12-23 change), TIME_LOW (when t changes),
    ADDR_Y (when y changes), then ADDR_X with the polarity; a VECT_12 word for a run of
    same-(t, y, p) events at x, x+1, ... (at most 12) after a VECT_BASE_X."""
    words: list[int] = []
    hi_prev = lo_prev = y_prev = None
    t, x, y, p = (ev[k].astype(np.int64) for k in "txyp")
    i, n = 0, len(ev)
    while i < n:
        ti = int(t[i])
        hi, lo = (ti >> 12) & 0xFFF, ti & 0xFFF
        if hi != hi_prev:
            words.append(0x8000 | hi)
            hi_prev, lo_prev = hi, None
        if lo != lo_prev:
            words.append(0x6000 | lo)
            lo_prev = lo
        if y[i] != y_prev:
            words.append(int(y[i]))
            y_prev = y[i]
        j = i + 1  # a run of adjacent x with the same t, y, p becomes one vector
        while j < n and j - i < 12 and t[j] == ti and y[j] == y[i] and p[j] == p[i] and x[j] == x[i] + (j - i):
            j += 1
        if j - i >= 2:
            words.append(0x3000 | (int(p[i]) << 11) | int(x[i]))
            words.append(0x4000 | ((1 << (j - i)) - 1))
        else:
            words.append(0x2000 | (int(p[i]) << 11) | int(x[i]))
        i = j
    fh.write(_prophesee_text("3.0", w, h))
    fh.write(np.asarray(words, dtype="<u2").tobytes())


register_format(Format("evt2", (".raw",), Evt2Source.open, write_evt2, "Prophesee EVT 2.0 .raw (expelliarmus)",
                       detect=prophesee_encoding))
register_format(Format("evt3", (".raw",), Evt3Source.open, write_evt3, "Prophesee EVT 3.0 .raw (own decoder)",
                       detect=prophesee_encoding))
register_format(Format("dat", (".dat",), DatSource.open, write_dat, "Prophesee CD .dat, 8-byte events (expelliarmus)"))
