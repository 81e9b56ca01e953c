"""NIR export and import: the neuron mapping, the round trip of every zoo model, the exporter,
the import of nodes stdl-edge writes no NIR for, and one clear error per unsupported node.

(Over 400 lines: the table of unsupported graphs and the NIR Euler reference belong with
the import tests they check; the peer-framework comparisons are in test_nir_peer.py.)"""

from __future__ import annotations

import doctest
import json
import math

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

nir = pytest.importorskip("nir", reason="the [nir] extra is not installed (pip install 'stdl-edge[nir]')")

import stdl_edge.targets  # noqa: E402
from stdl_edge.artifact import RunFolder, StreamInfo, save_model, save_run  # noqa: E402
from stdl_edge.cli import app  # noqa: E402
from stdl_edge.exporters.nir import export  # noqa: E402
from stdl_edge.formats import nir as nirfmt  # noqa: E402
from stdl_edge.layers import SpikingResidualBlock  # noqa: E402
from stdl_edge.layerspec import layer_spec  # noqa: E402
from stdl_edge.models import ModelConfig, build_model  # noqa: E402
from stdl_edge.neuron import CubaParams, cuba_step, zero_state  # noqa: E402
from stdl_edge.quant import fold_bn, folded_synapse  # noqa: E402
from stdl_edge.registry import EXPORTERS  # noqa: E402
from stdl_edge.stdl import build_aux_head  # noqa: E402
from stdl_edge.targets import TargetError, check_target  # noqa: E402

DT = 1e-3  # seconds: dt_us = 1000
STREAM = StreamInfo((12, 12, 2), 1000, 6, class_names=("a", "b", "c", "d"))


# --------------------------------------------------------------------------- the neuron mapping

def test_cuba_to_cubalif_mapping_on_a_hand_computed_two_step_trace():
    p = CubaParams(current_decay=0.5, voltage_decay=0.25, threshold=1.0)
    node = nirfmt.neuron_node(p, (1,), DT, "0.dense")
    assert isinstance(node, nir.CubaLIF)
    # tau = dt / a, r = 1 / a_v, w_in = 1 / a_u (docs/nir.md)
    assert (node.tau_syn[0], node.tau_mem[0], node.r[0], node.w_in[0]) == pytest.approx((2e-3, 4e-3, 4.0, 2.0))
    assert node.v_threshold[0] == 1.0 and node.v_leak[0] == 0.0 and node.v_reset[0] == 0.0
    # forward Euler of NIR's ODEs at dt, by hand, for the input 0.8 at both steps:
    #   I1 = (1 - 0.5) * 0 + 0.5 * 2 * 0.8 = 0.8     v1 = 0.75 * 0 + 0.25 * 4 * 0.8 = 0.8   (no spike)
    #   I2 = 0.5 * 0.8 + 0.5 * 2 * 0.8 = 1.2         v2 = 0.75 * 0.8 + 0.25 * 4 * 1.2 = 1.8 (spike)
    state, trace = zero_state((1,)), []
    for _ in range(2):
        s, state = cuba_step(torch.tensor([0.8]), state, p)
        trace.append((round(float(state.current), 6), round(float(state.voltage), 6), int(s)))
    assert trace == [(0.8, 0.8, 0), (1.2, 1.8, 1)]
    back = nirfmt.NEURONS["CubaLIF"]("n", node, DT)
    assert back.params == p and np.all(back.gain == 1.0) and np.all(back.offset == 0.0)


@pytest.mark.parametrize("params, kind", [
    (CubaParams(current_decay=1.0, voltage_decay=0.5), "LIF"),
    (CubaParams(current_decay=1.0, voltage_decay=0.0), "IF"),
    (CubaParams(current_decay=0.25, voltage_decay=0.75, threshold=2.0), "CubaLIF"),
    (CubaParams(current_decay=1.0, voltage_decay=1.0, threshold=math.inf), "LI"),
    (CubaParams(current_decay=1.0, voltage_decay=0.0, threshold=math.inf), "I"),
    (CubaParams(current_decay=0.5, voltage_decay=0.5, threshold=math.inf), "CubaLI"),
])
def test_each_neuron_maps_to_its_node_and_back(params, kind):
    node = nirfmt.neuron_node(params, (3,), DT, "x")
    assert type(node).__name__ == kind
    back = nirfmt.NEURONS[kind]("x", node, DT)
    assert back.params == params and np.all(back.gain == 1.0)


