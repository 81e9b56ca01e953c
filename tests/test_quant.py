"""The one quantizer: rounding, exponent choice, BN / avg-pool folding (QAT: tests/test_qat.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from stdl_edge.layers import AvgPool2d, Flatten, Readout, SpikingConv2d, SpikingDense
from stdl_edge.models import ModelConfig, SpikingNet, build_model
from stdl_edge.neuron import CubaParams
from stdl_edge.quant import (QuantConfig, QuantError, choose_exponent, fold_model, folded_synapse, quantize_bias,
                             quantize_decay, quantize_model, quantize_threshold, quantize_weight)


def test_weight_rounding_step_and_clipping():
    w = torch.tensor([0.5, -0.5, 1 / 64, 3 / 64, 100.0, -100.0])
    # scale 64: 0.5 -> 32; 1/64 -> 1 -> step 2 rounds half-to-even: 0.5 -> 0; 3/64 -> 1.5 -> 2 -> 4
    assert quantize_weight(w, 64.0).tolist() == [32.0, -32.0, 0.0, 4.0, 254.0, -254.0]
    assert quantize_weight(w, 64.0, QuantConfig(weight_step=1)).tolist() == [32.0, -32.0, 1.0, 3.0, 127.0, -127.0]


def test_straight_through_gradient_stops_at_clipping():
    w = torch.tensor([0.1, 10.0], requires_grad=True)
    quantize_weight(w, 64.0).sum().backward()
    assert w.grad.tolist() == [64.0, 0.0]  # d/dw (w * scale) inside the range; 0 where clipped


def test_decay_threshold_and_bias_encodings():
    assert quantize_decay(0.5) == 2048 and quantize_decay(1.0) == 4096 and quantize_decay(0.0) == 0
    assert quantize_threshold(1.0, 256.0) == 256 and quantize_threshold(1e-6, 64.0) == 1
    mant, clipped = quantize_bias(np.array([0.5, 1000.0, -1000.0]), 64.0)
    assert mant.tolist() == [32, 4095, -4096] and clipped == 2
    with pytest.raises(QuantError):
        quantize_decay(1.5)


def test_exponent_uses_the_full_weight_range_without_clipping():
    rng = np.random.default_rng(0)
    w = rng.normal(0, 0.05, (16, 32))
    e, why = choose_exponent(w, None, CubaParams(), QuantConfig())
    scale = 64 * 2.0 ** e
    assert np.abs(w).max() * scale <= 254 < np.abs(w).max() * scale * 2  # largest e that fits
    assert why == "weight range"
    q = quantize_model(_dense_net(w), QuantConfig())[0]
    assert q.report["clipped_weights"] == 0 and np.abs(q.weight).max() <= 254


def test_percentile_scale_clips_outliers_and_reports_them():
    w = np.full((4, 8), 0.01)
    w[0, 0] = 1.0  # one outlier
    q = quantize_model(_dense_net(w), QuantConfig(weight_percentile=90.0))[0]
    assert q.report["clipped_weights"] == 1 and q.weight[0, 0] == 254
    q100 = quantize_model(_dense_net(w), QuantConfig())[0]
    assert q100.report["clipped_weights"] == 0 and q.exponent > q100.exponent


def test_threshold_and_current_bounds_limit_the_exponent():
    tiny = np.full((2, 4), 1e-5)  # weights alone would want a huge scale
    e, why = choose_exponent(tiny, None, CubaParams(threshold=1.0), QuantConfig(max_exponent=40))
    assert why == "threshold 17 bits" and quantize_threshold(1.0, 64 * 2.0 ** e) <= (1 << 17) - 1
    wide = np.full((1, 5000), 0.01)  # 5000 inputs could sum past 24 bits
    e, why = choose_exponent(wide, None, CubaParams(threshold=1.0), QuantConfig())
    assert why == "24-bit current" and 5000 * 0.01 * 64 * 2.0 ** e < (1 << 17)


def test_all_zero_layer_quantizes_to_zero_without_nan():
    q = quantize_model(_dense_net(np.zeros((3, 4))), QuantConfig())[0]
    assert not q.weight.any() and math.isfinite(q.report["max_abs_weight_error"])
    assert q.report["exponent_set_by"] == "threshold 17 bits" and q.vth <= (1 << 17) - 1


def _dense_net(w: np.ndarray) -> SpikingNet:
    o, i = w.shape
    layer = SpikingDense(i, o, neuron=CubaParams())
    layer.linear.weight.data = torch.tensor(w, dtype=torch.float32)
    return SpikingNet([layer], ModelConfig(input_shape=(1, 1, i), num_classes=max(o, 2)))


def test_batchnorm_folding_is_exact_in_float():
    torch.manual_seed(0)
    layer = SpikingConv2d((2, 6, 6), 5, 3, stride=2, padding=1, bias=True, batchnorm=True)
    bn = layer.bn
    bn.running_mean.uniform_(-1, 1)
    bn.running_var.uniform_(0.2, 3)
    bn.weight.data.uniform_(0.5, 2)
    bn.bias.data.uniform_(-1, 1)
    layer.eval()
    x = (torch.rand(3, 2, 6, 6) < 0.5).float()
    w, b = folded_synapse(layer)
    with torch.no_grad():
        assert torch.allclose(layer.synaptic_input(x), F.conv2d(x, w, b, stride=2, padding=1), atol=1e-5)


def test_avgpool_folds_into_the_next_conv_and_dense():
    torch.manual_seed(1)
    n = CubaParams()
    net = SpikingNet([SpikingConv2d((2, 8, 8), 3, 3, neuron=n), AvgPool2d((3, 8, 8), 2), SpikingConv2d((3, 4, 4), 4, 3, neuron=n),
                      AvgPool2d((4, 4, 4), 2), Flatten((4, 2, 2)), Readout(16, 3)],
                     ModelConfig(input_shape=(2, 8, 8), num_classes=3))
    folded = fold_model(net)
    assert [f.kind for f in folded] == ["conv", "conv", "flatten", "dense"]
    c2 = folded[1]
    assert c2.weight.shape[-1] == 6 and c2.stride == 2 and c2.padding == 2 and c2.pooled == 2
    s = (torch.rand(2, 3, 8, 8) < 0.5).float()  # spikes of layer 0
    with torch.no_grad():
        ref = net.layers[2].conv(F.avg_pool2d(s, 2))
        got = F.conv2d(s, c2.weight, c2.bias, stride=c2.stride, padding=c2.padding)
        assert torch.allclose(ref, got, atol=1e-5)
        s2 = (torch.rand(2, 4, 4, 4) < 0.5).float()
        ref = net.layers[5].linear(F.avg_pool2d(s2, 2).flatten(1))
        got = F.linear(s2.flatten(1), folded[3].weight, folded[3].bias)
        assert torch.allclose(ref, got, atol=1e-5)
    assert folded[2].in_shape == (4, 4, 4) and folded[3].in_shape == (64,)


def test_what_netx_cannot_express_names_the_layer():
    res = build_model(ModelConfig(arch="resnet", input_shape=(2, 8, 8), num_classes=3, width=0.125), seed=0)
    with pytest.raises(QuantError, match=r"layer 1\.resblock"):
        fold_model(res)
    leaky = SpikingDense(4, 3, bias=True, neuron=CubaParams(current_decay=0.5))
    leaky.linear.bias.data.fill_(0.1)
    net = SpikingNet([leaky], ModelConfig(input_shape=(1, 1, 4), num_classes=3))
    with pytest.raises(QuantError, match="layer 0.dense has a bias"):
        fold_model(net)
    pooled_end = SpikingNet([SpikingConv2d((2, 4, 4), 2, 3), AvgPool2d((2, 4, 4), 2)],
                            ModelConfig(input_shape=(2, 4, 4), num_classes=2))
    with pytest.raises(QuantError, match="1.avgpool"):
        fold_model(pooled_end)
