"""Artifact formats: StreamInfo's one flat encoding, the netx and ONNX parsers, legacy files, import rules."""

from __future__ import annotations

import ast
import doctest
import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import stdl_edge.artifact
import stdl_edge.loihi
from stdl_edge.artifact import StreamInfo
from stdl_edge.formats import netx as nx
from stdl_edge.formats import onnx as ox

ROOT = Path(__file__).resolve().parents[1]
STREAM = StreamInfo(sensor_size=(4, 4, 2), dt_us=2000, num_steps=5, class_names=("a", "b", "c"))


@pytest.mark.parametrize("module", [stdl_edge.loihi, stdl_edge.artifact, nx, ox])
def test_docstring_examples(module):
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0


# ----------------------------------------------------------------------------- StreamInfo attrs
def _onnx_strings(attrs: dict) -> dict[str, str]:
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in attrs.items()}


@pytest.mark.parametrize("stream", [STREAM, StreamInfo((4, 4, 2), None, 1), StreamInfo((8, 2, 1), 7, 3, "count")])
def test_stream_attrs_round_trip_through_hdf5_and_onnx_strings(tmp_path, stream):
    with h5py.File(tmp_path / "a.h5", "w") as f:
        f.attrs.update(stream.to_attrs())
    with h5py.File(tmp_path / "a.h5") as f:
        assert StreamInfo.from_attrs(dict(f.attrs.items())) == stream
    assert StreamInfo.from_attrs(_onnx_strings(stream.to_attrs())) == stream
    assert StreamInfo.from_dict(json.loads(json.dumps(stream.to_dict()))) == stream


def test_legacy_hdf5_and_onnx_stream_encodings_still_load(tmp_path):
    """What the exporters wrote before to_attrs: HDF5 int / bytes arrays, ONNX strings."""
    with h5py.File(tmp_path / "old.h5", "w") as f:
        f.attrs.update({"dt_us": np.int64(2000), "sensor_size": np.array([4, 4, 2], dtype=np.int64),
                        "num_steps": np.int64(5), "bin_mode": "binary",
                        "class_names": np.array([b"a", b"b", b"c"])})
        g = f.create_group("empty")
        g.attrs.update({"dt_us": 2000, "sensor_size": np.array([4, 4, 2]), "num_steps": 5, "bin_mode": "binary",
                        "class_names": np.array([], dtype="S1")})
    with h5py.File(tmp_path / "old.h5") as f:
        assert StreamInfo.from_attrs(dict(f.attrs.items())) == STREAM
        assert StreamInfo.from_attrs(dict(f["empty"].attrs.items())).class_names == ()
    old_onnx = {"dt_us": "2000", "sensor_size": "[4, 4, 2]", "bin_mode": "binary", "num_steps": "5",
                "class_names": '["a", "b", "c"]'}
    assert StreamInfo.from_attrs(old_onnx) == STREAM
    with pytest.raises(ValueError, match="no stream recorded"):
        StreamInfo.from_attrs({"dt_us": 5})


def test_no_time_step_means_no_binning():
    s = StreamInfo((4, 4, 2), None, 1)
    assert "dt_us" not in s.to_attrs()
    with pytest.raises(ValueError, match="records no time step"):
        s.bin_spec


# ----------------------------------------------------------------------------- netx
def _small_net():
    from stdl_edge.layers import Flatten, Readout, SpikingDense
    from stdl_edge.models import ModelConfig, SpikingNet
    from stdl_edge.neuron import CubaParams

    shape = (2, 4, 4)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(2)
        layers = [Flatten(shape), SpikingDense(32, 6, neuron=CubaParams()), Readout(6, 3)]
        net = SpikingNet(layers, ModelConfig(input_shape=shape, num_classes=3)).eval()
        with torch.no_grad():
            for p in net.parameters():
                p.mul_(3.0)
    return net