def test_current_decay_zero_has_no_nir_neuron():
    with pytest.raises(ValueError, match="layer 3.dense: current_decay=0"):
        nirfmt.neuron_node(CubaParams(current_decay=0.0), (2,), DT, "3.dense")


# --------------------------------------------------------------------------- round trip

def _custom_config() -> ModelConfig:
    """A config-defined network: a leaky synaptic current, average pooling, a leaky readout."""
    cuba = CubaParams(current_decay=0.5, voltage_decay=0.25, threshold=0.8).to_dict()
    layers = [
        {"kind": "conv", "in_shape": [2, 12, 12], "out_channels": 4, "kernel_size": 3, "stride": 1, "padding": 1,
         "bias": True, "batchnorm": True, "neuron": cuba},
        {"kind": "avgpool", "in_shape": [4, 12, 12], "kernel_size": 2},
        {"kind": "flatten", "in_shape": [4, 6, 6]},
        {"kind": "dense", "in_features": 144, "out_features": 16, "bias": True, "batchnorm": False, "neuron": cuba},
        {"kind": "readout", "in_features": 16, "num_classes": 4, "bias": True,
         "neuron": CubaParams(current_decay=1.0, voltage_decay=0.5, threshold=math.inf).to_dict()},
    ]
    return ModelConfig(arch="custom", input_shape=(2, 12, 12), num_classes=4, layers=tuple(layers))


CONFIGS = {
    "dvs-cnn": ModelConfig(input_shape=(2, 12, 12), num_classes=4, width=0.25, batchnorm=True),
    "vgg11": ModelConfig(arch="vgg11", input_shape=(2, 8, 8), num_classes=4, width=0.0625),
    "resnet": ModelConfig(arch="resnet", input_shape=(2, 8, 8), num_classes=4, width=0.0625),
    "if-cnn": ModelConfig(arch="if-cnn", input_shape=(2, 12, 12), num_classes=4, width=0.25),
    "custom": _custom_config(),
}


def _active(net):
    """Random BatchNorm statistics and larger weights: every layer fires and BatchNorm really folds."""
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
                m.running_mean.copy_(torch.rand(m.running_mean.shape, generator=gen) * 0.4 - 0.2)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) + 0.5)
                m.bias.copy_(torch.rand(m.bias.shape, generator=gen) * 0.4)
            elif isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
                m.weight.mul_(2.0)
    return net.eval()


def _synapses(layer):
    """Folded ``(W, b)`` of every synapse of a layer, in a fixed order."""
    if isinstance(layer, SpikingResidualBlock):
        out = _synapses(layer.first) + _synapses(layer.second)
        if layer.shortcut is not None:
            conv, bn = layer.shortcut[0], (layer.shortcut[1] if len(layer.shortcut) > 1 else None)
            with torch.no_grad():
                out.append(fold_bn(conv.weight, conv.bias, bn))
        return out
    return [folded_synapse(layer)] if hasattr(layer, "synapse") else []


def _run(net, frames):
    """Every layer's output at every step: a list over steps of lists over layers."""
    states, steps = net.init_state(frames.shape[1], "cpu"), []
    with torch.no_grad():
        for frame in frames:
            rec = []
            _, states = net.step(frame, states, record=rec)
            steps.append(rec)
    return steps


