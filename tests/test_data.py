"""Bundled data sets: contract, determinism, split, the temporal task, caching and errors."""

from __future__ import annotations

import numpy as np
import pytest

from stdl_edge import data
from stdl_edge.bundled import DIRECTIONS, SHAPES_INFO, render_shapes, shape_params
from stdl_edge.data import (DATASETS, DatasetBuilder, DatasetInfo, RawData, build_dataset, cache_path, dataset_info,
                            load_dataset, register_dataset, unregister_dataset)
from stdl_edge.binning import BinSpec, bin_events
from stdl_edge.events import EVENT_DTYPE, make_events

SMALL = 120  # shapes-dvs subset used by most tests (30 per class)


@pytest.fixture(scope="module")
def shapes_small():
    return load_dataset("shapes-dvs", "all", limit=SMALL)


def _hashes(ds):
    return {ds.events(i).tobytes() for i in range(len(ds))}


def test_registered_names_and_info():
    assert {"digits-dvs", "shapes-dvs"} <= set(DATASETS)
    info = dataset_info("shapes-dvs")
    assert info.sensor_size == (32, 32, 2) and info.class_names == ("right", "left", "up", "down")
    assert info.num_steps * info.dt_us >= info.duration_us
    digits = dataset_info("digits-dvs")
    assert digits.sensor_size == (34, 34, 2) and digits.num_classes == 10 and digits.num_samples == 1797


def test_item_contract_and_frames_come_from_bin_events(shapes_small):
    from torch.utils.data import DataLoader, Dataset

    ds = shapes_small
    info = ds.info
    assert isinstance(ds, Dataset)
    batch, labels = next(iter(DataLoader(ds, batch_size=5)))
    assert tuple(batch.shape) == (5, 8, 2, 32, 32) and labels.tolist() == ds.labels[:5].tolist()
    frames, label = ds[3]
    assert tuple(frames.shape) == (8, 2, 32, 32) and str(frames.dtype) == "torch.float32"
    assert isinstance(label, int) and label == ds.labels[3] and ds.labels.dtype == np.int64
    ev = ds.events(3)
    assert ev.dtype == EVENT_DTYPE and len(ev) > 0
    assert ev["t"].min() >= 0 and ev["t"].max() < info.duration_us
    np.testing.assert_array_equal(frames.numpy(), bin_events(ev, info.sensor_size, BinSpec(info.dt_us), 8))
    assert ds.stream.sensor_size == (32, 32, 2) and ds.stream.dt_us == info.dt_us
    assert ds.stream.class_names == info.class_names and ds.stream.bin_mode == "binary"
    assert ds.frames.dtype == np.uint8 and ds.frames.shape == (len(ds), 8, 2, 32, 32)
    ev2 = ds.events(3)  # a copy: changing it leaves the data set alone
    ev2["t"][:] = 0
    assert ds.events(3)["t"].max() > 0
    with pytest.raises(IndexError):
        ds[len(ds)]


def test_binning_options_and_count_mode():
    ds = load_dataset("shapes-dvs", "test", limit=SMALL, num_steps=4)
    assert ds.stream.num_steps == 4 and ds.stream.dt_us == 50_000 and ds[0][0].shape[0] == 4
    ds = load_dataset("shapes-dvs", "test", limit=SMALL, dt_us=10_000)
    assert ds.stream.num_steps == 20
    counts = load_dataset("shapes-dvs", "test", limit=SMALL, bin_mode="count")
    frames = counts[0][0].numpy()
    assert frames.max() > 1 and frames.sum() == len(counts.events(0))  # every event counted once


def test_split_is_stratified_disjoint_and_fixed(shapes_small):
    train = load_dataset("shapes-dvs", "train", limit=SMALL)
    test = load_dataset("shapes-dvs", "test", limit=SMALL)
    assert len(train) + len(test) == len(shapes_small) == SMALL
    assert np.bincount(test.labels).tolist() == [6] * 4  # 20 % of 30 per class
    assert np.bincount(train.labels).tolist() == [24] * 4
    assert not (_hashes(train) & _hashes(test))
    assert _hashes(train) | _hashes(test) == _hashes(shapes_small)
    assert np.array_equal(test.labels, load_dataset("shapes-dvs", "test", limit=SMALL).labels)


