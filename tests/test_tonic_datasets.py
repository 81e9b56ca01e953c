"""tonic data sets: small trees written in each real on-disk layout are read through tonic's own
classes (no download), with the official split where the data set has one and the seeded stratified
split where it has none, and binned with the project's binning function."""

from __future__ import annotations

import numpy as np
import pytest

from stdl_edge.binning import BinSpec, bin_events
from stdl_edge.events import EVENT_DTYPE, make_events
from stdl_edge.sources import write_events

pytest.importorskip("tonic")

from stdl_edge.datasets_tonic import LEGACY_ROOT_ENV, ROOT_ENV, load_tonic_dataset, tonic_info  # noqa: E402


def _ev(rng, n, w, h, duration_us=200_000):
    return make_events(rng.integers(0, w, n), rng.integers(0, h, n), np.sort(rng.integers(0, duration_us, n)),
                       rng.integers(0, 2, n))


def _nmnist_tree(root, rng, per_split=None, n=150, duration_us=300_000):
    """NMNIST/{Train,Test}/<digit>/<k>.bin; returns {split: [(events, digit)]} in path order."""
    per_split = per_split or {"Train": {3: 2, 7: 2}, "Test": {3: 1, 7: 1}}
    written = {}
    for folder, digits in per_split.items():
        for digit, count in digits.items():
            for k in range(count):
                ev = _ev(rng, n, 34, 34, duration_us)  # > 2^13 us: overflow records in the file
                path = root / "NMNIST" / folder / str(digit) / f"{k:05d}.bin"
                path.parent.mkdir(parents=True, exist_ok=True)
                write_events(path, ev, (34, 34), format="nmnist")
                written.setdefault(folder, []).append((ev, digit))
    return written


def test_nmnist_official_split_reads_through_tonic_and_bins(tmp_path, rng):
    written = _nmnist_tree(tmp_path, rng)
    ds = load_tonic_dataset("nmnist", "train", root=tmp_path)
    assert len(ds) == 4 and ds.labels.tolist() == [3, 3, 7, 7]
    for i, (ev, digit) in enumerate(written["Train"]):
        np.testing.assert_array_equal(ds.events(i), ev)
        frames, label = ds[i]
        assert label == digit and tuple(frames.shape) == (30, 2, 34, 34)
        np.testing.assert_array_equal(frames.numpy(), bin_events(ev, (34, 34, 2), BinSpec(10_000), num_steps=30))
    test = load_tonic_dataset("nmnist", "test", root=tmp_path, num_steps=5, dt_us=2000)
    assert len(test) == 2 and test.stream.num_steps == 5 and test.stream.dt_us == 2000
    for i, (ev, _) in enumerate(written["Test"]):  # the Test folder is the test split, nothing re-split
        np.testing.assert_array_equal(test.events(i), ev)


