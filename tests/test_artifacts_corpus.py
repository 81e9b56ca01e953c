"""Bad-input corpus for every artifact a device or exporter reads: one line naming the file, no traceback.

Each case breaks one file of a fresh copy of a real export (run folder, ``manifest.json``,
``.onnx``, netx ``.net`` and ``export.json``, ``.nir``) and opens it the way a user does
(:func:`stdl_edge.devices.open_device`, the NIR reader); a sample runs ``stdl-edge run`` /
``export`` / ``import`` in a subprocess. Every case must raise a ``ValueError`` (or
``FileNotFoundError``) whose message is one line and names the file. ``CASES`` counts them.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Callable

import h5py
import numpy as np
import pytest
import torch

from stdl_edge.artifact import StreamInfo
from stdl_edge.devices import open_device
from stdl_edge.exporters import netx as netx_export
from stdl_edge.exporters import nir as nir_export
from stdl_edge.exporters import onnx as onnx_export
from stdl_edge.formats import nir as nirfmt
from stdl_edge.models import ModelConfig, build_model
from stdl_edge.events import make_events
from stdl_edge.stdl import build_aux_head, save_run

pytest.importorskip("onnxruntime")

STREAM = StreamInfo(sensor_size=(8, 8, 2), dt_us=1000, num_steps=4, class_names=("a", "b", "c"))


def _run(folder: Path, seed: int) -> Path:
    net = build_model(ModelConfig(input_shape=(2, 8, 8), num_classes=3, width=0.25), seed=seed).eval()
    head = build_aux_head(net, 2, 1).eval()
    return save_run(folder, net, STREAM, [(0, 2), (2, len(net.layers))], [head], {"method": "stdl"})


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> dict[str, Path]:
    """Two runs (different weights), each exported to onnx, netx and nir; never modified."""
    base = tmp_path_factory.mktemp("corpus")
    out = {}
    for name, seed in (("run", 0), ("other", 1)):
        run = _run(base / name, seed)
        onnx_export.export(run)
        netx_export.export(run)
        nir_export.export(run)
        out[name] = run
    return out


@pytest.fixture
def run(pristine, tmp_path) -> Path:
    """A fresh copy of the run folder (with its exports) to break."""
    return Path(shutil.copytree(pristine["run"], tmp_path / "run", symlinks=True))


def _refused(open_it: Callable[[], object], *names: str) -> str:
    with pytest.raises((ValueError, FileNotFoundError, IsADirectoryError, NotADirectoryError)) as info:
        open_it()
    message = str(info.value)
    assert "\n" not in message.strip(), message
    for name in names:
        assert name in message, message
    return message


def _truncate(path: Path, at: float) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * at) if at < 1 else int(at)])


def _break(path: Path, how: str) -> None:
    """Replace ``path`` by: empty, truncated (``trunc:<fraction or bytes>``), random bytes, a
    pickle, a directory."""
    if how == "missing":
        path.unlink()
    elif how == "empty":
        path.write_bytes(b"")
    elif how.startswith("trunc:"):
        _truncate(path, float(how[6:]))
    elif how == "random":
        path.write_bytes(np.random.default_rng(0).bytes(4096))
    elif how == "pickle":
        path.write_bytes(pickle.dumps({"weight": torch.zeros(3)}))
    elif how == "dir":
        path.unlink()
        path.mkdir()
    else:
        raise AssertionError(how)


BREAKS = ["missing", "empty", "trunc:8", "trunc:0.5", "trunc:0.99", "random", "dir"]

# --------------------------------------------------------------------------- run folder


@pytest.mark.parametrize("name, how", [
    (name, how)
    for name in ("model.json", "model.safetensors", "aux.safetensors") for how in BREAKS])
def test_run_folder_files(run, name, how):
    _break(run / name, how)
    _refused(lambda: open_device("torch", run), name)


@pytest.mark.parametrize("name", ["model.safetensors", "aux.safetensors"])
def test_pickle_renamed_to_safetensors(run, name):
    _break(run / name, "pickle")
    _refused(lambda: open_device("torch", run), name)


@pytest.mark.parametrize("field, value", [
    ("stream", [1, 2]),
    ("model.num_classes", "3"),
    ("model.input_shape", "2,8,8"),
    ("stream.dt_us", "1000"),
])
def test_run_record_fields(run, field, value):
    record = json.loads((run / "model.json").read_text())
    *parents, key = field.split(".")
    target = record
    for p in parents:
        target = target[p]
    target[key] = value
    (run / "model.json").write_text(json.dumps(record))
    _refused(lambda: open_device("torch", run), "model.json")


# --------------------------------------------------------------------------- manifest.json


def _edit_manifest(run: Path, edit: Callable[[dict], None]) -> Path:
    path = run / "export" / "onnx" / "manifest.json"
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))
    return path


def _set(path: str, value: object) -> Callable[[dict], None]:
    def edit(data: dict) -> None:
        *parents, key = path.split(".")
        for p in parents:
            data = data[int(p)] if isinstance(data, list) else data[p]
        data[key] = value
    return edit


def _drop(key: str) -> Callable[[dict], None]:
    return lambda data: data.pop(key)


MANIFEST_EDITS = {
    **{f"missing-{k}": _drop(k) for k in ("stream", "whole", "chain", "num_classes", "input_shape")},
    "input_shape-text": _set("input_shape", "2,8,8"),
    "input_shape-zero": _set("input_shape", [2, 0, 8]),
    "num_classes-text": _set("num_classes", "3"),
    "num_classes-list": _set("num_classes", [3]),
    "num_classes-float": _set("num_classes", 3.5),
    "num_classes-bool": _set("num_classes", True),
    "chain-object": _set("chain", {"file": "model.onnx"}),
    "chain-empty": _set("chain", []),
    "stream-list": _set("stream", [8, 8, 2]),
    "stream-dt-text": _set("stream.dt_us", "fast"),
    "whole-file-number": _set("whole.file", 5),
    "whole-layers-text": _set("whole.layers", "0-6"),
    "whole-input_shape-nested": _set("whole.input_shape", [[2, 8, 8]]),
    "whole-states-dict": _set("whole.states", {}),
    "whole-state-shape-text": lambda d: d["whole"]["states"][0].update(shape="4"),
    "chain-index-text": lambda d: d["chain"][0].update(index="0"),
    "format_version-text": _set("format_version", "1"),
    "files-list": _set("files", ["model.onnx"]),
}


@pytest.mark.parametrize("case", sorted(MANIFEST_EDITS))
def test_manifest_fields(run, case):
    _edit_manifest(run, MANIFEST_EDITS[case])
    _refused(lambda: open_device("onnxruntime", run / "export" / "onnx"), "manifest.json")


@pytest.mark.parametrize("how", ["empty", "trunc:0.5", "random", "dir"])
def test_manifest_file(run, how):
    _break(run / "export" / "onnx" / "manifest.json", how)
    _refused(lambda: open_device("onnxruntime", run / "export" / "onnx"), "manifest.json")


@pytest.mark.parametrize("where", ["parent", "absolute", "symlink"])
def test_manifest_paths_stay_inside_the_folder(run, tmp_path, where):
    folder = run / "export" / "onnx"
    outside = tmp_path / "outside"
    outside.mkdir()
    shutil.copy(folder / "model.onnx", outside / "model.onnx")  # a real model: it must still be refused
    name = {"parent": os.path.relpath(outside / "model.onnx", folder), "absolute": str(outside / "model.onnx"),
            "symlink": "link.onnx"}[where]
    if where == "symlink":
        (folder / "link.onnx").symlink_to(outside / "model.onnx")
    _edit_manifest(run, _set("whole.file", name))
    assert "only reads files inside its own folder" in _refused(lambda: open_device("onnxruntime", folder),
                                                                 "manifest.json", name)


# --------------------------------------------------------------------------- .onnx


@pytest.mark.parametrize("how", ["empty", "trunc:8", "trunc:100", "trunc:0.5", "trunc:0.99", "random"])
def test_onnx_file(run, how):
    path = run / "export" / "onnx" / "model.onnx"
    _break(path, how)
    _refused(lambda: open_device("onnxruntime", path), "model.onnx")


def test_onnx_model_that_is_not_ours(tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y])
    path = tmp_path / "relu.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), path)
    _refused(lambda: open_device("onnxruntime", path), "relu.onnx", "metadata")


# --------------------------------------------------------------------------- .net


def _h5(edit: Callable[[h5py.File], None]) -> Callable[[Path], None]:
    def apply(path: Path) -> None:
        with h5py.File(path, "r+") as f:
            edit(f)
    return apply


def _replace(key: str, value: object) -> Callable[[Path], None]:
    def edit(f: h5py.File) -> None:
        del f[key]
        f[key] = value
    return _h5(edit)


def _delete(key: str) -> Callable[[Path], None]:
    return _h5(lambda f: f.__delitem__(key))


NETX_EDITS = {
    "conv-stride-0": _replace("layer/1/stride", np.array([0, 0])),
    "conv-groups-0": _replace("layer/1/groups", np.int64(0)),
    "conv-dilation-0": _replace("layer/1/dilation", np.array([0, 0])),
    "conv-padding-negative": _replace("layer/1/padding", np.array([-3, -3])),
    "conv-no-shape": _delete("layer/1/shape"),
    "input-no-shape": _delete("layer/0/shape"),
    "no-vThMant": _delete("layer/1/neuron/vThMant"),
    "no-type": _delete("layer/1/type"),
    "conv-no-weight": _delete("layer/1/weight"),
    "conv-weight-2d": _replace("layer/1/weight", np.ones((4, 18), dtype=np.int16)),
    "conv-weight-group": _h5(lambda f: (f.__delitem__("layer/1/weight"), f.create_group("layer/1/weight"))),
    "huge-shape": _replace("layer/0/shape", np.array([2, 1 << 20, 1 << 20])),
    "shape-text": _replace("layer/0/shape", "2,8,8"),
    "dense-weight-scalar": _replace("layer/5/weight", np.int16(2)),
    "type-unknown": _replace("layer/1/type", np.array([b"pool"])),
    "layer-key-text": _h5(lambda f: f.move("layer/2", "layer/two")),
    "layer-not-group": _h5(lambda f: (f.__delitem__("layer"), f.create_dataset("layer", data=np.zeros(3)))),
    "no-layer": _delete("layer"),
    "format_version-text": _h5(lambda f: f.attrs.__setitem__("format_version", "two")),
    "dt_us-text": _h5(lambda f: f.attrs.__setitem__("dt_us", "fast")),
    "sensor_size-text": _h5(lambda f: f.attrs.__setitem__("sensor_size", "big")),
    "decay-out-of-range": _replace("layer/1/neuron/vDecay", np.int64(5000)),
}


@pytest.mark.parametrize("case", sorted(NETX_EDITS))
def test_netx_fields(run, case):
    path = run / "export" / "netx" / "model.net"
    NETX_EDITS[case](path)
    _refused(lambda: open_device("loihi-sim", path), "model.net")


@pytest.mark.parametrize("how", ["empty", "trunc:8", "trunc:512", "trunc:0.5", "trunc:0.99", "random", "dir"])
def test_netx_file(run, how):
    path = run / "export" / "netx" / "model.net"
    _break(path, how)
    _refused(lambda: open_device("loihi-sim", path), "model.net")


# --------------------------------------------------------------------------- export folders: one export each


@pytest.mark.parametrize("fmt, device, name", [("onnx", "onnxruntime", "subnet0.onnx"),
                                               ("onnx", "onnxruntime", "model.onnx"),
                                               ("netx", "loihi-sim", "subnet0.net"),
                                               ("netx", "loihi-sim", "model.net")])
def test_a_folder_mixing_two_exports_is_refused(run, pristine, fmt, device, name):
    shutil.copy(pristine["other"] / "export" / fmt / name, run / "export" / fmt / name)
    assert "mixes files" in _refused(lambda: open_device(device, run / "export" / fmt), name, "re-export")


@pytest.mark.parametrize("fmt, device, name", [("onnx", "onnxruntime", "aux0.onnx"),
                                               ("netx", "loihi-sim", "subnet1.net")])
def test_a_folder_missing_a_listed_file_is_refused(run, fmt, device, name):
    (run / "export" / fmt / name).unlink()
    assert "incomplete" in _refused(lambda: open_device(device, run / "export" / fmt), name, "re-export")


@pytest.mark.parametrize("how", ["empty", "random", "trunc:0.5"])
def test_netx_export_record(run, how):
    _break(run / "export" / "netx" / "export.json", how)
    _refused(lambda: open_device("loihi-sim", run / "export" / "netx"), "export.json")


def test_a_file_the_record_does_not_list_is_ignored(run):
    for fmt, device in (("onnx", "onnxruntime"), ("netx", "loihi-sim")):
        (run / "export" / fmt / "notes.txt").write_text("mine")
        open_device(device, run / "export" / fmt)


def test_each_export_records_a_new_id(pristine, tmp_path):
    run = Path(shutil.copytree(pristine["run"], tmp_path / "run"))
    ids = []
    for _ in range(2):
        for fmt, exporter, record in (("onnx", onnx_export, "manifest.json"), ("netx", netx_export, "export.json"),
                                      ("nir", nir_export, "manifest.json")):
            exporter.export(run)
            ids.append(json.loads((run / "export" / fmt / record).read_text())["export_id"])
    assert len(set(ids)) == 6 and len({i.split("-")[0] for i in ids}) == 1  # one model, six exports


# --------------------------------------------------------------------------- .nir


@pytest.mark.parametrize("how", ["missing", "empty", "trunc:8", "trunc:0.5", "random", "dir"])
def test_nir_file(run, how):
    pytest.importorskip("nir")
    path = run / "export" / "nir" / "model.nir"
    _break(path, how)
    _refused(lambda: nirfmt.load(path), "model.nir")


# --------------------------------------------------------------------------- the CLI: exit 2, one line


def _cli(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", "from stdl_edge.cli import main; main()", *argv],
                          capture_output=True, text=True, timeout=180)


@pytest.mark.parametrize("case", ["netx-stride-0", "manifest-outside", "onnx-random", "safetensors-pickle",
                                  "export-truncated-weights", "import-random-nir"])
def test_cli_refuses_in_one_line(run, tmp_path, case):
    rng = np.random.default_rng(0)
    events = tmp_path / "ev.npy"
    np.save(events, make_events(rng.integers(0, 8, 500), rng.integers(0, 8, 500), np.sort(rng.integers(0, 20000, 500)),
                                rng.integers(0, 2, 500)))
    if case == "netx-stride-0":
        art, name = run / "export" / "netx" / "model.net", "model.net"
        NETX_EDITS["conv-stride-0"](art)
        argv = ["run", str(art), "--events", str(events), "--sensor", "8,8"]
    elif case == "manifest-outside":
        art, name = run / "export" / "onnx", "manifest.json"
        _edit_manifest(run, _set("whole.file", "../../outside/model.onnx"))
        argv = ["run", str(art), "--events", str(events), "--sensor", "8,8"]
    elif case == "onnx-random":
        art, name = run / "export" / "onnx" / "model.onnx", "model.onnx"
        _break(art, "random")
        argv = ["run", str(art), "--events", str(events), "--sensor", "8,8"]
    elif case == "safetensors-pickle":
        name = "model.safetensors"
        _break(run / name, "pickle")
        argv = ["run", str(run), "--events", str(events), "--sensor", "8,8"]
    elif case == "export-truncated-weights":
        name = "model.safetensors"
        _break(run / name, "trunc:0.5")
        argv = ["export", str(run), "--to", "onnx"]
    else:
        name = "bad.nir"
        (tmp_path / name).write_bytes(rng.bytes(300))
        argv = ["import", str(tmp_path / name), "--out", str(tmp_path / "imported")]
    proc = _cli(*argv)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and name in lines[0], proc.stderr
