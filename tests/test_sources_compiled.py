"""The compiled EVT3 kernel is an exact copy of the numpy decoder's ordinary path: on random word
streams (every word type, vectors, time-high wraps and jumps back, reserved words, any block
size) both give the same events, the same dtypes and the same errors."""

from __future__ import annotations

import numpy as np
import pytest

from stdl_edge.sources import SourceError, open_source, prophesee, read_all
from stdl_edge.sources.compiled import evt3_kernel

pytestmark = pytest.mark.skipif(evt3_kernel() is None, reason="numba is not installed (the datasets extra)")

HEADER = b"% evt 3.0\n% format EVT3;height=240;width=320\n% end\n"


def _random_words(rng: np.random.Generator, n: int, oddities: bool) -> np.ndarray:
    """EVT3 words of every ordinary type, time high mostly climbing; with ``oddities`` also
    wraps (4095 -> 0), small jumps back and reserved types."""
    kinds = np.array([0x0, 0x2, 0x3, 0x4, 0x5, 0x6, 0x7, 0x8, 0xA, 0xE, 0xF])
    weights = np.array([8, 10, 4, 5, 3, 10, 1, 2, 1, 1, 1], float)
    typ = rng.choice(kinds, n, p=weights / weights.sum())
    val = rng.integers(0, 4096, n)
    high = np.cumsum(typ == 0x8) * 3 % 4096  # climbing, and once past 4095 a wrap to 0
    if oddities:
        for i in rng.choice(np.flatnonzero(typ == 0x8), 2):
            high[i] = max(int(high[i]) - 5, 0)  # a jump back
        typ[rng.integers(0, n)] = rng.choice([0x1, 0x9, 0xB, 0xC, 0xD])
    val = np.where(typ == 0x8, high, val)
    return ((typ << 12) | val).astype("<u2")


def _read(path, chunk_size: int, compiled: bool, monkeypatch) -> tuple[np.ndarray | None, str | None]:
    with monkeypatch.context() as m:
        if not compiled:
            m.setattr(prophesee, "evt3_kernel", lambda: None)
        try:
            return read_all(open_source(path, chunk_size=chunk_size)), None
        except SourceError as e:
            return None, str(e)


@pytest.mark.parametrize("seed", range(12))
def test_compiled_evt3_equals_numpy(tmp_path, monkeypatch, seed):
    rng = np.random.default_rng(seed)
    words = _random_words(rng, int(rng.integers(50, 20_000)), oddities=seed % 3 == 2)
    path = tmp_path / "random.raw"
    path.write_bytes(HEADER + words.tobytes())
    numpy_blocks = []
    real = prophesee.Evt3Source.decode_numpy
    monkeypatch.setattr(prophesee.Evt3Source, "decode_numpy",
                        lambda self, *a: (numpy_blocks.append(1), real(self, *a))[1])
    for chunk_size in (16, 333, 1 << 16):
        numpy_blocks.clear()
        fast, fast_error = _read(path, chunk_size, True, monkeypatch)
        if seed % 3 != 2:  # ordinary streams: the kernel decoded every block
            assert not numpy_blocks
        slow, slow_error = _read(path, chunk_size, False, monkeypatch)
        assert fast_error == slow_error
        if slow is not None:
            assert fast.dtype == slow.dtype and len(slow) > 0
            np.testing.assert_array_equal(fast, slow)


def test_compiled_block_columns_have_the_numpy_dtypes(tmp_path):
    """Block by block, with and without vector words: the same column dtypes as numpy's decoder
    (x int16 without vectors, int32 with them), and each event's byte for error messages."""
    words = np.array([0x8001, 0x6002, 0x0003, 0x2005, 0x3010, 0x4005], "<u2")
    path = tmp_path / "small.raw"
    path.write_bytes(HEADER + words.tobytes())
    source = open_source(path)
    for use_kernel in (True, False):
        state = {"high": 0, "high_raw": None, "wraps": 0, "low": 0, "y": 0, "bx": 0, "bp": 0}
        decode = source._decode if use_kernel else source.decode_numpy
        cols, at = decode(words[:4], dict(state), 100)
        assert cols["x"].dtype == np.int16 and cols["t"].tolist() == [4098] and at[0] == 106
        cols, at = decode(words, dict(state), 100)
        assert cols["x"].dtype == np.int32 and cols["x"].tolist() == [5, 16, 18] and at[2] == 110