def test_dvs_gesture_official_split_with_downsampling(tmp_path, rng, monkeypatch):
    written = {}
    for split, folder in (("train", "ibmGestureTrain"), ("test", "ibmGestureTest")):
        user = tmp_path / "DVSGesture" / folder / ("user01_fluorescent" if split == "train" else "user24_led")
        user.mkdir(parents=True)
        for label in ((0, 4) if split == "train" else (2,)):
            ev = _ev(rng, 400, 128, 128, 1_000_000)
            ms = ev["t"] / 1000.0  # the tonic-prepared files hold (x, y, p, t in ms)
            np.save(user / f"{label}.npy", np.stack([ev["x"], ev["y"], ev["p"], ms], 1).astype(np.float64))
            written[(split, label)] = ev
    monkeypatch.setenv(ROOT_ENV, str(tmp_path))
    ds = load_tonic_dataset("dvs-gesture", "train", downsample=4)
    assert ds.sensor_size[:2] == (32, 32) and ds.stream.sensor_size == (32, 32, 2)
    assert sorted(ds.labels.tolist()) == [0, 4]
    for i in range(len(ds)):
        ref = written[("train", int(ds.labels[i]))]
        got = ds.events(i)
        assert got.dtype == EVENT_DTYPE and len(got) == len(ref)
        np.testing.assert_array_equal(got["x"], ref["x"] // 4)
        np.testing.assert_allclose(got["t"], ref["t"], atol=1)  # ms floats -> us
    assert ds.class_names[4] == "right_arm_counter_clockwise"
    assert load_tonic_dataset("dvs-gesture", "test").labels.tolist() == [2]


def _no_split_tree(root, rng, classes, per_class, write):
    written = {}
    for cls in classes:
        for k in range(per_class):
            written[(cls, k)] = write(cls, k)
    return written


def test_cifar10_dvs_aedat4_layout_and_seeded_stratified_split(tmp_path, rng):
    def write(cls, k):
        ev = _ev(rng, 120, 128, 128)
        path = tmp_path / "CIFAR10DVS" / cls / f"cifar10_{cls}_{k}.aedat4"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_events(path, ev, (128, 128), format="aedat4")
        return ev

    written = _no_split_tree(tmp_path, rng, ("airplane", "cat"), 5, write)
    train = load_tonic_dataset("cifar10-dvs", "train", root=tmp_path)
    test = load_tonic_dataset("cifar10-dvs", "test", root=tmp_path)
    assert len(train) == 8 and len(test) == 2 and sorted(test.labels.tolist()) == [0, 3]  # 1 of 5 per class
    files = {train.where(i) for i in range(len(train))} | {test.where(i) for i in range(len(test))}
    assert len(files) == 10  # a partition: no recording in both
    again = load_tonic_dataset("cifar10-dvs", "test", root=tmp_path)
    assert [again.where(i) for i in range(2)] == [test.where(i) for i in range(2)]  # seeded: the same every time
    for i in range(len(test)):
        cls, k = test.where(i).rsplit("/", 1)[1][len("cifar10_"):-len(".aedat4")].rsplit("_", 1)
        np.testing.assert_array_equal(test.events(i), written[(cls, int(k))])


def test_ncaltech101_layout_classes_from_folders(tmp_path, rng):
    from stdl_edge.sources.nmnist import write_nmnist

    def write(cls, k):
        ev = _ev(rng, 100, 200, 150)
        ev["x"][0], ev["y"][0] = 0, 0  # tonic shifts to the bounding box; keep the origin
        path = tmp_path / "NCALTECH101" / "Caltech101" / cls / f"image_{k:04d}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as fh:  # N-Caltech101 uses the N-MNIST record format, larger sensor
            write_nmnist(fh, ev, 240, 180)
        return ev

    _no_split_tree(tmp_path, rng, ("airplanes", "Faces_easy"), 5, write)
    ds = load_tonic_dataset("ncaltech101", "train", root=tmp_path)
    assert ds.class_names == ("Faces_easy", "airplanes")
    assert len(ds) == 8 and sorted(ds.labels.tolist()) == [0] * 4 + [1] * 4
    frames, _ = ds[0]
    assert tuple(frames.shape) == (30, 2, 180, 240)


def test_poker_dvs_official_split(tmp_path, rng):
    for folder, counts in (("pips_train", {"cl": 2, "sp": 1}), ("pips_test", {"he": 1})):
        for suit, count in counts.items():
            for k in range(count):
                ev = _ev(rng, 80, 35, 35, 10_000)
                path = tmp_path / "POKERDVS" / folder / suit / f"{suit}{k}.npy"
                path.parent.mkdir(parents=True, exist_ok=True)  # columns in tonic's order t, x, y, p
                np.save(path, np.stack([ev["t"], ev["x"], ev["y"], ev["p"]], 1).astype(np.int64))
    train = load_tonic_dataset("poker-dvs", "train", root=tmp_path)
    test = load_tonic_dataset("poker-dvs", "test", root=tmp_path)
    assert train.labels.tolist() == [0, 0, 3] and test.labels.tolist() == [1]  # cl, cl, sp | he
    assert train.events(0).dtype == EVENT_DTYPE and train.sensor_size[:2] == (35, 35)


def test_dvs_lip_official_split_classes_from_tonic(tmp_path, rng):
    import tonic.datasets as td

    words = td.DVSLip.classes
    for split, picks in (("train", (words[0], words[5])), ("test", (words[5],))):
        for word in picks:
            ev = _ev(rng, 90, 128, 128, 500_000)
            path = tmp_path / "DVSLip" / "DVS-Lip" / split / word / "0.npy"
            path.parent.mkdir(parents=True, exist_ok=True)
            np.save(path, ev)
    train = load_tonic_dataset("dvs-lip", "train", root=tmp_path)
    test = load_tonic_dataset("dvs-lip", "test", root=tmp_path)
    assert sorted(train.labels.tolist()) == [0, 5] and test.labels.tolist() == [5]
    assert train.class_names[5] == words[5] and len(train.class_names) == len(words)


def test_asl_dvs_mat_layout(tmp_path, rng):
    from scipy.io import savemat

    for letter in ("a", "c"):
        for k in range(5):
            ev = _ev(rng, 70, 240, 180, 100_000)
            path = tmp_path / "ASLDVS" / letter / f"{letter}_{k:04d}.mat"
            path.parent.mkdir(parents=True, exist_ok=True)
            savemat(path, {"ts": ev["t"][:, None], "x": ev["x"][:, None].astype(np.int64),
                           "y": ev["y"][:, None].astype(np.int64), "pol": ev["p"][:, None].astype(np.int64)})
    train = load_tonic_dataset("asl-dvs", "train", root=tmp_path)
    test = load_tonic_dataset("asl-dvs", "test", root=tmp_path)
    assert len(train) == 8 and sorted(test.labels.tolist()) == [0, 2]
    assert train.events(0)["x"].max() < 240


def test_missing_data_names_the_folder_and_where_to_get_it(tmp_path, monkeypatch):
    monkeypatch.delenv(ROOT_ENV, raising=False)
    monkeypatch.setenv(LEGACY_ROOT_ENV, str(tmp_path / "old"))
    with pytest.raises(FileNotFoundError, match="old/NMNIST/Train does not exist; get NMNIST from https://"):
        load_tonic_dataset("nmnist", "train")  # the older variable is still read
    with pytest.raises(FileNotFoundError, match=f"--data-root / \\${ROOT_ENV}"):
        load_tonic_dataset("nmnist", "train", root=tmp_path)
    with pytest.raises(ValueError, match="split"):
        load_tonic_dataset("nmnist", "validation", root=tmp_path)
    assert tonic_info("dvs-gesture").sensor_size == (128, 128, 2)


def test_registered_in_stdl_edge_data_with_the_official_split_and_usable_by_run(tmp_path, rng, monkeypatch):
    """`nmnist` loads through stdl_edge.data (as train, verify and data do) with its Train/Test folders as
    the splits, and streams as a labelled source for `run --events nmnist:test`."""
    from stdl_edge import data
    from stdl_edge.sources import open_source

    written = _nmnist_tree(tmp_path, rng, {"Train": {d: 1 for d in range(10)}, "Test": {d: 1 for d in (2, 5)}}, n=60,
                           duration_us=250_000)
    monkeypatch.setenv(ROOT_ENV, str(tmp_path))
    assert "nmnist" in data.DATASETS and data.dataset_info("dvs-gesture-32").sensor_size == (32, 32, 2)
    train, test = data.load_dataset("nmnist", "train"), data.load_dataset("nmnist", "test")
    assert len(train) == 10 and test.labels.tolist() == [2, 5]
    for i, (ev, _) in enumerate(written["Test"]):
        np.testing.assert_array_equal(test.events(i), ev)
    everything = data.load_dataset("nmnist", "all", root=tmp_path)
    assert len(everything) == 12 and int(everything.is_test.sum()) == 2
    src = open_source("nmnist:test")
    samples = list(src.samples())
    assert src.labelled and src.sensor_size[:2] == (34, 34) and [y for _, y in samples] == [2, 5]
