"""loihi-sim equals Lava on what else netx builds: recurrent dense, delays, sigma-delta, netx's options.

Every network here is written with h5py in netx's layout (as slayer's ``export_hdf5`` writes it),
run by Lava (``Loihi2SimCfg(select_tag='fixed_pt')`` through the ``lava`` device) and by loihi-sim,
and every layer's output and every neuron state (``u, v``; ``sigma, act, residue``) must be
identical at every step. Networks are tiny (a few neurons, a few steps) so Lava stays fast.
"""

from __future__ import annotations

import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from stdl_edge.devices.lava_compat import lava_available

sys.path.insert(0, str(Path(__file__).parent))  # --import-mode=importlib: the tests' own helper module
from lava_traces import assert_same_traces  # noqa: E402
from netx_files import write_net  # noqa: E402

OK, WHY = lava_available()
pytestmark = [pytest.mark.lava, pytest.mark.skipif(not OK, reason=f"Lava cannot be imported here: {WHY}")]


# ----------------------------------------------------------------------------- the comparison
def compare(path: Path, frames: np.ndarray, aligned: bool = False, **options) -> dict[str, np.ndarray]:
    """Lava's and loihi-sim's traces of ``frames (T, B, ...)`` (plus the pipeline's latency): identical."""
    from stdl_edge.devices.lava_device import LavaDevice
    from stdl_edge.devices.loihi_sim import LoihiSim
    from stdl_edge.formats.netx import ALIGNED_INTERVAL

    with LavaDevice.load(path, record=True, aligned=aligned, **options) as lava:
        lava_readout = lava.run_frames(frames)
        lava_trace = lava.recorded_steps()
        lava_stats = lava.stats()
    sim = LoihiSim.from_netx(path, record=True, **options)
    assert sim.latency == lava.latency and sim.input_mode == lava.input_mode
    padded = np.concatenate([frames, np.zeros((sim.latency, *frames.shape[1:]), np.float32)])
    interval, offset = (ALIGNED_INTERVAL, 1) if aligned else (None, 0)
    trace = sim.run(padded, reset_interval=interval, reset_offset=offset)
    assert_same_traces(trace, lava_trace)
    np.testing.assert_array_equal(sim.stats().spikes, lava_stats.spikes)
    np.testing.assert_array_equal(sim.stats().synops, lava_stats.synops)
    sim.set_reset(interval, offset)
    sim.reset(frames.shape[1])
    np.testing.assert_array_equal(np.stack([sim.step(f) for f in padded]), lava_readout)
    fast = LoihiSim.from_netx(path, **options)  # the whole-window path of classify and run
    fast.set_reset(interval, offset)
    np.testing.assert_array_equal(fast.run_frames(frames), lava_readout)
    np.testing.assert_array_equal(fast.stats().spikes, lava_stats.spikes)
    np.testing.assert_array_equal(fast.stats().synops, lava_stats.synops)
    outputs = [k for k in trace if "/" not in k]
    assert all(trace[k].any() for k in outputs[:-1]), "a hidden layer never fired: the test network is too quiet"
    return trace


def _spikes(steps: int, shape: tuple[int, ...], batch: int = 1, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).random((steps, batch, *shape)) < 0.5).astype(np.float32)


# ----------------------------------------------------------------------------- the features
def test_recurrent_dense_is_identical_in_lava(tmp_path):
    trace = compare(write_net(tmp_path / "rec.net", "dense_rec"), _spikes(8, (6,), batch=2))
    assert trace["layer0"].any()


def test_dense_delays_are_identical_in_lava(tmp_path):
    path = write_net(tmp_path / "delay.net", "delays")
    with pytest.warns(UserWarning, match="netx clamps"):
        from stdl_edge.formats.netx import read_netx

        net = read_netx(path)
    assert net.latency == (1 + 3) + (1 + 62) + (1 + 2)  # each synapse's step plus its longest delay
    trace = compare(path, _spikes(6, (8,)), aligned=True)
    # input at step 0 and nothing else: the first layer's neurons with delay d see it at 1 + d
    assert trace["layer2"].any()


def test_recurrent_dense_with_delays_matches_what_lava_does(tmp_path):
    """lava-dl 0.6 drops the weight exponent and reuses the input delays on the recurrent synapse;
    loihi-sim reproduces that (documented in docs/loihi.md), not what the file means."""
    from stdl_edge.formats.netx import read_netx

    path = write_net(tmp_path / "recdelay.net", "dense_rec_delays")
    layer = read_netx(path).layers[0]
    assert layer.weight_exp == 0 and np.array_equal(layer.delay_rec, layer.delay)
    compare(path, _spikes(6, (4,)))


