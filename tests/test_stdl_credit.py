"""Temporal credit (none / trace / window) and subnetwork groups in the one engine.

A trace's weight gradient is the hand-computed one; ``window = T`` is BPTT exactly; no
gradient crosses a subnetwork boundary; memory (saved tensors + carried state) is flat in
T; a group-by-group call gives bit-identical gradients to one call over all subnetworks.
"""

from __future__ import annotations

import pytest
import torch

from stdl_edge.layers import SpikingDense
from stdl_edge.models import ModelConfig, SpikingNet, build_model
from stdl_edge.stdl.auxiliary import make_plan
from stdl_edge.stdl.engine import TEMPORAL_CREDITS, run_chunk, step_loss, train_batch
from stdl_edge.stdl.memory import SavedTensorMeter

SHAPE = (2, 16, 16)
SETTINGS = [("none", 1), ("trace", 1), ("window", 2), ("window", 3)]


def _model(seed: int = 0) -> SpikingNet:
    return build_model(ModelConfig(input_shape=SHAPE, num_classes=4), seed=seed)


def _batch(steps: int = 4, batch: int = 5, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    frames = (torch.rand(steps, batch, *SHAPE, generator=g) < 0.2).float()
    return frames, torch.randint(0, 4, (batch,), generator=g)


def _zero(*nets) -> None:
    for n in nets:
        n.zero_grad(set_to_none=True)


def _grads(*nets) -> list[torch.Tensor | None]:
    return [None if p.grad is None else p.grad.clone() for n in nets for p in n.parameters()]


def _dense_net(weight: list[list[float]]) -> SpikingNet:
    layer = SpikingDense(2, 2)  # CUBA defaults: a_u = 1 (u = I), a_v = 0.5, theta = 1, triangle width 1
    with torch.no_grad():
        layer.linear.weight.copy_(torch.tensor(weight))
    return SpikingNet([layer], ModelConfig())


@pytest.mark.parametrize("credit, window", [("trace", 1), ("window", 2), ("none", 1)])
def test_two_step_two_neuron_weight_gradient_by_hand(credit, window):
    # x[0] = (1, 0), x[1] = (1, 1); W = [[.8, .3], [.5, .9]]; loss = sum of all spikes.
    # v[0] = W x[0] = (.8, .5): no spike, g0 = 1 - |v - 1| = (.8, .5)
    # v[1] = .5 v[0] + W x[1] = (.4 + 1.1, .25 + 1.4) = (1.5, 1.65): spikes, g1 = (.5, .35)
    # trace e[0] = x[0] = (1, 0), e[1] = .5 e[0] + x[1] = (1.5, 1): dW = g0 e0^T + g1 e1^T
    # none: dW = g0 x0^T + g1 x1^T; window 2 (BPTT): dv1/dv0 = .5 (no reset) gives the trace's
    net = _dense_net([[0.8, 0.3], [0.5, 0.9]])
    x = torch.tensor([[[1.0, 0.0]], [[1.0, 1.0]]])  # (T=2, B=1, 2)
    traces = [None] if credit == "trace" else None
    out, _ = run_chunk(net, 0, 1, x, net.init_state(1, "cpu"), traces, detach_steps=credit != "window")
    assert out.tolist() == [[[0.0, 0.0]], [[1.0, 1.0]]]
    out.sum().backward()
    by_hand = {"trace": [[0.8 * 1 + 0.5 * 1.5, 0.8 * 0 + 0.5 * 1], [0.5 * 1 + 0.35 * 1.5, 0.5 * 0 + 0.35 * 1]],
               "window": [[1.55, 0.5], [1.025, 0.35]],
               "none": [[0.8 + 0.5, 0.5], [0.5 + 0.35, 0.35]]}[credit]
    assert torch.allclose(net.layers[0].linear.weight.grad, torch.tensor(by_hand), atol=1e-6)


def test_trace_ignores_the_reset_where_bptt_sees_it():
    # neuron 0 spikes at step 0 (v = 1.2) and resets: BPTT's dv1/dv0 is 0 (detached reset term
    # kept: (1 - s0) = 0), the trace still carries .5 x[0]
    net = _dense_net([[1.2, 0.0], [0.0, 0.0]])
    x = torch.tensor([[[1.0, 0.0]], [[1.0, 0.0]]])
    grads = {}
    for credit in ("trace", "window"):
        net.zero_grad(set_to_none=True)
        out, _ = run_chunk(net, 0, 1, x, net.init_state(1, "cpu"), [None] if credit == "trace" else None,
                           detach_steps=credit == "trace")
        out[:, :, 0].sum().backward()
        grads[credit] = net.layers[0].linear.weight.grad[0, 0].item()
    g0, g1 = 0.8, 0.8  # v = 1.2 at both steps: g = 1 - .2
    assert grads["window"] == pytest.approx(g0 * 1 + g1 * 1)
    assert grads["trace"] == pytest.approx(g0 * 1 + g1 * 1.5)


def test_window_T_is_bptt_exactly_and_bptt_matches_a_plain_autograd_reference():
    model = _model()
    frames, labels = _batch(steps=4)
    bounds = [(0, len(model.layers))]
    train_batch(model, [], bounds, frames, labels, temporal=False)
    bptt = _grads(model)
    _zero(model)
    train_batch(model, [], bounds, frames, labels, credit="window", window=4)
    assert all(torch.equal(a, b) for a, b in zip(bptt, _grads(model)))
    _zero(model)
    states = model.init_state(frames.shape[1], "cpu")
    loss = 0
    for frame in frames:
        y, states = model.step(frame, states)
        loss = loss + step_loss(y, labels, len(frames))
    loss.backward()
    assert all(torch.allclose(a, b, atol=1e-6, rtol=1e-5) for a, b in zip(bptt, _grads(model)))


def test_window_1_and_any_chunk_give_the_per_step_gradient():
    model = _model()
    plan = make_plan(model, "stdl", subnets=4, batch=5)
    frames, labels = _batch(steps=4)
    results = []
    for kw in ({"credit": "window", "window": 1}, {"chunk": 1}, {"chunk": 3}, {"chunk": 4}):
        _zero(model, *plan.heads)
        train_batch(model, plan.heads, plan.boundaries, frames, labels, **kw)
        results.append(_grads(model, *plan.heads))
    for other in results[1:]:
        assert all(torch.allclose(a, b, atol=1e-6, rtol=1e-5) for a, b in zip(results[0], other) if a is not None)


def test_window_differs_from_none_on_a_real_model():
    model = _model()
    frames, labels = _batch(steps=4)
    bounds = [(0, len(model.layers))]
    grads = {}
    for credit, window in (("none", 1), ("window", 2), ("trace", 1)):
        _zero(model)
        train_batch(model, [], bounds, frames, labels, credit=credit, window=window)
        grads[credit] = _grads(model)
    w0 = 0  # first conv's weight
    assert not torch.allclose(grads["none"][w0], grads["window"][w0])
    assert not torch.allclose(grads["none"][w0], grads["trace"][w0])


@pytest.mark.parametrize("credit, window", SETTINGS)
def test_no_gradient_crosses_a_subnetwork_boundary(credit, window):
    model = _model()
    plan = make_plan(model, "stdl", subnets=4, batch=5)
    frames, labels = _batch()
    for k in range(1, len(plan.boundaries)):
        _zero(model, *plan.heads)
        readout = plan.heads[k - 1].layers[-1].linear  # a zero readout: subnet k-1's own loss passes nothing
        saved = readout.weight.detach().clone()
        with torch.no_grad():
            readout.weight.zero_()
        train_batch(model, plan.heads, plan.boundaries, frames, labels, credit=credit, window=window)
        with torch.no_grad():
            readout.weight.copy_(saved)
        a, b = plan.boundaries[k - 1]
        below = [p for layer in model.layers[a:b] for p in layer.parameters()]
        assert all(p.grad is None or not p.grad.any() for p in below), f"gradient leaked into subnet {k - 1}"
        c, d = plan.boundaries[k]
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for layer in model.layers[c:d]
                   for p in layer.parameters())


