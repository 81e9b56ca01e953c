"""loihi-sim equals Lava (Loihi2SimCfg fixed_pt): identical spikes, currents and voltages at every step.

Networks: (a) ours, exported by exporters/netx.py from small SpikingNets (dense; conv with a
folded average pooling, biases, leaky currents; a recurrent dense layer, netx's dense_rec); (b) lava-dl's own, built with
lava.lib.dl.slayer blocks and written by slayer's ``export_hdf5`` (dense; conv after a
shape-only input layer, square and rectangular with groups; slayer's ``Input`` block, which
Lava feeds through the neurons' bias).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from stdl_edge.devices.lava_compat import lava_available

sys.path.insert(0, str(Path(__file__).parent))  # --import-mode=importlib: the tests' own helper module
from lava_traces import assert_same_traces  # noqa: E402

OK, WHY = lava_available()
pytestmark = [pytest.mark.lava, pytest.mark.skipif(not OK, reason=f"Lava cannot be imported here: {WHY}")]


# ----------------------------------------------------------------------------- networks
def ours(tmp_path: Path, kind: str) -> tuple[Path, tuple[int, ...]]:
    """A small SpikingNet exported by our netx exporter; weights scaled up so every layer fires."""
    import torch

    from stdl_edge.artifact import StreamInfo
    from stdl_edge.exporters.netx import export_network
    from stdl_edge.layers import AvgPool2d, Flatten, Readout, SpikingConv2d, SpikingDense, SpikingRecurrentDense
    from stdl_edge.models import ModelConfig, SpikingNet
    from stdl_edge.neuron import CubaParams

    leaky = CubaParams(current_decay=0.5, voltage_decay=0.25)  # u carries over: exercises the decays
    biased = CubaParams(current_decay=1.0, voltage_decay=0.25)  # a bias needs du = 1 on Loihi
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(7)
        if kind == "dense":
            shape = (2, 4, 4)
            layers = [Flatten(shape), SpikingDense(32, 10, bias=True, neuron=biased),
                      SpikingDense(10, 6, neuron=leaky), Readout(6, 3)]
        elif kind == "dense_rec":  # a recurrent layer (netx dense_rec) between two dense ones
            shape = (2, 4, 4)
            layers = [Flatten(shape), SpikingDense(32, 10, neuron=leaky), SpikingRecurrentDense(10, 8, neuron=leaky),
                      Readout(8, 3)]
        else:
            shape = (2, 8, 8)
            layers = [SpikingConv2d(shape, 4, 3, stride=2, padding=1, bias=True, neuron=biased)]
            layers += [SpikingConv2d(layers[-1].out_shape, 4, 3, padding=1, neuron=leaky)]
            layers += [AvgPool2d(layers[-1].out_shape, 2)]
            layers += [Flatten(layers[-1].out_shape), SpikingDense(16, 8, neuron=leaky), Readout(8, 3)]
        net = SpikingNet(layers, ModelConfig(input_shape=shape, num_classes=3)).eval()
        with torch.no_grad():
            for p in net.parameters():
                p.mul_(3.0)
    stream = StreamInfo(sensor_size=(shape[2], shape[1], shape[0]), dt_us=1000, num_steps=6)
    path, _ = export_network(net, stream, tmp_path / f"ours-{kind}.net")
    return path, shape


def slayer_net(tmp_path: Path, kind: str) -> tuple[Path, tuple[int, ...]]:
    """A network built with lava-dl's slayer and written by its own ``export_hdf5``."""
    import h5py
    import torch

    from stdl_edge.devices.lava_compat import import_lava

    slayer = import_lava().slayer
    p = dict(threshold=1.0, current_decay=0.25, voltage_decay=0.1, requires_grad=False)
    cuba = slayer.block.cuba
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        if kind == "dense":
            shape, blocks = (20,), [cuba.Dense(p, 20, 12, weight_scale=2, weight_norm=False),
                                    cuba.Dense(p, 12, 5, weight_scale=2, weight_norm=False)]
        elif kind == "conv-rect":  # H != W, asymmetric kernel/stride/padding, groups: catches x/y swaps
            shape = (2, 7, 10)
            blocks = [cuba.Conv(p, 2, 4, (3, 5), padding=(1, 2), stride=(2, 1), groups=2, weight_scale=2,
                                weight_norm=False), cuba.Flatten(),
                      cuba.Dense(p, 4 * 4 * 10, 5, weight_scale=2, weight_norm=False)]
        else:
            shape = (2, 8, 8)
            blocks = [cuba.Input(p, weight=1, bias=0)] if kind == "input" else []
            blocks += [cuba.Conv(p, 2, 4, 3, padding=1, stride=2, weight_scale=2, weight_norm=False),
                       cuba.Flatten(), cuba.Dense(p, 64, 6, weight_scale=2, weight_norm=False)]
        x = torch.zeros(1, *shape, 2)  # slayer sizes its neurons on the first forward pass
        for block in blocks:
            x = block(x)
    path = tmp_path / f"slayer-{kind}.net"
    with h5py.File(path, "w") as f:
        group = f.create_group("layer")
        offset = 0
        if kind.startswith("conv"):  # netx needs the input size of a first conv: a shape-only input layer
            g = group.create_group("0")
            g.create_dataset("type", data=np.array([b"input"], dtype="S10"))
            g.create_dataset("shape", data=np.array(shape))
            offset = 1
        for i, block in enumerate(blocks):
            block.export_hdf5(group.create_group(str(i + offset)))
    return path, shape


