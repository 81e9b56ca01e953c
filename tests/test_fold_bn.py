"""The one BatchNorm fold: golden against torch's fusion, and the quantizer, QAT and ONNX agree bit for bit."""

from __future__ import annotations

import doctest

import pytest
import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.fusion import fuse_conv_bn_weights, fuse_linear_bn_weights

import stdl_edge.qat as qat
import stdl_edge.quant
from stdl_edge.exporters.onnx import fold_batchnorm
from stdl_edge.layers import Flatten, SpikingConv2d, SpikingDense
from stdl_edge.models import ModelConfig, SpikingNet
from stdl_edge.quant import fold_bn, folded_synapse


def _random_bn(bn: nn.BatchNorm1d | nn.BatchNorm2d, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    n = bn.num_features
    with torch.no_grad():
        bn.running_mean.copy_(torch.rand(n, generator=g) * 2 - 1)
        bn.running_var.copy_(torch.rand(n, generator=g) * 2.8 + 0.2)
        bn.weight.copy_(torch.rand(n, generator=g) * 1.5 + 0.5)
        bn.bias.copy_(torch.rand(n, generator=g) * 2 - 1)
    bn.eval()


@pytest.mark.parametrize("bias", [True, False])
def test_fold_bn_matches_torch_fusion_for_conv_and_dense(bias):
    torch.manual_seed(0)
    conv, bn2 = nn.Conv2d(3, 5, 3, bias=bias), nn.BatchNorm2d(5)
    lin, bn1 = nn.Linear(7, 4, bias=bias), nn.BatchNorm1d(4)
    _random_bn(bn2, 1)
    _random_bn(bn1, 2)
    with torch.no_grad():
        for syn, bn, fuse in ((conv, bn2, fuse_conv_bn_weights), (lin, bn1, fuse_linear_bn_weights)):
            w, b = fold_bn(syn.weight, syn.bias, bn)
            w_ref, b_ref = fuse(syn.weight, syn.bias, bn.running_mean, bn.running_var, bn.eps, bn.weight, bn.bias)
            assert w.shape == syn.weight.shape and b.shape == (syn.weight.shape[0],)
            torch.testing.assert_close(w, w_ref, rtol=1e-6, atol=1e-7)
            torch.testing.assert_close(b, b_ref, rtol=1e-6, atol=1e-6)


def test_fold_bn_without_bn_is_identity_and_is_differentiable():
    w, b = torch.randn(4, 3), torch.randn(4)
    assert fold_bn(w, b, None) == (w, b)
    bn = nn.BatchNorm1d(4)
    _random_bn(bn, 3)
    w = w.requires_grad_()
    b = b.requires_grad_()
    wf, bf = fold_bn(w, b, bn)
    (wf.sum() + bf.sum()).backward()
    gain = (bn.weight / torch.sqrt(bn.running_var + bn.eps)).detach()
    torch.testing.assert_close(w.grad, gain[:, None].expand(4, 3))
    torch.testing.assert_close(b.grad, gain)


@pytest.mark.parametrize("module", [stdl_edge.quant, qat])
def test_docstring_examples(module):
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0


def _bn_net() -> SpikingNet:
    torch.manual_seed(4)
    conv = SpikingConv2d((2, 6, 6), 5, 3, stride=2, padding=1, bias=True, batchnorm=True)
    dense = SpikingDense(5 * 3 * 3, 4, bias=False, batchnorm=True)
    _random_bn(conv.bn, 5)
    _random_bn(dense.bn, 6)
    return SpikingNet([conv, Flatten((5, 3, 3)), dense], ModelConfig(input_shape=(2, 6, 6), num_classes=4)).eval()


def test_quantizer_onnx_and_qat_fold_the_same_weights(monkeypatch):
    net = _bn_net()
    layers = [net.layers[0], net.layers[2]]
    expected = [folded_synapse(layer) for layer in layers]

    onnx_net = fold_batchnorm(net)  # the ONNX exporter's copy
    for i, (w, b) in zip((0, 2), expected):
        syn = onnx_net.layers[i].synapse
        assert onnx_net.layers[i].bn is None
        assert torch.equal(syn.weight, w) and torch.equal(syn.bias, b)

    seen: list[torch.Tensor] = []
    real = qat.fake_quantize_weight
    monkeypatch.setattr(qat, "fake_quantize_weight",
                        lambda w, scale, config: seen.append(w.detach()) or real(w, scale, config))
    qat.attach_fake_quant(net)  # registering runs each parametrization once
    seen.clear()
    for layer in layers:
        layer.synapse.weight  # noqa: B018 - runs the parametrization
    assert len(seen) == 2 and all(torch.equal(s, w) for s, (w, _) in zip(seen, expected))
    qat.detach_fake_quant(net)


def test_qat_forward_without_rounding_equals_the_folded_float_forward(monkeypatch):
    net = _bn_net()
    conv, dense = net.layers[0], net.layers[2]
    (wc, bc), (wd, bd) = folded_synapse(conv), folded_synapse(dense)
    monkeypatch.setattr(qat, "fake_quantize_weight", lambda w, scale, config: w)  # quantization off
    qat.attach_fake_quant(net)
    x = (torch.rand(3, 2, 6, 6, generator=torch.Generator().manual_seed(7)) < 0.5).float()
    s = (torch.rand(3, 45, generator=torch.Generator().manual_seed(8)) < 0.5).float()
    with torch.no_grad():
        torch.testing.assert_close(conv.synaptic_input(x), F.conv2d(x, wc, bc, stride=2, padding=1),
                                   rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(dense.synaptic_input(s), F.linear(s, wd, bd), rtol=1e-5, atol=1e-5)
    qat.detach_fake_quant(net)
