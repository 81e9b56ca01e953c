"""Saving and loading models: safetensors + JSON, atomic, clear errors on bad files."""

from __future__ import annotations

import json

import pytest
import torch

from stdl_edge.artifact import RunFolder, StreamInfo, save_model
from stdl_edge.io import atomic_path, read_json, write_json
from stdl_edge.models import ModelConfig, build_model

STREAM = StreamInfo(sensor_size=(16, 16, 2), dt_us=10_000, num_steps=8, class_names=tuple("abcdefghij"))


def test_save_load_round_trip_gives_identical_outputs(tmp_path):
    net = build_model(ModelConfig(input_shape=(2, 16, 16), batchnorm=True), seed=3)
    net.eval()
    save_model(tmp_path, net, STREAM, extra={"note": "x"})
    run = RunFolder(tmp_path).load()
    loaded, stream = run.model, run.stream
    assert stream == STREAM
    x = (torch.rand(5, 2, 2, 16, 16) < 0.3).float()
    assert torch.equal(net(x), loaded(x))
    assert read_json(tmp_path / "model.json")["note"] == "x"


def test_not_a_run_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a stdl-edge run folder"):
        RunFolder(tmp_path).load()


def test_truncated_weights_are_reported(tmp_path):
    save_model(tmp_path, build_model(ModelConfig(input_shape=(2, 16, 16))), STREAM)
    data = (tmp_path / "model.safetensors").read_bytes()
    (tmp_path / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="corrupt or truncated"):
        RunFolder(tmp_path).load()


def test_corrupt_json_is_reported(tmp_path):
    (tmp_path / "model.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        RunFolder(tmp_path).load()


def test_weights_of_another_model_are_rejected(tmp_path):
    save_model(tmp_path, build_model(ModelConfig(input_shape=(2, 16, 16))), STREAM)
    record = json.loads((tmp_path / "model.json").read_text())
    record["model"]["width"] = 0.5
    (tmp_path / "model.json").write_text(json.dumps(record))
    with pytest.raises((ValueError, RuntimeError), match="size mismatch|does not fit"):
        RunFolder(tmp_path).load()


def test_atomic_write_leaves_old_file_on_failure(tmp_path):
    target = tmp_path / "a.json"
    write_json(target, {"v": 1})
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash mid-write")
    assert read_json(target) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]
