"""The recurrent dense layer exported: netx ``dense_rec`` (one exponent for both weight matrices,
loihi-sim equal to the float model with the exported integers, lava-dl's loader, float vs fixed
point after training) and NIR's refusal. loihi-sim step for step against the float model with
the exported integers: tests/test_netx_export.py; ONNX: tests/test_onnx_export.py (both run
dvs-crnn); Lava itself: tests/test_loihi_sim_vs_lava.py."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch
from torch.nn import functional as F

from stdl_edge.artifact import StreamInfo, save_model
from stdl_edge.devices.base import classify
from stdl_edge.devices.loihi_sim import LoihiSim
from stdl_edge.exporters.netx import export, make_recurrent_netx_exact
from stdl_edge.formats.netx import netx_recurrent_weights
from stdl_edge.layers import SpikingRecurrentDense
from stdl_edge.models import ModelConfig, build_model
from stdl_edge.quant import LayerQuant, quantize_model

STREAM = StreamInfo(sensor_size=(12, 12, 2), dt_us=2000, num_steps=6, class_names=("a", "b", "c", "d"))


def _model(seed: int = 0):
    net = build_model(ModelConfig(arch="dvs-crnn", input_shape=(2, 12, 12), num_classes=4, width=0.25), seed=seed)
    with torch.no_grad():
        for layer in net.layers:
            lin = getattr(layer, "conv", None) or getattr(layer, "linear", None)
            if lin is not None and layer.kind != "readout":
                lin.weight.mul_(3.0)  # enough activity to exercise every layer
        net.layers[4].recurrent.weight.mul_(3.0)
    return net.eval()


def test_both_matrices_share_one_exponent_and_are_written(tmp_path):
    net = _model()
    q = [x for x in quantize_model(net) if isinstance(x, LayerQuant)]
    rec = q[3]
    assert rec.kind == "dense_rec" and rec.weight.shape == (32, 64) and rec.weight_rec.shape == (32, 32)
    layer = net.layers[4]
    for w, ref in ((rec.weight, layer.linear.weight), (rec.weight_rec, layer.recurrent.weight)):
        np.testing.assert_allclose(w / rec.scale, ref.detach().numpy(), atol=1.0 / rec.scale + 1e-7)
    # the current bound counts both synapses of a neuron: the exponent is that of [W | W_rec]
    both = np.abs(np.hstack([layer.linear.weight.detach().numpy(), layer.recurrent.weight.detach().numpy()]))
    assert rec.scale * both.max() <= 254 + 1e-6
    save_model(tmp_path / "r", net, STREAM)
    export(tmp_path / "r", subnets=False, aux=False)
    with h5py.File(tmp_path / "r" / "export" / "netx" / "model.net") as f:
        g = f["layer/5"]  # 0 input, 1-3 conv, 4 flatten
        assert g["type"][0] == b"dense_rec"
        np.testing.assert_array_equal(g["weight"][()], rec.weight)
        np.testing.assert_array_equal(g["weight_rec"][()], rec.weight_rec)


def test_recurrent_weights_are_made_exact_for_netx():
    # an all-inhibitory recurrent matrix with a power-of-two extreme: its own sign mode loses -128
    w, w_rec, nudged = make_recurrent_netx_exact(np.array([[20, -40], [6, 2]]), np.array([[-128, -64], [0, -2]]), "x")
    assert nudged == 1 and w_rec[0, 0] == -126 and np.array_equal(w, [[20, -40], [6, 2]])
    eff, eff_rec, exp = netx_recurrent_weights(w, w_rec)
    assert np.array_equal(eff >> -exp, w) and np.array_equal(eff_rec >> -exp, w_rec)


def test_lava_dl_netx_builds_recurrent_dense(tmp_path):
    from stdl_edge.devices.lava_compat import import_lava, lava_available

    ok, why = lava_available()
    if not ok:
        pytest.skip(why)
    netx = import_lava().netx
    net = _model()
    save_model(tmp_path / "r", net, STREAM)
    export(tmp_path / "r", subnets=False, aux=False)
    lava_net = netx.hdf5.Network(net_config=str(tmp_path / "r" / "export" / "netx" / "model.net"))
    block = lava_net.layers[3]
    assert type(block).__name__ == "RecurrentDense"
    rec = [x for x in quantize_model(net) if isinstance(x, LayerQuant)][3]
    exp = block.synapse.proc_params["weight_exp"]
    assert np.array_equal(np.asarray(block.synapse.weights.init) >> -exp, rec.weight)
    assert np.array_equal(np.asarray(block.synapse_rec.weights.init) >> -exp, rec.weight_rec)


def _moving_bars(n: int, seed: int, steps: int = 6, size: int = 12):
    """Four classes: a bar moving right, left, down or up (the direction is the class: only
    the order of the frames tells them apart), in sparse noise."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, n)
    x = (rng.random((steps, n, 2, size, size)) < 0.02).astype(np.float32)
    for i, c in enumerate(y):
        start = int(rng.integers(0, size - steps))
        for t in range(steps):
            p = start + t if c % 2 == 0 else start + steps - 1 - t
            if c < 2:
                x[t, i, 0, :, p] = 1
            else:
                x[t, i, 0, p, :] = 1
    return torch.from_numpy(x), torch.from_numpy(y)