def test_same_seed_same_events_other_seed_differs(shapes_small):
    first = [shapes_small.events(i) for i in range(5)]
    again = load_dataset("shapes-dvs", "all", limit=SMALL, rebuild=True)  # regenerated, not read
    for i in range(5):
        np.testing.assert_array_equal(again.events(i), first[i])
    other = load_dataset("shapes-dvs", "all", limit=SMALL, seed=1)
    assert not all(np.array_equal(other.events(i), first[i]) for i in range(5))


def test_shapes_reversed_in_time_is_the_opposite_class():
    """The generator's symmetry: playing a "right" video backwards gives exactly a "left" video."""
    duration = SHAPES_INFO.duration_us * 1e-6
    labels = np.array([0, 1, 2, 3] * 3)
    params = shape_params(labels, seed=0, duration_s=duration)
    back = params.reversed(duration)
    opposite = np.array([1, 0, 3, 2])[labels]
    np.testing.assert_allclose(back.vx / np.abs(back.vx + back.vy), DIRECTIONS[opposite][:, 0])
    np.testing.assert_allclose(back.vy / np.abs(back.vx + back.vy), DIRECTIONS[opposite][:, 1])
    for t in (0.0, 0.05, 0.2):
        np.testing.assert_allclose(render_shapes(back, t), render_shapes(params, duration - t), atol=1e-4)
    frames = render_shapes(params, 0.0)
    assert frames.min() >= 0 and frames.max() <= 1


