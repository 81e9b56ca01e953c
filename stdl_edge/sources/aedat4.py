"""iniVation AEDAT 4 (``.aedat4``): packets framed and checked here, decoded by ``aedat``.

Layout (what DV writes): ``#!AER-DAT4.0\\r\\n``, a size-prefixed ``IOHE`` flatbuffer (compression,
the byte where the file data table starts or -1, the XML description of the streams), then packets
``(stream id u32, size u32, payload)`` of any stream (events, frames, IMU, triggers) in time order,
then, at that byte, a size-prefixed ``FTAB`` table of the packets. Each payload is a size-prefixed
flatbuffer (``EVTS``: a vector of 16-byte ``{t i64, x i16, y i16, on bool}``), LZ4/Zstd compressed
when the header says so.

The Rust reader trusts the IOHeader (an unchecked flatbuffer: a corrupt one makes it panic) and
does not say where a packet starts, so this module checks the header and frames the packets
itself, and hands ``aedat`` only what it checked; errors name the byte.
"""

from __future__ import annotations

import struct
from typing import IO, Any, Iterator

import numpy as np

from stdl_edge.events import SensorSize

from .base import FileSource, SourceError, _sensor_or_bounds, optional_import
from .registry import Format, register_format

_INSTALL = "pip install 'stdl-edge[datasets]'"
MAGIC = b"#!AER-DAT4.0\r\n"
#: the IOHeader's compression values that aedat decodes
COMPRESSIONS = ("NONE", "LZ4", "LZ4_HIGH", "ZSTD", "ZSTD_HIGH")
_HEADER_LIMIT = 1 << 24  # bytes: DV's XML descriptions are a few KiB


