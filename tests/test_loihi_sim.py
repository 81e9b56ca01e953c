"""loihi-sim: bit-exact golden traces of Lava's fixed-point CUBA arithmetic, netx parsing, device API."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch
from torch.nn import functional as F

from stdl_edge.devices import open_device
from stdl_edge.devices.loihi_sim import LoihiNet, LoihiSim, cuba_fixed_step, decay_toward_zero, wrap_current
from stdl_edge.formats.netx import NetxError, netx_dense_weights

MAX = 1 << 23


def _str(g, key, value):
    g.create_dataset(key, (1,), "S10", [value.encode()])


def _neuron(g, i_decay=4096, v_decay=0, vth=10, msg_bits=None):
    n = g.create_group("neuron")
    _str(n, "type", "CUBA")
    n.create_dataset("iDecay", data=i_decay)
    n.create_dataset("vDecay", data=v_decay)
    n.create_dataset("vThMant", data=vth)
    n.create_dataset("refDelay", data=1)
    n.create_dataset("gradedSpike", data=False)
    if msg_bits is not None:
        n.create_dataset("messageBits", data=msg_bits)


def write_dense_chain(path, weights, neurons, input_shape=None, biases=None):
    """A netx file: optional input layer, then one dense layer per weight matrix."""
    with h5py.File(path, "w") as f:
        layer = f.create_group("layer")
        i = 0
        if input_shape is not None:
            g = layer.create_group(str(i))
            _str(g, "type", "input")
            g.create_dataset("shape", data=np.array(input_shape))
            i += 1
        for k, (w, n) in enumerate(zip(weights, neurons)):
            g = layer.create_group(str(i))
            _str(g, "type", "dense")
            g.create_dataset("shape", data=np.array([w.shape[0]]))
            g.create_dataset("weight", data=np.asarray(w, dtype=np.float32))
            if biases is not None and biases[k] is not None:
                g.create_dataset("bias", data=np.asarray(biases[k]))
            _neuron(g, **n)
            i += 1
    return path


# ----------------------------------------------------------------------------- arithmetic goldens
def test_decay_rounds_toward_zero_not_down():
    # 5 * 2048 / 4096 = 2.5 -> 2 and -2.5 -> -2 (a floor would give -3); 3.5 -> 3, -3.5 -> -3
    assert decay_toward_zero(np.array([5, -5, 7, -7]), 2048).tolist() == [2, -2, 3, -3]
    assert decay_toward_zero(np.array([-4097]), 4095).tolist() == [-1]  # -4097 * 1 / 4096 -> -1
    assert decay_toward_zero(np.array([123456]), 4096).tolist() == [0]  # full decay


def test_current_wraps_like_lava_at_24_bits():
    # Lava: u > 2**23 wraps by -2**24; u <= -2**23 by +2**24; exactly 2**23 stays (its quirk)
    assert wrap_current(np.array([MAX, MAX + 64, -MAX, -MAX - 64, MAX - 1])).tolist() == \
        [MAX, -MAX + 64, MAX, MAX - 64, MAX - 1]
    s, u, v = cuba_fixed_step(np.array([(1 << 17) + 1]), np.array([0]), np.array([0]), 4096, 4096, 0, 1 << 18)
    assert u.tolist() == [(1 << 23) + 64 - (1 << 24)]  # a big positive input becomes negative


def test_voltage_saturates_instead_of_wrapping():
    s, u, v = cuba_fixed_step(np.array([100_000]), np.array([0]), np.array([MAX - 10]), 4096, 0, 0, (1 << 18) - 1)
    assert v.tolist() == [MAX - 1] and not s.any()
    s, u, v = cuba_fixed_step(np.array([-100_000]), np.array([0]), np.array([-MAX + 10]), 4096, 0, 0, 10)
    assert v.tolist() == [-MAX + 1]


def test_threshold_is_strict_and_spike_resets_voltage():
    # vth = 10 -> effective 640; a = 10 gives u = v = 640: no spike; a = 11 gives 704 > 640: spike, v = 0
    s, u, v = cuba_fixed_step(np.array([10, 11]), np.zeros(2, np.int64), np.zeros(2, np.int64), 4096, 0, 0, 10)
    assert s.tolist() == [False, True]
    assert u.tolist() == [640, 704] and v.tolist() == [640, 0]


def test_bias_is_shifted_by_six_and_added_to_voltage():
    s, u, v = cuba_fixed_step(np.array([0]), np.array([0]), np.array([0]), 4096, 4096, np.array([3]), 100)
    assert (u.tolist(), v.tolist()) == ([0], [192])


def test_hand_computed_trace_with_latency(tmp_path):
    """One input -> dense (weight 4) -> CUBA (iDecay 2048, vDecay 1024, vThMant 10).

    Step t's input reaches the neuron at t + 1 (Lava's synapse buffer). By hand, input spikes
    at t = 0, 1, 2 (then 0):  a = 0, 4, 4, 4, 0, ...
      u: 0, 256, 128 + 256 = 384, 192 + 256 = 448, 224, 112
      v: 0, 256, 192 + 384 = 576, 432 + 448 = 880 > 640 -> spike, 0, then 0 + 224 = 224, 168 + 112 = 280
    """
    path = write_dense_chain(tmp_path / "one.net", [np.array([[4]])],
                             [dict(i_decay=2048, v_decay=1024, vth=10)], input_shape=[1])
    sim = LoihiSim.from_netx(path)
    assert sim.latency == 1
    x = np.array([1, 1, 1, 0, 0, 0]).reshape(6, 1, 1)
    out = sim.run(x)
    assert out["layer0/u"][:, 0, 0].tolist() == [0, 256, 384, 448, 224, 112]
    assert out["layer0/v"][:, 0, 0].tolist() == [0, 256, 576, 0, 224, 280]
    assert out["layer0"][:, 0, 0].tolist() == [0, 0, 0, 1, 0, 0]


def test_two_layers_add_one_step_each(tmp_path):
    path = write_dense_chain(tmp_path / "two.net", [np.array([[20]]), np.array([[30]])],
                             [dict(vth=10), dict(vth=1000)], input_shape=[1])
    sim = LoihiSim.from_netx(path)
    assert sim.latency == 2
    out = sim.run(np.array([1, 0, 0, 0]).reshape(4, 1, 1))
    assert out["layer0"][:, 0, 0].tolist() == [0, 1, 0, 0]
    assert out["layer1/u"][:, 0, 0].tolist() == [0, 0, 30 << 6, 0]


def test_graded_input_spikes_multiply_weights(tmp_path):
    path = write_dense_chain(tmp_path / "g.net", [np.array([[2, -2]])], [dict(vth=1000)], input_shape=[2])
    graded = LoihiSim.from_netx(path, input_message_bits=8)
    out = graded.run(np.array([[[3, 1]], [[0, 0]]]))
    assert out["layer0/u"][1, 0, 0] == (3 * 2 - 1 * 2) << 6
    unary = LoihiSim.from_netx(path)  # netx default: unary spikes, any non-zero is one spike
    out = unary.run(np.array([[[3, 1]], [[0, 0]]]))
    assert out["layer0/u"][1, 0, 0] == 0


def test_netx_default_neuron_integrates_without_firing(tmp_path):
    with h5py.File(tmp_path / "n.net", "w") as f:
        g = f.create_group("layer/0")
        _str(g, "type", "dense")
        g.create_dataset("shape", data=np.array([1]))
        g.create_dataset("weight", data=np.array([[100.0]]))
    sim = LoihiSim.from_netx(tmp_path / "n.net")
    out = sim.run(np.ones((4, 1, 1)))
    # netx's default: iDecay 0 (u keeps everything), vDecay 4096, vThMant 1 << 17 (never reached)
    assert out["layer0/u"][:, 0, 0].tolist() == [0, 6400, 12800, 19200]
    assert not out["layer0"].any()


# ----------------------------------------------------------------------------- netx weight pipeline
@pytest.mark.parametrize("w", [
    np.array([[254, -254, 2, 0]]), np.array([[16, 64, 0]]), np.array([[-100, -30]]), np.array([[6, -128]]),
])
def test_well_formed_dense_weights_are_exact(w):
    eff, exp = netx_dense_weights(w)
    assert np.array_equal(eff >> -exp, w)


def test_issue_170_and_power_of_two_inhibitory_weights_lose_values():
    # lava-dl issue 170: max 255 / min -256 cannot be represented; netx clips to 254
    eff, exp = netx_dense_weights(np.array([[255, -256, 10]]))
    assert (eff >> -exp).tolist() == [[254, -256, 10]]
    # all <= 0 with -128 at the extreme: shifted to -256, clipped to -255, truncated: -128 becomes -64
    eff, exp = netx_dense_weights(np.array([[-128, -64]]))
    assert (eff >> -exp).tolist() == [[-64, -64]]
    with pytest.raises(NetxError, match="all-zero"):
        netx_dense_weights(np.zeros((2, 3)))


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # netx divides by a zero max weight (inf scale)
def test_dense_pipeline_matches_lava_functions():
    from stdl_edge.devices.lava_compat import lava_available

    ok, why = lava_available()
    if not ok:
        pytest.skip(why)
    from lava.lib.dl.netx.utils import optimize_weight_bits
    from lava.utils.weightutils import clip_weights, determine_sign_mode, truncate_weights

    rng = np.random.default_rng(0)
    cases = [rng.integers(-127, 128, (5, 7)) * 2, np.array([[-128, -64]]), np.array([[0, -128]]),
             rng.integers(0, 128, (3, 4)) * 2, np.array([[255, -256, 10]]), -rng.integers(1, 100, (2, 6))]
    for w in cases:
        ow, nbits, exp, _ = optimize_weight_bits(w.copy())
        mode = determine_sign_mode(ow)
        lw = truncate_weights(clip_weights(ow, mode, num_bits=8), mode, nbits)
        eff, e = netx_dense_weights(w)
        assert e == exp and np.array_equal(eff, lw), w


# ----------------------------------------------------------------------------- conv synapse
@pytest.mark.parametrize("stride,padding,dilation,groups", [(1, 1, 1, 1), (2, 1, 1, 1), (1, 0, 2, 1), (2, 2, 1, 2)])
def test_conv_synapse_is_pytorch_cross_correlation(tmp_path, stride, padding, dilation, groups):
    rng = np.random.default_rng(1)
    w = rng.integers(-127, 128, (4, 4 // groups, 3, 3)) * 2
    c, h, wd = 4, 9, 8
    ho = (h + 2 * padding - dilation * 2 - 1) // stride + 1
    wo = (wd + 2 * padding - dilation * 2 - 1) // stride + 1
    with h5py.File(tmp_path / "c.net", "w") as f:
        g = f.create_group("layer/0")
        _str(g, "type", "input")
        g.create_dataset("shape", data=np.array([c, h, wd]))
        g = f.create_group("layer/1")
        _str(g, "type", "conv")
        g.create_dataset("shape", data=np.array([4, ho, wo]))
        g.create_dataset("weight", data=w.astype(np.float32))
        for key, val in (("stride", stride), ("padding", padding), ("dilation", dilation)):
            g.create_dataset(key, data=np.array([val, val]))
        g.create_dataset("groups", data=groups)
        _neuron(g)
    net = LoihiNet.from_netx(tmp_path / "c.net")
    x = (rng.random((3, c, h, wd)) < 0.5).astype(np.int64)
    ref = F.conv2d(torch.from_numpy(x).double(), torch.from_numpy(w).double(), stride=stride, padding=padding,
                   dilation=dilation, groups=groups).round().long().numpy()
    for exact in (False, True):  # torch's float conv and the int64 im2col agree exactly
        assert np.array_equal(net.synapse(net.layers[0], x, exact=exact), ref), exact
    graded = x * rng.integers(1, 4, x.shape)  # graded payloads multiply the weights
    graded_net = LoihiNet.from_netx(tmp_path / "c.net", input_message_bits=8)
    gref = F.conv2d(torch.from_numpy(graded).double(), torch.from_numpy(w).double(), stride=stride,
                    padding=padding, dilation=dilation, groups=groups).round().long().numpy()
    for exact in (False, True):
        assert np.array_equal(graded_net.synapse(graded_net.layers[0], graded, exact=exact), gref), exact
    # synaptic-operation count: non-zero synapses leaving each input element
    fan = F.conv_transpose2d(torch.ones(1, 4, *ref.shape[2:]).double(), torch.from_numpy((w != 0) * 1.0).double(),
                             stride=stride, padding=padding, dilation=dilation, groups=groups,
                             output_padding=(h - ((ref.shape[2] - 1) * stride - 2 * padding + dilation * 2 + 1),
                                             wd - ((ref.shape[3] - 1) * stride - 2 * padding + dilation * 2 + 1)))
    assert np.array_equal(net.layers[0].fanout, fan[0].round().long().numpy())


# ----------------------------------------------------------------------------- lava-dl's own files
def _slayer_file(path):
    from stdl_edge.devices.lava_compat import lava_available

    ok, why = lava_available()
    if not ok:
        pytest.skip(why)
    from stdl_edge.devices.lava_compat import import_lava

    slayer = import_lava().slayer
    torch.manual_seed(0)
    p = {"threshold": 0.5, "current_decay": 0.25, "voltage_decay": 0.1, "requires_grad": False}
    blocks = torch.nn.ModuleList([
        slayer.block.cuba.Conv(p, 2, 4, 3, padding=1, stride=2, weight_scale=3, weight_norm=False),
        slayer.block.cuba.Flatten(),
        slayer.block.cuba.Dense(p, 4 * 4 * 4, 6, weight_scale=3, weight_norm=False),
    ])
    x = (torch.rand(1, 2, 8, 8, 3) > 0.5).float()
    for b in blocks:
        x = b(x)
    with h5py.File(path, "w") as f:
        g = f.create_group("layer/0")
        _str(g, "type", "input")
        g.create_dataset("shape", data=np.array([2, 8, 8]))
        for i, b in enumerate(blocks):
            b.export_hdf5(f.create_group(f"layer/{i + 1}"))
    return path


def test_runs_a_lava_dl_slayer_export(tmp_path):
    path = _slayer_file(tmp_path / "slayer.net")
    sim = LoihiSim.from_netx(path)
    assert [layer.kind for layer in sim.net.layers] == ["conv", "dense"]
    assert sim.input_shape == (2, 8, 8) and sim.num_classes == 6 and sim.latency == 2
    with h5py.File(path) as f:
        assert sim.net.layers[0].neuron.i_decay == int(f["layer/1/neuron/iDecay"][()])
    rng = np.random.default_rng(0)
    out = sim.run((rng.random((6, 2, 2, 8, 8)) < 0.5))
    assert out["layer0"].sum() > 0 and out["layer1/v"].shape == (6, 2, 6)


# ----------------------------------------------------------------------------- device interface
def test_device_api_stats_and_recording(tmp_path):
    w1 = np.array([[6, 8], [2, -4], [10, 10]])
    path = write_dense_chain(tmp_path / "dev.net", [w1, np.array([[2, 0, -2]])],
                             [dict(vth=5), dict(i_decay=4096, v_decay=4096, vth=(1 << 18) - 1)], input_shape=[2])
    dev = open_device("loihi-sim", path, record=True)
    dev.reset(2)
    y = dev.step(np.array([[1, 1], [0, 1]], dtype=np.float32))
    assert y.shape == (2, 1) and y.dtype == np.float32
    rec = dev.recorded()
    assert set(rec) == {"layer0", "layer0/u", "layer0/v", "layer1", "layer1/u", "layer1/v"}
    assert rec["layer0/u"].dtype == np.int64 and rec["layer0"].shape == (2, 3)
    dev.step(np.zeros((2, 2), np.float32))
    st = dev.stats()
    # step 0: three input spikes; each input has fan-out 3 (all weights non-zero)
    assert st.names == ["layer0", "layer1"] and st.synops[0] == 9 and st.steps == 2
    # neuron 0 of sample 0: (6 + 8) << 6 = 896 > 320 spikes; readout sees it one step later
    assert st.spikes[0] >= 1
    dev.reset(1)
    assert dev.stats().steps == 0 and dev.stats().synops.sum() == 0
    with pytest.raises(ValueError, match="expected"):
        dev.step(np.zeros((2, 2), np.float32))


def test_unsupported_layers_name_the_layer(tmp_path):
    with h5py.File(tmp_path / "p.net", "w") as f:
        g = f.create_group("layer/0")
        _str(g, "type", "input")
        g.create_dataset("shape", data=np.array([2, 4, 4]))
        g = f.create_group("layer/1")
        _str(g, "type", "pool")
    with pytest.raises(NetxError, match=r"layer/1 has type 'pool'"):
        LoihiSim.from_netx(tmp_path / "p.net")
    with h5py.File(tmp_path / "s.net", "w") as f:
        g = f.create_group("layer/0")
        _str(g, "type", "dense")
        g.create_dataset("shape", data=np.array([1]))
        g.create_dataset("weight", data=np.array([[2.0]]))
        n = g.create_group("neuron")
        _str(n, "type", "RF")
        n.create_dataset("vThMant", data=1)
    with pytest.raises(NetxError, match="layer/0: neuron type 'RF'"):
        LoihiSim.from_netx(tmp_path / "s.net")
    with h5py.File(tmp_path / "c.net", "w") as f:  # complex dense: netx's ComplexDense needs RF neurons
        g = f.create_group("layer/0")
        _str(g, "type", "dense")
        g.create_dataset("shape", data=np.array([1]))
        g.create_dataset("weight/real", data=np.array([[2.0]]))
        g.create_dataset("weight/imag", data=np.array([[2.0]]))
    with pytest.raises(NetxError, match="layer/0: complex dense weights"):
        LoihiSim.from_netx(tmp_path / "c.net")
    with pytest.raises(FileNotFoundError):
        LoihiSim.from_netx(tmp_path / "missing.net")


def test_compute_threads_default_to_one_and_are_restored(tmp_path):
    """A batch-1 stream on more threads only oversubscribes the cores (issue 15): loihi-sim steps
    its torch convolutions on ``threads`` (default 1) and gives the caller's setting back; numpy's
    BLAS is held at ``threads`` while the device lives. A bad value is refused by name."""
    from threadpoolctl import threadpool_info

    path = write_dense_chain(tmp_path / "one.net", [np.array([[4]])], [dict(vth=10)], input_shape=[1])
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        sim = LoihiSim.from_netx(path)
        assert sim.threads == 1
        assert all(lib["num_threads"] == 1 for lib in threadpool_info() if lib["user_api"] == "blas")
        seen = []
        real = sim.step_int
        sim.step_int = lambda x: (seen.append(torch.get_num_threads()), real(x))[1]
        sim.reset(1)
        sim.step(np.ones((1, 1), np.float32))
        assert seen == [1] and torch.get_num_threads() == 2
        with pytest.raises(ValueError, match="threads=0 must be a whole number >= 1"):
            LoihiSim.from_netx(path, threads=0)
    finally:
        torch.set_num_threads(before)


def test_blas_limit_holds_while_any_device_lives(tmp_path):
    """numpy's BLAS limit is one per process: the smallest limit of the live devices holds, and
    the original comes back only when the last device is gone (not when the first one is)."""
    import gc

    from threadpoolctl import threadpool_info, threadpool_limits

    def blas() -> set[int]:
        return {lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"}

    path = write_dense_chain(tmp_path / "one.net", [np.array([[4]])], [dict(vth=10)], input_shape=[1])
    gc.collect()  # devices of earlier tests
    with threadpool_limits(3, user_api="blas"):
        if not blas():
            pytest.skip("numpy reports no BLAS library here")
        first = LoihiSim.from_netx(path, threads=1)
        second = LoihiSim.from_netx(path, threads=2)
        assert blas() == {1}
        del first
        gc.collect()
        assert blas() == {2}
        del second
        gc.collect()
        assert blas() == {3}
