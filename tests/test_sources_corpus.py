"""The bad-input corpus: every reader on empty, truncated, random, mistyped, out-of-range and
hostile files. Each case must give one SourceError line naming the file and the problem: never
a traceback, never a silent result. A sample also runs through ``stdl-edge run`` in a subprocess.

CASES holds (reader, case, build, needle): ``build(folder) -> (path, open_source options)``,
``needle`` a regex the message must contain besides the file's name. (Over 400 lines because the
corpus is one table: split by reader it would hide which case a reader lacks.)
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Callable

import h5py
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))  # --import-mode=importlib: the tests' own helper module
from recordings import SIZE, valid_file  # noqa: E402
from stdl_edge.sources import SourceError, open_source, read_all  # noqa: E402

Build = Callable[[Path], tuple[Path, dict]]
BINARY = ("npy", "npz", "hdf5", "csv", "aedat4", "evt2", "evt3", "dat", "nmnist")
RECORD = {"evt2": 4, "evt3": 2, "dat": 8, "nmnist": 5}  # bytes per word / event / record


def _bytes(name: str, data: bytes) -> Build:
    def build(folder: Path) -> tuple[Path, dict]:
        path = folder / name
        path.write_bytes(data)
        return path, {}
    return build


def _truncated(fmt: str, frac: float) -> Build:
    """A valid file cut at ``frac`` of its length, nudged off any record boundary."""
    def build(folder: Path) -> tuple[Path, dict]:
        path, _ = valid_file(folder, fmt)
        data = path.read_bytes()
        cut = max(1, int(len(data) * frac))
        if fmt in RECORD:
            cut += 1 if (len(data) - cut) % RECORD[fmt] == 0 else 0
        if fmt == "aedat4":  # inside the packets, not in the file data table after them (events all there)
            cut = min(cut, open_source(path).data_end - 3)
        if fmt == "csv":
            while data[cut - 1:cut] in b"\n" or data[cut:cut + 1] == b"\n":
                cut -= 1
        path.write_bytes(data[:cut])
        return path, {}
    return build


def _random(fmt: str, header: bytes = b"", n: int = 4000) -> Build:
    ext = {"hdf5": "h5", "evt2": "raw", "evt3": "raw", "nmnist": "bin"}.get(fmt, fmt)
    return _bytes(f"random_{fmt}.{ext}", header + np.random.default_rng(7).bytes(n))


def _npy(arr: np.ndarray, name: str = "bad.npy", **kw) -> Build:
    def build(folder: Path) -> tuple[Path, dict]:
        path = folder / name
        np.save(path, arr, allow_pickle=True)
        return path, kw
    return build


def _fields(**over) -> np.ndarray:
    """A 4-event structured array on the 64x48 sensor with fields overridden (dtype from the value)."""
    cols = {"x": np.array([1, 2, 3, 4], np.int16), "y": np.array([1, 2, 3, 4], np.int16),
            "t": np.array([10, 20, 30, 40], np.int64), "p": np.array([0, 1, 0, 1], np.int8)}
    cols.update({k: np.asarray(v) for k, v in over.items()})
    out = np.zeros(4, dtype=[(k, v.dtype) for k, v in cols.items()])
    for k, v in cols.items():
        out[k] = v
    return out


def _npz(name: str = "bad.npz", **arrays) -> Build:
    def build(folder: Path) -> tuple[Path, dict]:
        path = folder / name
        np.savez(path, **arrays)
        return path, {}
    return build


def _h5(fill: Callable[[h5py.File], None], name: str = "bad.h5") -> Build:
    def build(folder: Path) -> tuple[Path, dict]:
        path = folder / name
        with h5py.File(path, "w") as f:
            fill(f)
        return path, {}
    return build


def _h5_columns(f: h5py.File, **over) -> None:
    ev = _fields(**over)
    for k in "xytp":
        f.create_dataset(k, data=ev[k])


def _csv(text: str, name: str = "bad.csv", **kw) -> Build:
    def build(folder: Path) -> tuple[Path, dict]:
        path = folder / name
        path.write_text(text)
        return path, kw
    return build


def _raw(header: str, words: list[int], dtype: str, name: str = "bad.raw") -> Build:
    return _bytes(name, header.encode() + np.asarray(words, dtype).tobytes())


def _edited(fmt: str, edit: Callable[[bytearray], None], name: str | None = None) -> Build:
    """A valid file with its bytes edited in place."""
    def build(folder: Path) -> tuple[Path, dict]:
        path, _ = valid_file(folder, fmt)
        data = bytearray(path.read_bytes())
        edit(data)
        if name is not None:
            path = path.with_name(name)
        path.write_bytes(bytes(data))
        return path, {}
    return build


def _aedat_header(data: bytearray) -> tuple[int, int]:
    """(header length, first packet byte) of an AEDAT4 file's bytes."""
    n = int.from_bytes(data[14:18], "little")
    return n, 18 + n