class Aedat4Source(FileSource):
    """iniVation AEDAT 4: the first event stream, packet by packet, regrouped into chunks; other
    streams (frames, IMU, triggers) are skipped. Events must not go back in time from packet to
    packet: a clock jump is an error naming the packet's byte."""

    def _read_header(self, sensor_size: tuple[int, ...] | None) -> SensorSize:
        path = self.path
        self._aedat = optional_import("aedat", "reading AEDAT4", _INSTALL)
        self.file_size = path.stat().st_size
        with open(path, "rb") as fh:
            if fh.read(14) != MAGIC:
                raise SourceError(f"{path}: not an AEDAT4 file (bytes 0..13 are not '#!AER-DAT4.0\\r\\n')")
            prefix = fh.read(4)
            length = int.from_bytes(prefix, "little") if len(prefix) == 4 else -1
            if not 0 < length <= min(self.file_size - 18, _HEADER_LIMIT):
                raise SourceError(f"{path}: the AEDAT4 header at byte 14 declares {length} bytes but the file has "
                                  f"{self.file_size - 18} after it; the file is truncated or corrupt")
            compression, data_end, _ = read_ioheader(fh.read(length), path)
        self.body = 18 + length
        self.compression = compression
        if compression >= len(COMPRESSIONS):
            raise SourceError(f"{path}: the AEDAT4 header names compression {compression}; known: "
                              f"{', '.join(f'{i} {c}' for i, c in enumerate(COMPRESSIONS))}")
        if data_end >= 0 and not self.body <= data_end <= self.file_size:
            raise SourceError(f"{path}: the AEDAT4 header says the packets end at byte {data_end}, but the file "
                              f"has {self.file_size} bytes; it is truncated")
        self.data_end = data_end if data_end >= 0 else self.file_size
        try:
            self.streams = self._aedat.Decoder(str(path)).id_to_stream()
        except Exception as e:  # the Rust reader raises a generic exception with its reason
            raise SourceError(f"{path}: the AEDAT4 stream description is corrupt ({e})") from None
        ev_streams = {k: v for k, v in self.streams.items() if v.get("type") == "events"}
        if not ev_streams:
            raise SourceError(f"{path}: the AEDAT4 file has no event stream (streams: {self.streams})")
        self.stream_id = min(ev_streams)
        s = ev_streams[self.stream_id]
        return _sensor_or_bounds(path, sensor_size, (int(s["width"]), int(s["height"])),
                                 field="the stream description's sizeX, sizeY")

    def _packets(self) -> Iterator[tuple[int, int, dict]]:
        """(byte offset, stream id, decoded packet) for every packet, framed and checked here.

        Uncompressed event packets are read here as a view of their structs (:func:`event_structs`,
        3-6x faster than aedat's copy); compressed files are decoded by ``aedat``. Other streams'
        packets (frames, IMU, triggers) are skipped undecoded when the file is uncompressed.
        """
        own = self.compression == 0
        decoder = None if own else self._aedat.Decoder(str(self.path))
        with open(self.path, "rb") as fh:
            fh.seek(self.body)
            offset = self.body
            while offset < self.data_end:
                head = fh.read(8)
                if len(head) < 8:
                    raise SourceError(f"{self.path}: truncated: the packet header at byte {offset} is cut off "
                                      f"({len(head)} of 8 bytes)")
                stream_id, size = struct.unpack("<II", head)
                if offset + 8 + size > self.data_end:
                    raise SourceError(f"{self.path}: truncated: the packet at byte {offset} declares {size} bytes, "
                                      f"past the end of the packets at byte {self.data_end}")
                if stream_id not in self.streams:
                    raise SourceError(f"{self.path}: the packet at byte {offset} names stream {stream_id}, which the "
                                      "header does not declare; the file is corrupt")
                if own and stream_id == self.stream_id:
                    packet = {"events": event_structs(fh.read(size), self.path, offset)}
                elif own:
                    fh.seek(size, 1)
                    packet = {}
                else:
                    fh.seek(size, 1)
                    try:
                        packet = next(decoder)
                    except Exception as e:  # aedat's reason: a corrupt flatbuffer or compressed block
                        raise SourceError(f"{self.path}: the packet at byte {offset} is corrupt ({e})") from None
                yield offset, stream_id, packet
                offset += 8 + size

    def _raw_chunks(self) -> Iterator[dict[str, np.ndarray]]:
        pending: list[dict[str, np.ndarray]] = []  # columns (views) of the packets not yet yielded
        packets: list[tuple[int, int]] = []  # (index of its first event in the stream, byte) of pending packets
        read = emitted = 0  # events read from packets, events yielded
        last_t: int | None = None
        for offset, stream_id, packet in self._packets():
            if stream_id != self.stream_id or not len(packet.get("events", ())):
                continue
            ev = _columns(packet["events"])
            t = ev["t"]
            back = np.flatnonzero(t[1:] < t[:-1])
            if (last_t is not None and t[0] < last_t) or len(back):
                before, now = (last_t, int(t[0])) if last_t is not None and t[0] < last_t else \
                    (int(t[back[0]]), int(t[back[0] + 1]))
                raise SourceError(f"{self.path}: the clock jumps backwards in the event packet at byte {offset}: "
                                  f"{now} us after {before} us; the recording is corrupt or its packets are out "
                                  "of order")
            last_t = int(t[-1])
            packets.append((read, offset))
            pending.append(ev)
            read += len(t)
            while read - emitted >= self.chunk_size:
                joined = {k: np.concatenate([c[k] for c in pending]) for k in ev}  # columns: no field promotion
                self._where = (emitted, packets)
                yield {k: v[:self.chunk_size] for k, v in joined.items()}
                pending = [{k: v[self.chunk_size:] for k, v in joined.items()}]
                emitted += min(self.chunk_size, len(joined["t"]))
                packets = [p for k, p in enumerate(packets) if k + 1 == len(packets) or packets[k + 1][0] > emitted]
        if read > emitted:
            self._where = (emitted, packets)
            yield {k: np.concatenate([c[k] for c in pending]) for k in pending[0]}

    def _locate(self, index: int) -> str | None:
        emitted, packets = self._where
        k = int(np.searchsorted([first for first, _ in packets], emitted + index, "right")) - 1
        return f"in the packet at byte {packets[max(k, 0)][1]}"


def _columns(ev: np.ndarray) -> dict[str, np.ndarray]:
    """A packet's events (``t`` i64 or aedat's u64, ``x``/``y`` i16 or u16, ``on``) as views of the
    signed columns they were written as; concatenating those per column makes the one copy."""
    return {"x": ev["x"].view(np.int16), "y": ev["y"].view(np.int16), "t": ev["t"].view(np.int64), "p": ev["on"]}


#: DV's ``Event`` struct in an ``EVTS`` EventPacket: 16 bytes, 8-aligned
EVENT_STRUCT = np.dtype([("t", "<i8"), ("x", "<i2"), ("y", "<i2"), ("on", "u1"), ("pad", "V3")])


