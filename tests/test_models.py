"""Layers and the model zoo: shapes chain, state is explicit, configs round-trip."""

from __future__ import annotations

import pytest
import torch

from stdl_edge.layers import AvgPool2d, SpikingConv2d
from stdl_edge.models import ARCHS, ModelConfig, build_model
from stdl_edge.neuron import CubaState


@pytest.mark.parametrize("arch, shape", [("dvs-cnn", (2, 34, 34)), ("dvs-cnn", (2, 32, 32)),
                                         ("vgg11", (2, 16, 16)), ("resnet", (2, 16, 16))])
def test_zoo_models_run_and_have_the_right_output(arch, shape):
    net = build_model(ModelConfig(arch=arch, input_shape=shape, num_classes=7, width=0.125), seed=0)
    frames = (torch.rand(3, 2, *shape) < 0.3).float()
    logits = net(frames)
    assert logits.shape == (2, 7)
    assert net.num_classes == 7 and net.input_shape == shape
    assert len(net.layer_names()) == len(net.layers)


def test_step_state_is_explicit_and_modules_hold_none():
    net = build_model(ModelConfig(input_shape=(2, 16, 16)), seed=0)
    states = net.init_state(2)
    x = (torch.rand(2, 2, 16, 16) < 0.5).float()
    y1, s1 = net.step(x, states)
    y2, _ = net.step(x, states)  # same input, same state -> same output: nothing hidden on the module
    assert torch.equal(y1, y2)
    assert isinstance(s1[0], CubaState) and s1[3] == ()  # flatten is stateless
    # a slice of layers runs with a slice of the state, and chaining slices equals the whole
    h, a = net.step(x, states[:2], 0, 2)
    y3, _ = net.step(h, states[2:], 2)
    assert torch.equal(y3, y1)


def test_two_models_never_share_state():
    cfg = ModelConfig(input_shape=(2, 16, 16))
    a, b = build_model(cfg, seed=1), build_model(cfg, seed=1)
    x = (torch.rand(4, 1, 2, 16, 16) < 0.5).float()
    assert torch.equal(a(x), b(x))  # same seed -> same weights; running a does not change b


def test_seeded_build_is_reproducible_and_leaves_global_rng_alone():
    torch.manual_seed(0)
    before = torch.rand(1)
    torch.manual_seed(0)
    build_model(ModelConfig(), seed=5)
    assert torch.equal(torch.rand(1), before)
    p1 = build_model(ModelConfig(), seed=5).state_dict()
    p2 = build_model(ModelConfig(), seed=5).state_dict()
    assert all(torch.equal(p1[k], p2[k]) for k in p1)


def test_config_round_trip():
    cfg = ModelConfig(arch="vgg11", input_shape=(2, 48, 48), num_classes=11, width=0.5, batchnorm=False)
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize("kwargs, needle", [
    ({"arch": "alexnet"}, "unknown model 'alexnet'"),
    ({"input_shape": (2, 34)}, "input_shape"),
    ({"num_classes": 1}, "num_classes=1"),
])
def test_bad_config_is_named(kwargs, needle):
    with pytest.raises(ValueError, match=needle):
        ModelConfig(**kwargs)


def test_wrong_frame_shape_is_named():
    net = build_model(ModelConfig(input_shape=(2, 16, 16)))
    with pytest.raises(ValueError, match=r"expected frames of shape \(T, B, 2, 16, 16\)"):
        net(torch.zeros(3, 1, 2, 32, 32))


def test_pool_kernel_must_divide():
    with pytest.raises(ValueError, match="does not divide"):
        AvgPool2d((4, 5, 5), 2)


def test_conv_output_shape_matches_torch():
    layer = SpikingConv2d((2, 34, 34), 8, 3, stride=2, padding=1)
    out, _ = layer(torch.zeros(1, 2, 34, 34), layer.init_state(1))
    assert tuple(out.shape[1:]) == layer.out_shape == (8, 17, 17)


def test_all_archs_listed():
    assert set(ARCHS) == {"dvs-cnn", "dvs-crnn", "vgg11", "resnet", "if-cnn", "custom"}