def _frames(make: Callable[[Path], None]) -> Build:
    def build(folder: Path) -> tuple[Path, dict]:
        path = folder / "frames"
        path.mkdir()
        make(path)
        return path, {}
    return build


def _png(path: Path, w: int, h: int, value: int = 200) -> None:
    from PIL import Image

    Image.fromarray(np.full((h, w), value, np.uint8)).save(path)


def _option(fmt: str, **kw) -> Build:
    def build(folder: Path) -> tuple[Path, dict]:
        return valid_file(folder, fmt)[0], kw
    return build


def _folder_named(name: str) -> Build:
    def build(folder: Path) -> tuple[Path, dict]:
        (folder / name).mkdir()
        return folder / name, {}
    return build


EVT2_HEAD = "% evt 2.0\n% format EVT2;height=48;width=64\n% end\n"
EVT3_HEAD = "% evt 3.0\n% format EVT3;height=48;width=64\n% end\n"
DAT_HEAD = "% Height 48\n% Width 64\n"


def _dat(records: list[tuple[int, int]], head: str = DAT_HEAD, size: int = 8) -> Build:
    rec = np.array(records, dtype=[("t", "<u4"), ("d", "<u4")])
    return _bytes("bad.dat", head.encode() + bytes([0x0C, size]) + rec.tobytes())


def _generic_cases() -> list[tuple[str, str, Build, str]]:
    cases = []
    for fmt in BINARY:
        ext = {"hdf5": "h5", "evt2": "raw", "evt3": "raw", "nmnist": "bin"}.get(fmt, fmt)
        cases.append((fmt, "empty", _bytes(f"empty.{ext}", b""), r"empty"))
        for frac in (0.001, 0.34, 0.67, 0.999):
            cases.append((fmt, f"truncated-{frac}", _truncated(fmt, frac),
                          r"truncat|corrupt|empty|no events|not a|cannot|header|columns|partial"))
        cases.append((fmt, "random", _random(fmt), r"corrupt|not a|reserved|header|outside|no events|sorted|"
                                                    r"backwards|polarity|size|type"))
        cases.append((fmt, "folder", _folder_named(f"dir.{ext}"), r"is a folder"))
        cases.append((fmt, "unreadable", _option(fmt), r"cannot be opened.*permission"))
    return cases