def event_structs(buf: bytes, path: object, offset: int) -> np.ndarray:
    """The events of an uncompressed, size-prefixed ``EVTS`` EventPacket flatbuffer, as a view of
    :data:`EVENT_STRUCT`; every offset is checked to lie inside the packet (``offset``: its byte in
    the file, for the message), :class:`SourceError` otherwise."""

    def at(fmt: str, pos: int) -> int:
        if pos < 0 or pos + struct.calcsize(fmt) > len(buf):
            raise SourceError(f"{path}: the event packet at byte {offset} is corrupt: an offset points to byte "
                              f"{pos} of its {len(buf)}")
        return struct.unpack_from(fmt, buf, pos)[0]

    if at("<I", 0) != len(buf) - 4 or buf[8:12] != b"EVTS":
        raise SourceError(f"{path}: the event packet at byte {offset} is corrupt: not a size-prefixed EVTS "
                          "EventPacket of the size its header gives")
    root = 4 + at("<I", 4)
    vtable = root - at("<i", root)
    field = at("<H", vtable + 4) if at("<H", vtable) >= 6 else 0
    if not field:
        return np.zeros(0, EVENT_STRUCT)  # no events field: an empty packet
    vector = root + field + at("<I", root + field)
    count = at("<I", vector)
    if vector + 4 + EVENT_STRUCT.itemsize * count > len(buf):
        raise SourceError(f"{path}: the event packet at byte {offset} is corrupt: its {count} events run past its "
                          f"{len(buf)} bytes")
    return np.frombuffer(buf, EVENT_STRUCT, count, vector + 4)


def read_ioheader(buf: bytes, path: object) -> tuple[int, int, str]:
    """(compression, data table byte or -1, XML description) of an IOHeader flatbuffer (without its
    size prefix), every offset checked to lie inside ``buf``; :class:`SourceError` otherwise."""

    def at(fmt: str, pos: int) -> int:
        if pos < 0 or pos + struct.calcsize(fmt) > len(buf):
            raise SourceError(f"{path}: the AEDAT4 header (bytes 18..{18 + len(buf) - 1}) is corrupt: an offset "
                              f"points to byte {18 + pos}, outside it")
        return struct.unpack_from(fmt, buf, pos)[0]

    table = at("<I", 0)
    vtable = table - at("<i", table)
    vsize, tsize = at("<H", vtable), at("<H", vtable + 2)
    at("<B", table + tsize - 1)

    def slot(i: int, fmt: str, default: int) -> int:
        off = at("<H", vtable + 4 + 2 * i) if 4 + 2 * i + 2 <= vsize else 0
        if off and off + struct.calcsize(fmt) > tsize:
            raise SourceError(f"{path}: the AEDAT4 header is corrupt: field {i} lies outside its table")
        return at(fmt, table + off) if off else default

    compression, data_end = slot(0, "<i", 0), slot(1, "<q", -1)
    where = slot(2, "<I", 0)
    if not where:
        raise SourceError(f"{path}: the AEDAT4 header has no stream description; the file is corrupt")
    start = table + at("<H", vtable + 8) + where
    text = buf[start + 4:start + 4 + at("<I", start)]
    if len(text) < at("<I", start):
        raise SourceError(f"{path}: the AEDAT4 header is corrupt: its description runs past the header's end")
    try:
        return compression, data_end, text.decode("utf-8")
    except UnicodeDecodeError:
        raise SourceError(f"{path}: the AEDAT4 stream description is not UTF-8 text; the file is corrupt") from None


# --------------------------------------------------------------------------- writing

#: the XML ``<node name="outInfo">`` entry of one stream: id, type identifier (EVTS, FRME, IMUS, TRIG),
#: and its info attributes (``sizeX``/``sizeY`` for events and frames)
STREAM_XML = ('<node name="{id}" path="/mainloop/Recorder/outInfo/{id}/"><attr key="compression" type="string">'
              '{compression}</attr><attr key="originalModuleName" type="string">{module}</attr>'
              '<attr key="originalOutputName" type="string">{output}</attr>'
              '<attr key="typeIdentifier" type="string">{type}</attr>'
              '<node name="info" path="/mainloop/Recorder/outInfo/{id}/info/">{info}</node></node>')


def stream_description(streams: list[tuple[str, dict[str, int | str]]], compression: str = "NONE",
                       module: str = "stdl-edge") -> str:
    """DV's XML description of ``streams`` ((type identifier, info attributes), stream id = position),
    e.g. ``[("EVTS", {"sizeX": 346, "sizeY": 260, "source": "DAVIS346", "tsOffset": 0})]``."""
    kinds = {bool: "bool", int: "int", str: "string"}
    names = {"EVTS": "events", "FRME": "frames", "IMUS": "imu", "TRIG": "triggers"}
    nodes = "".join(STREAM_XML.format(id=i, type=typ, compression=compression, module=module,
                                      output=names.get(typ, typ.lower()),
                                      info="".join(f'<attr key="{k}" type="'
                                                   f'{"long" if k == "tsOffset" else kinds[type(v)]}">{v}</attr>'
                                                   for k, v in info.items()))
                    for i, (typ, info) in enumerate(streams))
    return f'<dv version="2.0"><node name="outInfo" path="/mainloop/Recorder/outInfo/">{nodes}</node></dv>'


