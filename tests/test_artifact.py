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


def _edit_record(folder, edit) -> str:
    """Save a bare run, change its model.json with ``edit(record)``; the one line load() gives."""
    save_model(folder, build_model(ModelConfig(input_shape=(2, 16, 16))), STREAM)
    record = json.loads((folder / "model.json").read_text())
    edited = edit(record)
    (folder / "model.json").write_text(json.dumps(record if edited is None else edited))
    with pytest.raises(ValueError) as info:
        RunFolder(folder).load()
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{folder / 'model.json'}")
    return message[len(str(folder / "model.json")):]


def _drop(*keys: str):
    """An edit removing ``record[keys[0]]...[keys[-1]]``."""
    def edit(record):
        for key in keys[:-1]:
            record = record[key]
        del record[keys[-1]]
    return edit


BAD_RECORDS = [  # (edit of model.json, what load() says after the file name)
    (lambda r: r["model"].update(input_shape="2,16,16"),
     ": model.input_shape '2,16,16' must be a list of 3 whole numbers"),
    (lambda r: r["model"].update(input_shape=[2, "16", 16]), ": model.input_shape[1] '16' must be a whole number (it is text)"),
    (lambda r: r["model"].update(input_shape=[2, 16]), ": model.input_shape [2, 16] must be a list of 3 whole numbers"),
    (lambda r: r["model"].update(input_shape=[2, 16, 0]), ": input_shape=(2, 16, 0) must be (channels, height, width), all >= 1"),
    (lambda r: r["model"].update(num_classes="ten"), ": model.num_classes 'ten' must be a whole number (it is text)"),
    (lambda r: r["model"].update(num_classes=2.5), ": model.num_classes 2.5 must be a whole number"),
    (lambda r: r["model"].update(width=None), ": model.width None must be a finite number"),
    (lambda r: r["model"].update(batchnorm="no"), ": model.batchnorm 'no' must be true or false"),
    (lambda r: r["model"].update(arch=["dvs-cnn"]), ": model.arch ['dvs-cnn'] must be text"),
    (lambda r: r["model"].update(depth=3), ": model has unknown field(s) 'depth'; known: arch, input_shape"),
    (_drop("model", "input_shape"), ": model has no 'input_shape' entry"),
    (lambda r: r["model"]["neuron"].update(threshold="1.0"), ": model.neuron.threshold '1.0' must be a finite number"),
    (lambda r: r["model"]["neuron"].update(voltage_decay=float("nan")), ": model.neuron.voltage_decay nan must be a finite"),
    (lambda r: r["model"]["neuron"].update(voltage_decay=2), ": CubaParams.voltage_decay=2.0 is outside [0, 1]"),
    (lambda r: r["model"]["neuron"].update(detach_reset=0), ": model.neuron.detach_reset 0 must be true or false"),
    (lambda r: r["model"].update(neuron=[1.0]), ": model.neuron must be a table of fields ({...}), not list [1.0]"),
    (lambda r: r.update(model="dvs-cnn"), ": model must be a table of fields ({...}), not str 'dvs-cnn'"),
    (lambda r: r.update(stream=[16, 16, 2]), ": stream must be a table of fields ({...}), not list [16, 16, 2]"),
    (_drop("stream"), ": it has no 'stream' entry; train the run again or restore its files"),
    (_drop("model"), ": it has no 'model' entry"),
    (lambda r: r["stream"].update(sensor_size=[16, 16]), ": stream.sensor_size [16, 16] must be a list of 3 whole numbers"),
    (lambda r: r["stream"].update(dt_us="10 ms"), ": stream.dt_us '10 ms' must be a whole number >= 1 (it is text)"),
    (lambda r: r["stream"].update(dt_us=0.5), ": stream.dt_us 0.5 must be a whole number >= 1"),
    (lambda r: r["stream"].update(num_steps=float("inf")), ": stream.num_steps inf must be a whole number >= 1"),
    (lambda r: r["stream"].update(bin_mode=1), ": stream.bin_mode 1 must be text"),
    (lambda r: r["stream"].update(bin_mode="max"), ": binning mode 'max' is unknown"),
    (lambda r: r["stream"].update(class_names="abc"), ": stream.class_names 'abc' must be a list of text"),
    (_drop("stream", "dt_us"), ": stream has no 'dt_us' entry"),
    (lambda r: r.update(sha256=["x"]), ": sha256 must be a table of fields"),
    (lambda r: r.update(stdl={"boundaries": [[0, "2"]], "aux_heads": []}), ": stdl.boundaries[0][1] '2' must be a whole"),
    (lambda r: r.update(stdl={"boundaries": [[0, 2], [2, 6]], "aux_heads": []}),
     ": it lists 2 subnetworks but 0 auxiliary heads"),
    (lambda r: r.update(stdl={"aux_heads": []}), ": it has no 'boundaries' entry"),
    (lambda r: r.update(stdl=[1]), ": stdl must be a table of fields"),
    (lambda r: [r], ": it holds list, not a table of fields; train the run again or restore its files"),
]


@pytest.mark.parametrize("edit, message", BAD_RECORDS, ids=[m[2:40] for _, m in BAD_RECORDS])
def test_a_model_json_field_of_the_wrong_type_is_one_line_naming_it(tmp_path, edit, message):
    assert _edit_record(tmp_path, edit).startswith(message)


def test_from_dict_names_the_field_without_a_file():
    from stdl_edge.neuron import CubaParams

    with pytest.raises(ValueError, match=r"^model\.num_classes 'ten' must be a whole number"):
        ModelConfig.from_dict({**ModelConfig().to_dict(), "num_classes": "ten"})
    with pytest.raises(ValueError, match=r"^stream\.sensor_size\[0\] 1\.5 must be a whole number >= 1$"):
        StreamInfo.from_dict({**STREAM.to_dict(), "sensor_size": [1.5, 2, 2]})
    with pytest.raises(ValueError, match=r"^neuron has unknown field\(s\) 'tau'"):
        CubaParams.from_dict({"tau": 2})
    assert CubaParams.from_dict({"threshold": None}).threshold == float("inf")
    assert StreamInfo.from_dict(STREAM.to_dict()) == STREAM


def test_a_run_folder_records_the_digest_of_its_weights(tmp_path):
    save_model(tmp_path / "a", build_model(ModelConfig(input_shape=(2, 16, 16)), seed=1), STREAM)
    save_model(tmp_path / "b", build_model(ModelConfig(input_shape=(2, 16, 16)), seed=2), STREAM)
    assert set(read_json(tmp_path / "a" / "model.json")["sha256"]) == {"model.safetensors"}
    (tmp_path / "a" / "model.safetensors").write_bytes((tmp_path / "b" / "model.safetensors").read_bytes())
    with pytest.raises(ValueError, match="model.safetensors is not the file its record lists .*copied in from "
                                         "another run; train the run again or restore its files$"):
        RunFolder(tmp_path / "a").load()
    record = read_json(tmp_path / "a" / "model.json")
    del record["sha256"]  # a run folder written before the digests: loaded as before
    write_json(tmp_path / "a" / "model.json", record)
    RunFolder(tmp_path / "a").load()
