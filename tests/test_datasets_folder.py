"""folder:PATH data sets, slicing, the frame cache, streaming loading, augmentation, plug-ins and bad input."""

from __future__ import annotations

from importlib.metadata import EntryPoint

import numpy as np
import pytest
import torch

from stdl_edge.data import DATASETS, DatasetBuilder, DatasetInfo, RawData, load_dataset, unregister_dataset
from stdl_edge.datasets import DataError, Slicing
from stdl_edge.datasets.loader import FrameData, bin_sample
from stdl_edge.events import make_events
from stdl_edge.sources import write_events

FORMATS = ("npz", "h5", "csv")


def _recording(rng, cls: int, n: int = 300, duration_us: int = 200_000, t0: int = 7_000_000) -> np.ndarray:
    """A bar moving right (class 1) or left (class 0) on a 32x32 sensor, camera-clock timestamps from t0."""
    t = np.sort(rng.integers(0, duration_us, n))
    x = (t / duration_us * 31).astype(int)
    x = x if cls else 31 - x
    return make_events(x, rng.integers(0, 32, n), t + t0, rng.integers(0, 2, n))


def _folder(root, rng, per_class=5, split_folders=False, **kw):
    """root/<class>/rec<k>.<npz|h5|csv> (or root/{train,test}/<class>/...); {path: events}."""
    written = {}
    for c, cls in enumerate(("left", "right")):
        for k in range(per_class):
            where = root / (("test" if k == 0 else "train") if split_folders else "") / cls
            path = where / f"rec{k}.{FORMATS[k % 3]}"
            path.parent.mkdir(parents=True, exist_ok=True)
            ev = _recording(rng, c, **kw)
            write_events(path, ev, (32, 32))
            written[str(path)] = ev
    return written


def test_folder_in_three_formats_with_a_seeded_stratified_split(tmp_path, rng):
    written = _folder(tmp_path, rng)
    train = load_dataset(f"folder:{tmp_path}", "train")
    test = load_dataset(f"folder:{tmp_path}", "test")
    assert train.stream.class_names == ("left", "right") and train.stream.sensor_size == (32, 32, 2)
    assert len(train) == 8 and sorted(test.labels.tolist()) == [0, 1]  # round(0.2 * 5) of each class
    seen = [train.samples.where(i) for i in range(len(train))] + [test.samples.where(i) for i in range(len(test))]
    assert sorted(seen) == sorted(written) and {p.rsplit(".", 1)[1] for p in seen} == set(FORMATS)
    for ds in (train, test):
        for i in range(len(ds)):
            ref = written[ds.samples.where(i)]
            got = ds.events(i)
            assert got["t"][0] == 0  # time 0 is the recording's first event
            np.testing.assert_array_equal(got["t"], ref["t"] - ref["t"][0])
            np.testing.assert_array_equal(got["x"], ref["x"])
            assert int(ds.labels[i]) == ("right" in ds.samples.where(i))
    assert train.stream.num_steps == 16 and train.stream.dt_us * 16 >= 199_000  # default: 16 steps over the longest


def test_folder_train_and_test_subfolders_are_the_split(tmp_path, rng):
    _folder(tmp_path, rng, per_class=4, split_folders=True)
    train = load_dataset(f"folder:{tmp_path}", "train")
    test = load_dataset(f"folder:{tmp_path}", "test")
    assert len(train) == 6 and len(test) == 2
    assert all("/test/" in test.samples.where(i) for i in range(2))
    assert all("/train/" in train.samples.where(i) for i in range(6))


def test_a_folder_split_is_a_labelled_source_with_its_class_names(tmp_path, rng):
    """``stdl-edge run --events folder:PATH:test``: the split is the part after the last colon."""
    from stdl_edge.sources import open_source

    _folder(tmp_path, rng, per_class=4, split_folders=True)
    src = open_source(f"folder:{tmp_path}:test")
    assert src.labelled and src.class_names == ("left", "right")
    labels = [label for _, label in src.samples()]
    assert sorted(labels) == [0, 1]


def test_folder_sensor_size_from_the_flag_when_files_do_not_say(tmp_path, rng):
    for c, cls in enumerate(("a", "b")):
        for k in range(3):
            ev = _recording(rng, c)
            (tmp_path / cls).mkdir(exist_ok=True)
            np.save(tmp_path / cls / f"{k}.npy", ev)  # npy: no sensor size in the file
    ds = load_dataset(f"folder:{tmp_path}", "train", sensor_size=(40, 36))
    assert ds.stream.sensor_size == (40, 36, 2) and ds[0][0].shape == (16, 2, 36, 40)


