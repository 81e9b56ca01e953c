"""The recurrent dense layer (``dense_rec``): its timing, its specs, and its gradients in the
STDL engine under every temporal credit against a hand-written reference."""

from __future__ import annotations

import pytest
import torch

from stdl_edge.layers import Readout, SpikingRecurrentDense
from stdl_edge.layerspec import build_layer, copy_layer, layer_spec
from stdl_edge.models import ModelConfig, SpikingNet, build_model
from stdl_edge.netspec import DenseRec, Flatten, Readout as ReadoutSpec, build_layers, parse_specs
from stdl_edge.neuron import CubaParams, CubaState, cuba_step, zero_state
from stdl_edge.stdl.auxiliary import make_plan
from stdl_edge.stdl.engine import presynaptic_trace, step_loss, train_batch

NEURON = CubaParams(current_decay=0.5, voltage_decay=0.25)


def test_own_spike_enters_the_current_one_step_later() -> None:
    layer = SpikingRecurrentDense(1, 1)
    with torch.no_grad():
        layer.linear.weight.fill_(2.0)
        layer.recurrent.weight.fill_(2.0)
    state = layer.init_state(1)
    out, currents = [], []
    with torch.no_grad():
        for x in (1.0, 0.0, 0.0, 0.0):
            s, state = layer(torch.tensor([[x]]), state)
            out.append(int(s))
            currents.append(float(state.current))
    # I[0] = 2 (input) -> spike; I[t] = 2 s[t-1] keeps it firing: the spike of t-1 arrives at t
    assert out == [1, 1, 1, 1]
    assert currents == [2.0, 2.0, 2.0, 2.0]
    with torch.no_grad():
        layer.recurrent.weight.fill_(0.0)
    state, out = layer.init_state(1), []
    for x in (1.0, 0.0, 0.0, 0.0):
        s, state = layer(torch.tensor([[x]]), state)
        out.append(int(s))
    assert out == [1, 0, 0, 0]


def test_spec_round_trip_and_copy() -> None:
    specs = parse_specs([{"kind": "flatten"}, {"kind": "dense_rec", "features": 6, "bias": True},
                         {"kind": "readout"}])
    assert isinstance(specs[1], DenseRec)
    layers = build_layers(specs, (2, 3, 3), 4)
    rec = layers[1]
    assert isinstance(rec, SpikingRecurrentDense) and rec.recurrent.weight.shape == (6, 6)
    again = build_layer(layer_spec(rec))
    assert type(again) is SpikingRecurrentDense and layer_spec(again) == layer_spec(rec)
    copy = copy_layer(rec, (11,))  # what an auxiliary head does
    assert isinstance(copy, SpikingRecurrentDense) and copy.in_shape == (11,) and copy.out_shape == (6,)
    with pytest.raises(ValueError, match=r"layers\[0\] \(dense_rec\)"):
        build_layers([DenseRec(4), ReadoutSpec()], (2, 3, 3), 4)


def test_zoo_model_and_its_aux_heads_carry_the_recurrent_layer() -> None:
    net = build_model(ModelConfig(arch="dvs-crnn", input_shape=(2, 16, 16), num_classes=4), seed=0)
    assert [layer.kind for layer in net.layers] == ["conv", "conv", "conv", "flatten", "dense_rec", "readout"]
    rec = net.layers[4]
    # recurrent weights start at a third of the feed-forward gain (models.RECURRENT_INIT)
    ff_std = float(rec.linear.weight.detach().std()) * rec.linear.in_features ** 0.5
    rec_std = float(rec.recurrent.weight.detach().std()) * rec.recurrent.in_features ** 0.5
    assert 0.25 < rec_std / ff_std < 0.42
    plan = make_plan(net, "stdl", subnets=3, batch=2)
    assert all(any(isinstance(layer, SpikingRecurrentDense) for layer in h.layers) for h in plan.heads)


# ------------------------------------------------------------------ gradients against a reference


def _tiny_net(seed: int = 0) -> SpikingNet:
    torch.manual_seed(seed)
    rec = SpikingRecurrentDense(5, 4, neuron=NEURON)
    out = Readout(4, 3)
    with torch.no_grad():
        rec.linear.weight.normal_(0.0, 1.2)
        rec.recurrent.weight.normal_(0.0, 1.0)
    return SpikingNet([rec, out], ModelConfig(input_shape=(1, 1, 5), num_classes=3))