# ----------------------------------------------------------------------------- the comparison
def compare(path: Path, shape: tuple[int, ...], aligned: bool, steps: int = 6, batch: int = 1,
            seed: int = 0) -> dict[str, np.ndarray]:
    """Run ``path`` on both; assert identical integer traces, readouts and counts; return the traces."""
    from stdl_edge.devices.lava_device import LavaDevice
    from stdl_edge.devices.loihi_sim import LoihiSim
    from stdl_edge.formats.netx import ALIGNED_INTERVAL

    rng = np.random.default_rng(seed)
    frames = (rng.random((steps, batch, *shape)) < 0.4).astype(np.float32)
    with LavaDevice.load(path, record=True, aligned=aligned) as lava:
        lava_readout = lava.run_frames(frames)
        lava_trace = lava.recorded_steps()
        lava_stats = lava.stats()
    sim = LoihiSim.from_netx(path, record=True)
    padded = np.concatenate([frames, np.zeros((sim.latency, *frames.shape[1:]), np.float32)])
    trace = sim.run(padded, reset_interval=ALIGNED_INTERVAL if aligned else None, reset_offset=1 if aligned else 0)
    sim_stats = sim.stats()

    assert lava.latency == sim.latency and lava.layers[0].name == "layer0"
    assert_same_traces(trace, lava_trace)
    np.testing.assert_array_equal(lava_stats.spikes, sim_stats.spikes)
    np.testing.assert_array_equal(lava_stats.synops, sim_stats.synops)
    # the float readout too: loihi-sim's own step() (its device mode) against Lava's
    sim.set_reset(ALIGNED_INTERVAL if aligned else None, 1 if aligned else 0)
    sim.reset(batch)
    np.testing.assert_array_equal(np.stack([sim.step(f) for f in padded]), lava_readout)
    # and the whole-window path that classify and run take (layer by layer, synapses batched in time)
    fast = LoihiSim.from_netx(path)
    fast.set_reset(ALIGNED_INTERVAL if aligned else None, 1 if aligned else 0)
    np.testing.assert_array_equal(fast.run_frames(frames), lava_readout)
    np.testing.assert_array_equal(fast.stats().spikes, lava_stats.spikes)
    np.testing.assert_array_equal(fast.stats().synops, lava_stats.synops)
    # the comparison means something only if the network is active
    hidden = [k for k in trace if "/" not in k][:-1]
    assert all(trace[k].any() for k in hidden), "a hidden layer never fired: the test network is too quiet"
    assert all(np.abs(trace[f"{k}/v"]).max() > 0 for k in hidden)
    assert any(np.abs(trace[f"{k}/u"]).max() > 0 for k in hidden)  # an input block's u stays 0 (bias-fed)
    return trace


# ----------------------------------------------------------------------------- (a) our exports
@pytest.mark.parametrize("kind,aligned,batch", [("dense", True, 1), ("conv", True, 2), ("conv", False, 1),
                                                ("dense_rec", True, 2)])
def test_our_exports_are_identical_in_lava(tmp_path, kind, aligned, batch):
    path, shape = ours(tmp_path, kind)
    compare(path, shape, aligned=aligned, batch=batch)


def test_classify_agrees_with_loihi_sim(tmp_path):
    """What `verify` relies on: the same time-averaged readout from both devices."""
    from stdl_edge.devices import classify, open_device

    path, shape = ours(tmp_path, "conv")
    frames = (np.random.default_rng(5).random((5, 1, *shape)) < 0.4).astype(np.float32)
    lava = open_device("lava", path)
    try:
        np.testing.assert_array_equal(classify(lava, frames), classify(open_device("loihi-sim", path), frames))
    finally:
        lava.close()


# ----------------------------------------------------------------------------- (b) lava-dl's exports
@pytest.mark.parametrize("kind", ["dense", "conv", "conv-rect", "input"])
def test_slayer_exports_are_identical_in_lava(tmp_path, kind):
    path, shape = slayer_net(tmp_path, kind)
    trace = compare(path, shape, aligned=False)
    if kind == "input":  # the input block is a neuron layer of its own, fed through its bias
        assert "layer0" in trace and trace["layer0"].any()
