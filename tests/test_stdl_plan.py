"""Partitioning and auxiliary heads: cuts keep blocks whole, balance memory, and heads are the
largest uniform subset of the following layers that fits the budget."""

from __future__ import annotations


import pytest
import torch
from typer.testing import CliRunner

from stdl_edge.cli import app
from stdl_edge.models import ModelConfig, SpikingNet, build_model
from stdl_edge.stdl.auxiliary import DEFAULT_BUDGET_FACTOR, build_aux_head, candidate_layers, make_plan, sample_uniform
from stdl_edge.stdl.memory import MIB
from stdl_edge.stdl.partition import (balanced_boundaries, boundaries_from_splits, measure_step, partition,
                                      units_of)


def _net(arch="dvs-cnn", shape=(2, 16, 16), width=1.0):
    return build_model(ModelConfig(arch=arch, input_shape=shape, num_classes=5, width=width), seed=0)


@pytest.mark.parametrize("arch", ["dvs-cnn", "vgg11", "resnet"])
def test_units_never_leave_stateless_layers_or_the_readout_alone(arch):
    net = _net(arch, shape=(2, 8, 8), width=0.125)
    units = units_of(net)
    assert units[0][0] == 0 and units[-1][1] == len(net.layers)
    assert all(b == c for (_, b), (c, _) in zip(units, units[1:]))
    for a, b in units:
        assert any(layer.stateful and layer.kind != "readout" for layer in net.layers[a:b])
    # every cut of the units is a valid partition
    for k in (1, 3):
        bounds = balanced_boundaries(net, k, batch=2)
        assert len(bounds) == k
        assert {b for _, b in bounds} <= {b for _, b in units}


def test_flatten_goes_with_the_dense_layer_and_pool_with_the_conv():
    net = _net("dvs-cnn")
    assert units_of(net) == [(0, 1), (1, 2), (2, 3), (3, 6)]  # conv | conv | conv | flatten dense readout
    vgg = _net("vgg11", shape=(2, 32, 32), width=0.125)
    names = vgg.layer_names()
    for a, b in units_of(vgg):
        if names[a].endswith("avgpool"):
            pytest.fail(f"a pooling layer starts a unit: {names[a:b]}")


def test_explicit_splits_are_validated_with_a_clear_message():
    net = _net()
    assert boundaries_from_splits(net, [1, 3]) == [(0, 1), (1, 3), (3, 6)]
    with pytest.raises(ValueError, match="only 5.readout"):
        boundaries_from_splits(net, [5])
    with pytest.raises(ValueError, match="only 3.flatten"):
        boundaries_from_splits(net, [3, 4])
    with pytest.raises(ValueError, match="strictly increasing"):
        boundaries_from_splits(net, [2, 1])
    with pytest.raises(ValueError, match="use 1..4"):
        partition(net, 5)


def test_balanced_partition_minimises_the_largest_part():
    net = _net()
    units = units_of(net)
    costs = [measure_step(net, a, b, 8).training_bytes for a, b in units]
    bounds = balanced_boundaries(net, 2, batch=8)
    largest = max(sum(costs[i] for i, (a, b) in enumerate(units) if a >= s and b <= e) for s, e in bounds)
    best = min(max(sum(costs[:c]), sum(costs[c:])) for c in range(1, len(units)))
    assert largest == best


def test_aux_head_is_a_spikingnet_reading_the_subnet_output():
    net = _net()
    for stop in (1, 2, 3):
        for depth in range(len(candidate_layers(net, stop)) + 1):
            head = build_aux_head(net, stop, depth)
            assert isinstance(head, SpikingNet)
            assert head.input_shape == tuple(net.layers[stop - 1].out_shape)
            assert head.layers[-1].kind == "readout" and head.num_classes == 5
            y, _ = head.step(torch.zeros(3, *head.input_shape), head.init_state(3, "cpu"))
            assert y.shape == (3, 5)
            assert sum(1 for layer in head.layers if layer.stateful) == depth + 1
    # d = 1 copies the deepest following layer (AugLocal), here the dense one
    assert [layer.kind for layer in build_aux_head(net, 1, 1).layers if layer.stateful] == ["dense", "readout"]
    # freshly initialised: not the primary model's weights
    head = build_aux_head(net, 1, len(candidate_layers(net, 1)))
    assert head.layers[0].conv.weight.shape == net.layers[1].conv.weight.shape
    assert not torch.equal(head.layers[0].conv.weight, net.layers[1].conv.weight)


@pytest.mark.parametrize("D, d, offsets", [
    (5, 0, []), (5, 1, [5]), (5, 2, [2, 5]),  # 2.5 rounds to even
    (5, 3, [2, 3, 5]), (4, 4, [1, 2, 3, 4]), (3, 2, [2, 3]), (6, 4, [2, 3, 4, 6]), (8, 3, [3, 5, 8]),
])
def test_aux_layers_are_the_auglocal_offsets(D, d, offsets):
    # AugLocal: offsets round(D / d * i), i = 1..d (1 = the next layer); 0-based indices returned
    assert sample_uniform(D, d) == [o - 1 for o in offsets]