@pytest.mark.parametrize("arch", list(CONFIGS))
def test_round_trip_gives_the_same_network_and_spikes(arch, tmp_path):
    net = _active(build_model(CONFIGS[arch], seed=0))
    files = export(save_model(tmp_path / "run", net, STREAM))
    graph = nir.read(files[0])  # the peer frameworks' reader
    back, stream = nirfmt.from_nir(graph)
    assert stream == STREAM
    assert back.layer_names() == net.layer_names()
    weights = 0
    for a, b in zip(net.layers, back.layers):
        assert getattr(a, "neuron", None) == getattr(b, "neuron", None)
        for (wa, ba), (wb, bb) in zip(_synapses(a), _synapses(b), strict=True):
            assert torch.equal(wa, wb.detach())
            if ba is not None or bb is not None:
                assert torch.equal(ba if ba is not None else torch.zeros_like(bb), bb.detach())
            weights += wa.numel()
    frames = (torch.rand(6, 3, *net.input_shape, generator=torch.Generator().manual_seed(2)) < 0.3).float()
    ours, theirs = _run(net, frames), _run(back, frames)
    values = worst = 0
    fired = [0] * len(net.layers)
    for step_a, step_b in zip(ours, theirs):
        for i, (x, y) in enumerate(zip(step_a, step_b)):
            values += x.numel()
            worst = max(worst, float((x - y).abs().max()))
            fired[i] += int(x.sum()) if net.layers[i].spiking else 1
    print(f"{arch}: {weights} weights equal; {values} layer outputs compared, largest difference {worst}")
    assert worst == 0.0
    assert all(fired), f"silent layers make the spike comparison empty: {fired}"


def test_round_trip_through_a_run_folder_and_the_cli(tmp_path):
    net = _active(build_model(CONFIGS["custom"], seed=0))
    run = save_model(tmp_path / "run", net, STREAM)
    runner = CliRunner()
    result = runner.invoke(app, ["export", str(run), "--to", "nir"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["import", str(run / "export" / "nir" / "model.nir"), "--out", str(tmp_path / "imp")])
    assert result.exit_code == 0, result.output
    loaded = RunFolder(tmp_path / "imp").load()
    assert loaded.stream == STREAM and loaded.model.config.arch == "custom"
    frames = (torch.rand(6, 2, 2, 12, 12, generator=torch.Generator().manual_seed(3)) < 0.3).float()
    with torch.no_grad():
        assert torch.allclose(loaded.model(frames), net(frames), rtol=0, atol=1e-6)


# --------------------------------------------------------------------------- the exporter

@pytest.fixture
def stdl_run(tmp_path):
    torch.manual_seed(0)
    net = _active(build_model(CONFIGS["dvs-cnn"], seed=0))
    head = build_aux_head(net, 2, 1).eval()
    return save_run(tmp_path / "run", net, STREAM, [(0, 2), (2, 6)], [head], {"method": "stdl"})


def test_export_writes_model_subnets_heads_and_manifest(stdl_run):
    assert "nir" in EXPORTERS.names()
    paths = export(stdl_run)
    assert [p.name for p in paths] == ["model.nir", "subnet0.nir", "subnet1.nir", "aux0.nir", "manifest.json"]
    manifest = json.loads(paths[-1].read_text())
    assert manifest["kind"] == nirfmt.MANIFEST_KIND and manifest["whole"]["file"] == "model.nir"
    assert [c["layers"] for c in manifest["chain"]] == [[0, 2], [2, 6]]
    assert manifest["aux_heads"][0]["file"] == "aux0.nir"
    whole = nir.read(paths[0])
    assert [type(n).__name__ for n in whole.nodes.values()].count("Conv2d") == 3
    meta = whole.metadata
    assert meta["format"] == nirfmt.FORMAT and meta["dt_us"] == 1000 and meta["dt"] == pytest.approx(1e-3)
    assert json.loads(meta["sensor_size"]) == [12, 12, 2] and json.loads(meta["class_names"]) == list("abcd")
    assert "binary event frames" in meta["input_type"] and "readout voltage" in meta["output_type"]
    sub1 = nir.read(paths[2])
    assert sub1.metadata["role"] == "subnet" and "spikes of layer 1.conv" in sub1.metadata["input_type"]
    sub0 = nir.read(paths[1])
    assert sorted(type(n).__name__ for n in sub0.nodes.values()) == ["Conv2d", "Conv2d", "Input", "LIF", "LIF",
                                                                       "Output"]
    # the second subnetwork, fed the first one's spikes, is the rest of the whole model
    model, _ = nirfmt.from_nir(whole)
    second, _ = nirfmt.from_nir(sub1)
    frames = (torch.rand(6, 2, 2, 12, 12, generator=torch.Generator().manual_seed(4)) < 0.3).float()
    with torch.no_grad():
        s1, s2, s = model.init_state(2, "cpu")[:2], second.init_state(2, "cpu"), model.init_state(2, "cpu")
        for frame in frames:
            h, s1 = model.step(frame, s1, 0, 2)
            y2, s2 = second.step(h, s2)
            y, s = model.step(frame, s)
            assert torch.equal(y, y2)


def test_export_is_atomic_as_a_whole(stdl_run, monkeypatch):
    first = export(stdl_run, subnets=False, aux=False)
    before = {p.name: p.read_bytes() for p in first}
    calls = []

    def failing_write(path, graph):
        calls.append(path)
        if len(calls) == 2:
            raise OSError("disk full")
        return real(path, graph)

    real = nirfmt.write
    monkeypatch.setattr(nirfmt, "write", failing_write)
    with pytest.raises(OSError, match="disk full"):
        export(stdl_run)
    out = RunFolder(stdl_run).export_dir("nir")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]


