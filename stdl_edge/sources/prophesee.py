"""Prophesee recordings: EVT2 and EVT3 ``.raw``, CD ``.dat``, and their ``%`` text header.

All three are decoded here, vectorised block by block, so every error names its byte: EVT3
because expelliarmus 1.1.12 adds 4096 us whenever ``EVT_TIME_LOW`` decreases after an explicit
``EVT_TIME_HIGH``, EVT2 and DAT because on a corrupt body it prints to stdout and returns what it
has (see docs/sources.md). A time-high (EVT2, EVT3) or 32-bit time (DAT) counter that decreases
by more than half its range is a wrap-around; a smaller decrease is a clock jump, an error. The
writers follow the same specs byte for byte; the tests read their files back with expelliarmus.

Long file: one format family (the ``%`` header, the word-block reader, the counter unwrap and
three decoders and writers that share them), kept in one module as the style asks of a format.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import IO, Any, Callable, Iterator

import numpy as np

from stdl_edge import jit
from stdl_edge.events import SensorSize

from .compiled import EVT3_STATE, evt3_kernel
from .base import FileSource, SourceError, _check_records, _read_blocks, _sensor_or_bounds
from .registry import Format, register_format


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
    elif "geometry" in fields and (mg := re.match(r"(\d+)x(\d+)", fields["geometry"])):
        size = (int(mg.group(1)), int(mg.group(2)))
    elif "width" in fields and "height" in fields:
        for key in ("width", "height"):
            if not re.fullmatch(r"\d+", fields[key]):
                raise SourceError(f"{path}: the header's '% {key.capitalize()} {fields[key]!r}' is not a whole number "
                                  "of pixels; the file is corrupt (or pass sensor_size=(W, H), --sensor W,H)")
        size = (int(fields["width"]), int(fields["height"]))
    return offset, fields, size


def _prophesee_text(kind: str, w: int, h: int, geometry: bool = True) -> bytes:
    """The header the writers put first: ``kind`` is the ``% evt`` version (``"2.0"``, ``"3.0"``);
    ``geometry=False`` leaves out the sensor size (``;height=..;width=..`` and ``% geometry``)."""
    size = f";height={h};width={w}\n% geometry {w}x{h}\n" if geometry else "\n"
    return f"% date 2026-01-01 00:00:00\n% evt {kind}\n% format EVT{kind[0]}{size}% end\n".encode()


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


class _WordSource(FileSource):
    """A Prophesee body of fixed-size little-endian words after the ``%`` header (EVT2, EVT3, DAT),
    decoded block by block by :meth:`_decode`; errors name the byte of the word or event."""

    word = 0  # bytes per word (EVT2, EVT3) or event (DAT)
    kind = ""  # the format's name in messages

    def _read_header(self, sensor_size: tuple[int, ...] | None) -> SensorSize:
        self.body, _, found = _prophesee_header(self.path)
        _check_records(self.path, self.body, self.word, self.kind, "word")
        return _sensor_or_bounds(self.path, sensor_size, found, self._bounds, field="the % header's geometry")

    def _raw_chunks(self) -> Iterator[dict[str, np.ndarray]]:
        state = {"high": 0, "high_raw": None, "wraps": 0, "low": 0, "y": 0, "bx": 0, "bp": 0}
        for offset, data in _read_blocks(self.path, self.body, self.word * max(int(self.chunk_size), 16)):
            events, self._positions = self._decode(np.frombuffer(data, dtype=self.dtype), state, offset)
            yield events

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(f"<u{self.word}")

    def _decode(self, words: np.ndarray, state: dict[str, Any], offset: int) -> tuple[dict[str, np.ndarray],
                                                                                     np.ndarray | int]:
        """(x, y, t, p columns, the byte offset of each event's word, or of the first of
        fixed-size events) of one block at byte ``offset``."""
        raise NotImplementedError

    def _locate(self, index: int) -> str | None:
        at = self._positions
        return f"byte {int(at + self.word * index) if isinstance(at, int) else int(at[index])}"

    def _reserved(self, words: np.ndarray, types: np.ndarray, known: frozenset[int], offset: int) -> None:
        """:class:`SourceError` at the first word whose ``types`` (uint8, 0..15) is not ``known``."""
        unknown = np.zeros(len(types), bool)
        for code in sorted(set(range(16)) - known):  # comparisons of uint8: cheaper than a table lookup
            unknown |= types == code
        if unknown.any():
            i = int(np.flatnonzero(unknown)[0])
            raise SourceError(f"{self.path}: word 0x{int(words[i]):0{2 * self.word}x} at byte {offset + self.word * i} "
                              f"has reserved type 0x{int(types[i]):x}; the file is not {self.kind} or is corrupt")


def _unwrap(values: np.ndarray, positions: np.ndarray | _Bytes, state: dict[str, Any], bits: int, scale_us: int,
            path: Path) -> np.ndarray:
    """A counter of ``bits`` bits (EVT time high, DAT time) made monotonic across its wrap-arounds.

    A decrease by more than half the period is a wrap (the counter ran past its top); a smaller
    decrease is the clock jumping backwards, a :class:`SourceError` naming the byte (``positions``)
    and both times (``scale_us`` microseconds per count). ``state`` carries the last raw value and
    the wraps so far from block to block.
    """
    if len(values) == 0:
        return values.astype(np.int64)
    period = 1 << bits
    prev = int(values[0]) if state["high_raw"] is None else state["high_raw"]
    if prev <= int(values[0]) and not (values[1:] < values[:-1]).any():  # the common block: no wrap
        state["high_raw"] = int(values[-1])
        out = values.astype(np.int64)
        if state["wraps"]:
            out += period * state["wraps"]
        return out
    values = values.astype(np.int64)
    step = np.diff(values, prepend=prev)
    wrap = step < -(period // 2)
    back = (step < 0) & ~wrap
    wraps = state["wraps"] + np.cumsum(wrap)
    if back.any():
        i = int(np.flatnonzero(back)[0])
        before = (int(values[i - 1]) if i else prev) + period * int(wraps[i])
        now = int(values[i]) + period * int(wraps[i])
        raise SourceError(f"{path}: the clock jumps backwards at byte {int(positions[i])}: {now * scale_us} us after "
                          f"{before * scale_us} us; the recording is corrupt or spliced (cut it before that byte)")
    state["high_raw"], state["wraps"] = int(values[-1]), int(wraps[-1])
    return values + period * wraps


class Evt2Source(_WordSource):
    """Prophesee EVT 2.0 ``.raw``: 32-bit words (see :func:`write_evt2`), decoded here: CD_OFF 0x0 /
    CD_ON 0x1 (t bits 0-5 at 22-27, x at 11-21, y at 0-10), EV_TIME_HIGH 0x8 (t bits 6-33; a
    decrease is a 2^34 us wrap), EXT_TRIGGER 0xA, OTHERS 0xE, CONTINUED 0xF skipped."""

    word, kind = 4, "EVT2"
    KNOWN = frozenset((0x0, 0x1, 0x8, 0xA, 0xE, 0xF))

    def _decode(self, words: np.ndarray, state: dict[str, Any], offset: int) -> tuple[dict[str, np.ndarray],
                                                                                     np.ndarray]:
        types = (words >> 28).astype(np.uint8)
        self._reserved(words, types, self.KNOWN, offset)
        is_hi = types == 0x8
        hi = np.flatnonzero(is_hi)  # sparse: one per 64 us at most
        full = np.concatenate([[state["high"]], _unwrap(words[hi] & 0x0FFFFFFF, offset + 4 * hi, state, 28, 64,
                                                        self.path)])
        state["high"] = int(full[-1])
        cd = np.flatnonzero(types <= 0x1)
        high = full[np.cumsum(is_hi)[cd]]  # the time high before each event (index 0: the carried one)
        w = words[cd]
        events = {"x": ((w >> 11) & 0x7FF).astype(np.int16), "y": (w & 0x7FF).astype(np.int16),
                  "t": (high << 6) | ((w >> 22) & 0x3F).astype(np.int64), "p": (types[cd] == 0x1)}
        return events, offset + 4 * cd


def write_evt2(fh: IO[bytes], ev: np.ndarray, w: int, h: int, *, geometry: bool = True) -> None:
    """32-bit LE words: CD_OFF/CD_ON (type 0x0/0x1, t bits 0-5 at 22-27, x at 11-21, y at 0-10)
    after an EVT_TIME_HIGH (0x8, t bits 6-33 in bits 0-27) whenever t >> 6 changes (see
    :func:`_time_high_words` for long gaps). ``geometry=False`` leaves the sensor size out of the
    header, as some Prophesee recorders do."""
    t = ev["t"].astype(np.uint64)
    cd = ((ev["p"].astype(np.uint64) << np.uint64(28)) | ((t & np.uint64(0x3F)) << np.uint64(22))
          | (ev["x"].astype(np.uint64) << np.uint64(11)) | ev["y"].astype(np.uint64))
    high = (t >> np.uint64(6)).astype(np.int64)
    words = _time_high_words(cd, high, (1 << 27) - 1, lambda v: (0x8 << 28) | (v & 0x0FFFFFFF))
    fh.write(_prophesee_text("2.0", w, h, geometry))
    fh.write(words.astype("<u4").tobytes())


def _time_high_words(words: np.ndarray, high: np.ndarray, max_step: int,
                     encode: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Event ``words`` with a time-high word (``encode(count)``) before each event whose ``high``
    count differs from the one before, and, across a gap longer than ``max_step`` counts (half the
    counter's period), one every ``max_step`` counts, as a camera sends one every period: a reader
    then tells a wrap-around from a clock jump."""
    n = len(words)
    gap = np.diff(high, prepend=high[:1])
    new = np.ones(n, bool)
    new[1:] = gap[1:] != 0
    fill = np.where(new, np.maximum(gap - 1, 0) // max_step, 0)
    pos = np.arange(n) + np.cumsum(new + fill)
    out = np.empty(n + int(new.sum() + fill.sum()), np.int64)
    out[pos] = words.astype(np.int64)
    out[pos[new] - 1] = encode(high[new])
    owner = np.repeat(np.arange(n), fill)  # the event each extra word comes before
    k = np.arange(len(owner)) - np.repeat(np.cumsum(fill) - fill, fill)
    out[pos[owner] - 1 - fill[owner] + k] = encode(high[owner] - gap[owner] + max_step * (k + 1))
    return out


class _Bytes:
    """The byte of the ``i``-th of fixed-size records from ``offset``, for :func:`_unwrap`'s message."""

    def __init__(self, offset: int, size: int) -> None:
        self.offset, self.size = offset, size

    def __getitem__(self, i: int) -> int:
        return self.offset + self.size * int(i)


class DatSource(_WordSource):
    """Prophesee CD ``.dat``: 8-byte events (uint32 t, uint32 x | y << 14 | p << 28) after the text
    header and the event type / size bytes (see :func:`write_dat`); a decrease of t by more than
    2^31 us is the 32-bit wrap."""

    word, kind = 8, "DAT"

    def _read_header(self, sensor_size: tuple[int, ...] | None) -> SensorSize:
        self.body, _, found = _prophesee_header(self.path)
        with open(self.path, "rb") as fh:
            fh.seek(self.body)
            ev_type = fh.read(2)
        if len(ev_type) == 2 and ev_type[1] != 8:
            raise SourceError(f"{self.path}: DAT event size is {ev_type[1]} bytes at offset {self.body + 1}; "
                              "only 8-byte CD events are supported")
        self.body += 2  # event type and event size bytes after the text header
        _check_records(self.path, self.body, self.word, self.kind, "event")
        return _sensor_or_bounds(self.path, sensor_size, found, self._bounds, field="the % Width / % Height header")

    dtype = np.dtype([("t", "<u4"), ("d", "<u4")])

    def _decode(self, words: np.ndarray, state: dict[str, Any], offset: int) -> tuple[dict[str, np.ndarray], int]:
        d = np.ascontiguousarray(words["d"])  # one strided read, then contiguous passes
        events = {"x": (d & 0x3FFF).astype(np.int16), "y": ((d >> 14) & 0x3FFF).astype(np.int16),
                  "t": _unwrap(np.ascontiguousarray(words["t"]), _Bytes(offset, 8), state, 32, 1, self.path),
                  "p": (d >> 28).astype(np.uint8)}
        return events, offset


def write_dat(fh: IO[bytes], ev: np.ndarray, w: int, h: int) -> None:
    """Text header, event type 0x0C (CD) and size 8, then (uint32 t, uint32 x | y << 14 | p << 28).
    Times past 2^32 us wrap, as a camera's do; a reader follows the wrap if events are less than
    2^31 us apart."""
    fh.write(f"% Data file containing CD events.\n% Version 2\n% Height {h}\n% Width {w}\n".encode())
    fh.write(bytes([0x0C, 8]))
    rec = np.empty(len(ev), dtype=[("t", "<u4"), ("d", "<u4")])
    rec["t"] = ev["t"].astype(np.uint64) & np.uint64(0xFFFFFFFF)
    rec["d"] = (ev["x"].astype(np.uint32) | (ev["y"].astype(np.uint32) << 14)
                | (ev["p"].astype(np.uint32) << 28))
    fh.write(rec.tobytes())


class Evt3Source(_WordSource):
    """Prophesee EVT3 ``.raw``, decoded per the format spec (16-bit little-endian words).

    Word types (top 4 bits): ADDR_Y 0x0 (y in bits 0-10), ADDR_X 0x2 (x 0-10, polarity
    bit 11: one event), VECT_BASE_X 0x3 (x base, polarity), VECT_12 0x4 / VECT_8 0x5
    (a bit mask of events at base_x + i, then base_x += 12 / 8), TIME_LOW 0x6 (t bits
    0-11), TIME_HIGH 0x8 (t bits 12-23; a decrease by more than half its range is a 2^24 us
    wrap, a smaller one a clock jump: an error naming the byte), and 0x7, 0xA, 0xE, 0xF
    (continued, trigger, other) skipped. ``t = time_high * 4096 + time_low`` us, counted from the
    file's first TIME_HIGH: EVT3 keeps 24 bits of time, so a late start reads modulo 2^24 us.
    """

    word, kind = 2, "EVT3"
    KNOWN = frozenset((0x0, 0x2, 0x3, 0x4, 0x5, 0x6, 0x7, 0x8, 0xA, 0xE, 0xF))

    def _decode(self, words: np.ndarray, state: dict[str, Any], offset: int) -> tuple[dict[str, np.ndarray],
                                                                                     _EventWords]:
        """Events of one block of EVT3 words at byte ``offset``; ``state`` carries the time, row and
        vector base across blocks. The compiled kernel (:func:`~stdl_edge.sources.compiled.evt3_kernel`,
        with numba) decodes ordinary blocks; :meth:`decode_numpy` the rest, and everything without numba."""
        kernel = evt3_kernel() if len(words) >= jit.MIN_EVENTS else None  # small blocks: numba would not pay
        if kernel is not None:
            carried = np.array([-1 if state[k] is None else state[k] for k in EVT3_STATE], np.int64)
            ok, x, y, t, p, at, vectors = kernel(words, carried)
            if ok:
                state.update(zip(EVT3_STATE, (int(v) for v in carried)))
                state["high_raw"] = None if state["high_raw"] < 0 else state["high_raw"]
                return ({"x": x if vectors else x.astype(np.int16), "y": y, "t": t, "p": p},
                        _EventWords(offset, at, None))
        return self.decode_numpy(words, state, offset)

    def decode_numpy(self, words: np.ndarray, state: dict[str, Any], offset: int) -> tuple[dict[str, np.ndarray],
                                                                                           _EventWords]:
        """:meth:`_decode` in numpy: every block, with the wrap-around and the errors naming the byte.

        Vectorised over the block without sorting: each event-carrying word (ADDR_X, VECT_12,
        VECT_8) gets the time, row and vector base of the last word of each kind before it (by the
        running count of that kind), then is repeated once per event it holds, in word order.
        """
        typ = (words >> 12).astype(np.uint8)
        val = words & 0x0FFF
        self._reserved(words, typ, self.KNOWN, offset)
        is_v12, is_v8 = typ == 0x4, typ == 0x5
        vectors = bool(is_v12.any() or is_v8.any())
        ew = np.flatnonzero((typ == 0x2) | is_v12 | is_v8 if vectors else typ == 0x2)  # words with events
        ev_typ, ev_val = typ[ew], val[ew]

        def latest(mask: np.ndarray, at_words: np.ndarray = ew) -> tuple[np.ndarray, np.ndarray]:
            """(word indices where ``mask`` holds, for each of ``at_words`` the rank among them of
            the last one before it, -1 for none)."""
            at = np.flatnonzero(mask)
            # a binary search per word where that costs less than a running count over the block
            if 4 * len(at_words) * (int(len(at)).bit_length() + 1) < len(mask):
                return at, np.searchsorted(at, at_words).astype(np.int32) - 1
            return at, np.cumsum(mask, dtype=np.int32)[at_words] - 1

        def pick(at: np.ndarray, rank: np.ndarray, values: np.ndarray, carried: int) -> np.ndarray:
            if not len(at):
                return np.full(len(rank), carried)
            return np.where(rank >= 0, values[np.maximum(rank, 0)], carried)
        # time: TIME_HIGH (unwrapped) * 4096 + TIME_LOW, the low zeroed by a later TIME_HIGH
        hw, rh = latest(typ == 0x8)
        hi_full = _unwrap(val[hw], offset + 2 * hw, state, 12, 4096, self.path)
        lw, rl = latest(typ == 0x6)
        hi_at = pick(hw, rh, hw, -1)
        lo_at = pick(lw, rl, lw, -1)
        low = np.where(lo_at > hi_at, val[np.maximum(lo_at, 0)], np.where(hi_at >= 0, 0, state["low"]))
        t = pick(hw, rh, hi_full, state["high"]).astype(np.int64) * 4096 + low
        yw, ry = latest(typ == 0x0)
        y = pick(yw, ry, val[yw] & 0x7FF, state["y"]).astype(np.int16)
        x = (ev_val & 0x7FF).astype(np.int32)
        p = (ev_val >> 11) & 1
        # vectors: base x and polarity from the last VECT_BASE_X, x advanced by 12 / 8 per vector word
        bw = np.flatnonzero(typ == 0x3)
        total = 0
        if vectors:
            vec = ev_typ != 0x2
            vw = ew[vec]  # the vector words, and the x increments before each of them
            inc = np.where(ev_typ[vec] == 0x4, 12, 8).astype(np.int32)
            before = np.cumsum(inc, dtype=np.int32) - inc
            total = int(before[-1] + inc[-1])
            # increments before each base word: those of the vector words before it
            k = np.searchsorted(vw, bw)
            before_base = np.where(k < len(vw), before[np.minimum(k, len(vw) - 1)], total).astype(np.int32)
            _, rank = latest(typ == 0x3, vw)
            x[vec] = pick(bw, rank, (val[bw] & 0x7FF).astype(np.int32) - before_base, state["bx"]) + before
            p[vec] = pick(bw, rank, (val[bw] >> 11) & 1, state["bp"])
            count = np.ones(len(ew), np.int32)
            masks = np.where(ev_typ[vec] == 0x5, ev_val[vec] & 0xFF, ev_val[vec])
            count[vec] = _POPCOUNT[masks]
            src = np.repeat(np.arange(len(ew), dtype=np.int32), count)  # the word of each event
            bit = np.zeros(len(src), np.int32)
            bit[vec[src]] = np.nonzero((masks[:, None] >> np.arange(12)) & 1)[1]  # set bits, in order
            x, y, t, p = x[src] + bit, y[src], t[src], p[src]
            events_at = _EventWords(offset, ew, src)
        else:
            x = x.astype(np.int16)  # ADDR_X only: 11-bit x, no vector base that could overflow
            events_at = _EventWords(offset, ew, None)
        # carry state to the next block
        if len(hw):
            state["high"] = int(hi_full[-1])
        last_hi, last_lo = (int(hw[-1]) if len(hw) else -1), (int(lw[-1]) if len(lw) else -1)
        if last_lo > last_hi:
            state["low"] = int(val[last_lo])
        elif last_hi >= 0:
            state["low"] = 0
        if len(yw):
            state["y"] = int(val[yw[-1]] & 0x7FF)
        if len(bw):
            state["bx"] = int((val[bw[-1]] & 0x7FF) + total - (before_base[-1] if total else 0))
            state["bp"] = int((val[bw[-1]] >> 11) & 1)
        else:
            state["bx"] += total
        return {"x": x, "y": y, "t": t, "p": p.astype(bool)}, events_at


class _EventWords:
    """The byte of each event of an EVT3 block (its word), computed only when an error names it."""

    def __init__(self, offset: int, words: np.ndarray, src: np.ndarray | None) -> None:
        self.offset, self.words, self.src = offset, words, src

    def __getitem__(self, i: int) -> int:
        return self.offset + 2 * int(self.words[i if self.src is None else self.src[i]])


#: set bits of each 12-bit vector mask
_POPCOUNT = np.array([bin(v).count("1") for v in range(4096)], np.int32)


def write_evt3(fh: IO[bytes], ev: np.ndarray, w: int, h: int) -> None:
    """16-bit LE words per event: TIME_HIGH (when t bits 12-23 change, and every 2047 x 4096 us
    across a longer gap, so a reader can tell the 2^24 us wrap), TIME_LOW (when t changes),
    ADDR_Y (when y changes), then ADDR_X with the polarity; a VECT_12 word for a run of
    same-(t, y, p) events at x, x+1, ... (at most 12) after a VECT_BASE_X."""
    words: list[int] = []
    hi_prev = lo_prev = y_prev = None
    t, x, y, p = (ev[k].astype(np.int64) for k in "txyp")
    i, n = 0, len(ev)
    while i < n:
        ti = int(t[i])
        hi, lo = ti >> 12, ti & 0xFFF
        if hi != hi_prev:
            if hi_prev is not None:  # across a gap of more than half the 2^24 us period: a word every 2048
                words.extend(0x8000 | (v & 0xFFF) for v in range(hi_prev + 2047, hi, 2047))
            words.append(0x8000 | (hi & 0xFFF))
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


register_format(Format("evt2", (".raw",), Evt2Source.open, write_evt2, "Prophesee EVT 2.0 .raw (own decoder)",
                       detect=prophesee_encoding))
register_format(Format("evt3", (".raw",), Evt3Source.open, write_evt3, "Prophesee EVT 3.0 .raw (own decoder)",
                       detect=prophesee_encoding))
register_format(Format("dat", (".dat",), DatSource.open, write_dat, "Prophesee CD .dat, 8-byte events (own decoder)"))
