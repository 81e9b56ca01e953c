"""The CUBA neuron against hand-computed traces, its edge cases and its surrogates."""

from __future__ import annotations

import math

import pytest
import torch

from stdl_edge.neuron import READOUT_PARAMS, CubaParams, cuba_step, detach_state, zero_state


def run(params: CubaParams, inputs: list[float]):
    state = zero_state((1,))
    trace = []
    for x in inputs:
        s, state = cuba_step(torch.tensor([x]), state, params)
        trace.append((float(state.current), float(state.voltage), int(s)))
    return trace


def test_lif_trace_matches_hand_computation():
    # a_u = 1 (u = I), a_v = 0.5, theta = 1:
    # v1 = 0.6; v2 = 0.3 + 0.6 = 0.9; v3 = 0.45 + 0.6 = 1.05 -> spike; v4 = 0 (reset) + 0.6 = 0.6
    trace = run(CubaParams(voltage_decay=0.5, threshold=1.0), [0.6, 0.6, 0.6, 0.6])
    assert [round(v, 6) for _, v, _ in trace] == [0.6, 0.9, 1.05, 0.6]
    assert [s for *_, s in trace] == [0, 0, 1, 0]


def test_cuba_current_decay_trace():
    # a_u = 0.25: u1 = 1, u2 = 0.75, u3 = 0.5625; a_v = 1 -> v = u; theta large
    trace = run(CubaParams(current_decay=0.25, voltage_decay=1.0, threshold=10.0), [1.0, 0.0, 0.0])
    assert [round(u, 6) for u, _, _ in trace] == [1.0, 0.75, 0.5625]
    assert [round(v, 6) for _, v, _ in trace] == [1.0, 0.75, 0.5625]


def test_threshold_is_strict_and_reset_is_hard():
    p = CubaParams(voltage_decay=0.0, threshold=1.0)  # perfect integrator
    trace = run(p, [1.0, 0.0, 0.5])
    assert trace[0][2] == 0  # v == theta does not fire (strict '>')
    trace = run(p, [1.5, 0.25])
    assert trace[0][2] == 1 and trace[1][1] == pytest.approx(0.25)  # reset to 0, not subtract


def test_readout_never_spikes_and_reports_input():
    state = zero_state((2,))
    s, state = cuba_step(torch.tensor([1e6, -3.0]), state, READOUT_PARAMS)
    assert s.sum() == 0 and state.voltage.tolist() == [1e6, -3.0]


@pytest.mark.parametrize("surrogate", ["triangle", "atan"])
def test_surrogate_gradient_peaks_at_threshold_and_integrates_to_one(surrogate):
    p = CubaParams(voltage_decay=1.0, threshold=1.0, surrogate=surrogate, surrogate_width=0.5)
    x = torch.linspace(-20, 22, 200001, requires_grad=True)
    s, _ = cuba_step(x, zero_state(x.shape), p)
    s.sum().backward()
    g = x.grad
    assert torch.equal(s, (x > 1).float())
    assert float(x.detach()[g.argmax()]) == pytest.approx(1.0, abs=1e-3)
    integral = float(g.sum() * (x[1] - x[0]).detach())
    assert integral == pytest.approx(1.0, abs=0.02)


def test_detach_state_cuts_the_graph():
    x = torch.ones(3, requires_grad=True)
    _, state = cuba_step(x * 2, zero_state((3,)), CubaParams())
    detached = detach_state([state, ()])
    assert all(not t.requires_grad for t in detached[0]) and detached[1] == ()


@pytest.mark.parametrize("kwargs, needle", [
    ({"voltage_decay": 1.5}, "voltage_decay=1.5"),
    ({"threshold": 0.0}, "threshold=0.0"),
    ({"surrogate": "sigmoid"}, "surrogate='sigmoid'"),
])
def test_bad_parameters_name_the_value(kwargs, needle):
    with pytest.raises(ValueError, match=needle.replace("(", r"\(")):
        CubaParams(**kwargs)


def test_params_json_round_trip_keeps_infinite_threshold():
    assert CubaParams.from_dict(READOUT_PARAMS.to_dict()) == READOUT_PARAMS
    assert math.isinf(CubaParams.from_dict(READOUT_PARAMS.to_dict()).threshold)