def test_export_for_a_target_refuses_what_it_cannot_run(stdl_run, tmp_path):
    with pytest.raises(TargetError, match=r"layer 0\.conv: neuron has voltage_decay=0\.5"):
        export(stdl_run, target="if-chip")
    assert not RunFolder(stdl_run).export_dir("nir").exists()
    ok = save_model(tmp_path / "if", build_model(CONFIGS["if-cnn"], seed=0), STREAM)
    paths = export(ok, target="if-chip")
    kinds = {type(n).__name__ for n in nir.read(paths[0]).nodes.values()}
    assert {"IF", "SumPool2d"} <= kinds and not kinds & {"LIF", "CubaLIF", "AvgPool2d", "Affine"}
    assert json.loads(paths[-1].read_text())["target"] == "if-chip"


def test_target_check_names_each_layer_and_constraint():
    vgg = build_model(ModelConfig(arch="vgg11", input_shape=(2, 8, 8), num_classes=4, width=0.0625), seed=0)
    found = check_target(vgg, "if-chip")
    assert "layer 0.conv: has BatchNorm (it folds into a bias); if-chip synapses have no bias " \
           "(train with bias=False, batchnorm=False)" in found
    assert "layer 1.avgpool: avgpool; if-chip pools with sumpool" in found
    res = build_model(CONFIGS["resnet"], seed=0)
    assert "layer 1.resblock: a residual block; if-chip has no residual connections" in check_target(res, "if-chip")
    big = stdl_edge.targets.Target("tiny", "test", max_channels=3, max_fan_in=17, max_map=8)
    found = check_target(build_model(CONFIGS["if-cnn"], seed=0), big)
    assert "layer 0.conv: 4 output channels/neurons > tiny's 3" in found
    assert "layer 2.conv: fan-in 36 > tiny's 17 inputs per neuron" in found
    assert "layer 0.conv: input map 12x12 > tiny's 8x8" in found
    assert doctest.testmod(stdl_edge.targets).failed == 0
    result = CliRunner().invoke(app, ["check-target", "nonexistent-run"])
    assert result.exit_code != 0


# --------------------------------------------------------------------------- import of other graphs

def _graph(*nodes, metadata=None):
    g = nir.NIRGraph.from_list(*nodes)
    g.metadata = dict(metadata or {})
    return g


