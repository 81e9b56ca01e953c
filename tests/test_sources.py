"""Event sources: every reader round-trips a file in its real on-disk format, chunked reading
equals whole-file reading, and bad input fails with one clear error naming the file."""

from __future__ import annotations

import numpy as np
import pytest

from stdl_edge.sources import FORMATS, Geometry, SourceError, fit_geometry, open_source, read_all, write_events
from stdl_edge.binning import bin_events, BinSpec
from stdl_edge.events import EVENT_DTYPE, SensorSize, make_events

W, H = 64, 48
SUFFIX = {"npy": "npy", "npz": "npz", "hdf5": "h5", "csv": "csv", "evt2": "raw", "evt3": "raw", "dat": "dat",
          "aedat4": "aedat4", "nmnist": "bin"}


@pytest.fixture
def stream(rng) -> np.ndarray:
    """1,500 events over 40 s (EVT3's 24-bit time wraps twice), with a run of same-time
    neighbours (EVT3 vector words) and repeated timestamps."""
    n = 1500
    t = np.sort(rng.integers(0, 40_000_000, n))
    x, y, p = rng.integers(0, W, n), rng.integers(0, H, n), rng.integers(0, 2, n)
    t[700:711] = t[700]
    x[700:711], y[700:711], p[700:711] = np.arange(11) + 3, 5, 1
    return make_events(x, y, t, p)


def _write(tmp_path, fmt, events):
    size = (34, 34) if fmt == "nmnist" else (W, H)
    if fmt == "nmnist":
        events = events.copy()
        events["x"] %= 34
        events["y"] %= 34
    path = tmp_path / f"rec_{fmt}.{SUFFIX[fmt]}"
    write_events(path, events, size, format=fmt)
    return path, events, size


@pytest.mark.parametrize("fmt", list(SUFFIX))
def test_each_format_round_trips_and_chunks_equal_whole(tmp_path, stream, fmt):
    path, events, size = _write(tmp_path, fmt, stream)
    whole = read_all(open_source(path))
    src = open_source(path, chunk_size=97)
    chunks = list(src.chunks())
    assert tuple(src.sensor_size[:2]) == size
    assert whole.dtype == EVENT_DTYPE
    np.testing.assert_array_equal(whole, events)
    assert len(chunks) > 3
    np.testing.assert_array_equal(np.concatenate(chunks), whole)


@pytest.mark.parametrize("chunk_size", [16, 37, 1000, 1 << 18])
def test_evt3_vector_heavy_streams_round_trip_at_every_block_size(tmp_path, rng, chunk_size):
    """Half the events in runs of adjacent pixels (VECT_12 words after a VECT_BASE_X), the rest
    single, with same-time bursts, gaps past the 24-bit wrap and a start at 5 s: the vector base,
    row and time carried across blocks of any size give back every event."""
    n = 3000
    t = np.cumsum(rng.choice([0, 0, 1, 3, 5000, 9_000_000], n, p=[.4, .2, .2, .15, .04, .01])) + 5_000_000
    x, y, p = rng.integers(0, 300, n), rng.integers(0, 200, n), rng.integers(0, 2, n)
    for i in np.flatnonzero(rng.random(n) < 0.5):
        if i and t[i] == t[i - 1]:
            x[i], y[i], p[i] = min(x[i - 1] + 1, 319), y[i - 1], p[i - 1]
    events = make_events(x, y, t, p)
    path = tmp_path / "vectors.raw"
    write_events(path, events, (320, 240), format="evt3")
    words = np.frombuffer(path.read_bytes().split(b"% end\n", 1)[1], "<u2")
    assert ((words >> 12) == 0x4).sum() > 100  # the stream does exercise vector words
    np.testing.assert_array_equal(np.concatenate(list(open_source(path, chunk_size=chunk_size).chunks())), events)


def test_the_registry_is_the_dispatch_and_every_writer_is_round_tripped(tmp_path, stream):
    """SUFFIX above covers every writable format; a name or a suffix selects a format; a shared
    suffix (.raw) is resolved from the header when reading and by the first entry when writing."""
    assert set(SUFFIX) == {name for name, f in FORMATS.items() if f.writer is not None}
    assert all("." + SUFFIX[name] in FORMATS[name].suffixes for name in SUFFIX)
    path, events, _ = _write(tmp_path, "evt3", stream)
    for fmt in (None, "raw", "evt3"):
        np.testing.assert_array_equal(read_all(open_source(path, format=fmt)), events)
    assert b"% evt 2.0" in write_events(tmp_path / "d.raw", stream, (W, H)).read_bytes()[:100]
    np.testing.assert_array_equal(read_all(open_source(tmp_path / "d.raw")), stream)
    np.testing.assert_array_equal(read_all(open_source(write_events(tmp_path / "e.data", stream, (W, H), format="h5"),
                                                       format="h5")), stream)
    with pytest.raises(SourceError, match="format='nope' is unknown"):
        open_source(path, format="nope")
    with pytest.raises(SourceError, match="read-only"):
        write_events(tmp_path / "clip.mp4", stream, (W, H))
    with pytest.raises(SourceError, match=r"cannot write .*lack field\(s\) p"):
        write_events(tmp_path / "f.npy", {"x": [1], "y": [1], "t": [1]}, (W, H))