def test_netx_writer_and_parser_round_trip(tmp_path):
    from stdl_edge.exporters.netx import export_network
    from stdl_edge.loihi import DECAY_UNITY, READOUT_VTH
    from stdl_edge.quant import LayerQuant, quantize_model

    net = _small_net()
    path, _ = export_network(net, STREAM, tmp_path / "m.net", subnet=1)
    parsed = nx.read_netx(path)
    assert parsed.version == nx.VERSION and parsed.stream == STREAM and parsed.input_shape == (2, 4, 4)
    assert [(layer.kind, layer.name, layer.out_shape) for layer in parsed.layers] == [
        ("dense", "layer0", (6,)), ("dense", "layer1", (3,))]
    assert parsed.layers[0].in_shape == (2, 4, 4) and parsed.latency == 2
    q = [x for x in quantize_model(net) if isinstance(x, LayerQuant)]
    for layer, lq in zip(parsed.layers, q):
        assert np.array_equal(layer.weight >> -layer.weight_exp, lq.weight) and layer.scale == lq.scale
        assert np.array_equal(layer.fanout, (lq.weight != 0).sum(axis=0))
    assert parsed.layers[1].neuron == nx.NetxNeuron(DECAY_UNITY, DECAY_UNITY, READOUT_VTH)
    assert parsed.layers[1].voltage_scale == 64 * q[1].scale
    with h5py.File(path) as f:
        assert f.attrs["format"] == nx.FORMAT and f.attrs["subnet"] == 1 and f.attrs["latency"] == 2


def test_existing_version_1_netx_exports_still_load(tmp_path):
    """A file as the exporter wrote it before format_version 2: the same network, the same stream."""
    from stdl_edge.devices.loihi_sim import LoihiSim
    from stdl_edge.exporters.netx import export_network

    path, _ = export_network(_small_net(), STREAM, tmp_path / "new.net")
    frames = (np.random.default_rng(0).random((6, 2, 2, 4, 4)) < 0.4).astype(np.int64)
    expected = LoihiSim.from_netx(path).run(frames)
    with h5py.File(path, "a") as f:
        f.attrs.update({"format_version": 1, "sensor_size": np.array([4, 4, 2], dtype=np.int64),
                        "class_names": np.array([b"a", b"b", b"c"])})
    old = nx.read_netx(path)
    assert old.version == 1 and old.stream == STREAM
    got = LoihiSim.from_netx(path).run(frames)
    assert all(np.array_equal(got[k], expected[k]) for k in expected)


def _foreign_netx(path: Path) -> Path:
    """A netx file as lava-dl or a hand-written script makes it: layers only, no root attributes."""
    rng = np.random.default_rng(4)
    with h5py.File(path, "w") as f:
        for i, (kind, shape) in enumerate((("input", [2, 4, 4]), ("flatten", [32]), ("dense", [3]))):
            g = f.create_group(f"layer/{i}")
            g.create_dataset("type", data=np.array([kind.encode()], dtype="S10"))
            g.create_dataset("shape", data=np.array(shape))
        g = f["layer/2"]
        g.create_dataset("weight", data=(rng.integers(-60, 60, (3, 32)) * 2).astype(np.float32))
        n = g.create_group("neuron")
        n.create_dataset("type", data=np.array([b"CUBA"], dtype="S10"))
        for key, value in (("iDecay", 4096), ("vDecay", 2048), ("vThMant", 40), ("refDelay", 1)):
            n.create_dataset(key, data=value)
    return path


def test_foreign_netx_file_needs_a_time_step_to_bin_events(tmp_path, random_events):
    from stdl_edge.devices import open_device, stream_windows

    path = _foreign_netx(tmp_path / "foreign.net")
    parsed = nx.read_netx(path)
    assert parsed.version is None and parsed.stream == StreamInfo((4, 4, 2), None, 1)
    dev = open_device("loihi-sim", path)
    events = random_events(300, width=4, height=4, duration_us=10_000)
    with pytest.raises(ValueError) as err:
        next(stream_windows(dev, [events], 4))
    message = str(err.value)
    assert "\n" not in message and str(path) in message and "records no time step" in message
    assert "dt_us=" in message and "--dt-us" in message
    dev = open_device("loihi-sim", path, dt_us=1000)
    assert dev.bin_spec.dt_us == 1000 and len(list(stream_windows(dev, [events], 4))) == 3
    with pytest.raises(nx.NetxError, match="records dt_us=2000"):
        nx.read_netx(_ours(tmp_path), dt_us=1000)


def _ours(tmp_path: Path) -> Path:
    from stdl_edge.exporters.netx import export_network

    return export_network(_small_net(), STREAM, tmp_path / "ours.net")[0]


