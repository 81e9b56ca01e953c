"""Test-only builders of recordings as real cameras write them, in each format's real byte layout,
and of the small valid files the corpus and the fuzz tests break.

AEDAT4 as DV writes a DAVIS346 recording: Unix-epoch microsecond timestamps, an event stream, an
APS frame stream, IMU and trigger packets between the event packets, and the file data table; the
frame, IMU and trigger flatbuffers follow aedat's schemas (``frame.fbs``, ``imus.fbs``,
``triggers.fbs``).
"""

from __future__ import annotations

from pathlib import Path

import flatbuffers
import numpy as np

from stdl_edge.events import make_events
from stdl_edge.sources import write_events
from stdl_edge.sources.aedat4 import event_packet, stream_description, table_packet, write_packets

DAVIS = (346, 260)
EPOCH_US = 1_590_000_000_000_000  # 2020-05-20 in Unix microseconds, what DV stamps


def events(n: int, size: tuple[int, int], t0: int, duration_us: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return make_events(rng.integers(0, size[0], n), rng.integers(0, size[1], n),
                       t0 + np.sort(rng.integers(0, duration_us, n)), rng.integers(0, 2, n))


def _frame(t: int, w: int, h: int) -> bytes:
    b = flatbuffers.Builder(w * h + 256)
    pixels = b.CreateByteVector(bytes((np.arange(w * h) % 251).astype(np.uint8)))
    b.StartObject(11)
    b.PrependUOffsetTRelativeSlot(10, pixels, 0)
    for slot, value in ((9, 0), (8, 0), (7, h), (6, w)):
        b.PrependInt16Slot(slot, value, -1)
    b.PrependInt8Slot(5, 0, -1)  # Gray
    for slot, value in ((4, t + 900), (3, t), (2, t + 1000), (1, t)):
        b.PrependInt64Slot(slot, value, -1)
    b.PrependInt64Slot(0, t, -1)
    b.FinishSizePrefixed(b.EndObject(), b"FRME")
    return bytes(b.Output())


def _imus(ts: list[int]) -> bytes:
    b = flatbuffers.Builder(1024)
    tables = []
    for t in ts:
        b.StartObject(11)
        for slot in range(10, 0, -1):
            b.PrependFloat32Slot(slot, 0.5 * slot, 0.0)
        b.PrependInt64Slot(0, t, 0)
        tables.append(b.EndObject())
    return table_packet(b, tables, b"IMUS")


def _triggers(ts: list[int]) -> bytes:
    b = flatbuffers.Builder(256)
    tables = []
    for t in ts:
        b.StartObject(2)
        b.PrependInt8Slot(1, 6, 0)  # FrameBegin
        b.PrependInt64Slot(0, t, 0)
        tables.append(b.EndObject())
    return table_packet(b, tables, b"TRIG")


def write_dv_aedat4(path: Path, ev: np.ndarray, size: tuple[int, int] = DAVIS, packet_us: int = 10_000,
                    swap: tuple[int, int] | None = None) -> list[int]:
    """``ev`` as DV records a DAVIS: event packets of ``packet_us``, each followed by an IMU
    packet, a frame (with a trigger) every 3 packets; ``swap=(i, j)`` exchanges event packets i
    and j (a clock jump backwards). Returns the byte offset of each event packet."""
    w, h = size
    description = stream_description([
        ("EVTS", {"sizeX": w, "sizeY": h, "source": "DAVIS346_00000499", "tsOffset": EPOCH_US}),
        ("FRME", {"sizeX": w, "sizeY": h, "source": "DAVIS346_00000499", "tsOffset": EPOCH_US}),
        ("IMUS", {"source": "DAVIS346_00000499", "tsOffset": EPOCH_US}),
        ("TRIG", {"source": "DAVIS346_00000499", "tsOffset": EPOCH_US})], module="dv_davis")
    bounds = np.arange(int(ev["t"][0]), int(ev["t"][-1]) + packet_us, packet_us)
    cuts = np.searchsorted(ev["t"], bounds)
    parts = [ev[a:b] for a, b in zip(cuts[:-1], cuts[1:]) if b > a]
    if swap is not None:
        parts[swap[0]], parts[swap[1]] = parts[swap[1]], parts[swap[0]]
    packets = []
    for k, part in enumerate(parts):
        t0, t1 = int(part["t"][0]), int(part["t"][-1])
        packets.append((0, event_packet(part), len(part), t0, t1))
        packets.append((2, _imus([t0, t1]), 2, t0, t1))
        if k % 3 == 0:
            packets.append((3, _triggers([t1]), 1, t1, t1))
            packets.append((1, _frame(t1, w, h), 1, t1, t1))
    with open(path, "wb") as fh:
        write_packets(fh, description, packets)
    offsets = []
    position = 18 + int.from_bytes(path.read_bytes()[14:18], "little")
    for stream_id, payload, *_ in packets:
        if stream_id == 0:
            offsets.append(position)
        position += 8 + len(payload)
    return offsets


SIZE = (64, 48)
SUFFIX = {"npy": "npy", "npz": "npz", "hdf5": "h5", "csv": "csv", "evt2": "raw", "evt3": "raw", "dat": "dat",
          "aedat4": "aedat4", "nmnist": "bin"}


def valid_file(folder: Path, fmt: str, n: int = 300, seed: int = 0) -> tuple[Path, np.ndarray]:
    """A small valid recording of ``fmt`` (64x48, or 34x34 for N-MNIST) and the events in it."""
    size = (34, 34) if fmt == "nmnist" else SIZE
    ev = events(n, size, 1_000, 200_000, seed)
    path = folder / f"rec_{fmt}.{SUFFIX[fmt]}"
    write_events(path, ev, size, format=fmt)
    return path, ev