def test_slicing_by_time_and_by_events_uses_tonic_slicers(tmp_path, rng):
    written = _folder(tmp_path, rng, per_class=5, n=400, duration_us=200_000)
    name = f"folder:{tmp_path}"
    whole = load_dataset(name, "test")
    by_time = load_dataset(name, "test", slicing={"by": "time", "length": 50_000, "overlap": 10_000})
    assert by_time.info.duration_us == 50_000 and by_time.stream.num_steps * by_time.stream.dt_us >= 50_000
    ref = written[whole.samples.where(0)]
    t = ref["t"] - ref["t"][0]
    first, second = by_time.events(0), by_time.events(1)
    np.testing.assert_array_equal(first["t"], t[t < 50_000])
    np.testing.assert_array_equal(second["t"], t[(t >= 40_000) & (t < 90_000)] - 40_000)  # stride 40 ms
    assert len(by_time) == 2 * 4 and by_time.labels.tolist() == [int(whole.labels[0])] * 4 + [int(whole.labels[1])] * 4
    by_count = load_dataset(name, "test", slicing=Slicing("events", 100))
    assert len(by_count) == 2 * 4 and all(len(by_count.events(i)) == 100 for i in range(len(by_count)))
    assert by_count.events(1)["t"][0] == 0  # each window starts at its first event


def test_frame_cache_hits_and_misses_when_a_binning_parameter_changes(tmp_path, rng, monkeypatch):
    _folder(tmp_path / "rec", rng)
    ds = load_dataset(f"folder:{tmp_path / 'rec'}", "train")
    built = []
    data = FrameData(ds.samples, ds.stream, mode="cache", progress=lambda d, n: built.append(d))
    assert built == list(range(1, len(ds) + 1))
    for i in range(len(ds)):
        np.testing.assert_array_equal(data.cache.read(i), bin_sample(ds.events(i), ds.stream))
    again = []
    hit = FrameData(ds.samples, ds.stream, mode="cache", progress=lambda d, n: again.append(d))
    assert again == [] and hit.cache.folder == data.cache.folder  # a hit: nothing binned
    other = load_dataset(f"folder:{tmp_path / 'rec'}", "train", dt_us=ds.stream.dt_us // 2)
    missed = []
    changed = FrameData(other.samples, other.stream, mode="cache", progress=lambda d, n: missed.append(d))
    assert len(missed) == len(ds) and changed.cache.folder != data.cache.folder
    count = load_dataset(f"folder:{tmp_path / 'rec'}", "train", bin_mode="count")
    assert FrameData(count.samples, count.stream, mode="cache").cache.folder not in (data.cache.folder,
                                                                                     changed.cache.folder)


def test_streaming_batches_equal_the_in_memory_batches_with_and_without_workers(tmp_path, rng):
    _folder(tmp_path, rng)
    ds = load_dataset(f"folder:{tmp_path}", "train")
    from stdl_edge.data import materialize

    memory = materialize(ds)
    order = torch.tensor([3, 0, 7, 1, 5, 2, 6, 4])
    expected = list(memory.batches(3, order))
    for mode, workers in (("stream", 0), ("cache", 0), ("stream", 2), ("cache", 1)):
        got = list(FrameData(ds.samples, ds.stream, mode=mode, workers=workers).batches(3, order))
        assert len(got) == len(expected)
        for (x, y), (ex, ey) in zip(got, expected):
            assert x.dtype == torch.float32 and x.shape == ex.shape  # (T, B, C, H, W)
            assert torch.equal(x, ex) and torch.equal(y, ey)


def test_training_on_a_folder_through_the_cache_matches_training_in_memory(tmp_path, rng):
    from stdl_edge.stdl.trainer import TrainConfig, train

    _folder(tmp_path / "rec", rng)
    base = dict(dataset=f"folder:{tmp_path / 'rec'}", epochs=1, batch_size=4, subnets=2, device="cpu", steps=4)
    runs = {mode: train(TrainConfig(**base, loader=mode), tmp_path / mode) for mode in ("memory", "cache", "stream")}
    losses = {mode: r.history[0]["train_loss"] for mode, r in runs.items()}
    assert losses["memory"] == losses["cache"] == losses["stream"]
    from stdl_edge.artifact import RunFolder

    folder = RunFolder(tmp_path / "cache")
    assert folder.dataset() == f"folder:{(tmp_path / 'rec').resolve()}"


def test_augmentation_applies_to_training_samples_only_and_is_seeded(tmp_path, rng):
    from stdl_edge.stdl.trainer import TrainConfig, load_split

    _folder(tmp_path, rng, n=400)
    cfg = TrainConfig(dataset=f"folder:{tmp_path}", augment="DropEvent p=0.5; SpatialJitter var_x=2 var_y=2",
                      seed=3, steps=8)
    assert cfg.loader == "auto" and [a["name"] for a in cfg.augment] == ["DropEvent", "SpatialJitter"]
    train, _ = load_split(cfg, "train")
    test, _ = load_split(cfg, "test")
    plain = load_dataset(cfg.dataset, "train", num_steps=8)
    order = torch.arange(len(train))
    x0, _ = next(train.batches(len(train), order, epoch=0))
    again, _ = next(train.batches(len(train), order, epoch=0))
    x1, _ = next(train.batches(len(train), order, epoch=1))
    ref, _ = next(FrameData(plain.samples, plain.stream, mode="stream").batches(len(train), order))
    assert torch.equal(x0, again) and not torch.equal(x0, x1) and not torch.equal(x0, ref)
    assert x0.sum() < 0.8 * ref.sum()  # half the events dropped
    other_seed, _ = next(load_split(cfg.replace(seed=4), "train")[0].batches(len(train), order, epoch=0))
    assert not torch.equal(x0, other_seed)
    test_plain = load_dataset(cfg.dataset, "test", num_steps=8)
    tx, _ = next(test.batches(len(test)))
    assert torch.equal(tx, next(FrameData(test_plain.samples, test_plain.stream, mode="stream").batches(len(test)))[0])


def test_a_plug_in_data_set_is_found_through_an_entry_point(monkeypatch, rng):
    import stdl_edge.datasets.plugins as plugins

    info = DatasetInfo("mypkg-set", (8, 8, 2), ("a", "b"), 10_000, 1_000, 10, 20, "a plug-in's data set")

    def build(seed, limit, progress):
        return RawData([make_events([1], [1], [5], [True]) for _ in range(20)], np.arange(20) % 2)

    builder = DatasetBuilder(info, build)
    monkeypatch.setitem(globals(), "PLUGIN_BUILDER", builder)
    ep = EntryPoint("mypkg-set", f"{__name__}:PLUGIN_BUILDER", plugins.GROUP)
    monkeypatch.setattr(plugins, "entry_points", lambda group: [ep] if group == plugins.GROUP else [])
    try:
        ds = load_dataset("mypkg-set", "train")
        assert "mypkg-set" in DATASETS and len(ds) == 16 and ds.stream.sensor_size == (8, 8, 2)
    finally:
        if "mypkg-set" in DATASETS:
            unregister_dataset("mypkg-set")
    bad = EntryPoint("broken-set", "no_such_module_xyz:thing", plugins.GROUP)
    monkeypatch.setattr(plugins, "entry_points", lambda group: [bad])
    with pytest.raises(ValueError, match="plug-in 'broken-set' .* cannot be loaded"):
        load_dataset("broken-set", "train")


# ----------------------------------------------------------------------------- bad input


def test_missing_root_and_empty_class_folder(tmp_path, rng):
    with pytest.raises(DataError, match=f"{tmp_path / 'nope'}: the folder does not exist"):
        load_dataset(f"folder:{tmp_path / 'nope'}", "train")
    _folder(tmp_path, rng)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="class folder 'empty' holds no recordings"):
        load_dataset(f"folder:{tmp_path}", "train")