def _features(ds, keep_time: bool) -> np.ndarray:
    f = ds.frames.astype(np.float32)
    n, t, p, h, w = f.shape
    f = f.reshape(n, t, p, h // 4, 4, w // 4, 4).sum(axis=(4, 6))  # 8x8 blocks of 4x4 pixels
    return (f if keep_time else f.sum(axis=1)).reshape(n, -1)


def test_shapes_dvs_needs_time():
    """Events summed over time cannot tell right from left (or up from down); steps in order can."""
    from sklearn.linear_model import RidgeClassifier

    train = load_dataset("shapes-dvs", "train", limit=400)
    test = load_dataset("shapes-dvs", "test", limit=400)
    result = {}
    for keep_time in (False, True):
        clf = RidgeClassifier(alpha=10.0).fit(_features(train, keep_time), train.labels)
        pred = clf.predict(_features(test, keep_time))
        same_axis = pred // 2 == test.labels // 2
        result[keep_time] = ((pred == test.labels).mean(), (pred == test.labels)[same_axis].mean())
    (acc_sum, sign_sum), (acc_time, sign_time) = result[False], result[True]
    assert sign_sum < 0.65 and acc_sum < 0.45    # direction along the axis: a coin flip without time
    assert sign_time > 0.9 and acc_time > 0.75   # the same linear model with the steps in order


def test_full_digits_dvs_build():
    """The whole bundled digits-dvs, once: every sklearn digit, 80/20 per class, sensible events."""
    from sklearn.datasets import load_digits

    ds = load_dataset("digits-dvs", "all")
    assert len(ds) == 1797
    np.testing.assert_array_equal(ds.labels, load_digits().target)
    for c in range(10):
        members = ds.labels == c
        assert abs(ds.is_test[members].sum() - 0.2 * members.sum()) <= 0.5
    counts = ds.num_events()
    assert counts.min() > 1000 and counts.mean() < 20_000  # about 5,000, like N-MNIST's ~4,000
    assert ds.frames.shape == (1797, 8, 2, 34, 34)
    active = ds.frames.astype(bool).mean(axis=(0, 2, 3, 4))
    assert (active > 0.02).all()  # every step of the three saccades sees the digit move
    ev = ds.events(0)
    assert 0.4 < ev["p"].mean() < 0.6 and ev["t"].max() < ds.info.duration_us
    train = load_dataset("digits-dvs", "train")  # from the cache
    assert len(train) == int((~ds.is_test).sum())


# ----------------------------------------------------------------------------- cache and registry


@pytest.fixture
def toy():
    """A registered toy data set whose builder counts its calls."""
    calls = []
    info = DatasetInfo("toy-test", (4, 3, 2), ("a", "b"), duration_us=1000, dt_us=250, num_steps=4,
                       num_samples=10, description="test data set", version=1)

    def build(seed, limit, progress):
        calls.append(seed)
        rng = np.random.default_rng(seed)
        events = []
        for i in range(10):
            t = np.sort(rng.integers(0, 1000, 5))
            events.append(make_events(rng.integers(0, 4, 5), rng.integers(0, 3, 5), t, rng.integers(0, 2, 5)))
        if progress is not None:
            progress(10, 10)
        return RawData(events, np.arange(10) % 2)

    register_dataset("toy-test", DatasetBuilder(info, build))
    yield calls
    unregister_dataset("toy-test")


def test_cache_is_reused(toy):
    a = load_dataset("toy-test", "all", seed=4)
    b = load_dataset("toy-test", "train", seed=4)
    assert toy == [4] and len(a) == 10 and len(b) == 8
    assert a.cache_path == cache_path("toy-test", 4) and a.cache_path.exists()
    assert "v1" in a.cache_path.name and "seed4" in a.cache_path.name
    load_dataset("toy-test", "all", seed=4, rebuild=True)
    assert toy == [4, 4]


@pytest.mark.parametrize("damage", ["garbage", "truncate", "empty"])
def test_corrupt_cache_is_regenerated(toy, damage):
    ref = load_dataset("toy-test", "all", seed=5)
    builds = len(toy)
    path = ref.cache_path
    raw = path.read_bytes()
    path.write_bytes({"garbage": b"not a zip file at all", "truncate": raw[: len(raw) // 2], "empty": b""}[damage])
    again = load_dataset("toy-test", "all", seed=5)
    assert len(toy) == builds + 1
    for i in range(len(ref)):
        np.testing.assert_array_equal(again.events(i), ref.events(i))


def test_new_generator_version_never_reads_the_old_cache(toy):
    load_dataset("toy-test", "all")
    old = data._builder("toy-test")
    register_dataset("toy-test", DatasetBuilder(DatasetInfo(**{**old.info.__dict__, "version": 2}), old.build))
    ds = load_dataset("toy-test", "all")
    assert toy == [0, 0] and "-v2." in ds.cache_path.name


def test_registry_errors(toy):
    with pytest.raises(ValueError, match="differs"):
        register_dataset("other-name", data._builder("toy-test"))
    with pytest.raises(ValueError, match="DatasetBuilder"):
        register_dataset("x", lambda seed, limit, progress: None)
    assert "toy-test" in DATASETS


@pytest.mark.parametrize("kwargs, match", [
    ({"name": "mnist-nope"}, "unknown data set 'mnist-nope'; available: digits-dvs"),
    ({"split": "val"}, "split 'val' is unknown"),
    ({"num_steps": 0}, "num_steps=0"),
    ({"num_steps": 2.5}, "num_steps=2.5"),
    ({"dt_us": -10}, "dt_us=-10"),
    ({"bin_mode": "sum"}, "bin_mode 'sum'"),
    ({"seed": -1}, "seed=-1"),
    ({"limit": 1}, "limit=1"),
])
def test_bad_arguments_are_clear_errors(kwargs, match):
    args = {"name": "shapes-dvs", "split": "train", **kwargs}
    name, split = args.pop("name"), args.pop("split")
    with pytest.raises(ValueError, match=match):
        load_dataset(name, split, **args)


def test_unknown_name_in_info():
    with pytest.raises(ValueError, match="unknown data set"):
        dataset_info("nope")
    with pytest.raises(ValueError, match="unknown data set"):
        build_dataset("nope")


def test_builder_output_is_checked_and_normalised(toy):
    info = data._builder("toy-test").info
    other = np.dtype([("t", np.int64), ("x", np.uint16), ("y", np.uint16), ("p", np.int8)])

    def build(seed, limit, progress):  # another field order and kinds, as readers may give
        ev = np.zeros(3, dtype=other)
        ev["t"], ev["x"], ev["y"], ev["p"] = [5, 6, 7], [1, 2, 3], [0, 1, 2], [1, 0, 1]
        return RawData([ev, ev[:1]], np.array([0, 1]))

    register_dataset("toy-test", DatasetBuilder(info, build))
    ds = load_dataset("toy-test", "all", seed=9)
    assert ds.events(0).dtype == EVENT_DTYPE and ds.events(0)["x"].tolist() == [1, 2, 3]
    assert ds.events(0)["p"].tolist() == [True, False, True]
    bad_labels = lambda seed, limit, progress: RawData([np.zeros(0, EVENT_DTYPE)], [2])  # noqa: E731
    register_dataset("toy-test", DatasetBuilder(info, bad_labels))
    with pytest.raises(RuntimeError, match="labels 2..2"):
        load_dataset("toy-test", "all", seed=10)
