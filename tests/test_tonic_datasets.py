"""tonic data sets: small files written in each real on-disk layout are read through tonic's own
classes (no download) and binned with the project's binning function."""

from __future__ import annotations

import numpy as np
import pytest

from stdl_edge.sources import write_events
from stdl_edge.binning import BinSpec, bin_events
from stdl_edge.events import EVENT_DTYPE, make_events

pytest.importorskip("tonic")

from stdl_edge.datasets_tonic import ROOT_ENV, load_tonic_dataset, tonic_info  # noqa: E402


def _ev(rng, n, w, h, duration_us=200_000):
    return make_events(rng.integers(0, w, n), rng.integers(0, h, n), np.sort(rng.integers(0, duration_us, n)),
                       rng.integers(0, 2, n))


def test_nmnist_layout_reads_through_tonic_and_bins(tmp_path, rng):
    written = {}
    for split, folder in (("train", "Train"), ("test", "Test")):
        for digit in (3, 7):
            for k in range(2 if split == "train" else 1):
                ev = _ev(rng, 150, 34, 34, 300_000)  # > 2^13 us: overflow records in the file
                path = tmp_path / "NMNIST" / folder / str(digit) / f"{k:05d}.bin"
                path.parent.mkdir(parents=True, exist_ok=True)
                write_events(path, ev, (34, 34), format="nmnist")
                written.setdefault(split, []).append((ev, digit))
    ds = load_tonic_dataset("nmnist", "train", root=tmp_path)
    assert len(ds) == 4 and ds.labels.tolist() == [3, 3, 7, 7]
    for i, (ev, digit) in enumerate(written["train"]):
        np.testing.assert_array_equal(ds.events(i), ev)
        frames, label = ds[i]
        assert label == digit and tuple(frames.shape) == (30, 2, 34, 34)
        np.testing.assert_array_equal(frames.numpy(), bin_events(ev, (34, 34, 2), BinSpec(10_000), num_steps=30))
    test = load_tonic_dataset("nmnist", "test", root=tmp_path, num_steps=5, dt_us=2000)
    assert len(test) == 2 and test.stream.num_steps == 5 and test.stream.dt_us == 2000
    assert tuple(test[0][0].shape) == (5, 2, 34, 34)