def test_sigma_delta_network_is_identical_in_lava(tmp_path):
    """Delta encoding of graded frames, SigmaDelta conv and dense with graded spikes, Sigma readout."""
    frames = np.random.default_rng(1).integers(0, 6, (6, 1, 1, 4, 4)).astype(np.float32)
    trace = compare(write_net(tmp_path / "sdnn.net", "sdnn"), frames)
    assert np.abs(trace["layer1"]).max() > 1  # graded spikes, not 0/1
    assert {"layer1/sigma", "layer1/act", "layer1/residue", "layer0/act", "layer3/sigma"} <= set(trace)


def test_sigma_delta_recurrent_dense_is_identical_in_lava(tmp_path):
    """netx gives the recurrent synapse the block's input message bits: graded input, graded recurrence."""
    frames = np.random.default_rng(6).integers(-30, 60, (6, 1, 5)).astype(np.float32)
    trace = compare(write_net(tmp_path / "sdnnrec.net", "sdnn_rec"), frames, input_mode="graded",
                    input_message_bits=8)
    assert np.abs(trace["layer0"]).max() > 1


def test_input_modes_are_identical_in_lava(tmp_path):
    """bias (an input block), graded (payloads into the first synapse) and spike input."""
    path = write_net(tmp_path / "input.net", "input")
    counts = np.random.default_rng(2).integers(0, 4, (5, 1, 6)).astype(np.float32)
    trace = compare(path, counts, input_mode="bias")
    assert trace["layer0"].any()
    compare(path, _spikes(5, (6,)), input_mode="spike", skip_layers=1)  # skip the input block: spikes
    # graded payloads multiply the first synapse's weights (netx's Network(input_message_bits=4))
    rec = write_net(tmp_path / "rec.net", "dense_rec")
    compare(rec, counts * 3, input_mode="graded", input_message_bits=4)


def test_num_layers_runs_the_first_layers_as_netx(tmp_path):
    path = write_net(tmp_path / "rec.net", "dense_rec")
    trace = compare(path, _spikes(5, (6,)), num_layers=1)
    assert set(trace) == {"layer0", "layer0/u", "layer0/v"}


# ----------------------------------------------------------------------------- lava-dl's own exports
def slayer_export(path: Path, kind: str) -> Path:
    """A network built with lava-dl's slayer blocks and written by their own ``export_hdf5``."""
    import torch

    from stdl_edge.devices.lava_compat import import_lava

    slayer = import_lava().slayer
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(5)
        if kind == "recurrent":  # cuba.Recurrent (dense_rec) into a cuba.Dense with axonal delays
            p = dict(threshold=0.5, current_decay=0.25, voltage_decay=0.1, requires_grad=False)
            blocks = [slayer.block.cuba.Recurrent(p, 6, 5, weight_scale=2, weight_norm=False),
                      slayer.block.cuba.Dense(p, 5, 3, weight_scale=3, weight_norm=False, delay=True)]
            shape = (6,)
        else:  # sigma-delta: Input (Delta), Dense (SigmaDelta), Output (Sigma)
            p = dict(threshold=0.1, tau_grad=0.5, scale_grad=1.0, requires_grad=False, shared_param=True,
                     activation=torch.nn.functional.relu)
            blocks = [slayer.block.sigma_delta.Input(p), slayer.block.sigma_delta.Dense(p, 6, 5, weight_scale=2),
                      slayer.block.sigma_delta.Output(p, 5, 3, weight_scale=2)]
            shape = (6,)
        x = (torch.rand(1, *shape, 4) > 0.5).float()  # slayer sizes its neurons on the first forward pass
        with torch.no_grad():
            for block in blocks:
                x = block(x)
        if kind == "recurrent":
            blocks[1].delay.delay.data = torch.tensor([2.0, 0.0, 1.0])
    with h5py.File(path, "w") as f:
        group = f.create_group("layer")
        for i, block in enumerate(blocks):
            block.export_hdf5(group.create_group(str(i)))
    return path


def test_slayer_recurrent_and_delay_exports_are_identical_in_lava(tmp_path):
    path = slayer_export(tmp_path / "rec.net", "recurrent")
    with h5py.File(path) as f:
        assert f["layer/0/type"][0] == b"dense_rec" and "delay" in f["layer/1"]
    compare(path, _spikes(8, (6,), seed=3))


def test_slayer_sigma_delta_export_is_identical_in_lava(tmp_path):
    frames = np.random.default_rng(4).integers(0, 50, (6, 1, 6)).astype(np.float32)
    trace = compare(slayer_export(tmp_path / "sdnn.net", "sdnn"), frames)
    assert np.abs(trace["layer1"]).max() > 1
