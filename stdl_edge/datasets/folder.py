"""``folder:PATH``: a data set made of the user's own recordings, one subfolder per class.

::

    PATH/<class>/<recording>.<ext>                          split: seeded, stratified (20 % test)
    PATH/train/<class>/...  and  PATH/test/<class>/...      split: these two folders (official)

``<ext>`` is any file format :mod:`stdl_edge.sources` reads (npy, npz, HDF5, CSV, AEDAT4, EVT2/3
``.raw``, DAT, N-MNIST ``.bin``); other files are ignored. Classes are the subfolder names,
sorted (label = position). The sensor comes from the files (every file must agree) or from
``sensor_size=(W, H)`` (``--sensor-size``). Each recording's time 0 is its first event, so files
with camera-clock timestamps bin like any other.

Opening scans every file once (read fully, validated; events, first and last time, sensor) and
keeps the result in the cache (:func:`.cache.cached_index`), keyed by each file's path, size and
modification time, so a changed file is scanned again. A file that cannot be read stops the
scan with one line naming it; with ``skip_bad=True`` (``--skip-bad``) it is left out and counted
in :attr:`FolderSamples.skipped`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..events import EVENT_DTYPE, SensorSize
from .cache import cached_index
from .samples import DataError, Samples, digest

PREFIX = "folder:"
SPLIT_FOLDERS = ("train", "test")
TEST_FRACTION = 0.2
SPLIT_SEED = 0


def is_folder_name(name: str) -> bool:
    return name.startswith(PREFIX)


def canonical(name: str) -> str:
    """``folder:PATH`` with PATH absolute (what a run records, so verify works from any directory)."""
    path = name[len(PREFIX):]
    if not path:
        raise DataError("--dataset folder:PATH needs the folder, e.g. folder:recordings/")
    return PREFIX + str(Path(path).expanduser().resolve())


def event_suffixes() -> set[str]:
    """File suffixes the event readers take (``.npy``, ``.raw``, ...)."""
    from ..sources import FORMATS

    return {s for f in FORMATS.values() if f.claims is None for s in f.suffixes}


def _read(path: Path, sensor_size: tuple[int, int] | None) -> tuple[np.ndarray, SensorSize]:
    from ..sources import open_source, read_all

    src = open_source(path, sensor_size=sensor_size)
    return read_all(src), src.native_size


def _class_files(root: Path, suffixes: set[str]) -> dict[str, list[Path]]:
    """``{class: sorted recordings}`` under ``root``; an empty class folder is an error."""
    if not root.is_dir():
        raise DataError(f"{root}: the folder does not exist; a folder data set holds one subfolder per class "
                        "(optionally inside train/ and test/)")
    classes = {}
    for sub in sorted(p for p in root.iterdir() if p.is_dir()):
        files = sorted(f for f in sub.rglob("*") if f.is_file() and f.suffix.lower() in suffixes)
        if not files:
            raise DataError(f"{sub}: class folder '{sub.name}' holds no recordings (files ending "
                            f"{', '.join(sorted(suffixes))}); add some or remove the folder")
        classes[sub.name] = files
    if not classes:
        raise DataError(f"{root}: no class subfolders; put each class's recordings in {root}/<class name>/")
    return classes


def _scan(files: list[Path], sensor_size: tuple[int, int] | None, skip_bad: bool) -> dict[str, Any]:
    """Per readable file: events, first and last time (us), sensor; and the bad files with the reason."""
    good, bad = {}, {}
    for f in files:
        try:
            ev, sensor = _read(f, sensor_size)
        except (ValueError, OSError) as e:
            reason = str(e).splitlines()[0] if str(e) else type(e).__name__
            if not skip_bad:
                raise DataError(f"{f}: cannot be read ({reason}); fix or remove the file, or pass --skip-bad "
                                "to leave unreadable recordings out") from None
            bad[str(f)] = reason
            continue
        if len(ev) == 0:
            if not skip_bad:
                raise DataError(f"{f}: holds no events; remove it, or pass --skip-bad to leave it out")
            bad[str(f)] = "no events"
            continue
        good[str(f)] = {"events": len(ev), "t0": int(ev["t"][0]), "t1": int(ev["t"][-1]),
                        "sensor": [int(sensor.width), int(sensor.height)]}
    return {"good": good, "bad": bad}


class FolderSamples(Samples):
    """One split (``train`` or ``test``) of ``folder:PATH`` (see the module docstring).

    skipped: ``[(file, reason)]`` of the files left out with ``skip_bad``.
    """

    def __init__(self, name: str, split: str, *, sensor_size: tuple[int, int] | None = None,
                 skip_bad: bool = False) -> None:
        if split not in SPLIT_FOLDERS:
            raise DataError(f"split {split!r} is unknown; use train or test")
        name = canonical(name)
        self.root = Path(name[len(PREFIX):])
        self.name = f"{name}:{split}"
        suffixes = event_suffixes()
        official = all((self.root / s).is_dir() for s in SPLIT_FOLDERS)
        if official:
            per_split = {s: _class_files(self.root / s, suffixes) for s in SPLIT_FOLDERS}
        else:
            per_split = {"all": _class_files(self.root, suffixes)}
        self.official_split = official
        self.class_names = tuple(sorted({c for files in per_split.values() for c in files}))
        label_of = {c: k for k, c in enumerate(self.class_names)}
        listed = [(s, f, label_of[c]) for s, files in per_split.items() for c, fs in files.items() for f in fs]
        stats = [(str(f), f.stat().st_size, f.stat().st_mtime_ns) for _, f, _ in listed]
        flag = None if sensor_size is None else [int(v) for v in sensor_size[:2]]
        index = cached_index("folder", [stats, flag, skip_bad],
                             lambda: _scan([f for _, f, _ in listed], flag, skip_bad))
        self.skipped = sorted(index["bad"].items())
        kept = [(s, f, y) for s, f, y in listed if str(f) in index["good"]]
        sensors = {tuple(index["good"][str(f)]["sensor"]): f for _, f, _ in kept}
        if len(sensors) > 1:
            (a, fa), (b, fb) = list(sensors.items())[:2]
            raise DataError(f"{self.root}: recordings come from different sensors: {fa} is {a[0]}x{a[1]}, {fb} is "
                            f"{b[0]}x{b[1]}; pass --sensor-size W,H (the largest) to read them all as one sensor")
        if not kept:
            raise DataError(f"{self.root}: no readable recordings ({len(self.skipped)} skipped)")
        self.sensor_size = SensorSize(*next(iter(sensors)), 2)
        labels = np.array([y for _, _, y in kept], dtype=np.int64)
        if official:
            pick = [k for k, (s, _, _) in enumerate(kept) if s == split]
        else:
            from ..data import stratified_split

            is_test = stratified_split(labels, SPLIT_SEED, TEST_FRACTION)
            pick = np.flatnonzero(is_test == (split == "test")).tolist()
        if not pick:
            raise DataError(f"{self.root}: the {split} split has no recordings")
        self._files = [kept[k][1] for k in pick]
        self._info = [index["good"][str(f)] for f in self._files]
        self.labels = labels[pick]
        self.is_test = np.full(len(pick), split == "test")
        self.duration_us = max(int(m["t1"] - m["t0"]) + 1 for m in self._info)
        self._sensor_flag = flag
        self._key = digest([[stats[k] for k, (_, f, _) in enumerate(listed) if str(f) in index["good"]],
                            flag, split, official])

    def events(self, i: int) -> np.ndarray:
        i = self.check_index(i)
        f = self._files[i]
        try:
            ev, _ = _read(f, self._sensor_flag or tuple(self.sensor_size[:2]))
        except (ValueError, OSError) as e:
            raise DataError(f"{f}: cannot be read ({str(e).splitlines()[0] if str(e) else type(e).__name__}); "
                            "it changed since the scan: fix or remove it") from None
        out = np.empty(len(ev), EVENT_DTYPE)
        out[:] = ev
        out["t"] -= self._info[i]["t0"]
        return out

    def where(self, i: int) -> str:
        return str(self._files[self.check_index(i)])

    def num_events(self) -> np.ndarray:
        return np.array([m["events"] for m in self._info], dtype=np.int64)

    def fingerprint(self) -> str:
        return self._key
