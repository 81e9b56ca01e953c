"""QAT: fake quantization equals the exported integers, gradients flow, fine_tune_qat writes a run."""

from __future__ import annotations

import numpy as np
import torch

from stdl_edge.models import ModelConfig, build_model
from stdl_edge.qat import attach_fake_quant, detach_fake_quant, fine_tune_qat
from stdl_edge.quant import quantize_model


def test_fake_quant_forward_equals_the_exported_integers():
    torch.manual_seed(2)
    net = build_model(ModelConfig(input_shape=(2, 8, 8), num_classes=3, width=0.25, batchnorm=True), seed=2)
    for layer in net.layers:
        if getattr(layer, "bn", None) is not None:
            layer.bn.running_var.uniform_(0.5, 2.0)
    net.eval()
    q = [x for x in quantize_model(net) if hasattr(x, "scale")]
    attach_fake_quant(net)
    lins = [getattr(layer, "conv", None) or getattr(layer, "linear", None) for layer in net.layers]
    lins = [lin for lin in lins if lin is not None]
    for lin, layer_q, layer in zip(lins, q, [la for la in net.layers if hasattr(la, "neuron")]):
        w_eff = lin.weight
        if layer.bn is not None:
            gain = layer.bn.weight / torch.sqrt(layer.bn.running_var + layer.bn.eps)
            w_eff = w_eff * gain.reshape(-1, *([1] * (w_eff.dim() - 1)))
        assert torch.allclose(w_eff.detach() * layer_q.scale, torch.tensor(layer_q.weight, dtype=torch.float32),
                              atol=1e-3)
    x = (torch.rand(3, 2, 2, 8, 8) < 0.3).float()
    y = net(x)
    y.sum().backward()  # gradients flow through the straight-through estimator
    assert lins[0].parametrizations.weight.original.grad is not None
    detach_fake_quant(net)
    assert not hasattr(lins[0], "parametrizations")


class _TinyData:
    """Stands in for stdl_edge.data's data set: ``labels`` and ``ds[i] -> (frames (T, C, H, W), label)``."""

    def __init__(self, n: int = 16) -> None:
        gen = torch.Generator().manual_seed(0)
        self.labels = np.arange(n) % 3
        self.frames = (torch.rand(n, 4, 2, 8, 8, generator=gen) < 0.3).float()
        for i, y in enumerate(self.labels):
            self.frames[i, :, int(y) % 2, int(y) * 2:int(y) * 2 + 2, :] = 1.0

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return self.frames[i], int(self.labels[i])


def test_fine_tune_qat_writes_a_run_the_exporters_read(tmp_path, monkeypatch):
    import stdl_edge.qat as qat
    from stdl_edge.artifact import RunFolder, StreamInfo
    from stdl_edge.stdl import save_run

    net = build_model(ModelConfig(input_shape=(2, 8, 8), num_classes=3, width=0.25, batchnorm=True), seed=0).eval()
    stream = StreamInfo((8, 8, 2), 1000, 4, class_names=("a", "b", "c"))
    save_run(tmp_path / "run", net, stream, [(0, len(net.layers))], [], {"train": {"dataset": "tiny"}})
    calls = []
    monkeypatch.setattr(qat, "load_dataset", lambda name, split, **kw: calls.append((name, split)) or _TinyData())
    result = fine_tune_qat(str(tmp_path / "run"), epochs=2, lr=1e-2, batch_size=8)
    assert calls == [("tiny", "train")] and len(result["losses"]) == 2
    tuned_run = RunFolder(result["out"]).load()
    tuned, tuned_stream = tuned_run.model, tuned_run.stream
    assert tuned_stream == stream
    before = dict(net.named_parameters())
    changed = [n for n, p in tuned.named_parameters() if not torch.equal(p, before[n])]
    assert changed and not any("parametrizations" in n for n, _ in tuned.named_parameters())
    q = quantize_model(tuned)  # the fine-tuned run quantizes like any run
    assert all(np.abs(x.weight).max() <= 254 for x in q if hasattr(x, "scale"))
