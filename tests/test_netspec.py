"""Models from a config: layer lists in TOML/JSON and Python, one line for a layer that does not
fit, dropout, the zoo as specs, model plug-ins through entry points; a config-defined model
trains, exports and verifies."""

from __future__ import annotations

import importlib.metadata
import json
import math
import textwrap

import pytest
import torch

import stdl_edge
from stdl_edge import models
from stdl_edge.artifact import RunFolder, StreamInfo
from stdl_edge.cli.train import read_config_file
from stdl_edge.data import TensorData
from stdl_edge.layerspec import build_layer, layer_spec
from stdl_edge.models import ModelConfig, build_model, resolve_model
from stdl_edge.netspec import (Conv, Dense, Dropout, Flatten, Pool, Readout, ResBlock, build_layers, parse_specs,
                               read_model_file, spec_dict)
from stdl_edge.neuron import CubaParams
from stdl_edge.stdl.config import TrainConfig

H = 8
STREAM = StreamInfo((H, H, 2), 1000, 3, class_names=("a", "b", "c"))
SPECS = [Conv(4, stride=2), Pool(2, "sum"), Flatten(), Dropout(0.2), Dense(16, bias=True), Readout()]
TOML = """
[[layers]]
kind = "conv"
channels = 4
stride = 2

[[layers]]
kind = "pool"
kernel = 2
mode = "sum"

[[layers]]
kind = "flatten"

[[layers]]
kind = "dropout"
p = 0.2

[[layers]]
kind = "dense"
features = 16
bias = true

[[layers]]
kind = "readout"
"""


def _data(n: int, seed: int) -> TensorData:
    g = torch.Generator().manual_seed(seed)
    return TensorData((torch.rand(n, STREAM.num_steps, 2, H, H, generator=g) < 0.3).to(torch.uint8),
                      torch.arange(n) % 3)


def test_toml_json_and_python_give_the_same_model(tmp_path):
    (tmp_path / "net.toml").write_text(TOML)
    (tmp_path / "net.json").write_text(json.dumps({"layers": [spec_dict(s) for s in SPECS]}))
    from_toml, from_json = read_model_file(tmp_path / "net.toml"), read_model_file(tmp_path / "net.json")
    assert from_toml == from_json == [spec_dict(s) for s in SPECS]
    base = ModelConfig(input_shape=(2, H, H), num_classes=3)
    nets = [build_model(resolve_model("custom", base, layers), seed=5) for layers in (from_toml, SPECS)]
    assert nets[0].layer_names() == ["0.conv", "1.sumpool", "2.flatten", "3.dense", "4.readout"]
    for a, b in zip(nets[0].state_dict().values(), nets[1].state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert nets[0].layers[3].dropout == 0.2 and nets[0].layers[0].dropout == 0.0


def test_zoo_models_are_layer_specs_built_by_the_one_builder():
    cfg = ModelConfig(arch="vgg11", input_shape=(2, 16, 16), num_classes=5, width=0.125)
    specs = models.ARCHS["vgg11"](cfg)
    assert all(type(s).__name__ in ("Conv", "Pool", "Flatten", "Dense", "Readout") for s in specs)
    torch.manual_seed(0)
    built = build_layers(specs, cfg.input_shape, cfg.num_classes, cfg.neuron)
    zoo = build_model(cfg)
    assert [layer.kind for layer in built] == [layer.kind for layer in zoo.layers]
    assert [layer.out_shape for layer in built] == [layer.out_shape for layer in zoo.layers]
    # the resnet honours batchnorm=False (each conv gets a bias instead)
    res = build_model(ModelConfig(arch="resnet", input_shape=(2, 8, 8), num_classes=3, width=0.0625, batchnorm=False))
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in res.modules())


