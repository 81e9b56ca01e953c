"""The `lava` device: registration, step-by-step vs whole-sample runs, boundary errors, no leaked runtimes."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import numpy as np
import pytest

from stdl_edge.devices.lava_compat import lava_available
from stdl_edge.registry import DEVICES

OK, WHY = lava_available()
needs_lava = pytest.mark.skipif(not OK, reason=f"Lava cannot be imported here: {WHY}")
pytestmark = pytest.mark.lava


def small_net(tmp_path: Path) -> tuple[Path, tuple[int, int, int]]:
    """A 3-block dense network (2x3x3 input) exported by our netx exporter, active enough to fire."""
    import torch

    from stdl_edge.artifact import StreamInfo
    from stdl_edge.exporters.netx import export_network
    from stdl_edge.layers import Flatten, Readout, SpikingDense
    from stdl_edge.models import ModelConfig, SpikingNet
    from stdl_edge.neuron import CubaParams

    shape = (2, 3, 3)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(11)
        layers = [Flatten(shape), SpikingDense(18, 8, bias=True, neuron=CubaParams()),
                  SpikingDense(8, 5, neuron=CubaParams(current_decay=0.5)), Readout(5, 3)]
        net = SpikingNet(layers, ModelConfig(input_shape=shape, num_classes=3)).eval()
        with torch.no_grad():
            for p in net.parameters():
                p.mul_(3.0)
    stream = StreamInfo(sensor_size=(3, 3, 2), dt_us=2000, num_steps=4, class_names=("a", "b", "c"))
    path, _ = export_network(net, stream, tmp_path / "export" / "netx" / "model.net")
    return path, shape


def _alive_children() -> set[int]:
    return {p.pid for p in multiprocessing.active_children() if p.is_alive()}


def test_lava_is_registered_and_needs_lava():
    entry = next(e for e in DEVICES.entries() if e.name == "lava")
    assert "lava" in entry.requires and entry.extra == "lava"
    assert "Lava" in entry.summary


def test_missing_artifact_is_a_clear_error(tmp_path):
    from stdl_edge.devices import open_device

    with pytest.raises(FileNotFoundError, match="does not exist"):
        open_device("lava", tmp_path / "nothing.net")
    with pytest.raises(FileNotFoundError, match="stdl-edge export"):
        open_device("lava", tmp_path)  # a folder without model.net


@needs_lava
def test_opens_a_run_folder_and_reads_the_stream(tmp_path):
    from stdl_edge.devices import open_device

    path, shape = small_net(tmp_path)
    dev = open_device("lava", tmp_path)  # finds export/netx/model.net
    assert dev.path == path and dev.input_shape == shape and dev.num_classes == 3
    assert dev.latency == 3 and [layer.name for layer in dev.layers] == ["layer0", "layer1", "layer2"]
    assert dev.stream.dt_us == 2000 and dev.stream.class_names == ("a", "b", "c")


@needs_lava
def test_step_by_step_equals_whole_sample_run(tmp_path):
    """The generic Device API (one Lava step per call) and the fast path give the same numbers."""
    from stdl_edge.devices.lava_device import LavaDevice

    path, shape = small_net(tmp_path)
    frames = (np.random.default_rng(2).random((3, 2, *shape)) < 0.5).astype(np.float32)
    before = _alive_children()
    with LavaDevice.load(path, record=True) as dev:
        fast = dev.run_frames(frames)  # (T + latency, B, classes)
        trace = dev.recorded_steps()
        fast_stats = dev.stats()
        assert _alive_children() <= before, "run_frames left a Lava runtime running"
        dev.reset(2)
        padded = np.concatenate([frames, np.zeros((dev.latency, *frames.shape[1:]), np.float32)])
        for t, frame in enumerate(padded):
            np.testing.assert_array_equal(dev.step(frame), fast[t])
            if t == 0:  # step mode keeps one runtime per stream alive between calls
                assert len(_alive_children() - before) >= 2
            rec = dev.recorded()
            assert set(rec) == set(trace)
            for key, value in rec.items():
                np.testing.assert_array_equal(value, trace[key][t], err_msg=f"{key} at step {t}")
                assert value.dtype == (np.int64 if "/" in key else np.float32)
        step_stats = dev.stats()
    assert _alive_children() <= before, "close() left a Lava runtime running"
    assert trace["layer0"].any() and trace["layer1"].any()
    np.testing.assert_array_equal(step_stats.spikes, fast_stats.spikes)
    np.testing.assert_array_equal(step_stats.synops, fast_stats.synops)
    assert step_stats.steps == fast_stats.steps == len(padded) and step_stats.batch == 2


@needs_lava
def test_runtime_is_stopped_when_a_run_fails(tmp_path, monkeypatch):
    from stdl_edge.devices import lava_device

    path, shape = small_net(tmp_path)
    dev = lava_device.LavaDevice.load(path)
    monitor = dev.lava.Monitor

    def broken(self):
        raise RuntimeError("monitor read failed")

    monkeypatch.setattr(monitor, "get_data", broken)
    before = _alive_children()
    with pytest.raises(RuntimeError, match="monitor read failed"):
        dev.run_frames(np.ones((2, 1, *shape), np.float32))
    assert len(lava_device._LIVE) == 0
    assert _alive_children() <= before
    # step mode: a step that fails after its runtime started stops it too
    dev.reset(1)
    real_step = lava_device._StepStream.step

    def failing_step(stream, device, frame):
        real_step(stream, device, frame)  # starts the runtime
        raise RuntimeError("step failed")

    monkeypatch.setattr(lava_device._StepStream, "step", failing_step)
    with pytest.raises(RuntimeError, match="step failed"):
        dev.step(np.ones((1, *shape), np.float32))
    assert len(lava_device._LIVE) == 0 and _alive_children() <= before
    with pytest.raises(RuntimeError, match="reset"):
        dev.step(np.ones((1, *shape), np.float32))


@needs_lava
def test_boundary_errors(tmp_path):
    from stdl_edge.devices.lava_device import LavaDevice

    path, shape = small_net(tmp_path)
    dev = LavaDevice.load(path)
    with pytest.raises(RuntimeError, match="reset"):
        dev.step(np.zeros((1, *shape), np.float32))
    with pytest.raises(ValueError, match="0/1 spikes"):
        dev.run_frames(np.full((2, 1, *shape), 2.0, np.float32))
    with pytest.raises(ValueError, match="expected"):
        dev.run_frames(np.zeros((2, 1, 2, 4, 4), np.float32))
    with pytest.raises(ValueError, match="readout"):
        LavaDevice.load(path, readout="logits")
    assert dev.hardware == dev.lava.hardware  # default: Loihi 2 exactly when lava-loihi is importable
    if not dev.lava.hardware:
        with pytest.raises(RuntimeError, match="lava-loihi"):
            LavaDevice.load(path, hardware=True)


@needs_lava
def test_counting_can_be_turned_off_and_matches_recording(tmp_path):
    """count=False probes only the readout (fast); the default counts as record does."""
    from stdl_edge.devices.lava_device import LavaDevice

    path, shape = small_net(tmp_path)
    frames = (np.random.default_rng(4).random((3, 1, *shape)) < 0.5).astype(np.float32)
    plain, counting, recording = (LavaDevice.load(path, count=False), LavaDevice.load(path),
                                  LavaDevice.load(path, record=True))
    readouts = [d.run_frames(frames) for d in (plain, counting, recording)]
    np.testing.assert_array_equal(readouts[0], readouts[1])
    np.testing.assert_array_equal(readouts[0], readouts[2])
    assert plain.stats().spikes.size == 0 and plain.stats().steps == 3 + plain.latency
    assert plain.recorded() == {} and counting.recorded() == {}
    np.testing.assert_array_equal(counting.stats().spikes, recording.stats().spikes)
    np.testing.assert_array_equal(counting.stats().synops, recording.stats().synops)
    assert counting.stats().spikes.sum() > 0


@needs_lava
def test_input_block_network_steps_like_loihi_sim(tmp_path):
    """A lava-dl file starting with netx's Input block is fed through the input neurons' bias,
    also step by step; each step's spikes and states equal loihi-sim's (device mode, aligned)."""
    import h5py
    import torch

    from stdl_edge.devices.lava_compat import import_lava
    from stdl_edge.devices.lava_device import LavaDevice
    from stdl_edge.devices.loihi_sim import LoihiSim

    cuba = import_lava().slayer.block.cuba
    p = dict(threshold=1.0, current_decay=0.25, voltage_decay=0.1, requires_grad=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(5)
        blocks = [cuba.Input(p, weight=1, bias=0), cuba.Dense(p, 12, 4, weight_scale=2, weight_norm=False)]
        x = torch.zeros(1, 12, 2)
        for block in blocks:
            x = block(x)
    path = tmp_path / "input.net"
    with h5py.File(path, "w") as f:
        for i, block in enumerate(blocks):
            block.export_hdf5(f.create_group(f"layer/{i}"))
    frames = (np.random.default_rng(6).random((5, 1, 12)) < 0.5).astype(np.float32)
    sim = LoihiSim.from_netx(path, record=True)
    sim.reset(1)
    with LavaDevice.load(path, record=True, readout="spikes") as dev:
        assert dev.input_shape == (12,) and dev.bias_input and dev.latency == 1
        dev.reset(1)
        sim.readout = "spikes"
        for t, frame in enumerate(frames):
            np.testing.assert_array_equal(dev.step(frame), sim.step(frame))
            expected, got = sim.recorded(), dev.recorded()
            assert set(expected) == set(got)
            for key in expected:
                np.testing.assert_array_equal(got[key], expected[key], err_msg=f"{key} at step {t}")
        assert dev.stats().spikes[0] > 0  # the input layer fired