def test_aux_depth_is_the_largest_that_fits_the_budget():
    net = _net(shape=(2, 8, 8))
    a, b = 0, 1
    depths = range(len(candidate_layers(net, b)) + 1)
    costs = []
    for d in depths:
        torch.manual_seed(0)
        costs.append(measure_step(net, a, b, 8, head=build_aux_head(net, b, d)).step_bytes)
    assert costs[-1] > costs[0]  # copies cost memory (not monotone: a dense copy after fewer convs is wider)
    for d in depths:
        budget = costs[d] + 1  # bytes: depth d fits
        expected = max(e for e in depths if costs[e] <= budget)
        plan = make_plan(net, "stdl", 2, splits=[1], batch=8, budget_mb=budget / MIB)
        sub = plan.subnets[0]
        assert len(sub.aux_source) == expected
        assert sub.total.step_bytes <= plan.budget_bytes and sub.fits
        assert all(costs[e] > plan.budget_bytes for e in depths if e > expected)
    # local: always the pooled linear head
    plan = make_plan(net, "local", 4, batch=8)
    assert all(s.aux_source == [] for s in plan.subnets)
    assert [layer.kind for layer in plan.heads[0].layers] == ["flatten", "readout"]  # 16x4x4 map: no pooling
    big = make_plan(_net(shape=(2, 64, 64)), "local", 2, splits=[1], batch=2)  # 16x32x32 = 16384 values
    assert [layer.kind for layer in big.heads[0].layers] == ["avgpool", "flatten", "readout"]
    assert big.heads[0].layers[0].kernel_size == 2  # the least pooling under MAX_READOUT_FEATURES


def test_default_budget_is_twice_the_largest_subnet_alone():
    net = _net()
    plan = make_plan(net, "stdl", 4, batch=8)
    # the budget holds a step's saved tensors + carried state (what scales with the batch), not parameters
    assert plan.budget_bytes == DEFAULT_BUDGET_FACTOR * max(s.subnet.step_bytes for s in plan.subnets)
    assert all(s.fits for s in plan.subnets)
    assert len(plan.heads) == 3
    # head 0: the dense copy alone (d = 1) fits; d = 2 (conv1 + dense on the wider map) and d = 3 do not
    assert [s.aux_depth for s in plan.subnets[:-1]] == [1, 2, 1]
    assert plan.subnets[0].aux_source == [4] and [d for d, _ in plan.subnets[0].rejected] == [3, 2]
    # at 1x the first subnetwork's own state is the largest part: even its plain readout head is over
    tight = make_plan(net, "stdl", 4, batch=8, budget_mb=plan.budget_bytes / DEFAULT_BUDGET_FACTOR / 2 ** 20)
    assert [s.aux_depth for s in tight.subnets[:-1]] == [0, 0, 1] and not tight.subnets[0].fits
    # parameters are not in the budget: the d = 1 head has more of them than the d = 3 one
    roomy = make_plan(net, "stdl", 4, batch=8, budget_mb=1e4)
    assert [s.aux_depth for s in roomy.subnets[:-1]] == [3, 2, 1]
    assert plan.subnets[0].total.param_bytes > roomy.subnets[0].total.param_bytes


def test_baselines_take_one_subnetwork():
    net = _net()
    for method in ("bptt", "sltt"):
        plan = make_plan(net, method, 1, batch=4)
        assert plan.boundaries == [(0, len(net.layers))] and plan.heads == []
    assert not make_plan(net, "bptt", 1, batch=4).temporal
    with pytest.raises(ValueError, match="as one network"):
        make_plan(net, "sltt", 4, batch=4)


def test_measure_step_leaves_the_model_untouched():
    net = build_model(ModelConfig(arch="vgg11", input_shape=(2, 8, 8), num_classes=5, width=0.125), seed=0)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    measure_step(net, 0, 3, 4)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())  # incl. BatchNorm stats
    assert all(p.grad is None for p in net.parameters())


def test_plan_command_prints_the_table():
    result = CliRunner().invoke(app, ["plan", "--model", "dvs-cnn", "--subnets", "4", "--batch", "4",
                                      "--input", "2,16,16"])
    assert result.exit_code == 0, result.output
    for word in ("budget", "0.conv", "readout", "fits"):
        assert word in result.output
    bad = CliRunner().invoke(app, ["plan", "--input", "2,16"])
    assert bad.exit_code != 0


def test_plan_says_which_layers_were_chosen_and_why():
    net = _net()  # dvs-cnn: conv conv conv | flatten dense readout
    roomy = make_plan(net, "stdl", 4, batch=4, budget_mb=1e4)
    first = roomy.subnets[0]
    assert (first.aux_candidates, first.aux_source, first.rejected) == (3, [1, 2, 4], [])
    assert first.why() == "d=3 of D=3: offsets round(3/3*i) = 1,2,3"
    tight = make_plan(net, "stdl", 4, batch=4)
    for s in tight.subnets[:-1]:
        assert s.why().startswith(f"d={s.aux_depth} of D={s.aux_candidates}")
        assert all(depth > s.aux_depth and nbytes > tight.budget_bytes for depth, nbytes in s.rejected)
        assert [depth for depth, _ in s.rejected] == list(range(s.aux_candidates, s.aux_depth, -1))
    assert tight.subnets[-1].why() == "last subnetwork: the model's readout"
    assert tight.to_dict()["subnets"][0]["why"] == tight.subnets[0].why()


def test_plan_command_shows_the_reason():
    from typer.testing import CliRunner

    from stdl_edge.cli import app

    result = CliRunner().invoke(app, ["plan", "--input", "2,16,16", "--batch", "4", "--budget-mb", "10000"],
                                env={"COLUMNS": "240"})
    assert result.exit_code == 0, result.output
    assert "d=3 of D=3: offsets round(3/3*i) = 1,2,3" in result.output