@pytest.mark.slow
def test_trained_recurrent_model_float_vs_loihi_sim(tmp_path):
    net = build_model(ModelConfig(arch="dvs-crnn", input_shape=(2, 12, 12), num_classes=4, width=0.25), seed=0)
    xtr, ytr = _moving_bars(256, 0)
    xte, yte = _moving_bars(200, 1)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    net.train()
    for _ in range(6):
        for i in range(0, 256, 32):
            loss = F.cross_entropy(net(xtr[:, i:i + 32]), ytr[i:i + 32])
            opt.zero_grad()
            loss.backward()
            opt.step()
    net.eval()
    assert isinstance(net.layers[4], SpikingRecurrentDense)
    with torch.no_grad():
        float_pred = net(xte).argmax(1).numpy()
    save_model(tmp_path / "t", net, STREAM.__class__(sensor_size=(12, 12, 2), dt_us=1000, num_steps=6))
    export(tmp_path / "t", subnets=False, aux=False)
    fixed_pred = classify(LoihiSim.load(tmp_path / "t"), xte.numpy()).argmax(1)
    float_acc = float((float_pred == yte.numpy()).mean())
    fixed_acc = float((fixed_pred == yte.numpy()).mean())
    agreement = float((fixed_pred == float_pred).mean())
    print(f"float acc {float_acc:.3f}  loihi-sim acc {fixed_acc:.3f}  agreement {agreement:.3f}")
    assert float_acc > 0.5  # it learned the directions
    assert agreement >= 0.9 and abs(float_acc - fixed_acc) <= 0.03


def test_nir_export_refuses_the_recurrent_layer(tmp_path):
    pytest.importorskip("nir")
    from stdl_edge.formats.nir import to_nir

    with pytest.raises(ValueError, match=r"layer 4.dense_rec \(dense_rec\): NIR export does not write recurrent"):
        to_nir(_model(), STREAM)


def test_qat_fake_quantizes_both_matrices_at_the_exported_exponent():
    from stdl_edge.qat import attach_fake_quant, detach_fake_quant

    net = _model()
    rec = [x for x in quantize_model(net) if isinstance(x, LayerQuant)][3]
    attach_fake_quant(net)
    layer = net.layers[4]
    np.testing.assert_array_equal((layer.linear.weight.detach() * rec.scale).round().numpy(), rec.weight)
    np.testing.assert_array_equal((layer.recurrent.weight.detach() * rec.scale).round().numpy(), rec.weight_rec)
    frames = (torch.rand(3, 2, 2, 12, 12, generator=torch.Generator().manual_seed(0)) < 0.3).float()
    net(frames).sum().backward()  # the straight-through gradient reaches both float matrices
    assert layer.recurrent.parametrizations.weight.original.grad is not None
    assert layer.linear.parametrizations.weight.original.grad is not None
    detach_fake_quant(net)
    assert not hasattr(layer.recurrent, "parametrizations") and not hasattr(layer.linear, "parametrizations")


def test_the_if_chip_target_refuses_the_recurrent_layer():
    from stdl_edge.targets import check_target

    assert "layer 4.dense_rec: a recurrent dense layer; if-chip has no recurrent connections" in \
        check_target(_model(), "if-chip")
