"""loihi-sim on what netx builds beyond CUBA dense/conv, without Lava: golden timings of delays and
recurrence, sigma-delta arithmetic, netx's options, input modes and the refusals that name the field.

(The same features are checked bit for bit against Lava in ``test_loihi_sim_netx_vs_lava.py``.)
"""

from __future__ import annotations

import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from stdl_edge.devices.loihi_sim import LoihiSim
from stdl_edge.devices.loihi_sim_synapses import DenseKernel, exact_dtype
from stdl_edge.formats.netx import NetxError, read_netx

sys.path.insert(0, str(Path(__file__).parent))  # --import-mode=importlib: the tests' own helper module
from netx_files import KINDS, write_net  # noqa: E402


def _str(g, key, value):
    g.create_dataset(key, (1,), "S10", [value.encode()])


def _neuron(g, vth=10, i_decay=4096, v_decay=4096, kind="CUBA", sigma_output=False):
    n = g.create_group("neuron")
    _str(n, "type", kind)
    n.create_dataset("vThMant", data=vth)
    if kind == "CUBA":
        n.create_dataset("iDecay", data=i_decay)
        n.create_dataset("vDecay", data=v_decay)
    if sigma_output:
        n.create_dataset("sigma_output", data=True)


def _dense(f, i, weight, kind="dense", neuron=None, **data):
    g = f.create_group(f"layer/{i}")
    _str(g, "type", kind)
    g.create_dataset("shape", data=np.array([np.shape(weight)[0]]))
    g.create_dataset("weight", data=np.asarray(weight, dtype=np.float32))
    for key, value in data.items():
        g.create_dataset(key, data=value)
    _neuron(g, **(neuron or {}))
    return g


def _net(path, build):
    with h5py.File(path, "w") as f:
        build(f)
    return path


# ----------------------------------------------------------------------------- golden timings
def test_a_delay_adds_steps_after_the_synapse_step(tmp_path):
    """One input spike at step 0; output neuron k has delay k: its current arrives at step 1 + k
    (the synapse's own step plus the delay); iDecay 4096 forgets it the step after."""
    path = _net(tmp_path / "d.net", lambda f: _dense(f, 0, np.full((3, 1), 20), delay=np.array([0, 1, 3])))
    sim = LoihiSim.from_netx(path)
    assert sim.latency == 1 + 3
    out = sim.run(np.array([1, 0, 0, 0, 0, 0], np.float32).reshape(6, 1, 1))
    u = out["layer0/u"][:, 0]
    assert np.array_equal(np.argwhere(u)[:, ::-1].tolist(), [[0, 1], [1, 2], [2, 4]])
    assert u[1, 0] == 20 << 6


def test_recurrent_input_arrives_one_step_later(tmp_path):
    """dense_rec: a neuron that fires at step t feeds itself (weight_rec) at t + 1."""
    path = _net(tmp_path / "r.net", lambda f: _dense(f, 0, [[100]], kind="dense_rec", weight_rec=np.array([[60.0]]),
                                                      neuron={"vth": 50}))
    out = LoihiSim.from_netx(path).run(np.array([1, 0, 0, 0], np.float32).reshape(4, 1, 1))
    # step 1: 100 << 6 fires (> 50 << 6); step 2: only the recurrent 60 << 6 arrives, fires again
    assert out["layer0"][:, 0, 0].tolist() == [0, 1, 1, 1]
    assert out["layer0/u"][:, 0, 0].tolist() == [0, 100 << 6, 60 << 6, 60 << 6]


def test_sigma_delta_sends_changes_only(tmp_path):
    """A step input of 1.0 (payload 64 = 1 << 6), delta-encoded: SigmaDelta's activation rises once to
    64 * 64 = 4096 (= vThMant 1 << 12), so it sends one graded spike 4096 >> 6 = 64 and then
    nothing; the Sigma readout keeps the sum of what it received."""
    def build(f):
        _dense(f, 0, [[64]], neuron={"kind": "SDNN", "vth": 1})
        _dense(f, 1, [[64]], neuron={"kind": "SDNN", "sigma_output": True})

    sim = LoihiSim.from_netx(_net(tmp_path / "s.net", build), input_message_bits=8)
    assert sim.input_mode == "graded"
    out = sim.run(np.array([64, 0, 0, 0, 0], np.float32).reshape(5, 1, 1))
    assert out["layer0/sigma"][:, 0, 0].tolist() == [0, 4096, 4096, 4096, 4096]
    assert out["layer0"][:, 0, 0].tolist() == [0, 64, 0, 0, 0]
    assert out["layer0/residue"][:, 0, 0].tolist() == [0] * 5
    assert out["layer1"][:, 0, 0].tolist() == [0, 0, 4096, 4096, 4096]


