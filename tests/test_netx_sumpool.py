"""Sum pooling (the ``if-cnn`` integrate-and-fire preset) through netx: folded into the next
synapse, run on loihi-sim exactly like the float model with the exported integers, and on
Lava bit for bit like loihi-sim."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from stdl_edge.artifact import StreamInfo, save_model
from stdl_edge.devices.loihi_sim import LoihiSim
from stdl_edge.exporters.netx import export
from stdl_edge.formats.netx import ALIGNED_INTERVAL
from stdl_edge.models import ModelConfig, build_model
from stdl_edge.quant import LayerQuant, fold_model, quantize_model

# 16x16: three 2x2 sum pools (16 -> 8 -> 4 -> 2), the first two before a conv, the last
# before flatten + dense, so both folds run
CONFIG = ModelConfig(arch="if-cnn", input_shape=(2, 16, 16), num_classes=4, width=0.25)
STREAM = StreamInfo((16, 16, 2), 1000, 6, class_names=("a", "b", "c", "d"))
STEPS, BATCH = 6, 3


def _if_cnn(seed: int = 0):
    net = build_model(CONFIG, seed=seed)
    with torch.no_grad():
        for layer in net.layers:
            if layer.kind in ("conv", "dense"):
                layer.synapse.weight.mul_(2.0)  # enough activity in every layer
    return net.eval()


def _frames(seed: int) -> np.ndarray:
    return (np.random.default_rng(seed).random((STEPS, BATCH, *CONFIG.input_shape)) < 0.3).astype(np.float32)


def test_sum_pooling_folds_into_the_next_conv_and_dense_without_dividing():
    net = _if_cnn()
    assert [layer.kind for layer in net.layers] == ["conv", "sumpool", "conv", "sumpool", "conv", "sumpool",
                                                    "flatten", "dense", "readout"]
    folded = fold_model(net)
    conv2, dense = folded[1], folded[4]
    w2 = net.layers[2].synapse.weight.detach()
    assert (conv2.kind, conv2.stride, conv2.padding, conv2.pooled, conv2.in_shape) == ("conv", 2, 2, 2, (4, 16, 16))
    assert torch.equal(conv2.weight, w2.repeat_interleave(2, 2).repeat_interleave(2, 3))  # no / k**2
    wd = net.layers[7].synapse.weight.detach().reshape(-1, 16, 2, 2)
    assert folded[3].kind == "flatten" and folded[3].in_shape == (16, 4, 4) and dense.pooled == 2
    assert torch.equal(dense.weight, wd.repeat_interleave(2, 2).repeat_interleave(2, 3).reshape(wd.shape[0], -1))
    x = torch.from_numpy(_frames(0)[0])
    with torch.no_grad():  # the fold is exact (float64): pool then conv == the folded conv on the unpooled map
        spikes = net.layers[0](x, net.layers[0].init_state(BATCH))[0].double()
        ref = torch.nn.functional.conv2d(net.layers[1](spikes)[0], w2.double(), stride=1, padding=1)
        got = torch.nn.functional.conv2d(spikes, conv2.weight.double(), stride=2, padding=2)
    assert spikes.sum() > 0 and torch.allclose(got, ref, rtol=0, atol=1e-9)


def _dequantized(net, q: list[LayerQuant]):
    """``net`` with each synapse set to its exported integers / scale (the pooled fold undone:
    one weight per ``k x k`` block) and each threshold to ``vThMant / scale``."""
    ref = build_model(net.config).eval()
    synapses = [layer for layer in ref.layers if layer.kind in ("conv", "dense", "readout")]
    for layer, lq in zip(synapses, q):
        k = lq.report["pool_folded"]
        w = lq.weight / lq.scale
        if k > 1:
            if lq.kind == "dense":  # after pooling + flatten: the flatten's input is the pooled map
                c, h, wd = next(x for x in ref.layers if x.kind == "flatten").in_shape
                w = w.reshape(w.shape[0], c, h * k, wd * k)
            small = w[:, :, ::k, ::k]
            assert np.array_equal(small.repeat(k, 2).repeat(k, 3), w)  # one integer per k x k block
            w = small.reshape(w.shape[0], -1) if lq.kind == "dense" else small
        with torch.no_grad():
            layer.synapse.weight.copy_(torch.tensor(w, dtype=torch.float32))
        if not lq.readout:
            layer.neuron = replace(layer.neuron, threshold=lq.vth / lq.scale)
    return ref


def test_loihi_sim_equals_the_float_if_cnn_with_the_exported_integers(tmp_path):
    """The bar of test_netx_export.py: identical spikes at every layer and step, the readout
    within 1e-5, between loihi-sim and the float network with the exported integers / scale."""
    net = _if_cnn(1)
    save_model(tmp_path / "r", net, STREAM)
    export(tmp_path / "r", evaluate=None)
    q = [x for x in quantize_model(net) if isinstance(x, LayerQuant)]
    ref = _dequantized(net, q)
    sim = LoihiSim.from_netx(tmp_path / "r" / "export" / "netx" / "model.net")
    frames = _frames(0)
    out = sim.run(np.concatenate([frames, np.zeros((sim.latency, *frames.shape[1:]), np.float32)]),
                  reset_interval=1 << 40, reset_offset=1)  # the aligned device mode
    states = ref.init_state(BATCH)
    spikes = values = 0
    worst = 0.0
    fired = [0] * len(q)
    with torch.no_grad():
        for t in range(STEPS):
            rec: list[torch.Tensor] = []
            _, states = ref.step(torch.from_numpy(frames[t]), states, record=rec)
            k = 0
            for name, y in zip(ref.layer_names(), rec):
                if name.endswith(("flatten", "sumpool")):
                    continue
                layer = sim.net.layers[k]
                if name.endswith("readout"):
                    v = out[f"{layer.name}/v"][t + k + 1] / (64 * layer.scale)
                    worst = max(worst, float(np.abs(v - y.numpy()).max()))
                else:
                    got = out[layer.name][t + k + 1]
                    assert np.array_equal(got, y.numpy().astype(np.int8)), (name, t)
                    spikes += int(y.sum())
                    fired[k] += int(y.sum())
                values += y.numel()
                k += 1
    print(f"if-cnn sum pooling, loihi-sim vs float: {values} values compared ({spikes} spikes), "
          f"spikes identical, largest readout difference {worst:.3g}")
    assert worst <= 1e-5
    assert all(fired[:-1]), f"a silent layer makes the comparison empty: {fired}"


@pytest.mark.lava
def test_loihi_sim_equals_lava_on_the_sum_pooled_if_cnn(tmp_path):
    from stdl_edge.devices.lava_compat import lava_available

    ok, why = lava_available()
    if not ok:
        pytest.skip(why)
    from stdl_edge.devices.lava_device import LavaDevice

    save_model(tmp_path / "r", _if_cnn(2), STREAM)
    path = export(tmp_path / "r", evaluate=None, subnets=False, aux=False)[0]
    frames = _frames(1)[:, :1]
    with LavaDevice.load(path, record=True, aligned=True) as lava:
        lava_readout = lava.run_frames(frames)
        lava_trace = lava.recorded_steps()
    sim = LoihiSim.from_netx(path, record=True)
    padded = np.concatenate([frames, np.zeros((sim.latency, *frames.shape[1:]), np.float32)])
    trace = sim.run(padded, reset_interval=ALIGNED_INTERVAL, reset_offset=1)
    assert set(trace) == set(lava_trace)
    values, worst = 0, 0
    for key in sorted(trace):
        a, b = trace[key].astype(np.int64), lava_trace[key].astype(np.int64)
        assert a.shape == b.shape, key
        values += a.size
        worst = max(worst, int(np.abs(a - b).max()))
    sim.set_reset(ALIGNED_INTERVAL, 1)
    sim.reset(1)
    readout = np.stack([sim.step(f) for f in padded])
    values += readout.size
    worst_readout = float(np.abs(readout - lava_readout).max())
    print(f"if-cnn sum pooling, loihi-sim vs Lava: {values} integer spikes/currents/voltages and readouts "
          f"compared, largest difference {worst} (integers), {worst_readout} (readout)")
    assert worst == 0 and worst_readout == 0.0
    hidden = [k for k in trace if "/" not in k][:-1]
    assert all(trace[k].any() for k in hidden), "a hidden layer never fired: the test network is too quiet"
