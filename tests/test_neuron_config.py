"""Each neuron setting of the training config reaches the model, ONNX and netx, and the devices
still agree with torch: onnxruntime identical step by step, loihi-sim bit-exact with the float
model at the exported integers; what an artifact cannot express is refused in one line."""

from __future__ import annotations

import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

import stdl_edge  # noqa: E402
from stdl_edge.artifact import StreamInfo, save_model  # noqa: E402
from stdl_edge.devices.loihi_sim import LoihiSim  # noqa: E402
from stdl_edge.formats.onnx import GraphMetadata  # noqa: E402
from stdl_edge.models import build_model  # noqa: E402
from stdl_edge.quant import QuantError, quantize_decay  # noqa: E402
from stdl_edge.stdl.config import TrainConfig  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))  # --import-mode=importlib: the tests' own helper module
from fixed_point_ref import assert_loihi_sim_follows_float, dequantized  # noqa: E402

STREAM = StreamInfo(sensor_size=(12, 12, 2), dt_us=1000, num_steps=6, class_names=("a", "b", "c", "d"))
SHAPE = (2, 12, 12)

#: one setting changed at a time (dt = 1000 us: tau 2000 -> a_u 0.5, tau 4000 -> a_v 0.25)
VARIANTS = {
    "threshold": ({"threshold": 0.6}, {"threshold": 0.6}),
    "current decay": ({"current_decay": 0.5}, {"current_decay": 0.5}),
    "voltage decay": ({"voltage_decay": 0.25}, {"voltage_decay": 0.25}),
    "time constants": ({"tau_current_us": 2000, "tau_voltage_us": 4000}, {"current_decay": 0.5, "voltage_decay": 0.25}),
    "surrogate": ({"surrogate": "atan", "surrogate_width": 0.5}, {"surrogate": "atan", "surrogate_width": 0.5}),
    "batchnorm": ({"batchnorm": True}, {}),
}


def _net(options: dict, seed: int = 0):
    """The model TrainConfig(**options) builds, made lively (and its BatchNorm statistics not trivial)."""
    config = TrainConfig(**options)
    net = build_model(config.model_config(SHAPE, 4, STREAM.dt_us), seed=seed)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in net.layers:
            lin = getattr(layer, "conv", None) or getattr(layer, "linear", None)
            if lin is not None and layer.kind != "readout":
                lin.weight.mul_(2.0)
            bn = getattr(layer, "bn", None)
            if bn is not None:
                bn.running_mean.copy_(torch.rand(bn.running_mean.shape, generator=gen) * 0.4 - 0.2)
                bn.running_var.copy_(torch.rand(bn.running_var.shape, generator=gen) + 0.5)
    return net.eval()


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_setting_reaches_every_artifact_and_the_devices_agree(variant, tmp_path):
    options, expected = VARIANTS[variant]
    net = _net(options)
    neuron = net.layers[0].neuron
    for name, value in expected.items():
        assert getattr(neuron, name) == pytest.approx(value), name
    if "batchnorm" in options:
        assert net.layers[0].bn is not None
    folder = save_model(tmp_path / "run", net, STREAM)

    # ONNX: the neuron in the metadata, onnxruntime identical to torch at every layer and step
    stdl_edge.export(folder, to="onnx")
    cmp = stdl_edge.verify(folder, ["torch", "onnxruntime"], samples=6, dataset="random", batch=3)
    assert cmp.ok, cmp.pairs[("torch", "onnxruntime")]
    meta = GraphMetadata.from_props({p.key: p.value for p in onnx.load(folder / "export" / "onnx" /
                                                                          "model.onnx").metadata_props})
    assert meta.neuron == neuron.to_dict()

    # netx: the decays and threshold of every spiking layer, and loihi-sim = the float model at those integers
    stdl_edge.export(folder, to="netx", evaluate=False)
    ref, q = dequantized(net)
    with h5py.File(folder / "export" / "netx" / "model.net") as f:
        groups = [f["layer"][str(i)] for i in range(len(f["layer"])) if "weight" in f["layer"][str(i)]]
        for g, lq in zip(groups, q, strict=True):
            if not lq.readout:
                assert int(g["neuron/iDecay"][()]) == quantize_decay(neuron.current_decay)
                assert int(g["neuron/vDecay"][()]) == quantize_decay(neuron.voltage_decay)
                assert int(g["neuron/vThMant"][()]) == lq.vth
    sim = LoihiSim.from_netx(folder / "export" / "netx" / "model.net")
    frames = (np.random.default_rng(1).random((STREAM.num_steps, 3, *SHAPE)) < 0.3).astype(np.float32)
    spikes = assert_loihi_sim_follows_float(sim, ref, frames, variant)
    assert spikes > 50  # the comparison saw spikes