# ----------------------------------------------------------------------------- netx's options
def test_num_layers_and_skip_layers_follow_netx(tmp_path):
    def build(f):
        g = f.create_group("layer/0")
        _str(g, "type", "input")
        g.create_dataset("shape", data=np.array([4]))
        _neuron(g)
        _dense(f, 1, np.full((3, 4), 10))
        _dense(f, 2, np.full((2, 3), 10))

    path = _net(tmp_path / "n.net", build)
    assert [la.kind for la in read_netx(path).layers] == ["input", "dense", "dense"]
    assert [la.kind for la in read_netx(path, num_layers=2).layers] == ["input", "dense"]
    skipped = read_netx(path, skip_layers=1)
    assert [la.index for la in skipped.layers] == [1, 2] and skipped.input_shape == (4,) and skipped.bits_from_file
    assert LoihiSim.from_netx(path).input_mode == "bias"
    assert LoihiSim.from_netx(path, skip_layers=1).input_mode == "spike"
    with pytest.raises(ValueError, match="netx takes its input's message bits from the layer before"):
        LoihiSim.from_netx(path, skip_layers=1, input_mode="graded")
    with pytest.raises(NetxError, match="no block"):
        read_netx(path, skip_layers=3)
    with pytest.raises(NetxError, match="num_layers=0"):
        read_netx(path, num_layers=0)


def test_input_modes_refuse_what_the_network_cannot_take(tmp_path):
    path = _net(tmp_path / "d.net", lambda f: _dense(f, 0, np.full((2, 3), 10)))
    with pytest.raises(ValueError, match="input_mode='bias' needs an input layer"):
        LoihiSim.from_netx(path, input_mode="bias")
    with pytest.raises(ValueError, match="unknown"):
        LoihiSim.from_netx(path, input_mode="rate")
    graded = LoihiSim.from_netx(path, input_mode="graded")
    assert graded.net.layers[0].input_message_bits == 8  # the default when the file records none
    graded.reset(1)
    with pytest.raises(ValueError, match="value 300 does not fit the input's 8-bit payload"):
        graded.step(np.array([[300, 0, 0]], np.float32))
    with pytest.raises(ValueError, match="whole numbers"):
        graded.step(np.array([[0.5, 0, 0]], np.float32))
    spikes = LoihiSim.from_netx(path)
    spikes.reset(1)
    graded.reset(1)
    x = np.array([[3, 0, 1]], np.float32)  # a spike is any non-zero; graded multiplies the weights
    for _ in range(2):
        a, b = spikes.step(x), graded.step(x)
    assert spikes.recorded() == {} and float(b[0, 0]) == pytest.approx(4 * float(a[0, 0]) / 2)


# ----------------------------------------------------------------------------- refusals
@pytest.mark.parametrize("data,message", [
    ({"delay": np.array([1, 2])}, "delay of shape \\(2,\\) fits neither"),
    ({"delay": np.full((3, 2), 1)}, "delay of shape \\(3, 2\\) differs from the weight's"),
    ({"delay": np.array([-1, 0, 1])}, "negative delay -1"),
])
def test_bad_delays_name_the_layer(tmp_path, data, message):
    path = _net(tmp_path / "d.net", lambda f: _dense(f, 0, np.full((3, 4), 10), **data))
    with pytest.raises(NetxError, match=f"layer/0: {message}"):
        read_netx(path)


