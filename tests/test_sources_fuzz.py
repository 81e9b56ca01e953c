"""Property-based fuzzing of every binary reader: random bytes, random truncations and random byte
edits of valid files give either a SourceError or valid events (sorted, inside the sensor),
nothing else. Sized so the whole file runs in well under 30 s on 2 cores.

HDF5 gets random bytes and truncations but no edits inside a valid file: libhdf5 is C, and a
corrupted B-tree can crash it outright, which no Python reader can catch.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).parent))  # --import-mode=importlib: the tests' own helper module
from recordings import SUFFIX, valid_file  # noqa: E402
from stdl_edge.events import EVENT_DTYPE  # noqa: E402
from stdl_edge.sources import SourceError, open_source, read_all  # noqa: E402

FORMATS = ["aedat4", "evt2", "evt3", "dat", "nmnist", "npy", "npz", "hdf5"]
FUZZ = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _valid_bytes(tmp_path_factory, fmt: str) -> bytes:
    folder = tmp_path_factory.mktemp(f"valid_{fmt}")
    return valid_file(folder, fmt, n=200)[0].read_bytes()


def _check(path: Path) -> None:
    """A SourceError, or events that are sorted and inside the sensor the source reports."""
    try:
        src = open_source(path)
        ev = read_all(src)
    except SourceError:
        return
    assert ev.dtype == EVENT_DTYPE and len(ev)
    assert (np.diff(ev["t"]) >= 0).all() and ev["t"][0] >= 0
    w, h = src.sensor_size[:2]
    assert ev["x"].min() >= 0 and ev["y"].min() >= 0 and ev["x"].max() < w and ev["y"].max() < h


@pytest.fixture(scope="module")
def valid(tmp_path_factory) -> dict[str, bytes]:
    return {fmt: _valid_bytes(tmp_path_factory, fmt) for fmt in FORMATS}


@pytest.mark.parametrize("fmt", FORMATS)
@FUZZ
@given(data=st.binary(min_size=1, max_size=600), keep_header=st.booleans())
def test_random_bytes(tmp_path, valid, fmt, data, keep_header):
    head = valid[fmt][:valid[fmt].find(b"% end\n") + 6] if fmt in ("evt2", "evt3") else valid[fmt][:18]
    path = tmp_path / f"fuzz.{SUFFIX[fmt]}"
    path.write_bytes((head if keep_header and fmt not in ("nmnist", "hdf5", "npz") else b"") + data)
    _check(path)


@pytest.mark.parametrize("fmt", FORMATS)
@FUZZ
@given(cut=st.floats(0, 1), edits=st.lists(st.tuples(st.floats(0, 1), st.integers(0, 255)), max_size=4))
def test_truncated_and_edited_valid_files(tmp_path, valid, fmt, cut, edits):
    data = bytearray(valid[fmt][:max(1, int(len(valid[fmt]) * cut))])
    for where, value in edits if fmt != "hdf5" else ():
        data[min(int(where * len(data)), len(data) - 1)] = value
    path = tmp_path / f"fuzz.{SUFFIX[fmt]}"
    path.write_bytes(bytes(data))
    _check(path)