def test_maintained_readers_read_our_prophesee_aedat_nmnist_files(tmp_path, stream):
    """The files are in the real formats: the third-party readers decode them to the same events."""
    from expelliarmus import Wizard
    import aedat
    from tonic.io import read_mnist_file

    for fmt in ("evt2", "dat"):
        path, events, _ = _write(tmp_path, fmt, stream)
        arr = Wizard(encoding=fmt, fpath=path).read()
        np.testing.assert_array_equal(arr["t"], events["t"])
        np.testing.assert_array_equal(arr["x"], events["x"])
        np.testing.assert_array_equal(arr["p"].astype(bool), events["p"])
    path, events, _ = _write(tmp_path, "aedat4", stream)
    dec = aedat.Decoder(str(path))
    assert dec.id_to_stream()[0]["width"] == W
    got = np.concatenate([pk["events"] for pk in dec if "events" in pk])
    np.testing.assert_array_equal(got["t"], events["t"])
    np.testing.assert_array_equal(got["on"], events["p"])
    path, events, _ = _write(tmp_path, "nmnist", stream)
    got = read_mnist_file(str(path), dtype=EVENT_DTYPE)
    np.testing.assert_array_equal(got, events)


def test_evt3_golden_words_follow_the_spec(tmp_path):
    """Hand-written EVT3 words: time high/low, a y address, one event and a 12-bit vector."""
    words = [0x8000 | 2, 0x6000 | 5, 0x0000 | 7, 0x2800 | 10,  # t = 2*4096 + 5, y 7, x 10 ON
             0x6000 | 9, 0x3000 | 20, 0x4000 | 0b101,        # t = 8201: OFF vector base 20, bits 0, 2
             0x5000 | 0b1,                                    # VECT_8 continues at x = 32
             0x8000 | 3, 0x6000 | 1, 0x2000 | 4,              # t = 3*4096 + 1 after a LOWER time low
             0x8000 | 2050, 0x8000 | 4095,                    # time high climbs (a camera sends it each 4096 us)
             0x8000 | 0, 0x2000 | 5]                          # 12-bit high wraps: t = 2^24, low reset
    path = tmp_path / "golden.raw"
    path.write_bytes(b"% evt 3.0\n% format EVT3;height=40;width=64\n% end\n" + np.asarray(words, "<u2").tobytes())
    ev = read_all(open_source(path))
    assert ev["t"].tolist() == [8197, 8201, 8201, 8201, 12289, 1 << 24]
    assert ev["x"].tolist() == [10, 20, 22, 32, 4, 5]
    assert ev["y"].tolist() == [7] * 6
    assert ev["p"].tolist() == [True, False, False, False, False, False]
    # a time high that goes back by less than half its range is a clock jump, not a wrap
    words[-2] = 0x8000 | 4000
    path.write_bytes(b"% evt 3.0\n% format EVT3;height=40;width=64\n% end\n" + np.asarray(words, "<u2").tobytes())
    with pytest.raises(SourceError, match=r"golden.raw: the clock jumps backwards at byte 75: 16384000 us after 16773120 us"):
        read_all(open_source(path))


@pytest.mark.parametrize("fmt", ["npy", "npz", "hdf5", "csv", "evt2", "evt3", "dat", "aedat4", "nmnist"])
def test_truncated_file_is_a_clear_error(tmp_path, stream, fmt):
    path, _, _ = _write(tmp_path, fmt, stream)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3 + 1])
    with pytest.raises(SourceError, match=str(path.name)):
        read_all(open_source(path))


@pytest.mark.parametrize("fmt", ["evt2", "evt3", "dat", "nmnist"])
def test_truncation_names_the_byte_offset(tmp_path, stream, fmt):
    path, _, _ = _write(tmp_path, fmt, stream)
    size = path.stat().st_size
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(SourceError, match=r"starts at byte \d+"):
        open_source(path)
    assert size > 0