@pytest.mark.parametrize("specs, message", [
    ([Conv(4, kernel=5, stride=1, padding=0), Conv(4, kernel=5, padding=0), Flatten(), Readout()],
     r"model layers\[1\] \(conv\) does not fit its input \(4, 4, 4\): kernel 5, stride 1 and padding 0 give a "
     r"0x0 map"),
    ([Conv(4), Dense(8), Readout()],
     r"model layers\[1\] \(dense\) does not fit its input \(4, 8, 8\): it reads a flat vector; put a flatten"),
    ([Conv(4), Pool(3), Flatten(), Readout()],
     r"model layers\[1\] \(pool\) does not fit its input \(4, 8, 8\): kernel 3 does not divide the 8x8 map"),
    ([Flatten(), Conv(4), Readout()], r"model layers\[1\] \(conv\) does not fit its input \(128,\): it reads"),
    ([Flatten(), Readout(classes=10)],
     r"model layers\[1\] \(readout\) gives 10 classes; the data set has 3: leave classes out or set it to 3"),
    ([Conv(4), Dropout(0.1), Pool(2), Flatten(), Readout()],
     r"model layers\[1\] \(dropout\) is followed by a pool"),
    ([Conv(4), ResBlock(4, stride=16), Flatten(), Readout()], r"layers\[1\] \(resblock\).*stride 16 is larger"),
])
def test_a_layer_that_does_not_fit_is_named_with_the_shapes(specs, message):
    with pytest.raises(ValueError, match=message) as e:
        resolve_model("custom", ModelConfig(input_shape=(2, H, H), num_classes=3), [spec_dict(s) for s in specs])
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("layers, message", [
    ([{"kind": "lstm"}, {"kind": "readout"}], r"layers\[0\]: kind 'lstm' is unknown; use one of conv, dense"),
    ([{"kind": "conv", "channels": 4, "kernal": 3}, {"kind": "readout"}],
     r"layers\[0\] \(conv\) has unknown field\(s\) 'kernal'"),
    ([{"kind": "conv", "channels": 1.5}, {"kind": "readout"}], r"layers\[0\]\.channels 1\.5 must be a whole number"),
    ([{"kind": "pool", "mode": "max"}, {"kind": "readout"}], r"layers\[0\]\.mode 'max' is unknown; use one of avg, sum"),
    ([{"kind": "conv", "channels": 4}], r"layers: the last layer must be a readout"),
    ("conv", r"layers must be a list of layers"),
])
def test_bad_layer_lists_give_one_line(layers, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(model="custom", layers=layers)


def test_layer_list_and_model_must_agree():
    with pytest.raises(ValueError, match="needs model='custom'"):
        TrainConfig(model="dvs-cnn", layers=[spec_dict(s) for s in SPECS])
    with pytest.raises(ValueError, match="--width 0.5 scales the zoo models only"):
        TrainConfig.from_dict({"layers": [spec_dict(s) for s in SPECS], "width": 0.5})
    assert TrainConfig.from_dict({"layers": SPECS}).model == "custom"  # a layer list is the model


def test_model_file_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="model file .*nope.toml does not exist"):
        read_model_file(tmp_path / "nope.toml")
    (tmp_path / "bad.toml").write_text("[[layers]\nkind=")
    with pytest.raises(ValueError, match=r"model file .*bad.toml is not valid TOML"):
        read_model_file(tmp_path / "bad.toml")
    (tmp_path / "empty.json").write_text("{}")
    with pytest.raises(ValueError, match=r"empty.json has no 'layers' list"):
        read_model_file(tmp_path / "empty.json")


def test_dropout_acts_in_training_only_and_is_kept_in_the_spec():
    layer = build_layers([Flatten(), Dropout(0.5), Dense(32), Readout()], (2, H, H), 3)[1]
    x = torch.ones(64, 2 * H * H)
    torch.manual_seed(0)
    layer.train()
    assert not torch.equal(layer.synaptic_input(x), layer.synapse(x))
    layer.eval()
    assert torch.equal(layer.synaptic_input(x), layer.synapse(x))
    spec = layer_spec(layer)
    assert spec["dropout"] == 0.5 and build_layer(spec).dropout == 0.5
    assert "dropout" not in layer_spec(build_layers([Flatten(), Dense(4), Readout()], (2, H, H), 3)[1])


def test_per_layer_neuron_and_batchnorm_override_the_model_setting():
    lif = {"kind": "dense", "features": 8, "batchnorm": True, "neuron": {"voltage_decay": 0.125, "threshold": 2.0}}
    specs = parse_specs([{"kind": "flatten"}, lif, {"kind": "dense", "features": 8}, {"kind": "readout"}])
    layers = build_layers(specs, (2, H, H), 3, CubaParams(threshold=0.5))
    assert layers[1].neuron == CubaParams(voltage_decay=0.125, threshold=2.0) and layers[1].bn is not None
    assert layers[2].neuron.threshold == 0.5 and layers[2].bn is None
    assert spec_dict(specs[1])["neuron"]["threshold"] == 2.0