def ioheader(description: str, data_table_byte: int = -1, compression: int = 0) -> bytes:
    """The size-prefixed ``IOHE`` flatbuffer (every field written, so its size does not depend on the values)."""
    flatbuffers = optional_import("flatbuffers", "writing AEDAT4", "pip install flatbuffers")
    b = flatbuffers.Builder(len(description) + 256)
    b.ForceDefaults(True)
    desc = b.CreateString(description)
    b.StartObject(3)
    b.PrependUOffsetTRelativeSlot(2, desc, 0)
    b.PrependInt64Slot(1, data_table_byte, -1)
    b.PrependInt32Slot(0, compression, 0)
    b.FinishSizePrefixed(b.EndObject(), b"IOHE")
    return bytes(b.Output())


def event_packet(ev: np.ndarray) -> bytes:
    """A size-prefixed ``EVTS`` EventPacket flatbuffer of ``ev`` (EVENT_DTYPE), laid out directly:
    size, root offset, identifier, vtable (6, 8, 4), table (vtable offset, vector offset), vector
    length, then the 16-byte structs 8-aligned."""
    structs = np.zeros(len(ev), dtype=EVENT_STRUCT)
    structs["t"], structs["x"], structs["y"], structs["on"] = ev["t"], ev["x"], ev["y"], ev["p"]
    head = struct.pack("<II4sHHHxxiII", 28 + 16 * len(ev), 16, b"EVTS", 6, 8, 4, 8, 4, len(ev))
    return head + structs.tobytes()


def file_data_table(entries: list[tuple[int, int, int, int, int, int]]) -> bytes:
    """DV's size-prefixed ``FTAB`` FileDataTable: per packet (byte offset, stream id, size, elements,
    first t, last t)."""
    flatbuffers = optional_import("flatbuffers", "writing AEDAT4", "pip install flatbuffers")
    b = flatbuffers.Builder(64 * len(entries) + 64)
    defs = []
    for offset, stream_id, size, count, t0, t1 in entries:
        b.StartObject(5)
        b.PrependInt64Slot(4, t1, 0)
        b.PrependInt64Slot(3, t0, 0)
        b.PrependInt64Slot(2, count, 0)
        b.Prep(4, 8)  # PacketHeader struct {StreamID i32, Size i32}
        b.PrependInt32(size)
        b.PrependInt32(stream_id)
        b.PrependStructSlot(1, b.Offset(), 0)
        b.PrependInt64Slot(0, offset, 0)
        defs.append(b.EndObject())
    return table_packet(b, defs, b"FTAB")


def table_packet(b: Any, tables: list[int], ident: bytes) -> bytes:
    """Finish builder ``b`` as a size-prefixed ``ident`` flatbuffer whose root holds one field, the
    vector of ``tables`` (the layout of FTAB, IMUS and TRIG packets)."""
    b.StartVector(4, len(tables), 4)
    for table in reversed(tables):
        b.PrependUOffsetTRelative(table)
    vec = b.EndVector()
    b.StartObject(1)
    b.PrependUOffsetTRelativeSlot(0, vec, 0)
    b.FinishSizePrefixed(b.EndObject(), ident)
    return bytes(b.Output())


def write_packets(fh: IO[bytes], description: str, packets: list[tuple[int, bytes, int, int, int]]) -> None:
    """An AEDAT4 file as DV writes it: magic, IOHeader (no compression) pointing at the file data
    table, the ``packets`` ((stream id, payload, elements, first t, last t), in time order), the table."""
    header = ioheader(description, 0)
    position = len(MAGIC) + len(header)
    entries = []
    for stream_id, payload, count, t0, t1 in packets:
        entries.append((position, stream_id, len(payload), count, t0, t1))
        position += 8 + len(payload)
    fh.write(MAGIC + ioheader(description, position))
    for stream_id, payload, *_ in packets:
        fh.write(struct.pack("<II", stream_id, len(payload)) + payload)
    fh.write(file_data_table(entries))


def write_aedat4(fh: IO[bytes], ev: np.ndarray, w: int, h: int) -> None:
    """One event stream (``w x h``) in packets of 4096 events, laid out by :func:`write_packets`."""
    packets = [(0, event_packet(part), len(part), int(part["t"][0]), int(part["t"][-1]))
               for part in (ev[i:i + 4096] for i in range(0, len(ev), 4096))]
    write_packets(fh, stream_description([("EVTS", {"sizeX": w, "sizeY": h, "source": "stdl-edge"})]), packets)


register_format(Format("aedat4", (".aedat4",), Aedat4Source.open, write_aedat4,
                       "iniVation AEDAT 4: the first event stream, packet by packet (aedat)"))