def _euler(graph_nodes, x, dt):
    """Reference: forward Euler of NIR's own equations for Affine/Scale -> LIF/IF/CubaLIF chains, (T, B, N)."""
    out, state = [], {}
    for t in range(x.shape[0]):
        h = x[t]
        for i, node in enumerate(graph_nodes):
            kind = type(node).__name__
            if kind in ("Affine", "Linear"):
                h = h @ node.weight.T + (node.bias if kind == "Affine" else 0)
            elif kind == "Scale":
                h = h * node.scale
            elif kind == "Flatten":
                h = h.reshape(h.shape[0], -1)
            else:
                cur, v = state.get(i, (np.zeros_like(h), np.zeros_like(h)))
                if kind == "CubaLIF":
                    cur = cur + dt / node.tau_syn * (-cur + node.w_in * h)
                    v = v + dt / node.tau_mem * (node.v_leak - v + node.r * cur)
                elif kind == "LIF":
                    v = v + dt / node.tau * (node.v_leak - v + node.r * h)
                else:  # IF
                    v = v + dt * node.r * h
                s = (v > node.v_threshold).astype(np.float64)
                state[i] = (cur, np.where(s > 0, 0.0, v))
                h = s
        out.append(h)
    return np.stack(out)


def test_import_matches_nir_euler_for_general_parameters():
    rng = np.random.default_rng(0)
    w1, w2 = rng.normal(0.5, 1.5, (6, 5)), rng.normal(0.5, 1.5, (4, 6))
    nodes = [
        nir.Scale(scale=rng.uniform(0.5, 1.5, 5)),  # on the input: folds into the next synapse's columns
        nir.Affine(weight=w1, bias=rng.normal(0, 0.1, 6)),
        nir.LIF(tau=np.full(6, 3e-3), r=rng.uniform(0.5, 2.0, 6), v_leak=rng.uniform(-0.1, 0.2, 6),
                v_threshold=rng.uniform(0.3, 0.8, 6)),  # per-neuron r, leak and threshold
        nir.Linear(weight=w2),
        nir.Scale(scale=rng.uniform(0.5, 1.5, 4)),  # on the output: folds into the rows
        nir.CubaLIF(tau_syn=np.full(4, 2e-3), tau_mem=np.full(4, 5e-3), r=rng.uniform(0.5, 2.0, 4),
                    v_leak=np.zeros(4), v_threshold=np.full(4, 0.5), w_in=rng.uniform(0.5, 2.0, 4)),
        nir.Affine(weight=rng.normal(0.5, 1.0, (3, 4)), bias=np.zeros(3)),
        nir.IF(r=np.full(3, 1000.0), v_threshold=np.full(3, 0.9)),
        nir.Affine(weight=rng.normal(0, 1.0, (2, 3)), bias=np.zeros(2)),
    ]
    graph = _graph(*nodes)
    with pytest.raises(ValueError, match="records no time step"):
        nirfmt.from_nir(graph)
    with pytest.raises(ValueError, match="reads a flat vector; give input_shape"):
        nirfmt.from_nir(graph, dt_us=1000)
    model, stream = nirfmt.from_nir(graph, dt_us=1000, input_shape=(5, 1, 1))
    assert stream is None and model.layer_names() == ["0.flatten", "1.dense", "2.dense", "3.dense", "4.readout"]
    x = (rng.random((20, 8, 5)) < 0.4).astype(np.float64)
    rec = _run(model, torch.from_numpy(x).float().reshape(20, 8, 5, 1, 1))
    compared = 0
    for layer, end in ((1, 3), (2, 6), (3, 8)):  # each spiking layer against Euler up to its neuron node
        ref = _euler(nodes[:end], x, 1e-3)
        ours = np.stack([r[layer].numpy() for r in rec])
        assert 0 < ref.mean() < 1 and np.array_equal(ours, ref), f"layer {layer}"
        compared += ref.size
    print(f"general parameters: {compared} spikes compared with NIR's Euler, all equal")