CASES: list[tuple[str, str, Build, str]] = _generic_cases() + [
    # --- npy
    ("npy", "0-d", _npy(np.array(5)), r"shape \(\)"),
    ("npy", "0-d-structured", _npy(_fields()[0]), r"shape \(\)"),
    ("npy", "2-d-int", _npy(np.zeros((4, 4), np.int64)), r"shape \(4, 4\).*structured"),
    ("npy", "2-d-structured", _npy(_fields().reshape(2, 2)), r"shape \(2, 2\)"),
    ("npy", "pickled-object", _npy(np.array([{"x": 1}, None], dtype=object)), r"Python objects|pickle"),
    ("npy", "object-field", _npy(_fields(x=np.array([1, "a", 3, 4], dtype=object))), r"Python objects|pickle"),
    ("npy", "nan-x", _npy(_fields(x=[1.0, np.nan, 3, 4])), r"x=nan, not a finite"),
    ("npy", "inf-x", _npy(_fields(x=[1.0, np.inf, 3, 4])), r"x=inf, not a finite"),
    ("npy", "nan-t", _npy(_fields(t=[1.0, np.nan, 3, 4])), r"t=nan, not a finite"),
    ("npy", "inf-y", _npy(_fields(y=[1.0, 2, -np.inf, 4])), r"y=-inf, not a finite"),
    ("npy", "nan-p", _npy(_fields(p=[0.0, np.nan, 1, 0])), r"p=nan, not a finite"),
    ("npy", "fractional-x", _npy(_fields(x=[1.0, 1.5, 3, 4])), r"x=1.5, not a whole number"),
    ("npy", "float-seconds-t", _npy(_fields(t=[0.001, 0.002, 0.0025, 0.004])), r"t=0.001.*time_unit='s'"),
    ("npy", "polarity-minus-one", _npy(_fields(p=[1, -1, 1, 0])), r"polarity -1"),
    ("npy", "polarity-half", _npy(_fields(p=[1.0, 0.5, 1, 0])), r"p=0.5, not a whole number"),
    ("npy", "polarity-two", _npy(_fields(p=np.array([1, 2, 1, 0], np.uint8))), r"polarity 2"),
    ("npy", "x-outside", _npy(_fields(x=[1, 64, 3, 4]), sensor_size=SIZE), r"x=64 outside the sensor"),
    ("npy", "x-negative", _npy(_fields(x=[1, -2, 3, 4]), sensor_size=SIZE), r"x=-2 outside the sensor"),
    ("npy", "x-beyond-int16", _npy(_fields(x=np.array([1, 40000, 3, 4], np.int32))), r"x=40000, outside int16"),
    ("npy", "t-beyond-int64", _npy(_fields(t=np.array([1, 2, 2 ** 63 + 5, 2 ** 64 - 1], np.uint64))),
     r"outside int64"),
    ("npy", "t-negative", _npy(_fields(t=[-5, 1, 2, 3])), r"negative timestamp"),
    ("npy", "unsorted", _npy(_fields(t=[10, 30, 20, 40])), r"not sorted"),
    ("npy", "missing-field", _npy(np.zeros(3, [("x", "i2"), ("y", "i2"), ("t", "i8")])), r"lack field"),
    ("npy", "string-field", _npy(_fields(x=np.array(["1", "2", "3", "4"]))), r"'x' has dtype"),
    ("npy", "huge-declared-shape", lambda d: (_huge_npy(d / "huge.npy"), {}), r"not a readable .npy.*mmap length"),
    ("npy", "sensor-too-big", _option("npy", sensor_size=(100_000, 100_000)), r"sensor_size=.*1 to 32768"),
    ("npy", "sensor-zero", _option("npy", sensor_size=(0, 48)), r"sensor_size=.*1 to 32768"),
    ("npy", "sensor-fractional", _option("npy", sensor_size=(64.5, 48)), r"sensor_size=.*whole"),
    ("npy", "sensor-text", _option("npy", sensor_size=("64", 48)), r"sensor_size=.*whole"),
    # --- npz
    ("npz", "sensor-size-0d", _npz(events=_fields(), sensor_size=np.array(64)), r"'sensor_size' array"),
    ("npz", "sensor-size-empty", _npz(events=_fields(), sensor_size=np.array([])), r"'sensor_size' array"),
    ("npz", "sensor-size-text", _npz(events=_fields(), sensor_size=np.array(["64", "48"])), r"'sensor_size' array"),
    ("npz", "sensor-size-huge", _npz(events=_fields(), sensor_size=np.array([1e9, 1e9])), r"'sensor_size'.*32768"),
    ("npz", "sensor-size-pickled", _npz(events=_fields(), sensor_size=np.array([{"w": 64}], dtype=object)),
     r"sensor_size.*(pickle|object)"),
    ("npz", "events-pickled", _npz(events=np.array([1, "a"], dtype=object)), r"Python objects"),
    ("npz", "member-0d", _npz(x=np.array(1), y=np.array(1), t=np.array(1), p=np.array(1)), r"shape \(\)"),
    ("npz", "member-2d", _npz(events=_fields().reshape(2, 2)), r"shape \(2, 2\)"),
    ("npz", "lengths-differ", _npz(x=np.arange(3), y=np.arange(4), t=np.arange(4), p=np.ones(4)), r"different"),
    ("npz", "no-events", _npz(a=np.arange(3)), r"expected 'events'"),
    ("npz", "nan-t", _npz(events=_fields(t=[1.0, np.nan, 3, 4])), r"t=nan"),
    ("npz", "polarity-minus-one", _npz(x=np.arange(4), y=np.arange(4), t=np.arange(4), p=np.array([1, -1, 0, 1])),
     r"polarity -1"),
    ("npz", "not-npy-members", lambda d: (_zip(d / "text.npz", {"events.npy": b"hello"}), {}), r"not a \.npy member"),
    ("npz", "empty-arrays", _npz(events=_fields()[:0]), r"no events"),
    # --- hdf5
    ("hdf5", "scalar-datasets", _h5(lambda f: [f.create_dataset(k, data=1) for k in "xytp"]), r"shape \(\)"),
    ("hdf5", "x-group", _h5(lambda f: (f.create_group("x"), [f.create_dataset(k, data=[1]) for k in "ytp"])),
     r"x is a group"),
    ("hdf5", "2-d-datasets", _h5(lambda f: [f.create_dataset(k, data=np.ones((2, 2))) for k in "xytp"]),
     r"shape \(2, 2\)"),
    ("hdf5", "string-sensor-size", _h5(lambda f: (_h5_columns(f), f.attrs.__setitem__("sensor_size", "64x48"))),
     r"'sensor_size' attribute"),
    ("hdf5", "huge-sensor-size", _h5(lambda f: (_h5_columns(f), f.attrs.__setitem__("sensor_size", [10 ** 9] * 2))),
     r"'sensor_size' attribute.*32768"),
    ("hdf5", "negative-width", _h5(lambda f: (_h5_columns(f), f.attrs.__setitem__("width", -5),
                                              f.attrs.__setitem__("height", 48))), r"'width', 'height'"),
    ("hdf5", "lengths-differ", _h5(lambda f: [f.create_dataset(k, data=np.arange(3 + (k == "t"))) for k in "xytp"]),
     r"different lengths"),
    ("hdf5", "no-datasets", _h5(lambda f: f.create_dataset("a", data=[1])), r"no x, y, t, p"),
    ("hdf5", "nan-t", _h5(lambda f: _h5_columns(f, t=[1.0, np.nan, 3, 4])), r"t=nan"),
    ("hdf5", "polarity-half", _h5(lambda f: _h5_columns(f, p=[0, 0.5, 1, 1])), r"p=0.5"),
    ("hdf5", "unwritten-huge", _h5(lambda f: [f.create_dataset(k, shape=(10 ** 9,), dtype="i8", chunks=(4096,))
                                              for k in "xytp"]), r"not all were written"),
    ("hdf5", "string-x", _h5(lambda f: _h5_columns(f, x=np.array([b"a", b"b", b"c", b"d"]))), r"'x' has dtype"),
    # --- csv
    ("csv", "nan-t", _csv("t,x,y,p\n1,1,1,1\nnan,2,2,0\n"), r"line 3\).*t=nan"),
    ("csv", "inf-t", _csv("t,x,y,p\n1,1,1,1\ninf,2,2,0\n"), r"line 3\).*t=inf"),
    ("csv", "overflow-t", _csv("t,x,y,p\n1,1,1,1\n99999999999999999999,2,2,0\n"), r"line 3.*(2\^53|int64)"),
    ("csv", "float-seconds-t", _csv("t,x,y,p\n0.25,1,1,1\n0.5,2,2,0\n"), r"line 2\).*t=0.25.*time_unit='s'"),
    ("csv", "fractional-x", _csv("t,x,y,p\n1,1.5,1,1\n"), r"line 2\).*x=1.5"),
    ("csv", "polarity-minus-one", _csv("t,x,y,p\n1,1,1,-1\n"), r"line 2\).*polarity -1"),
    ("csv", "polarity-half", _csv("t,x,y,p\n1,1,1,0.5\n"), r"line 2\).*p=0.5"),
    ("csv", "polarity-nan", _csv("t,x,y,p\n1,1,1,nan\n"), r"line 2\).*p=nan"),
    ("csv", "x-outside", _csv("# sensor_size: 64 48\nt,x,y,p\n1,1,1,1\n2,64,1,1\n"), r"line 4\).*x=64 outside"),
    ("csv", "unsorted", _csv("t,x,y,p\n5,1,1,1\n2,1,1,1\n"), r"line 3\).*not sorted"),
    ("csv", "header-only", _csv("t,x,y,p\n"), r"no events"),
    ("csv", "no-header", _csv("1,2,3,4\n"), r"header"),
    ("csv", "text-cell", _csv("t,x,y,p\n1,abc,1,1\n"), r"line 2.*not a row of numbers"),
    ("csv", "missing-column", _csv("t,x,y,p\n1,1,1\n"), r"line 2.*3 columns"),
    ("csv", "huge-sensor-comment", _csv("# sensor_size: 100000 100000\nt,x,y,p\n1,1,1,1\n"), r"sensor_size.*32768"),
    ("csv", "not-utf8", _bytes("bad.csv", b"t,x,y,p\n1,\xff\xfe,1,1\n"), r"line 2"),
    # --- aedat4
    ("aedat4", "bad-magic", _bytes("bad.aedat4", b"#!AER-DAT3.1\r\n" + bytes(100)), r"not an AEDAT4 file"),
    ("aedat4", "header-size-past-end", _edited("aedat4", lambda d: d.__setitem__(slice(14, 18), (10 ** 9).to_bytes(
        4, "little"))), r"header at byte 14 declares"),
    ("aedat4", "header-random", _edited("aedat4", lambda d: d.__setitem__(slice(18, _aedat_header(d)[1]), np.random.
                                        default_rng(3).bytes(_aedat_header(d)[0]))), r"header|description|corrupt"),
    ("aedat4", "header-zeros", _edited("aedat4", lambda d: d.__setitem__(slice(18, _aedat_header(d)[1]),
                                                                         bytes(_aedat_header(d)[0]))), r"header"),
    ("aedat4", "random-after-header", _edited("aedat4", lambda d: d.__setitem__(
        slice(_aedat_header(d)[1], None), np.random.default_rng(4).bytes(len(d) - _aedat_header(d)[1]))),
     r"packet at byte \d+"),
    ("aedat4", "packet-size-past-end", _edited("aedat4", lambda d: d.__setitem__(
        slice(_aedat_header(d)[1] + 4, _aedat_header(d)[1] + 8), (2 ** 31).to_bytes(4, "little"))),
     r"packet at byte \d+ declares"),
    ("aedat4", "unknown-stream", _edited("aedat4", lambda d: d.__setitem__(
        slice(_aedat_header(d)[1], _aedat_header(d)[1] + 4), (9).to_bytes(4, "little"))), r"names stream 9"),
    # the first packet's EVTS flatbuffer (payload 8 bytes after the packet's first byte): size prefix,
    # root offset, identifier at payload + 0, 4, 8; the event count at payload + 28
    ("aedat4", "event-packet-root-outside", _edited("aedat4", lambda d: d.__setitem__(
        slice(_aedat_header(d)[1] + 12, _aedat_header(d)[1] + 16), (10 ** 8).to_bytes(4, "little"))),
     r"event packet at byte \d+ is corrupt: an offset points to byte \d+"),
    ("aedat4", "event-packet-not-evts", _edited("aedat4", lambda d: d.__setitem__(
        slice(_aedat_header(d)[1] + 16, _aedat_header(d)[1] + 20), b"XXXX")), r"not a size-prefixed EVTS"),
    ("aedat4", "event-packet-count-past-end", _edited("aedat4", lambda d: d.__setitem__(
        slice(_aedat_header(d)[1] + 36, _aedat_header(d)[1] + 40), (10 ** 6).to_bytes(4, "little"))),
     r"its 1000000 events run past"),
    ("aedat4", "huge-sensor", lambda d: _aedat_sized(d, 65535, 48), r"sizeX, sizeY.*32768"),
    ("aedat4", "zero-sensor", lambda d: _aedat_sized(d, 0, 0), r"sizeX, sizeY"),
    ("aedat4", "x-outside", lambda d: _aedat_sized(d, 32, 48), r"in the packet at byte \d+\) has x=\d+ outside"),
    ("aedat4", "packets-out-of-order", lambda d: _aedat_swapped(d), r"clock jumps backwards in the event packet at byte"),
    # --- evt2
    ("evt2", "random-after-header", _random("evt2", EVT2_HEAD.encode()), r"reserved type 0x[0-9a-f] .*byte|byte \d+"),
    ("evt2", "reserved-word", _raw(EVT2_HEAD, [0x80000001, 0x30000000], "<u4"), r"at byte 53 has reserved type 0x3"),
    ("evt2", "huge-geometry", _raw("% evt 2.0\n% format EVT2;height=100000;width=100000\n% end\n", [0x80000001],
                                   "<u4"), r"geometry.*100000.*32768"),
    ("evt2", "zero-geometry", _raw("% evt 2.0\n% geometry 0x0\n% end\n", [0x80000001], "<u4"), r"geometry"),
    ("evt2", "x-outside", _raw(EVT2_HEAD, [0x80000001, 0x10000000 | (100 << 11) | 3], "<u4"),
     r"byte 53\) has x=100 outside"),
    ("evt2", "time-high-back", _raw(EVT2_HEAD, [0x80000010, 0x10000000, 0x80000005, 0x10000000], "<u4"),
     r"clock jumps backwards at byte 57: 320 us after 1024 us"),
    ("evt2", "no-evt-line", _raw("% date x\n% end\n", [0x80000001], "<u4"), r"does not say EVT2 or EVT3"),
    ("evt2", "header-only", _bytes("bad.raw", EVT2_HEAD.encode()), r"no events after the header"),
    # --- evt3
    ("evt3", "random-after-header", _random("evt3", EVT3_HEAD.encode()), r"byte \d+"),
    ("evt3", "reserved-word", _raw(EVT3_HEAD, [0x8001, 0x9000], "<u2"), r"at byte 51 has reserved type 0x9"),
    ("evt3", "x-outside", _raw(EVT3_HEAD, [0x8001, 0x6001, 0x0003, 0x2000 | 100], "<u2"), r"byte 55\) has x=100"),
    ("evt3", "y-outside", _raw(EVT3_HEAD, [0x8001, 0x6001, 0x0000 | 60, 0x2003], "<u2"), r"byte 55\) has y=60"),
    ("evt3", "vector-past-edge", _raw(EVT3_HEAD, [0x8001, 0x6001, 0x0003, 0x3000 | 60, 0x4FFF], "<u2"),
     r"byte 57\) has x=64 outside"),
    ("evt3", "time-high-back", _raw(EVT3_HEAD, [0x8010, 0x2001, 0x8005, 0x2002], "<u2"),
     r"clock jumps backwards at byte 53: 20480 us after 65536 us"),
    ("evt3", "time-low-back", _raw(EVT3_HEAD, [0x8001, 0x6100, 0x2001, 0x6050, 0x2002], "<u2"),
     r"byte 57\).*not sorted"),
    ("evt3", "odd-length", _bytes("bad.raw", EVT3_HEAD.encode() + b"\x01\x80\x01"), r"starts at byte 51"),
    # --- dat
    ("dat", "event-size-4", _dat([(1, 1)], size=4), r"event size is 4 bytes"),
    ("dat", "polarity-3", _dat([(1, 1 | (1 << 14) | (3 << 28))]), r"byte 25\) has polarity 3"),
    ("dat", "x-outside", _dat([(1, 1), (2, 200)]), r"byte 33\) has x=200 outside"),
    ("dat", "time-back", _dat([(100, 1), (50, 1)]), r"clock jumps backwards at byte 33: 50 us after 100 us"),
    ("dat", "huge-size", _dat([(1, 1)], head="% Height 70000\n% Width 70000\n"), r"Width.*32768"),
    ("dat", "size-not-a-number", _dat([(1, 1)], head="% Height 48\x00% end\n% Width 64\n"),
     r"'% Height '48\\x00% end'' is not a whole number of pixels"),
    ("dat", "partial-event", lambda d: (_append(_dat([(1, 1)])(d)[0], b"\x01\x02\x03"), {}), r"starts at byte"),
    # --- nmnist
    ("nmnist", "x-outside", _bytes("bad.bin", bytes([40, 1, 0, 0, 5])), r"byte 0\) has x=40 outside"),
    ("nmnist", "partial-record", _bytes("bad.bin", bytes([1, 1, 0, 0, 5, 1, 2])), r"starts at byte 5"),
    ("nmnist", "time-back", _bytes("bad.bin", bytes([1, 1, 0, 0, 9, 2, 2, 0, 0, 5])), r"byte 5\).*not sorted"),
    ("nmnist", "overflow-only", _bytes("bad.bin", bytes([0, 240, 0, 0, 0])), r"no events"),
    # --- frames folder / video
    ("frames", "empty-folder", _frames(lambda p: None), r"no image files"),
    ("frames", "not-images", _frames(lambda p: (p / "a.txt").write_text("x")), r"no image files"),
    ("frames", "corrupt-png", _frames(lambda p: (p / "f0.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(30))),
     r"f0.png: not a readable image"),
    ("frames", "random-png", _frames(lambda p: (p / "f0.png").write_bytes(np.random.default_rng(1).bytes(500))),
     r"f0.png: not a readable image"),
    ("frames", "sizes-differ", _frames(lambda p: (_png(p / "f0.png", 16, 12), _png(p / "f1.png", 8, 8, 10))),
     r"frame 1 is 8x8, the first was 16x12"),
    ("frames", "one-frame", _frames(lambda p: _png(p / "f0.png", 16, 12)), r"no events"),
    ("frames", "single-image-file", lambda d: (_png(d / "one.png", 8, 8), (d / "one.png", {}))[1],
     r"single image is not a stream"),
    # --- options
    ("options", "time-unit-unknown", _option("npy", time_unit="h"), r"time_unit='h' is unknown"),
    ("options", "chunk-size-zero", _option("npy", chunk_size=0), r"chunk_size=0"),
    ("options", "downsample-zero", _option("npy", downsample=0), r"downsample=0"),
    ("options", "crop-outside", _option("npy", crop=(60, 0, 10, 10)), r"does not fit"),
]


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def _huge_npy(path: Path) -> Path:
    """A .npy header declaring 10^12 events, followed by 64 bytes."""
    with open(path, "wb") as fh:
        np.lib.format.write_array_header_1_0(fh, {"descr": np.lib.format.dtype_to_descr(_fields().dtype),
                                                  "fortran_order": False, "shape": (10 ** 12,)})
        fh.write(bytes(64))
    return path


def _append(path: Path, data: bytes) -> Path:
    path.write_bytes(path.read_bytes() + data)
    return path


def _aedat_sized(folder: Path, w: int, h: int) -> tuple[Path, dict]:
    from recordings import events
    from stdl_edge.sources.aedat4 import write_aedat4

    path = folder / "sized.aedat4"
    with open(path, "wb") as fh:
        write_aedat4(fh, events(50, SIZE, 0, 10_000), w, h)
    return path, {}


def _aedat_swapped(folder: Path) -> tuple[Path, dict]:
    from recordings import EPOCH_US, events, write_dv_aedat4

    path = folder / "swapped.aedat4"
    write_dv_aedat4(path, events(2000, (346, 260), EPOCH_US, 60_000), swap=(1, 3))
    return path, {}


def _id(case: tuple) -> str:
    return f"{case[0]}-{case[1]}"


@pytest.mark.parametrize("case", CASES, ids=_id)
def test_every_bad_input_gives_one_clear_source_error(tmp_path, case):
    reader, name, build, needle = case
    if name == "unreadable" and os.geteuid() == 0:
        pytest.skip("running as root: root reads a chmod 000 file anyway")
    path, options = build(tmp_path)
    if name == "unreadable":
        path.chmod(0)
    with pytest.raises(SourceError) as info:
        read_all(open_source(path, **options))
    message = str(info.value)
    assert "\n" not in message, message
    assert path.name in message or reader == "options", message
    assert __import__("re").search(needle, message), message


def test_float_seconds_convert_only_through_time_unit(tmp_path):
    for build in (_csv("t,x,y,p\n0.25,1,1,1\n0.5000004,2,2,0\n"), _npy(_fields(t=[0.001, 0.002, 0.0025, 0.004]))):
        path, _ = build(tmp_path)
        ev = read_all(open_source(path, sensor_size=SIZE, time_unit="s"))
        assert ev["t"].tolist() in ([250_000, 500_000], [1000, 2000, 2500, 4000])
    path, _ = _csv("t,x,y,p\n3,1,1,1\n7,2,2,0\n", name="ms.csv")(tmp_path)
    assert read_all(open_source(path, sensor_size=SIZE, time_unit="ms"))["t"].tolist() == [3000, 7000]


CLI_SAMPLE = ["npy-0-d", "csv-nan-t", "evt2-random", "hdf5-x-group", "aedat4-header-random", "npz-sensor-size-0d"]


@pytest.mark.parametrize("case", [c for c in CASES if _id(c) in CLI_SAMPLE], ids=_id)
def test_cli_run_prints_one_line_and_exits_2(tmp_path, case):
    from stdl_edge.artifact import StreamInfo, save_model
    from stdl_edge.models import ModelConfig, build_model

    model = build_model(ModelConfig(input_shape=(2, 16, 16), num_classes=3, width=0.5), seed=3)
    run = save_model(tmp_path / "run", model, StreamInfo((16, 16, 2), 1000, 8, class_names=("a", "b", "c")))
    path, options = case[2](tmp_path)
    assert not options
    proc = subprocess.run([sys.executable, "-c", "from stdl_edge.cli import main; main()", "run", str(run),
                           "--events", str(path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout.strip() == "", proc.stdout + proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and path.name in proc.stderr, proc.stderr


def test_corpus_covers_every_reader():
    counts: dict[str, int] = {}
    for reader, *_ in CASES:
        counts[reader] = counts.get(reader, 0) + 1
    assert set(counts) == {*BINARY, "frames", "options"}
    assert min(counts.values()) >= 4