def test_run_command_on_a_foreign_netx_file_says_how_to_give_the_time_step(tmp_path, random_events):
    from stdl_edge.cli import app

    path = _foreign_netx(tmp_path / "foreign.net")
    np.save(tmp_path / "ev.npy", random_events(300, width=4, height=4, duration_us=10_000))
    args = ["run", str(path), "--events", str(tmp_path / "ev.npy"), "--sensor", "4,4", "--device", "loihi-sim"]
    bad = CliRunner().invoke(app, args)
    assert bad.exit_code != 0 and str(path) in str(bad.exception) and "--dt-us" in str(bad.exception)
    ok = CliRunner().invoke(app, [*args, "--dt-us", "1000", "--window-ms", "4"])
    assert ok.exit_code == 0, ok.output


def test_newer_netx_version_is_refused(tmp_path):
    path = _ours(tmp_path)
    with h5py.File(path, "a") as f:
        f.attrs["format_version"] = nx.VERSION + 1
    with pytest.raises(nx.NetxError, match="upgrade stdl-edge"):
        nx.read_netx(path)


# ----------------------------------------------------------------------------- ONNX metadata and manifest
def _entry(**place) -> ox.StepEntry:
    states = [ox.StateSpec.of(layer, f, shape, kind) for layer, shape, kind in
              (("0.dense", (5,), "dense"), ("1.readout", (3,), "readout")) for f in ox.STATE_FIELDS]
    return ox.StepEntry("subnet1.onnx", (0, 2), ("0.dense", "1.readout"), (4,), (3,), tuple(states), **place)


def test_onnx_metadata_and_manifest_round_trip(tmp_path):
    entry = _entry(index=1)
    meta = ox.GraphMetadata.of_step(entry, STREAM, "subnet", 1, num_subnets=2, neuron={"threshold": 1.0},
                                    model={"arch": "x"})
    props = meta.to_props()
    assert all(isinstance(v, str) for v in props.values())
    assert props["dt_us"] == "2000" and props["subnet_index"] == "1" and props["role"] == "subnet"
    assert ox.GraphMetadata.from_props(props) == meta
    assert ox.GraphMetadata.from_props({"producer": "elsewhere"}) is None
    manifest = ox.Manifest(STREAM, _entry(), (entry,), entry.layer_names, 3, (4,), model={"arch": "x"},
                           aux_heads=(_entry(index=0, follows=0),), sequence=ox.SequenceEntry("seq.onnx", 4, (4,), 3))
    assert ox.read_manifest(manifest.write(tmp_path)) == manifest
    assert ox.read_manifest(tmp_path).aux_heads[0].follows == 0


def test_legacy_onnx_metadata_and_manifest_find_the_readout_by_kind():
    """Exports from before ``kind`` was recorded: the kind is the end of the layer name."""
    old_states = [{"name": f"{layer}.{f}", "layer": layer, "shape": [n]}
                  for layer, n in (("0.dense", 5), ("1.readout", 3)) for f in ("u", "v", "s")]
    props = {"format_version": "1", "stdl_edge_version": "0.1.0", "dt_us": "2000", "sensor_size": "[4, 4, 2]",
             "bin_mode": "binary", "num_steps": "5", "class_names": '["a", "b", "c"]', "role": "model",
             "subnet_index": "-1", "num_subnets": "1", "graph": "step", "layers": "[0, 2]",
             "layer_names": '["0.dense", "1.readout"]', "states": json.dumps(old_states)}
    meta = ox.GraphMetadata.from_props(props)
    assert meta.stream == STREAM and [s.readout for s in meta.states] == [False] * 3 + [True] * 3
    old_entry = {"file": "model.onnx", "layers": [0, 2], "layer_names": ["0.dense", "1.readout"],
                 "input_shape": [4], "output_shape": [3], "states": old_states}
    assert ox.StepEntry.from_dict(old_entry).states[-1].kind == "readout"


def test_manifest_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="has no manifest.json"):
        ox.read_manifest(tmp_path)
    (tmp_path / ox.MANIFEST).write_text(json.dumps({"kind": ox.MANIFEST_KIND, "format_version": ox.VERSION + 1}))
    with pytest.raises(ValueError, match="upgrade stdl-edge"):
        ox.read_manifest(tmp_path)


def test_readout_kind_is_the_layer_kind():
    from stdl_edge.layers import Readout

    assert ox.READOUT_KIND == Readout.kind


# ----------------------------------------------------------------------------- import rules
def _imports(path: Path) -> list[tuple[str, list[str], int]]:
    """``(module, names, level)`` of every import statement in ``path``."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [(a.name, [], 0) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            out.append((node.module or "", [a.name for a in node.names], node.level))
    return out
