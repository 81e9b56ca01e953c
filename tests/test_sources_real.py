"""Recordings as real cameras write them, in their real byte layout: DV's AEDAT4 from a DAVIS346
(epoch timestamps, frames, IMU and triggers between the event packets), Prophesee EVT2 without
geometry and with a late start, EVT3 across time-high wrap-arounds with a late start, DAT with a
late start and across its 32-bit wrap. The readers deliver absolute timestamps (no re-basing),
in order, every event; clock jumps backwards are errors naming the byte."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))  # --import-mode=importlib: the tests' own helper module
from recordings import DAVIS, EPOCH_US, events, write_dv_aedat4  # noqa: E402
from stdl_edge.sources import SourceError, open_source, read_all, write_events  # noqa: E402
from stdl_edge.sources.prophesee import write_evt2  # noqa: E402


def _read(path, **kw):
    whole = read_all(open_source(path, **kw))
    chunked = np.concatenate(list(open_source(path, chunk_size=777, **kw).chunks()))
    np.testing.assert_array_equal(chunked, whole)
    return whole


def test_dv_aedat4_with_frames_imu_triggers_and_epoch_time(tmp_path):
    import aedat

    ev = events(20_000, DAVIS, EPOCH_US, 200_000)
    path = tmp_path / "davis346.aedat4"
    offsets = write_dv_aedat4(path, ev)
    kinds = {k for packet in aedat.Decoder(str(path)) for k in packet if k != "stream_id"}
    assert kinds == {"events", "frame", "imus", "triggers"}  # the maintained reader sees every stream
    src = open_source(path)
    assert tuple(src.sensor_size[:2]) == DAVIS
    got = _read(path)
    np.testing.assert_array_equal(got, ev)  # every event, in order, absolute epoch microseconds
    assert got["t"][0] >= EPOCH_US
    assert len(offsets) == 20
    offsets = write_dv_aedat4(path, ev, swap=(4, 7))  # packet 4 now holds later events than packet 5
    with pytest.raises(SourceError, match=rf"davis346.aedat4: the clock jumps backwards in the event packet at "
                                          rf"byte {offsets[5]}: "):
        read_all(open_source(path))


def test_evt2_without_geometry_and_a_late_start(tmp_path):
    from expelliarmus import Wizard

    ev = events(30_000, (640, 480), 913_000_000, 96_000)  # a 96 ms recording starting at 913 s
    path = tmp_path / "gen3.raw"
    with open(path, "wb") as fh:
        write_evt2(fh, ev, 640, 480, geometry=False)
    assert b"geometry" not in path.read_bytes()[:200] and b"width" not in path.read_bytes()[:200]
    got = _read(path, sensor_size=(640, 480))
    np.testing.assert_array_equal(got, ev)
    assert got["t"][0] >= 913_000_000
    bounds = open_source(path).native_size  # no sensor_size: the coordinate bounds
    assert (bounds.width, bounds.height) == (int(ev["x"].max()) + 1, int(ev["y"].max()) + 1)
    np.testing.assert_array_equal(Wizard(encoding="evt2", fpath=path).read()["t"], ev["t"])


def test_evt3_across_wrap_arounds_with_a_late_start_and_a_long_gap(tmp_path):
    first = events(4_000, (320, 240), 11_200_000, 2_000_000, seed=1)  # from 11.2 s, across 2^24 us
    later = events(4_000, (320, 240), 30_000_000, 8_000_000, seed=2)  # after a 16.8 s gap, across 2 x 2^24 us
    ev = np.concatenate([first, later])
    path = tmp_path / "gen4.raw"
    write_events(path, ev, (320, 240), format="evt3")
    got = _read(path)
    np.testing.assert_array_equal(got, ev)
    assert got["t"][0] >= 11_200_000 and got["t"][-1] > 2 * 2 ** 24
    # a 2 s recording spliced after itself: the clock goes back 2 s (less than half the 2^24 us period)
    write_events(path, first, (320, 240), format="evt3")
    head, body = path.read_bytes().split(b"% end\n", 1)
    spliced = tmp_path / "spliced.raw"
    spliced.write_bytes(head + b"% end\n" + body + body)
    at = len(head) + 6 + len(body)
    with pytest.raises(SourceError, match=rf"spliced.raw: the clock jumps backwards at byte {at}: "):
        read_all(open_source(spliced))


def test_dat_with_a_late_start_and_across_its_32_bit_wrap(tmp_path):
    from expelliarmus import Wizard

    ev = events(20_000, (304, 240), 913_000_000, 10_800_000)
    path = tmp_path / "atis.dat"
    write_events(path, ev, (304, 240))
    np.testing.assert_array_equal(_read(path), ev)
    np.testing.assert_array_equal(Wizard(encoding="dat", fpath=path).read()["t"], ev["t"])
    wrapping = events(5_000, (304, 240), 2 ** 32 - 3_000_000, 6_000_000)  # 71.6 min: the u32 time wraps
    write_events(path, wrapping, (304, 240))
    np.testing.assert_array_equal(_read(path), wrapping)


@pytest.mark.parametrize("fmt", ["npy", "npz", "hdf5", "csv", "aedat4"])
def test_timestamps_near_2_62_read_back_exactly(tmp_path, fmt):
    ev = events(3_000, (64, 48), 2 ** 62 - 10_000_000, 5_000_000)
    path = tmp_path / f"big.{ {'hdf5': 'h5'}.get(fmt, fmt)}"
    write_events(path, ev, (64, 48), format=fmt)
    np.testing.assert_array_equal(_read(path), ev)
