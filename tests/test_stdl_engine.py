"""STDL gradients: no gradient crosses a subnetwork boundary or a time step; K=1 without
temporal decoupling is exactly BPTT; the memory meter counts what a hand count gives."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from stdl_edge.models import ModelConfig, build_model
from stdl_edge.neuron import detach_state
from stdl_edge.stdl.auxiliary import make_plan
from stdl_edge.stdl.engine import evaluate_batch, step_loss, train_batch
from stdl_edge.stdl.memory import SavedTensorMeter

SHAPE = (2, 16, 16)


def _model(seed: int = 0):
    return build_model(ModelConfig(input_shape=SHAPE, num_classes=4), seed=seed)


def _batch(steps: int = 3, batch: int = 5, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    frames = (torch.rand(steps, batch, *SHAPE, generator=g) < 0.2).float()
    labels = torch.randint(0, 4, (batch,), generator=g)
    return frames, labels


def _grads(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: (p.grad.clone() if p.grad is not None else torch.zeros_like(p)) for n, p in module.named_parameters()}


def _subnet_params(model, a, b):
    return [p for layer in model.layers[a:b] for p in layer.parameters()]


def test_loss_of_subnet_k_gives_no_gradient_to_subnet_k_minus_1():
    model = _model()
    plan = make_plan(model, "stdl", subnets=4, batch=5)
    frames, labels = _batch()
    for k in range(1, len(plan.boundaries)):
        model.zero_grad(set_to_none=True)
        for h in plan.heads:
            h.zero_grad(set_to_none=True)
        # silence subnetwork k-1's own loss: a zero readout passes no gradient to its input
        readout = plan.heads[k - 1].layers[-1].linear
        saved = readout.weight.detach().clone()
        with torch.no_grad():
            readout.weight.zero_()
        train_batch(model, plan.heads, plan.boundaries, frames, labels, temporal=True)
        with torch.no_grad():
            readout.weight.copy_(saved)
        a, b = plan.boundaries[k - 1]
        below = _subnet_params(model, a, b)
        assert all(p.grad is None or not p.grad.any() for p in below), f"gradient leaked into subnet {k - 1}"
        c, d = plan.boundaries[k]
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in _subnet_params(model, c, d))


def test_each_subnet_gradient_is_its_own_local_loss():
    """Reference computed independently: earlier subnets without grad, subnet k + head per step."""
    model = _model()
    plan = make_plan(model, "stdl", subnets=3, batch=5)
    frames, labels = _batch(steps=4)
    train_batch(model, plan.heads, plan.boundaries, frames, labels, temporal=True)
    engine = [_grads(model)] + [_grads(h) for h in plan.heads]
    T, B = frames.shape[:2]
    for k, (a, b) in enumerate(plan.boundaries):
        ref_model = _model()
        ref_model.load_state_dict(model.state_dict())
        head = plan.heads[k] if k < len(plan.heads) else None  # engine grads are cloned above
        if head is not None:
            head.zero_grad(set_to_none=True)
        states = ref_model.init_state(B)
        hstate = head.init_state(B) if head is not None else None
        for t in range(T):
            with torch.no_grad():
                x, pre = ref_model.step(frames[t], states[:a], 0, a)
            states[:a] = pre
            out, st = ref_model.step(x, detach_state(states[a:b]), a, b)
            states[a:b] = st
            if head is not None:
                logits, hstate = head.step(out, detach_state(hstate))
            else:
                logits = out
            (F.cross_entropy(logits, labels) / T).backward()
        ref = _grads(ref_model)
        for name, g in ref.items():
            index = int(name.split(".")[1])
            if a <= index < b:
                assert torch.allclose(engine[0][name], g, atol=1e-6), f"subnet {k} param {name}"
        if head is not None:
            for name, g in _grads(head).items():
                assert torch.allclose(engine[k + 1][name], g, atol=1e-6), f"head {k} param {name}"


def test_step_loss_gives_no_gradient_through_previous_state():
    # second frame is empty: under temporal decoupling its loss can reach the first conv only
    # through the (detached) state, so the first conv's gradient is that of step 0's loss alone
    model = _model()
    frames, labels = _batch(steps=1)
    two = torch.cat([frames, torch.zeros_like(frames)])
    first = model.layers[0].conv.weight

    model.zero_grad(set_to_none=True)
    train_batch(model, [], [(0, len(model.layers))], frames, labels, temporal=True)
    one_step = first.grad.clone()  # loss / T with T = 1

    model.zero_grad(set_to_none=True)
    train_batch(model, [], [(0, len(model.layers))], two, labels, temporal=True)
    assert torch.allclose(first.grad, one_step / 2, atol=1e-7)

    model.zero_grad(set_to_none=True)
    train_batch(model, [], [(0, len(model.layers))], two, labels, temporal=False)
    assert not torch.allclose(first.grad, one_step / 2, atol=1e-5)  # BPTT does carry it


def test_k1_without_temporal_decoupling_equals_plain_bptt():
    model = _model()
    frames, labels = _batch(steps=4)
    train_batch(model, [], [(0, len(model.layers))], frames, labels, temporal=False)
    engine = _grads(model)

    model.zero_grad(set_to_none=True)
    states = model.init_state(frames.shape[1])
    loss = 0
    for t in range(frames.shape[0]):
        y, states = model.step(frames[t], states)
        loss = loss + F.cross_entropy(y, labels) / frames.shape[0]
    loss.backward()
    for name, g in _grads(model).items():
        assert torch.allclose(engine[name], g, atol=1e-6), name
    assert any(g.abs().sum() > 0 for g in engine.values())


def test_mse_term_adds_to_cross_entropy():
    logits = torch.tensor([[2.0, 0.0, -1.0]])
    labels = torch.tensor([0])
    ce = F.cross_entropy(logits, labels)
    mse = ((logits - torch.tensor([[1.0, 0.0, 0.0]])) ** 2).mean()
    assert torch.allclose(step_loss(logits, labels, 4, mse_weight=0.5), (ce + 0.5 * mse) / 4)


def test_eval_exits_match_manual_forward():
    model = _model()
    plan = make_plan(model, "local", subnets=2, batch=4)
    frames, _ = _batch(steps=3, batch=4)
    outs = evaluate_batch(model, plan.heads, plan.boundaries, frames)
    model.eval()
    assert torch.allclose(outs[-1], model(frames), atol=1e-6)  # the full model exit is the model


def test_meter_counts_unique_saved_storages_by_hand():
    lin = torch.nn.Linear(5, 3, bias=False)
    x = torch.ones(4, 5)
    with SavedTensorMeter(exclude=lin.parameters()) as m:
        h = lin(x)            # saves x: 4*5*4 = 80 B (the weight is a parameter: excluded)
        y = torch.relu(h)     # saves y: 4*3*4 = 48 B
        z = (y * y).sum()     # saves y twice: same storage, counted once
        assert m.current == 128
        z.backward()
    assert (m.peak, m.current) == (128, 0)


def test_meter_peak_is_max_over_sequential_backwards():
    w = torch.nn.Parameter(torch.ones(10))
    with SavedTensorMeter(exclude=[w]) as m:
        for n in (100, 300, 200):
            x = torch.ones(n, 10)
            ((x * w).sum()).backward()   # saves x (n*10*4 B); freed by backward
    assert m.peak == 300 * 10 * 4
    assert m.current == 0


def test_decoupled_memory_is_independent_of_T_and_bptt_grows():
    model = _model()
    plan = make_plan(model, "stdl", subnets=4, batch=5)
    params = list(model.parameters()) + [p for h in plan.heads for p in h.parameters()]
    peaks = {}
    for temporal, heads, bounds in ((True, plan.heads, plan.boundaries), (False, [], [(0, len(model.layers))])):
        for steps in (2, 6):
            frames, labels = _batch(steps=steps)
            with SavedTensorMeter(exclude=params) as m:
                train_batch(model, heads, bounds, frames, labels, temporal=temporal)
            peaks[temporal, steps] = m.peak
    assert peaks[True, 2] == peaks[True, 6]
    assert peaks[False, 6] > 2.5 * peaks[False, 2]
    assert peaks[True, 6] * 4 < peaks[False, 6]
