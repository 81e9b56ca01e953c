"""The float model loihi-sim must follow step for step: a test helper shared by the netx tests.

:func:`dequantized` rebuilds a model with its exported integer weights divided by their scale
and thresholds ``vThMant / scale`` (BatchNorm folded in), which is what loihi-sim computes in
integers; :func:`assert_loihi_sim_follows_float` runs both and compares every layer's spikes
(and the readout's voltage) at every step, loihi-sim's one-step-per-layer latency aligned.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from stdl_edge.models import build_model
from stdl_edge.quant import LayerQuant, quantize_model


def dequantized(net):
    """``(reference float model, layer quantizations)`` of ``net`` (see the module docstring); a
    recurrent dense layer gets its recurrent matrix at the layer's scale too."""
    q = [x for x in quantize_model(net) if isinstance(x, LayerQuant)]
    ref = build_model(net.config.replace(batchnorm=False)).eval()
    synaptic = [layer for layer in ref.layers if hasattr(layer, "synapse")]
    for layer, lq in zip(synaptic, q, strict=True):
        layer.synapse.weight.data = torch.tensor(lq.weight / lq.scale, dtype=torch.float32)
        bias = lq.bias if lq.bias is not None else np.zeros(lq.weight.shape[0])
        layer.synapse.bias = nn.Parameter(torch.tensor(bias / lq.scale, dtype=torch.float32))
        if lq.weight_rec is not None:  # dense_rec: the recurrent matrix at the same scale
            assert np.abs(lq.weight_rec).sum() > 0
            layer.recurrent.weight.data = torch.tensor(lq.weight_rec / lq.scale, dtype=torch.float32)
        if not lq.readout:
            layer.neuron = type(layer.neuron)(**{**layer.neuron.__dict__, "threshold": lq.vth / lq.scale})
    return ref, q


def assert_loihi_sim_follows_float(sim, ref, frames: np.ndarray, context: object = None) -> int:
    """``frames (T, B, ...)`` through loihi-sim (netx's aligned reset) and ``ref``: identical spikes
    in every layer at every step, readout voltages to 1e-5; returns the spikes compared."""
    steps, batch = frames.shape[:2]
    out = sim.run(np.concatenate([frames, np.zeros((sim.latency, *frames.shape[1:]), np.float32)]),
                  reset_interval=1 << 40, reset_offset=1)  # the aligned device mode
    states, spikes = ref.init_state(batch), 0
    with torch.no_grad():
        for t in range(steps):
            rec: list[torch.Tensor] = []
            _, states = ref.step(torch.from_numpy(frames[t]), states, record=rec)
            k = 0
            for name, y in zip(ref.layer_names(), rec):
                if name.endswith("flatten"):
                    continue
                layer = sim.net.layers[k]
                if name.endswith("readout"):
                    np.testing.assert_allclose(out[f"{layer.name}/v"][t + k + 1] / (64 * layer.scale), y.numpy(),
                                               atol=1e-5)
                else:
                    assert np.array_equal(out[layer.name][t + k + 1], y.numpy().astype(np.int8)), (context, name, t)
                    spikes += int(y.sum())
                k += 1
    return spikes