@pytest.mark.parametrize("credit, window", SETTINGS)
@pytest.mark.parametrize("method", ["stdl", "sltt"])
def test_memory_is_flat_in_T_counting_carried_state(method, credit, window):
    model = _model()
    plan = make_plan(model, method, subnets=4 if method == "stdl" else 1, batch=5)
    params = list(model.parameters()) + [p for h in plan.heads for p in h.parameters()]
    totals = {}
    for steps in (6, 12):
        frames, labels = _batch(steps=steps)
        with SavedTensorMeter(exclude=params) as meter:
            result = train_batch(model, plan.heads, plan.boundaries, frames, labels, credit=credit, window=window)
        assert result.state_bytes > 0
        totals[steps] = (meter.peak, result.state_bytes)
    assert totals[6] == totals[12]
    frames, labels = _batch(steps=12)
    with SavedTensorMeter(exclude=params) as meter:
        train_batch(model, plan.heads, plan.boundaries, frames, labels, temporal=False)
    assert meter.peak > 3 * totals[12][0]  # BPTT's grows


def test_trace_state_is_counted():
    model = _model()
    plan = make_plan(model, "stdl", subnets=4, batch=5)
    frames, labels = _batch()
    sizes = {credit: train_batch(model, plan.heads, plan.boundaries, frames, labels, credit=credit).state_bytes
             for credit in ("none", "trace")}
    assert sizes["trace"] > sizes["none"]