def test_import_of_sum_pooling_threshold_and_integrator_nodes(tmp_path):
    rng = np.random.default_rng(1)
    conv = nir.Conv2d(input_shape=(4, 4), weight=rng.normal(0, 1, (3, 2, 3, 3)), stride=1, padding="same",
                      dilation=1, groups=1, bias=np.zeros(3))
    nodes = [conv, nir.Threshold(threshold=np.full((3, 4, 4), 0.5)),
             nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0])),
             nir.Flatten(input_type={"input": np.array([3, 2, 2])}, start_dim=0),
             nir.Affine(weight=rng.normal(0, 1, (2, 12)), bias=np.zeros(2)), nir.I(r=np.full(2, 1000.0))]
    path = tmp_path / "g.nir"
    nir.write(path, _graph(*nodes))
    run = nirfmt.import_run(path, tmp_path / "run", dt_us=1000, num_steps=4)
    model = RunFolder(run).load().model
    assert [layer.kind for layer in model.layers] == ["conv", "sumpool", "flatten", "readout"]
    assert model.layers[0].neuron == CubaParams(current_decay=1.0, voltage_decay=1.0, threshold=0.5)
    assert model.layers[-1].neuron.voltage_decay == 0.0 and not model.layers[-1].neuron.spiking
    x = torch.from_numpy((rng.random((2, 2, 4, 4)) < 0.5).astype(np.float32))
    spikes = (torch.nn.functional.conv2d(x.double(), torch.from_numpy(conv.weight), padding=1) > 0.5).double()
    pooled = spikes.reshape(2, 3, 2, 2, 2, 2).sum((3, 5)).reshape(2, -1)
    y1 = (pooled @ torch.from_numpy(nodes[4].weight).T).float()
    with torch.no_grad():
        states = model.init_state(2, "cpu")
        out1, states = model.step(x, states)
        out2, _ = model.step(x, states)
    # the integrator I sums (v[2] = v[1] + I with r dt = 1), the same input twice gives twice the value
    assert torch.allclose(out1, y1, atol=1e-5) and torch.allclose(out2, 2 * y1, atol=1e-5)


def _lif(n, **over):
    p = {"tau": np.full(n, 2e-3), "r": np.full(n, 2.0), "v_leak": np.zeros(n), "v_threshold": np.ones(n)}
    p.update(over)
    return nir.LIF(**p)


def _affine(n_out, n_in):
    return nir.Affine(weight=np.ones((n_out, n_in)), bias=np.zeros(n_out))


def _pool_graph():
    pool = nir.AvgPool2d(kernel_size=np.array([2, 2]), stride=np.array([1, 1]), padding=np.array([0, 0]))
    return nir.NIRGraph(nodes={"input": nir.Input(input_type={"input": np.array([2, 4, 4])}), "avgpool2d": pool,
                               "output": nir.Output(output_type={"output": np.array([2, 3, 3])})},
                        edges=[("input", "avgpool2d"), ("avgpool2d", "output")], type_check=False)


UNSUPPORTED = {
    "Delay": (lambda: _graph(_affine(3, 3), nir.Delay(delay=np.ones(3)), _lif(3)), r"node 'delay' \(Delay\) is not supported"),
    "Conv1d": (lambda: _graph(nir.Conv1d(input_shape=8, weight=np.ones((2, 1, 3)), stride=1, padding=1, dilation=1,
                                         groups=1, bias=np.zeros(2))), r"node 'conv1d' \(Conv1d\) is not supported"),
    "v_reset": (lambda: _graph(_affine(3, 3), _lif(3, v_reset=np.full(3, 0.1))), r"node 'lif' \(LIF\): v_reset != 0"),
    "tau < dt": (lambda: _graph(_affine(3, 3), _lif(3, tau=np.full(3, 1e-4))),
                 r"node 'lif' \(LIF\): tau=0.0001 s is shorter than dt"),
    "mixed tau": (lambda: _graph(_affine(3, 3), _lif(3, tau=np.array([2e-3, 3e-3, 2e-3]))),
                  r"node 'lif' \(LIF\): tau differs between neurons"),
    "leak with current": (lambda: _graph(_affine(3, 3), nir.CubaLIF(
        tau_syn=np.full(3, 2e-3), tau_mem=np.full(3, 2e-3), r=np.ones(3), v_leak=np.full(3, 0.1),
        v_threshold=np.ones(3))), r"node 'cubalif' \(CubaLIF\): v_leak != 0 with a synaptic current"),
    "two synapses": (lambda: _graph(_affine(3, 3), _affine(3, 3), _lif(3)),
                     r"nodes 'affine' \(Affine\), 'affine_1' \(Affine\) before a neuron"),
    "hidden integrator": (lambda: _graph(_affine(3, 3), nir.LI(tau=np.full(3, 2e-3), r=np.ones(3), v_leak=np.zeros(3)),
                                         _affine(3, 3), _lif(3)), r"node 'affine_1' \(Affine\) follows a non-spiking"),
    "grouped conv": (lambda: _graph(nir.Conv2d(input_shape=(4, 4), weight=np.ones((2, 1, 3, 3)), stride=1, padding=1,
                                               dilation=1, groups=2, bias=np.zeros(2))),
                     r"node 'conv2d' \(Conv2d\): only square, ungrouped"),
    "strided pooling": (lambda: _pool_graph(), r"node 'avgpool2d' \(AvgPool2d\): only square pooling with stride"),
}


