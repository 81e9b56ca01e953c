"""iniVation AEDAT 4 (``.aedat4``) through ``aedat``, packet by packet."""

from __future__ import annotations

from typing import IO, Iterator

import numpy as np

from stdl_edge.events import SensorSize

from .base import FileSource, Format, SourceError, _sensor_or_bounds, optional_import, register_format

_INSTALL = "pip install 'stdl-edge[datasets]'"


class Aedat4Source(FileSource):
    """iniVation AEDAT 4 through ``aedat`` (Rust), one packet at a time, regrouped into chunks."""

    def _read_header(self, sensor_size: tuple[int, ...] | None) -> SensorSize:
        path = self.path
        self._aedat = optional_import("aedat", "reading AEDAT4", _INSTALL)
        with open(path, "rb") as fh:
            if fh.read(14) != b"#!AER-DAT4.0\r\n":
                raise SourceError(f"{path}: not an AEDAT4 file (bytes 0..13 are not '#!AER-DAT4.0\\r\\n')")
        try:
            streams = self._aedat.Decoder(str(path)).id_to_stream()
        except Exception as e:  # the Rust reader raises a generic exception with its reason
            raise SourceError(f"{path}: the AEDAT4 header is corrupt ({e})") from None
        ev_streams = {k: v for k, v in streams.items() if v.get("type") == "events"}
        if not ev_streams:
            raise SourceError(f"{path}: the AEDAT4 file has no event stream (streams: {streams})")
        self.stream_id = min(ev_streams)
        s = ev_streams[self.stream_id]
        return _sensor_or_bounds(path, sensor_size, (int(s["width"]), int(s["height"])))

    def _raw_chunks(self) -> Iterator[np.ndarray]:
        pending: list[np.ndarray] = []
        n = 0
        packet_no = 0
        try:
            for packet in self._aedat.Decoder(str(self.path)):
                packet_no += 1
                if packet["stream_id"] != self.stream_id or "events" not in packet:
                    continue
                pending.append(packet["events"])
                n += len(packet["events"])
                if n >= self.chunk_size:  # regroup packets into chunks of exactly chunk_size
                    joined = np.concatenate(pending)
                    cut = len(joined) - len(joined) % self.chunk_size
                    for i in range(0, cut, self.chunk_size):
                        yield joined[i:i + self.chunk_size]
                    pending = [joined[cut:]]
                    n = len(pending[0])
        except Exception as e:
            raise SourceError(f"{self.path}: packet {packet_no + 1} is corrupt or truncated ({e})") from None
        if n:
            yield np.concatenate(pending)


_AEDAT4_DESCRIPTION = """<dv version="2.0"><node name="outInfo" path="/mainloop/Recorder/outInfo/">\
<node name="0" path="/mainloop/Recorder/outInfo/0/"><attr key="compression" type="string">NONE</attr>\
<attr key="originalModuleName" type="string">stdl-edge</attr>\
<attr key="typeIdentifier" type="string">EVTS</attr><node name="info" path="/mainloop/Recorder/outInfo/0/info/">\
<attr key="sizeX" type="int">{w}</attr><attr key="sizeY" type="int">{h}</attr>\
<attr key="source" type="string">stdl-edge</attr></node></node></node></dv>"""


def write_aedat4(fh: IO[bytes], ev: np.ndarray, w: int, h: int) -> None:
    """``#!AER-DAT4.0\\r\\n``, a size-prefixed IOHeader flatbuffer (compression NONE, no file data
    table, XML description with one EVTS stream), then packets: (stream id u32, size u32,
    size-prefixed EventPacket flatbuffer of 16-byte structs {t i64, x i16, y i16, on bool})."""
    flatbuffers = optional_import("flatbuffers", "writing AEDAT4", "pip install flatbuffers")
    fh.write(b"#!AER-DAT4.0\r\n")
    b = flatbuffers.Builder(1024)
    desc = b.CreateString(_AEDAT4_DESCRIPTION.format(w=w, h=h))
    b.StartObject(3)
    b.PrependUOffsetTRelativeSlot(2, desc, 0)
    b.PrependInt64Slot(1, -1, -1)
    b.PrependInt32Slot(0, 0, 0)
    b.FinishSizePrefixed(b.EndObject(), b"IOHE")
    fh.write(bytes(b.Output()))
    for i in range(0, len(ev), 4096):
        part = ev[i:i + 4096]
        b = flatbuffers.Builder(16 * len(part) + 64)
        b.StartVector(16, len(part), 8)
        for e in part[::-1]:
            b.Prep(8, 16)
            b.Pad(3)
            b.PrependBool(bool(e["p"]))
            b.PrependInt16(int(e["y"]))
            b.PrependInt16(int(e["x"]))
            b.PrependInt64(int(e["t"]))
        vec = b.EndVector()
        b.StartObject(1)
        b.PrependUOffsetTRelativeSlot(0, vec, 0)
        b.FinishSizePrefixed(b.EndObject(), b"EVTS")
        payload = bytes(b.Output())
        fh.write((0).to_bytes(4, "little") + len(payload).to_bytes(4, "little") + payload)


register_format(Format("aedat4", (".aedat4",), Aedat4Source.open, write_aedat4,
                       "iniVation AEDAT 4: the first event stream, packet by packet (aedat)"))