def test_bad_recurrent_layers_name_the_layer(tmp_path):
    path = _net(tmp_path / "a.net", lambda f: _dense(f, 0, np.full((3, 4), 10), kind="dense_rec"))
    with pytest.raises(NetxError, match="layer/0: a dense_rec layer needs a 'weight_rec'"):
        read_netx(path)
    path = _net(tmp_path / "b.net", lambda f: _dense(f, 0, np.full((3, 4), 10), kind="dense_rec",
                                                      weight_rec=np.full((3, 4), 2.0)))
    with pytest.raises(NetxError, match=r"weight_rec of shape \(3, 4\) must be \(3, 3\)"):
        read_netx(path)
    path = _net(tmp_path / "c.net", lambda f: _dense(f, 0, np.full((3, 4), 10), kind="dense_rec",
                                                      weight_rec=np.full((3, 3), 2.0), delay=np.array([1, 0, 2])))
    with pytest.raises(NetxError, match="dense_rec with delays and 4 inputs for 3 neurons"):
        read_netx(path)
    path = _net(tmp_path / "s.net", lambda f: _dense(f, 0, [[10]], bias=np.array([3]),
                                                      neuron={"kind": "SDNN", "sigma_output": True}))
    with pytest.raises(NetxError, match="'sigma_output' neuron with a 'bias'"):
        read_netx(path)


# ----------------------------------------------------------------------------- exactness
def test_the_float_blas_bound_picks_an_exact_dtype():
    rng = np.random.default_rng(0)
    w = rng.integers(-255, 256, (7, 300))
    kernel = DenseKernel(w)
    assert kernel.bound == float(np.abs(w).sum(axis=1).max())
    x = rng.integers(0, 2, (3, 300))
    ref = (x @ w.T).astype(np.float64)
    assert exact_dtype(kernel.bound, 1) is np.float32
    for dtype in (None, np.float64, np.int64):
        assert np.array_equal(kernel(x, graded=False, dtype=dtype), ref)
    assert np.array_equal(kernel(x[:1], graded=False), ref[:1])  # the sparse single-stream gather
    big = x * (1 << 20)  # 300 * 255 * 2**20 > 2**24: float64, still exact
    assert exact_dtype(kernel.bound, 1 << 20) is np.float64
    assert np.array_equal(kernel(big, graded=True), (big @ w.T).astype(np.float64))


def test_the_run_command_takes_an_input_mode_for_netx_devices_only(tmp_path):
    from typer.testing import CliRunner

    from stdl_edge.cli import app, is_user_error

    runner = CliRunner()
    bad = runner.invoke(app, ["run", str(tmp_path / "run"), "--events", "x.npz", "--device", "torch",
                              "--input-mode", "graded"])
    assert isinstance(bad.exception, ValueError) and is_user_error(bad.exception)
    assert "--input-mode is for the netx devices (loihi-sim, lava), not torch" in str(bad.exception)
    path = _net(tmp_path / "d.net", lambda f: _dense(f, 0, np.full((2, 3), 10)))
    wrong = runner.invoke(app, ["run", str(path), "--events", "x.npz", "--device", "loihi-sim",
                                "--input-mode", "bias"])
    assert isinstance(wrong.exception, ValueError) and "input_mode='bias' needs an input layer" in str(wrong.exception)


# ----------------------------------------------------------------------------- the window path
@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize("aligned", [True, False])
def test_whole_window_run_equals_stepping(tmp_path, kind, aligned):
    """``run_frames`` (layer by layer, each synapse once per chunk of steps: what classify and
    ``run`` use) gives the readouts and counts of stepping, bit for bit, over several chunks and
    a batch of streams, on every kind of block netx builds (delays, dense_rec, sigma-delta,
    bias-fed input, conv) and with netx's aligned reset or none."""
    from stdl_edge.devices.base import Device
    from stdl_edge.devices.base import CHUNK_STEPS

    path = write_net(tmp_path / f"{kind}.net", kind)
    options = {"input_message_bits": 8} if kind == "sdnn" else {}
    rng = np.random.default_rng(3)
    shape = KINDS[kind]
    steps = 2 * CHUNK_STEPS + 7
    frames = rng.random((steps, 3, *shape)) < 0.4
    frames = (frames * rng.integers(1, 60, frames.shape) if kind == "sdnn" else frames).astype(np.float32)
    stepped, windowed = (LoihiSim.from_netx(path, aligned=aligned, **options) for _ in range(2))
    expected = Device.run_frames(stepped, frames)
    got = windowed.run_frames(frames)
    assert got.shape == (steps + windowed.latency, 3, windowed.num_classes)
    np.testing.assert_array_equal(got, expected)
    a, b = stepped.stats(), windowed.stats()
    assert a.steps == b.steps == steps + windowed.latency and a.spikes.any()
    np.testing.assert_array_equal(a.spikes, b.spikes)
    np.testing.assert_array_equal(a.synops, b.synops)
