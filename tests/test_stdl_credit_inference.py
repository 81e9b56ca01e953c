"""The temporal credit is a training rule only: the run it trains exports and runs the same way.

Runs trained with trace and with window (the two rules that change the backward: a traced
synapse, a graph across steps) record the same network as one trained with none
(model.json's model), export to ONNX graphs that differ only in their weight values, and
onnxruntime gives what torch gives on each. (Two exports: ONNX export is the slow part.)
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from stdl_edge.api import export, open_device
from stdl_edge.artifact import StreamInfo
from stdl_edge.data import TensorData
from stdl_edge.stdl.trainer import TrainConfig, train

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

H = 12
STREAM = StreamInfo((H, H, 2), 1000, 3, class_names=("a", "b", "c", "d"))


def _data(n: int, seed: int) -> TensorData:
    g = torch.Generator().manual_seed(seed)
    return TensorData((torch.rand(n, 3, 2, H, H, generator=g) < 0.2).to(torch.uint8), torch.randint(0, 4, (n,), generator=g))


def _structure(path) -> list:
    """The graph without weight values: nodes (op, inputs, outputs, attributes) and initializer shapes."""
    g = onnx.load(str(path)).graph
    nodes = [(n.op_type, list(n.input), list(n.output), [str(a) for a in n.attribute]) for n in g.node]
    return [nodes, [(i.name, list(i.dims)) for i in g.initializer], [str(i) for i in g.input], [str(o) for o in g.output]]


def _weights(path) -> dict[str, np.ndarray]:
    return {i.name: onnx.numpy_helper.to_array(i) for i in onnx.load(str(path)).graph.initializer}


def test_exports_and_devices_do_not_depend_on_the_temporal_credit(tmp_path):
    data = (_data(48, 0), _data(16, 1), STREAM)
    frames = _data(4, 2).frames.float().transpose(0, 1)  # (T, B, 2, H, W)
    records, graphs, weights = [], [], []
    for credit in ("trace", "window", "none"):
        cfg = TrainConfig(method="stdl", subnets=2, epochs=1, batch_size=16, seed=1, temporal_credit=credit)
        folder = tmp_path / credit
        train(cfg, folder, data=data)
        record = json.loads((folder / "model.json").read_text())
        assert record["stdl"]["temporal_credit"]["rule"] == credit
        records.append(record["model"])
        if credit == "none":
            continue
        onnx_file = next(p for p in export(folder, to="onnx", subnets=False, aux=False) if p.name == "model.onnx")
        graphs.append(_structure(onnx_file))
        weights.append(_weights(onnx_file))
        outs = {}
        for device in ("torch", "onnxruntime"):
            dev = open_device(folder, device)
            dev.reset(frames.shape[1])
            outs[device] = np.stack([np.asarray(dev.step(f)) for f in frames])
        np.testing.assert_allclose(outs["onnxruntime"], outs["torch"], atol=1e-4)
    assert records[0] == records[1] == records[2]
    assert graphs[0] == graphs[1]
    # the rules did train differently: the same graph carries different weights
    assert any(not np.array_equal(weights[0][k], weights[1][k]) for k in weights[0])