@pytest.mark.parametrize("case", list(UNSUPPORTED))
def test_each_unsupported_node_gives_one_line_naming_it(case):
    make, message = UNSUPPORTED[case]
    graph = make()
    with pytest.raises(ValueError, match=message) as err:
        nirfmt.from_nir(graph, dt_us=1000, input_shape=(3, 1, 1))
    assert "\n" not in str(err.value)


def test_recurrent_and_branching_graphs_are_refused():
    nodes = {"input": nir.Input(input_type={"input": np.array([3])}), "w": _affine(3, 3), "lif": _lif(3),
             "rec": _affine(3, 3), "output": nir.Output(output_type={"output": np.array([3])})}
    edges = [("input", "w"), ("w", "lif"), ("lif", "rec"), ("rec", "lif"), ("lif", "output")]
    graph = nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)
    with pytest.raises(ValueError, match=r"node 'lif' \(LIF\) sums the inputs \['w', 'rec'\].*recurrent"):
        nirfmt.from_nir(graph, dt_us=1000, input_shape=(3, 1, 1))
    sub = nir.NIRGraph(nodes={"input": nir.Input(input_type={"input": np.array([3])}), "l": _lif(3),
                              "output": nir.Output(output_type={"output": np.array([3])})},
                       edges=[("input", "l"), ("l", "output")])
    graph = _graph(_affine(3, 3), sub)
    with pytest.raises(ValueError, match=r"node 'nirgraph' \(NIRGraph\) is not supported"):
        nirfmt.from_nir(graph, dt_us=1000, input_shape=(3, 1, 1))


def test_a_file_that_is_not_nir_is_named(tmp_path):
    bad = tmp_path / "x.nir"
    bad.write_text("not hdf5")
    with pytest.raises(ValueError, match=r"x\.nir is not a readable NIR graph"):
        nirfmt.load(bad)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        nirfmt.load(tmp_path / "missing.nir")


def test_netx_folds_the_if_presets_sum_pooling_into_the_next_conv(tmp_path):
    from stdl_edge.quant import LayerQuant, quantize_model

    q = [x for x in quantize_model(build_model(CONFIGS["if-cnn"], seed=0)) if isinstance(x, LayerQuant)]
    assert [(x.name, x.report["pool_folded"]) for x in q] == [("0.conv", 1), ("2.conv", 2), ("4.conv", 2),
                                                               ("6.dense", 1), ("7.readout", 1)]


def test_layer_specs_of_the_new_options_rebuild_the_same_layers():
    model = build_model(CONFIGS["custom"], seed=0)
    assert [layer_spec(x) for x in model.layers] == list(CONFIGS["custom"].layers)
    again = ModelConfig.from_dict(json.loads(json.dumps(CONFIGS["custom"].to_dict())))
    assert again == CONFIGS["custom"]
    assert "layers" not in CONFIGS["dvs-cnn"].to_dict()  # zoo records are as before
    with pytest.raises(ValueError, match="arch='custom' needs its layer specs"):
        ModelConfig(arch="custom")