def test_dvs_gesture_layout_with_downsampling(tmp_path, rng, monkeypatch):
    folder = tmp_path / "DVSGesture" / "ibmGestureTrain" / "user01_fluorescent"
    folder.mkdir(parents=True)
    written = {}
    for label in (0, 4):
        ev = _ev(rng, 400, 128, 128, 1_000_000)
        ms = ev["t"] / 1000.0  # the tonic-prepared files hold (x, y, p, t in ms)
        np.save(folder / f"{label}.npy", np.stack([ev["x"], ev["y"], ev["p"], ms], 1).astype(np.float64))
        written[label] = ev
    monkeypatch.setenv(ROOT_ENV, str(tmp_path))
    ds = load_tonic_dataset("dvs-gesture", "train", downsample=4)
    assert ds.sensor_size[:2] == (32, 32) and ds.stream.sensor_size == (32, 32, 2)
    assert sorted(ds.labels.tolist()) == [0, 4]
    for i in range(len(ds)):
        ref = written[int(ds.labels[i])]
        got = ds.events(i)
        assert got.dtype == EVENT_DTYPE and len(got) == len(ref)
        np.testing.assert_array_equal(got["x"], ref["x"] // 4)
        np.testing.assert_allclose(got["t"], ref["t"], atol=1)  # ms floats -> us
    assert ds.class_names[4] == "right_arm_counter_clockwise"


def test_cifar10_dvs_aedat4_layout_and_deterministic_split(tmp_path, rng):
    written = []
    for cls in ("airplane", "cat"):
        for k in range(3):
            ev = _ev(rng, 120, 128, 128)
            path = tmp_path / "CIFAR10DVS" / cls / f"cifar10_{cls}_{k}.aedat4"
            path.parent.mkdir(parents=True, exist_ok=True)
            write_events(path, ev, (128, 128), format="aedat4")
            written.append((cls, ev))
    train = load_tonic_dataset("cifar10-dvs", "train", root=tmp_path)
    test = load_tonic_dataset("cifar10-dvs", "test", root=tmp_path)
    assert len(train) == 4 and len(test) == 2  # every 10th recording of each class is test
    assert test.labels.tolist() == [0, 3]  # airplane, cat
    np.testing.assert_array_equal(test.events(0), written[0][1])
    np.testing.assert_array_equal(train.events(0), written[1][1])


def test_ncaltech101_layout_classes_from_folders(tmp_path, rng):
    for cls in ("airplanes", "Faces_easy"):
        for k in range(2):
            ev = _ev(rng, 100, 200, 150)
            ev["x"][0], ev["y"][0] = 0, 0  # tonic shifts to the bounding box; keep the origin
            path = tmp_path / "NCALTECH101" / "Caltech101" / cls / f"image_{k:04d}.bin"
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "wb") as fh:  # N-Caltech101 uses the N-MNIST record format, larger sensor
                from stdl_edge.sources.nmnist import write_nmnist

                write_nmnist(fh, ev, 240, 180)
    ds = load_tonic_dataset("ncaltech101", "train", root=tmp_path)
    assert ds.class_names == ("Faces_easy", "airplanes")
    assert len(ds) == 2 and sorted(ds.labels.tolist()) == [0, 1]
    frames, _ = ds[0]
    assert tuple(frames.shape) == (30, 2, 180, 240)


def test_missing_data_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv(ROOT_ENV, raising=False)
    with pytest.raises(FileNotFoundError, match=ROOT_ENV):
        load_tonic_dataset("nmnist", "train")
    with pytest.raises(FileNotFoundError, match="does not exist; download NMNIST yourself"):
        load_tonic_dataset("nmnist", "train", root=tmp_path)
    with pytest.raises(ValueError, match="split"):
        load_tonic_dataset("nmnist", "validation", root=tmp_path)
    assert tonic_info("dvs-gesture").sensor_size == (128, 128, 2)


def test_registered_in_stdl_edge_data_and_usable_by_run(tmp_path, rng, monkeypatch):
    """`nmnist` loads through stdl_edge.data (as `train` does) and streams as a labelled source."""
    data = pytest.importorskip("stdl_edge.data")
    from stdl_edge.datasets_tonic import register_tonic_datasets
    from stdl_edge.sources import open_source

    written = []
    for folder in ("Train", "Test"):
        for digit in range(10):
            ev = _ev(rng, 60, 34, 34, 250_000)
            path = tmp_path / "NMNIST" / folder / str(digit) / "00000.bin"
            path.parent.mkdir(parents=True, exist_ok=True)
            write_events(path, ev, (34, 34), format="nmnist")
            written.append((ev, digit))
    monkeypatch.setenv(ROOT_ENV, str(tmp_path))
    names = register_tonic_datasets()
    assert "nmnist" in names and "dvs-gesture-32" in names and "ncaltech101" not in names
    assert data.dataset_info("dvs-gesture-32").sensor_size == (32, 32, 2)
    ds = data.load_dataset("nmnist", "all")
    assert len(ds) == 20 and sorted(ds.labels.tolist()) == sorted(d for _, d in written)
    by_label = {}
    for ev, d in written:
        by_label.setdefault(d, []).append(ev)
    for i in range(len(ds)):
        assert any(np.array_equal(ds.events(i), ev) for ev in by_label[int(ds.labels[i])])
    src = open_source("nmnist:test")
    samples = list(src.samples())
    assert src.labelled and src.sensor_size[:2] == (34, 34) and len(samples) == len(data.load_dataset("nmnist", "test"))