def _frames(steps: int = 6, batch: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return (torch.rand(steps, batch, 5, generator=g) < 0.5).float(), torch.tensor([0, 2, 1])


def _reference(net: SpikingNet, frames: torch.Tensor, labels: torch.Tensor, cut_every: int) -> dict[str, torch.Tensor]:
    """Gradients of ``sum_t L[t]`` by autograd on a hand-written recurrence (not the layer's
    forward): ``I[t] = W x[t] + W_rec s[t-1]``, the state detached every ``cut_every`` steps."""
    rec, out = net.layers
    w, wr, wo, bo = (p.detach().clone().requires_grad_(True) for p in
                     (rec.linear.weight, rec.recurrent.weight, out.linear.weight, out.linear.bias))
    steps, batch = frames.shape[:2]
    st, so = zero_state((batch, 4)), zero_state((batch, 3))
    total = 0.0
    for t in range(steps):
        if t % cut_every == 0:
            st, so = CubaState(*(v.detach() for v in st)), CubaState(*(v.detach() for v in so))
        s, st = cuba_step(frames[t] @ w.t() + st.spike @ wr.t(), st, rec.neuron)
        _, so = cuba_step(s @ wo.t() + bo, so, out.neuron)
        total = total + step_loss(so.voltage, labels, steps)
    total.backward()
    return {"linear": w.grad, "recurrent": wr.grad, "readout": wo.grad}


def _engine(net: SpikingNet, frames: torch.Tensor, labels: torch.Tensor, **kw) -> dict[str, torch.Tensor]:
    net.zero_grad()
    train_batch(net, [], [(0, 2)], frames, labels, **kw)
    rec, out = net.layers
    return {"linear": rec.linear.weight.grad.clone(), "recurrent": rec.recurrent.weight.grad.clone(),
            "readout": out.linear.weight.grad.clone()}


@pytest.mark.parametrize("kw, cut", [({"temporal": False}, 10 ** 6), ({"credit": "window", "window": 3}, 3),
                                     ({"credit": "none"}, 1), ({"credit": "none", "chunk": 4}, 1)])
def test_gradients_equal_the_reference(kw: dict, cut: int) -> None:
    net = _tiny_net()
    frames, labels = _frames()
    got, want = _engine(net, frames, labels, **kw), _reference(net, frames, labels, cut)
    for name in want:
        torch.testing.assert_close(got[name], want[name], rtol=1e-5, atol=1e-6, msg=name)
    assert float(want["recurrent"].abs().sum()) > 0


def test_bptt_credits_through_the_recurrence() -> None:
    """bptt and 'none' differ on the recurrent weights: the test above could not pass by accident."""
    net = _tiny_net()
    frames, labels = _frames()
    bptt, none = _reference(net, frames, labels, 10 ** 6), _reference(net, frames, labels, 1)
    assert not torch.allclose(bptt["recurrent"], none["recurrent"], atol=1e-4)


def test_trace_credit_reads_the_traces_of_both_inputs() -> None:
    """``trace``: ``dW = sum_t delta_I[t] (x) e[t]``, ``dW_rec = sum_t delta_I[t] (x) e_rec[t]`` with
    ``e`` the traces of ``x[t]`` and of ``s[t-1]``, and ``delta_I[t]`` from step ``t``'s own loss."""
    net = _tiny_net()
    frames, labels = _frames()
    got = _engine(net, frames, labels, credit="trace")
    rec, out = net.layers
    steps, batch = frames.shape[:2]
    st, so = zero_state((batch, 4)), zero_state((batch, 3))
    spikes = []
    gw, gr = torch.zeros_like(rec.linear.weight), torch.zeros_like(rec.recurrent.weight)
    for t in range(steps):
        st, so = CubaState(*(v.detach() for v in st)), CubaState(*(v.detach() for v in so))
        spikes.append(st.spike)
        i = (frames[t] @ rec.linear.weight.detach().t() + st.spike @ rec.recurrent.weight.detach().t())
        i.requires_grad_(True)
        s, st = cuba_step(i, st, rec.neuron)
        _, so = cuba_step(out.linear(s), so, out.neuron)
        (delta,) = torch.autograd.grad(step_loss(so.voltage, labels, steps), i)
        e = presynaptic_trace(frames[: t + 1], None, rec)[0][-1]
        e_rec = presynaptic_trace(torch.stack(spikes), None, rec)[0][-1]
        gw += delta.t() @ e
        gr += delta.t() @ e_rec
    torch.testing.assert_close(got["linear"], gw, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got["recurrent"], gr, rtol=1e-5, atol=1e-6)
    none = _engine(net, frames, labels, credit="none")
    assert not torch.allclose(none["recurrent"], gr, atol=1e-4)


def test_zoo_model_trains_under_every_credit() -> None:
    net = build_model(ModelConfig(arch="dvs-crnn", input_shape=(2, 16, 16), num_classes=4), seed=0)
    frames = (torch.rand(4, 2, 2, 16, 16, generator=torch.Generator().manual_seed(0)) < 0.2).float()
    labels = torch.tensor([0, 3])
    for method, kw in (("bptt", {"temporal": False}), ("stdl", {"credit": "window", "window": 2}),
                       ("stdl", {"credit": "trace"}), ("stdl", {"credit": "none"})):
        plan = make_plan(net, method, subnets=1 if method == "bptt" else 3, batch=2)
        net.zero_grad()
        for h in plan.heads:
            h.zero_grad()
        result = train_batch(net, plan.heads, plan.boundaries, frames, labels, **kw)
        assert result.loss > 0
        assert net.layers[4].recurrent.weight.grad is not None
        for h in plan.heads:
            rec = next(layer for layer in h.layers if isinstance(layer, SpikingRecurrentDense))
            assert rec.recurrent.weight.grad is not None