@pytest.mark.parametrize("credit, window", SETTINGS)
@pytest.mark.parametrize("method", ["stdl", "local"])
def test_groups_give_bit_identical_gradients(method, credit, window):
    model = _model()
    plan = make_plan(model, method, subnets=4, batch=5)
    assert len(plan.boundaries) == 4
    frames, labels = _batch(steps=5)
    whole = train_batch(model, plan.heads, plan.boundaries, frames, labels, credit=credit, window=window)
    expected = _grads(model, *plan.heads)
    _zero(model, *plan.heads)
    first = train_batch(model, plan.heads[:2], plan.boundaries[:2], frames, labels, credit=credit, window=window,
                        keep_outputs=True)
    assert first.outputs is not None and first.outputs.shape[:2] == (5, 5)
    assert not first.outputs.requires_grad
    second = train_batch(model, plan.heads[2:], plan.boundaries[2:], first.outputs, labels, credit=credit,
                         window=window, keep_outputs=True)
    got = _grads(model, *plan.heads)
    assert len(got) == len(expected)
    for a, b in zip(expected, got):
        assert (a is None and b is None) or torch.equal(a, b)
    assert first.subnet_loss + second.subnet_loss == whole.subnet_loss
    assert torch.equal(second.logits, whole.logits)
    assert second.outputs.shape == (5, 5, 4)  # the readout's logits at every step


def test_group_ending_at_a_head_reports_that_heads_logits():
    model = _model()
    plan = make_plan(model, "stdl", subnets=4, batch=5)
    frames, labels = _batch()
    first = train_batch(model, plan.heads[:1], plan.boundaries[:1], frames, labels)
    _, heads_logits = _exit_logits(model, plan, frames)
    assert torch.allclose(first.logits, heads_logits, atol=1e-6)
    assert first.outputs is None


def _exit_logits(model, plan, frames):
    from stdl_edge.stdl.engine import evaluate_batch

    outs = evaluate_batch(model, plan.heads, plan.boundaries, frames)
    return outs[-1], outs[0]


def test_bad_credit_settings_are_refused_by_name():
    model = _model()
    frames, labels = _batch()
    bounds = [(0, len(model.layers))]
    with pytest.raises(ValueError, match="--temporal-credit 'eligibility'"):
        train_batch(model, [], bounds, frames, labels, credit="eligibility")
    with pytest.raises(ValueError, match="--window 0"):
        train_batch(model, [], bounds, frames, labels, credit="window", window=0)
    resnet = build_model(ModelConfig(arch="resnet", input_shape=(2, 8, 8), num_classes=4, width=0.125), seed=0)
    with pytest.raises(ValueError, match="resblock"):
        train_batch(resnet, [], [(0, len(resnet.layers))], torch.zeros(2, 1, 2, 8, 8), torch.zeros(1, dtype=torch.long),
                    credit="trace")
    assert TEMPORAL_CREDITS == ("none", "trace", "window")


def test_carried_state_is_what_the_next_step_reads():
    from math import prod

    from stdl_edge.neuron import CubaParams, cuba_step, zero_state
    from stdl_edge.stdl.engine import carried_state

    g = torch.Generator().manual_seed(0)
    i = [torch.randn(3, 4, generator=g) for _ in range(2)]
    for p, kept in ((CubaParams(), [False, True, True]), (CubaParams(current_decay=0.5), [True, True, True]),
                    (CubaParams(voltage_decay=1.0, threshold=float("inf")), [False, False, False])):
        _, full = cuba_step(i[0], zero_state((3, 4)), p)
        trimmed = carried_state(full, p)
        assert [t.dim() > 0 for t in trimmed] == kept
        # the next step is the same from the trimmed state: nothing it reads was dropped
        a, b = cuba_step(i[1], full, p), cuba_step(i[1], trimmed, p)
        assert torch.equal(a[0], b[0]) and all(torch.equal(x, y) for x, y in zip(a[1], b[1]))
    # dvs-cnn with the default neuron (a_u = 1): each spiking layer carries v and s; the readout (a_v = 1) nothing
    model = _model()
    frames, labels = _batch(batch=5)
    result = train_batch(model, [], [(0, len(model.layers))], frames, labels, credit="none")
    expected = sum(2 * 5 * prod(layer.out_shape) * 4 + 4 if layer.spiking else 4  # one shared 0-dim zero
                   for layer in model.layers if layer.stateful)
    assert result.state_bytes == expected
