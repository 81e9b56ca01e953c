"""Compiled decoding kernels (numba, when it is installed): the hot loop of a format's reader.

A kernel decodes the *ordinary* blocks of a file: a block with anything unusual in it (a
reserved word type, a time counter that wraps or jumps backwards) makes the kernel give up
(it says so and leaves the carried state alone), and the format's vectorised numpy
decoder decodes that block instead, with its wrap-around logic and its error messages naming
the byte. So every rule about what a file means lives once, in the numpy decoder, and a
kernel is only ever an exact, faster copy of its ordinary path; the tests compare the two on
random streams (``tests/test_sources_compiled.py``).

numba is the ``fast`` extra (and tonic, in ``datasets``, needs it through librosa); without it,
:func:`evt3_kernel` returns ``None`` and readers use numpy alone. Compiled code is cached on
disk (``cache=True``), so only the first run of a fresh install pays the compile (about a
second); every process still pays numba's start (about a second), so blocks below
:data:`stdl_edge.jit.MIN_EVENTS` words decode in numpy. ``STDL_EDGE_NO_NUMBA=1`` turns the
kernels off.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Callable

import numpy as np

from stdl_edge.jit import compile_kernel

#: the EVT3 carried state, in the kernel's int64 array: time high (unwrapped), last raw time
#: high (-1: none yet), wraps so far, time low, row, vector base x and polarity
EVT3_STATE = ("high", "high_raw", "wraps", "low", "y", "bx", "bp")


#: per EVT3 word type: 1 for ADDR_X (one event), the reserved types, VECT_12 and VECT_8
_EVT3_SINGLE = np.array([1 if k == 0x2 else 0 for k in range(16)], np.int64)
_EVT3_RESERVED = np.array([1 if k in (0x1, 0x9, 0xB, 0xC, 0xD) else 0 for k in range(16)], np.int64)
_EVT3_V12 = np.array([1 if k == 0x4 else 0 for k in range(16)], np.int64)
_EVT3_V8 = np.array([1 if k == 0x5 else 0 for k in range(16)], np.int64)
#: set bits of each 12-bit value
_POPCOUNT = np.array([bin(v).count("1") for v in range(4096)], np.int64)


def _evt3_loop(words: np.ndarray, state: np.ndarray) -> tuple:  # pragma: no cover - compiled by numba
    """EVT3 word by word (the spec in :class:`~stdl_edge.sources.prophesee.Evt3Source`);
    returns ``(ok, x int32, y int16, t int64, p bool, word int32 of each event, any vectors)``
    and updates ``state`` only when ``ok``. Pass 1 (table lookups, no branches: word types come
    in no predictable order) counts the events and finds reserved words; pass 2 decodes, and
    gives up at a time high that goes back. (The tables are module globals, which numba compiles
    in as constants; as default arguments it would type, and print, them on every call.)"""
    single, reserved, v12, v8, popcount = _EVT3_SINGLE, _EVT3_RESERVED, _EVT3_V12, _EVT3_V8, _POPCOUNT
    n = len(words)
    count = 0
    vectors = 0
    bad = 0
    for i in range(n):
        w = np.int64(words[i])
        typ = w >> 12
        count += single[typ] + v12[typ] * popcount[w & 0xFFF] + v8[typ] * popcount[w & 0xFF]
        vectors += v12[typ] + v8[typ]
        bad |= reserved[typ]
    empty = (False, np.empty(0, np.int32), np.empty(0, np.int16), np.empty(0, np.int64), np.empty(0, np.bool_),
             np.empty(0, np.int32), False)
    if bad:
        return empty
    high, high_raw, wraps, low, y, bx, bp = state[0], state[1], state[2], state[3], state[4], state[5], state[6]
    xs = np.empty(count, np.int32)
    ys = np.empty(count, np.int16)
    ts = np.empty(count, np.int64)
    ps = np.empty(count, np.bool_)
    at = np.empty(count, np.int32)
    k = 0
    for i in range(n):
        w = np.int64(words[i])
        typ = w >> 12
        v = w & 0xFFF
        if typ == 0x2:
            xs[k] = v & 0x7FF
            ys[k] = y
            ts[k] = high * 4096 + low
            ps[k] = ((v >> 11) & 1) != 0
            at[k] = i
            k += 1
        elif typ == 0x6:
            low = v
        elif typ == 0x0:
            y = v & 0x7FF
        elif typ == 0x4 or typ == 0x5:
            bits = 12 if typ == 0x4 else 8
            m = v if typ == 0x4 else v & 0xFF
            t = high * 4096 + low
            for b in range(bits):
                if (m >> b) & 1:
                    xs[k] = bx + b
                    ys[k] = y
                    ts[k] = t
                    ps[k] = bp != 0
                    at[k] = i
                    k += 1
            bx += bits
        elif typ == 0x3:
            bx = v & 0x7FF
            bp = (v >> 11) & 1
        elif typ == 0x8:
            if high_raw >= 0 and v < high_raw:  # a wrap or a jump back: the numpy decoder's case
                return empty
            high = v + 4096 * wraps
            high_raw = v
            low = 0
    state[0], state[1], state[3], state[4], state[5], state[6] = high, high_raw, low, y, bx, bp
    return True, xs, ys, ts, ps, at, vectors > 0


@lru_cache(maxsize=None)
def evt3_kernel() -> Callable[[np.ndarray, np.ndarray], tuple] | None:
    """The compiled :func:`_evt3_loop` (None without numba)."""
    return compile_kernel(_evt3_loop)