def test_empty_unknown_missing_and_corrupt_inputs(tmp_path):
    empty = tmp_path / "e.npy"
    empty.write_bytes(b"")
    with pytest.raises(SourceError, match="empty"):
        open_source(empty)
    unknown = tmp_path / "e.xyz"
    unknown.write_text("1")
    with pytest.raises(SourceError, match="unknown event file type"):
        open_source(unknown)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        open_source(tmp_path / "missing.h5")
    garbage = tmp_path / "g.aedat4"
    garbage.write_bytes(b"not an aedat file at all")
    with pytest.raises(SourceError, match="not an AEDAT4 file"):
        open_source(garbage)
    header_only = tmp_path / "h.raw"
    header_only.write_bytes(b"% evt 2.0\n% geometry 8x8\n% end\n")
    with pytest.raises(SourceError, match="no events after the header"):
        open_source(header_only)
    reserved = tmp_path / "r.raw"
    reserved.write_bytes(b"% evt 3.0\n% geometry 8x8\n% end\n" + np.asarray([0x9000], "<u2").tobytes())
    with pytest.raises(SourceError, match="reserved type 0x9"):
        read_all(open_source(reserved))
    csv = tmp_path / "c.csv"
    csv.write_text("t,x,y,p\n1,2,3,1\n5,abc,3,0\n")
    with pytest.raises(SourceError, match="line 3"):
        read_all(open_source(csv, sensor_size=(8, 8)))
    csv.write_text("a,b\n1,2\n")
    with pytest.raises(SourceError, match="header"):
        open_source(csv)


def test_out_of_range_and_unsorted_events_are_rejected(tmp_path, stream):
    path = tmp_path / "r.npy"
    np.save(path, stream)
    with pytest.raises(SourceError, match="outside the sensor"):
        read_all(open_source(path, sensor_size=(32, 32)))
    shuffled = stream.copy()
    shuffled[[10, 1000]] = shuffled[[1000, 10]]
    np.save(path, shuffled)
    with pytest.raises(SourceError, match="not sorted"):
        read_all(open_source(path))
    # unsorted across a chunk boundary
    with pytest.raises(SourceError, match="backwards across chunks|not sorted"):
        read_all(open_source(path, chunk_size=500))


def test_geometry_downsample_and_crop_match_binning_by_pixel_blocks(rng):
    n = 4000
    ev = make_events(rng.integers(0, 68, n), rng.integers(0, 70, n), np.sort(rng.integers(0, 50_000, n)),
                     rng.integers(0, 2, n))
    src = open_source(ev, sensor_size=(68, 70), downsample=2, crop=(0, 2, 68, 68), chunk_size=333)
    assert src.sensor_size[:2] == (34, 34)
    out = read_all(src)
    spec = BinSpec(dt_us=5000, mode="count")
    # counts of the 2x2 blocks of the cropped full-resolution frames
    full = bin_events(ev, SensorSize(68, 70), spec, num_steps=10)[:, :, 2:70, :]
    blocks = full.reshape(10, 2, 34, 2, 34, 2).sum(axis=(3, 5))
    np.testing.assert_array_equal(bin_events(out, SensorSize(34, 34), spec, num_steps=10), blocks)
    assert fit_geometry(SensorSize(128, 128), (34, 34)) == Geometry((13, 13, 102, 102), 3)
    assert ev["x"].max() >= 34  # the caller's array is untouched
    with pytest.raises(SourceError, match="smaller than the model"):
        fit_geometry(SensorSize(20, 20), (34, 34))
    with pytest.raises(SourceError, match="does not fit"):
        open_source(ev, sensor_size=(68, 70), crop=(40, 0, 40, 10))


def test_live_camera_without_driver_says_what_to_install():
    with pytest.raises(ImportError, match="pip install aestream"):
        open_source("camera:", sensor_size=(64, 48))
    with pytest.raises(ImportError, match="pip install dv-processing"):
        open_source("dv:")


def test_frames_folder_streams_through_the_emulator(tmp_path):
    from PIL import Image

    emulator = pytest.importorskip("stdl_edge.emulator")
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(5):
        img = np.zeros((12, 16), np.uint8)
        img[:, : 3 * (i + 1)] = 220  # a bright bar widening to the right: ON events
        Image.fromarray(img).save(folder / f"f{i:03d}.png")
    src = open_source(folder, fps=100.0)
    assert src.sensor_size[:2] == (16, 12)
    ev = read_all(src)
    assert len(ev) > 0 and ev["p"].all()
    assert ev["t"].max() < 40_000  # 5 frames at 100 fps
    frames = np.stack([np.asarray(Image.open(p).convert("L"), np.float32) / 255 for p in sorted(folder.iterdir())])
    direct = emulator.emulate(frames, np.arange(5) * 10_000, emulator.EmulatorConfig())
    np.testing.assert_array_equal(np.sort(ev, order=["t", "y", "x"]), np.sort(direct, order=["t", "y", "x"]))


def test_video_without_imageio_names_the_package(tmp_path):
    import importlib.util

    if importlib.util.find_spec("imageio") is not None:
        pytest.skip("imageio is installed here")
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"\x00\x00\x00\x18ftypmp42")
    with pytest.raises(ImportError, match="imageio"):
        open_source(video)