def test_mixed_sensor_sizes_are_named(tmp_path, rng):
    _folder(tmp_path, rng, per_class=3)
    ev = _recording(rng, 0)
    write_events(tmp_path / "left" / "big.npz", ev, (64, 48))
    with pytest.raises(DataError, match="different sensors: .* is (32x32|64x48), .* is (64x48|32x32); pass --sensor-size"):
        load_dataset(f"folder:{tmp_path}", "train")
    assert load_dataset(f"folder:{tmp_path}", "train", sensor_size=(64, 48)).stream.sensor_size == (64, 48, 2)


def test_a_corrupt_file_is_named_and_skipped_with_skip_bad(tmp_path, rng):
    _folder(tmp_path, rng)
    bad = tmp_path / "right" / "broken.npz"
    bad.write_bytes(b"PK\x03\x04 this is not a zip archive")
    with pytest.raises(DataError, match=f"{bad}: cannot be read .*--skip-bad"):
        load_dataset(f"folder:{tmp_path}", "train")
    train = load_dataset(f"folder:{tmp_path}", "train", skip_bad=True)
    test = load_dataset(f"folder:{tmp_path}", "test", skip_bad=True)
    assert train.samples.skipped[0][0] == str(bad) and len(train.samples.skipped) == 1
    assert len(train) + len(test) == 10


def test_unknown_transform_and_bad_slicing_are_one_line_errors():
    from stdl_edge.stdl.trainer import TrainConfig

    with pytest.raises(ValueError, match="unknown transform 'Flip'; use one of .*DropEvent"):
        TrainConfig(augment="Flip p=0.5")
    with pytest.raises(ValueError, match="DropEvent has no parameter q"):
        TrainConfig(augment=[{"name": "DropEvent", "q": 1}])
    with pytest.raises(ValueError, match="--slice-by and --slice-length go together"):
        TrainConfig(slice_by="time")
    with pytest.raises(ValueError, match="--slice-overlap 10 must be"):
        Slicing("time", 10, overlap=10)
    with pytest.raises(ValueError, match="needs --loader stream"):
        TrainConfig(augment="DropEvent p=0.1", loader="cache")