def test_subtract_reset_runs_on_onnx_and_is_refused_by_netx_and_nir(tmp_path):
    net = _net({"reset": "subtract", "voltage_decay": 0.25})
    assert net.layers[0].neuron.reset == "subtract"
    folder = save_model(tmp_path / "run", net, STREAM)
    stdl_edge.export(folder, to="onnx")
    cmp = stdl_edge.verify(folder, ["torch", "onnxruntime"], samples=6, dataset="random", batch=3)
    assert cmp.ok
    with pytest.raises(QuantError, match=r"layer 0\.conv: neuron reset='subtract'.*--reset zero"):
        stdl_edge.export(folder, to="netx", evaluate=False)
    pytest.importorskip("nir")
    with pytest.raises(ValueError, match=r"layer 0\.conv: neuron reset='subtract'.*NIR cannot express it"):
        stdl_edge.export(folder, to="nir")


def test_subtract_reset_differs_from_zero_reset_as_the_equations_say():
    """v = 0.6 per step at a_v = 0.5, theta = 1: zero reset drops to 0, subtract keeps the excess."""
    from stdl_edge.neuron import CubaParams, cuba_step, zero_state

    traces = {}
    for reset in ("zero", "subtract"):
        p, st, vs = CubaParams(voltage_decay=0.5, reset=reset), zero_state((1,)), []
        for _ in range(4):
            _, st = cuba_step(torch.tensor([0.9]), st, p)
            vs.append(round(float(st.voltage), 4))
        traces[reset] = vs
    # 0.9, 1.35 (spike), then zero: 0 * 0.5 + 0.9; subtract: (1.35 - 1) * 0.5 + 0.9 = 1.075 (spike), ...
    assert traces["zero"] == [0.9, 1.35, 0.9, 1.35]
    assert traces["subtract"] == [0.9, 1.35, 1.075, 0.9375]


@pytest.mark.parametrize("options, message", [
    ({"threshold": 0}, "--threshold 0 must be a finite number > 0"),
    ({"voltage_decay": 1.5}, "--voltage-decay 1.5 must be a finite number >= 0 and <= 1"),
    ({"surrogate": "sigmoid"}, "--surrogate 'sigmoid' is unknown; use one of triangle, atan"),
    ({"reset": "soft"}, "--reset 'soft' is unknown; use one of zero, subtract"),
    ({"voltage_decay": 0.5, "tau_voltage_us": 4000}, "--voltage-decay and --tau-voltage-us both set"),
    ({"tau_voltage_us": 500, "dt_us": 1000}, "--tau-voltage-us 500 us is shorter than the time step dt = 1000 us"),
    ({"batchnorm": "yes"}, "--batchnorm 'yes' must be true or false"),
])
def test_bad_neuron_options_give_one_line_naming_the_flag(options, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")) as e:
        TrainConfig(**options)
    assert "\n" not in str(e.value)


def test_time_constant_without_a_time_step_names_dt():
    config = TrainConfig(tau_voltage_us=4000)  # dt comes from the data set
    assert config.neuron(2000).voltage_decay == 0.5
    with pytest.raises(ValueError, match="needs the time step: give --dt-us"):
        config.neuron(None)