def test_config_file_neuron_and_model_tables(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text(textwrap.dedent("""
        [train]
        epochs = 2
        [neuron]
        threshold = 0.75
        tau_voltage_us = 4000
        reset = "subtract"
        [model]
        """) + TOML.replace("[[layers]]", "[[model.layers]]"))
    options = read_config_file(path)
    config = TrainConfig.from_dict(options)
    assert config.model == "custom" and len(config.layers) == len(SPECS)
    assert config.neuron(1000) == CubaParams(threshold=0.75, voltage_decay=0.25, reset="subtract")
    path.write_text("[model]\nname = 'x'\n")
    with pytest.raises(ValueError, match=r"\[model\] has unknown key\(s\) name"):
        read_config_file(path)


def test_config_defined_model_trains_exports_and_verifies(tmp_path):
    pytest.importorskip("onnxruntime")
    (tmp_path / "net.toml").write_text(TOML)
    out = tmp_path / "run"
    result = stdl_edge.train(out, model=str(tmp_path / "net.toml"), subnets=2, epochs=1, batch_size=8,
                             threshold=0.8, voltage_decay=0.25, device="cpu", data=(_data(24, 0), _data(9, 1), STREAM))
    assert math.isfinite(result.history[-1]["train_loss"])
    record = RunFolder(out).record()
    assert record["stdl"]["train"]["layers"] == [spec_dict(s) for s in SPECS]  # the run records the layers
    run = stdl_edge.load_run(out)
    assert run.model.layer_names() == ["0.conv", "1.sumpool", "2.flatten", "3.dense", "4.readout"]
    assert run.model.layers[0].neuron == CubaParams(threshold=0.8, voltage_decay=0.25)
    files = stdl_edge.export(out, to="onnx") + stdl_edge.export(out, to="netx", evaluate=False, subnets=False, aux=False)
    assert any(f.name == "model.onnx" for f in files) and any(f.name == "model.net" for f in files)
    assert stdl_edge.verify(out, ["torch", "onnxruntime"], samples=6, dataset="random", batch=3).ok


def _fake_plugin(monkeypatch, tmp_path, value: str) -> None:
    """An installed package ``mypkg_models`` with an entry point ``mypkg-net`` in ``stdl_edge.models``."""
    (tmp_path / "mypkg_models.py").write_text(textwrap.dedent("""
        from stdl_edge.netspec import Conv, Flatten, Readout

        LAYERS = [{"kind": "conv", "channels": 3, "stride": 2}, {"kind": "flatten"}, {"kind": "readout"}]

        def build(config):
            return [Conv(max(1, round(6 * config.width)), stride=2), Flatten(), Readout()]

        def broken(config):
            raise RuntimeError("boom")
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    real = importlib.metadata.entry_points

    def entry_points(**select):
        if select.get("group") == models.ENTRY_POINT_GROUP:
            return [importlib.metadata.EntryPoint("mypkg-net", value, models.ENTRY_POINT_GROUP)]
        return real(**select)

    monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)


@pytest.mark.parametrize("value, channels", [("mypkg_models:build", 3), ("mypkg_models:LAYERS", 3)])
def test_model_plugin_is_found_through_its_entry_point(monkeypatch, tmp_path, value, channels):
    _fake_plugin(monkeypatch, tmp_path, value)
    assert "mypkg-net" in models.model_names()
    out = tmp_path / "run"
    stdl_edge.train(out, model="mypkg-net", width=0.5, subnets=1, method="sltt", epochs=1, batch_size=8,
                    device="cpu", data=(_data(12, 0), _data(6, 1), STREAM))
    monkeypatch.undo()  # uninstalled: the run still loads, it records its layers
    run = stdl_edge.load_run(out)
    assert run.model.config.arch == "custom" and run.model.layers[0].out_shape[0] == channels
    assert RunFolder(out).record()["stdl"]["train"]["model"] == "mypkg-net"


def test_broken_or_missing_plugin_is_one_line(monkeypatch, tmp_path):
    _fake_plugin(monkeypatch, tmp_path, "mypkg_models:broken")
    with pytest.raises(ValueError, match="model 'mypkg-net' failed to build its layers: RuntimeError: boom"):
        TrainConfig(model="mypkg-net").model_config((2, H, H), 3, 1000)
    _fake_plugin(monkeypatch, tmp_path, "mypkg_missing:build")
    with pytest.raises(ValueError, match=r"model plug-in 'mypkg-net' \(mypkg_missing:build\) failed to load: "
                                         "ModuleNotFoundError"):
        TrainConfig(model="mypkg-net").model_config((2, H, H), 3, 1000)
    monkeypatch.undo()
    with pytest.raises(ValueError, match="--model 'mypkg-net' is unknown"):
        TrainConfig(model="mypkg-net")


def test_registered_model_from_python():
    models.register_model("tiny-test", [Conv(2, stride=2), Flatten(), Readout()])
    try:
        cfg = TrainConfig(model="tiny-test").model_config((2, H, H), 3, 1000)
        assert [s["kind"] for s in cfg.layers] == ["conv", "flatten", "readout"]
    finally:
        models.unregister_model("tiny-test")
    with pytest.raises(ValueError, match="is a zoo model"):
        models.register_model("vgg11", [])
