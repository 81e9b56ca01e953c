"""stdl_edge.api: the top-level names load lazily and the thin functions check their input.

(docs/api.md runs every entry point end to end: tests/test_api_docs.py.)
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

import stdl_edge
from stdl_edge import api
from stdl_edge.artifact import StreamInfo, save_model
from stdl_edge.models import ModelConfig, build_model
from stdl_edge.registry import UnknownNameError


def test_import_stdl_edge_is_light_and_its_names_load_on_use(tmp_path):
    code = ("import json, sys\n"
            "import stdl_edge\n"
            "before = 'torch' in sys.modules\n"
            "from stdl_edge import EVENT_DTYPE, CubaParams, build_model, export, open_device, run_events, train\n"
            "from stdl_edge import load_run, verify\n"
            "import stdl_edge.api as api\n"
            "print(json.dumps([before, train is api.train, verify is api.verify, 'train' in dir(stdl_edge),\n"
            "                  sorted(m for m in ('stdl_edge.devices', 'stdl_edge.exporters') if m in sys.modules)]))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == [False, True, True, True, []]

    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        stdl_edge.nope  # noqa: B018


@pytest.fixture
def run_folder(tmp_path):
    model = build_model(ModelConfig(input_shape=(2, 8, 8), num_classes=2, width=0.25), seed=0)
    return save_model(tmp_path / "run", model, StreamInfo((8, 8, 2), 1000, 4, class_names=("a", "b")))


def test_train_merges_options_into_the_config(tmp_path, monkeypatch):
    from stdl_edge.stdl import trainer

    seen = {}
    monkeypatch.setattr(trainer, "train", lambda config, out, **kw: seen.update(config=config, out=out, **kw))
    api.train(tmp_path / "a", dataset="shapes-dvs", epochs=2)
    assert seen["config"] == trainer.TrainConfig(dataset="shapes-dvs", epochs=2) and seen["out"] == tmp_path / "a"
    api.train(tmp_path / "b", trainer.TrainConfig(method="bptt", epochs=3), epochs=5, resume=True)
    assert seen["config"] == trainer.TrainConfig(method="bptt", epochs=5) and seen["resume"] is True
    with pytest.raises(ValueError, match="unknown training option.*nope"):
        api.train(tmp_path / "c", nope=1)


def test_export_names_the_missing_folder_and_the_unknown_exporter(tmp_path, run_folder):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        api.export(tmp_path / "nope", to="onnx")
    with pytest.raises(UnknownNameError, match="unknown exporter 'nope'; available: onnx, netx"):
        api.export(run_folder, to="nope")


def test_open_device_and_run_events_on_an_event_array(run_folder, rng):
    from stdl_edge.sources import open_source
    from stdl_edge.events import make_events

    dev = api.open_device(run_folder)
    assert dev.name == "torch"
    n = 500
    events = make_events(rng.integers(0, 16, n), rng.integers(0, 16, n), np.sort(rng.integers(0, 8000, n)),
                         rng.integers(0, 2, n))  # a 16x16 sensor: downsampled by 2 to the model's 8x8
    result = api.run_events(dev, events, sensor_size=(16, 16), window_steps=4)
    assert result.mode == "window" and [p["window"] for p in result.predictions] == [0, 1]
    assert result.events == n
    with pytest.raises(ValueError, match="sensor_size= is for events that are not opened yet"):
        api.run_events(dev, open_source(events, sensor_size=(16, 16), fit=(8, 8)), sensor_size=(16, 16))


def test_check_target_names_each_layer_and_export_refuses_before_writing(tmp_path, run_folder):
    from stdl_edge.targets import TargetError

    found = api.check_target(run_folder, "if-chip")
    assert "layer 0.conv: neuron has voltage_decay=0.5 (a leak); if-chip runs integrate-and-fire neurons " \
           "(voltage_decay=0, current_decay=1)" in found
    for to in ("onnx", "netx", "nir"):
        with pytest.raises(TargetError, match=r"breaks \d+ if-chip constraint\(s\): layer 0\.conv: neuron has"):
            api.export(run_folder, to=to, target="if-chip")
    assert not (run_folder / "export").exists()
    ok = save_model(tmp_path / "if", build_model(ModelConfig(arch="if-cnn", input_shape=(2, 8, 8), num_classes=2,
                                                             width=0.25), seed=0), StreamInfo((8, 8, 2), 1000, 4))
    assert api.check_target(ok, "if-chip") == []
    files = api.export(ok, to="nir", target="if-chip")
    assert json.loads(files[-1].read_text())["target"] == "if-chip"
    assert [p.name for p in api.export(ok, to="onnx", target="if-chip")][-1] == "manifest.json"
    with pytest.raises(ValueError, match="unknown target 'nope'; presets: if-chip"):
        api.check_target(ok, "nope")


def test_import_nir_writes_a_run_folder_like_the_command(tmp_path, run_folder):
    pytest.importorskip("nir")
    model = api.load_run(run_folder).model
    graph = api.export(run_folder, to="nir")[0]
    folder = api.import_nir(graph, tmp_path / "imported", class_names=["x", "y"], num_steps=8)
    run = api.load_run(folder)
    assert run.stream.class_names == ("x", "y") and run.stream.num_steps == 8 and run.stream.dt_us == 1000
    frames = (torch.rand(4, 3, 2, 8, 8, generator=torch.Generator().manual_seed(0)) < 0.3).float()
    with torch.no_grad():
        assert torch.allclose(run.model(frames), model(frames), rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="3 class names for 2 outputs"):
        api.import_nir(graph, tmp_path / "bad", class_names=["x", "y", "z"])
