"""Quantization-aware training (QAT): fake quantization on the weights of a float model.

Every conv/dense weight ``W`` of a :class:`~stdl_edge.models.SpikingNet` is reparametrized
(``torch.nn.utils.parametrize``) as::

    W_eff = Q(fold(W)) / g,    fold(W) = W * g   (per output channel, stdl_edge.quant.fold_bn)
    Q(x)  = quantize_weight(x, S) / S              (S = 64 * 2**e / k**2, straight-through)

with ``g`` the BatchNorm gain (eval statistics; 1 without BN), ``e`` the exponent the
quantizer would choose for the folded layer right now (:func:`stdl_edge.quant.choose_exponent`)
and ``k`` the product of the average-pooling factors in front of the layer (the exporter folds
them into the weights as ``W / k**2``). So the forward pass uses exactly the weights the
exported fixed-point network has, and the gradient passes straight through the rounding
wherever the weight is not clipped. :func:`fine_tune_qat` fine-tunes a trained run this way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils import parametrize

from .artifact import RunFolder, save_model
from .data import load_dataset, materialize
from .io import atomic_path
from .layers import AvgPool2d, Readout, SpikingConv2d, SpikingDense, SpikingRecurrentDense
from .models import SpikingNet
from .quant import BASE_SCALE, QuantConfig, bn_gain, choose_exponent, fold_bn, quantize_weight


def fake_quantize_weight(w: torch.Tensor, scale: float, config: QuantConfig = QuantConfig()) -> torch.Tensor:
    """Float weights the fixed-point network really uses: ``quantize_weight(w, scale) / scale`` (STE).

    >>> fake_quantize_weight(torch.tensor([0.5, 0.01, 9.0]), 64.0).tolist()
    [0.5, 0.0, 3.96875]
    """
    return quantize_weight(w, scale, config) / scale


def _raw_weight(module: nn.Module) -> torch.Tensor:
    """``module.weight`` as trained: the original under a parametrization."""
    if parametrize.is_parametrized(module, "weight"):
        return module.parametrizations.weight.original
    return module.weight


class _FakeQuantParam(nn.Module):
    """Parametrization ``W -> Q(fold_bn(W)) / g`` of one layer, at the layer's current exponent.

    ``fold_bn`` and the division by the gain ``g`` are plain torch ops on ``W``, so the
    gradient reaches the float weight through the straight-through rounding; the BatchNorm
    parameters are frozen by :func:`attach_fake_quant`. A recurrent dense layer has one on each
    matrix (``recurrent`` for ``W_rec``), both at the exponent of ``[fold_bn(W) | W_rec]``, which
    is how the exporter quantizes it.
    """

    def __init__(self, layer: SpikingConv2d | SpikingDense | SpikingRecurrentDense, config: QuantConfig,
                 pooled: int = 1, recurrent: bool = False) -> None:
        super().__init__()
        self._layer = [layer]  # not a submodule (avoid recursion in parametrize)
        self.config = config
        self.pooled = pooled
        self.recurrent = recurrent

    @torch.no_grad()
    def _exponent(self, w: torch.Tensor) -> int:
        layer = self._layer[0]
        ff = _raw_weight(layer.synapse) if self.recurrent else w
        folded, bias = fold_bn(ff.detach(), layer.synapse.bias, layer.bn)
        matrix = folded.double().cpu().numpy() / float(self.pooled) ** 2
        if isinstance(layer, SpikingRecurrentDense):
            rec = w if self.recurrent else _raw_weight(layer.recurrent)
            matrix = np.hstack([matrix, rec.detach().double().cpu().numpy()])
        e, _ = choose_exponent(matrix, None if bias is None else bias.detach().double().cpu().numpy(),
                               layer.neuron, self.config, readout=isinstance(layer, Readout))
        return e

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        layer = self._layer[0]
        e = self._exponent(w)
        if self.recurrent:  # W_rec: no BatchNorm, no pooling
            return fake_quantize_weight(w, BASE_SCALE * 2.0 ** e, self.config)
        folded, _ = fold_bn(w, layer.synapse.bias, layer.bn)
        scale = BASE_SCALE * 2.0 ** e / float(self.pooled) ** 2  # pooled weights are W / k**2 at the layer's scale
        quantized = fake_quantize_weight(folded, scale, self.config)
        if layer.bn is None:
            return quantized
        return quantized / bn_gain(layer.bn).to(w.dtype).reshape(-1, *([1] * (w.dim() - 1)))


def attach_fake_quant(model: SpikingNet, config: QuantConfig = QuantConfig()) -> SpikingNet:
    """Make every conv/dense weight of ``model`` fake-quantized (in place; BatchNorm set to eval).

    Undo with :func:`detach_fake_quant` (keeps the trained float weights). A recurrent dense
    layer's recurrent matrix is fake-quantized too, at the exponent it shares with ``W``.
    """
    pool = 1
    for layer in model.layers:
        if isinstance(layer, AvgPool2d):
            pool *= layer.kernel_size
            continue
        if isinstance(layer, (SpikingConv2d, SpikingDense, SpikingRecurrentDense)):
            if layer.bn is not None:
                layer.bn.eval()
                for p in layer.bn.parameters():
                    p.requires_grad_(False)
            if not parametrize.is_parametrized(layer.synapse, "weight"):
                parametrize.register_parametrization(layer.synapse, "weight", _FakeQuantParam(layer, config, pool))
            if isinstance(layer, SpikingRecurrentDense) and not parametrize.is_parametrized(layer.recurrent, "weight"):
                parametrize.register_parametrization(layer.recurrent, "weight",
                                                     _FakeQuantParam(layer, config, pool, recurrent=True))
            pool = 1
    return model


def detach_fake_quant(model: SpikingNet) -> SpikingNet:
    """Remove the fake quantization, keeping the (fine-tuned) float weights."""
    for layer in model.layers:
        for module in (getattr(layer, "synapse", None), getattr(layer, "recurrent", None)):
            if module is not None and parametrize.is_parametrized(module, "weight"):
                parametrize.remove_parametrizations(module, "weight", leave_parametrized=False)
    return model


def fine_tune_qat(run: str, epochs: int = 1, lr: float = 1e-4, batch_size: int = 32, out: str | None = None,
                  config: QuantConfig = QuantConfig(), limit: int | None = None, seed: int = 0) -> dict[str, Any]:
    """Quantization-aware fine-tuning of a trained run; writes the result as a new run folder.

    Loads ``run`` (:meth:`stdl_edge.artifact.RunFolder.load`), attaches :func:`attach_fake_quant`, and
    trains ``epochs`` epochs of plain BPTT with cross-entropy on the time-averaged readout
    over ``stdl_edge.data.load_dataset(<run's data set>, 'train')`` (``limit`` samples at
    most, a fresh permutation seeded by ``seed`` each epoch), Adam at ``lr``, BatchNorm
    frozen. The float weights (fake quantization removed) are saved with the run's record
    into ``out`` (default ``RUN/qat``), which the exporters read like any run.
    Returns ``{'out': path, 'losses': [...]}`` (mean loss per epoch).
    """
    folder = RunFolder(run)
    src = folder.path
    trained = folder.load()
    record = trained.record
    name = trained.dataset
    if not name:
        raise ValueError(f"{folder.record_file} does not name its data set; cannot fine-tune")
    stream = trained.stream
    ds = load_dataset(name, "train", num_steps=stream.num_steps, dt_us=stream.dt_us, bin_mode=stream.bin_mode,
                      **folder.data_options())
    model = trained.model
    model.train()
    attach_fake_quant(model, config)
    params = [p for n, p in model.named_parameters() if p.requires_grad and "bn" not in n.split(".")]
    opt = torch.optim.Adam(params, lr=lr)
    gen = torch.Generator().manual_seed(seed)
    n = len(ds.labels) if limit is None else min(limit, len(ds.labels))
    data = materialize(ds)
    losses = []
    for _ in range(epochs):
        order = torch.randperm(len(ds.labels), generator=gen)[:n]
        total = 0.0
        for frames, labels in data.batches(batch_size, order):  # (T, B, C, H, W), (B,)
            for layer in model.layers:  # keep BN frozen (eval statistics are what gets folded)
                if getattr(layer, "bn", None) is not None:
                    layer.bn.eval()
            loss = F.cross_entropy(model(frames), labels)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(labels)
        losses.append(total / max(n, 1))
    detach_fake_quant(model)
    model.eval()
    dst = Path(out) if out is not None else src / "qat"
    extra = {k: v for k, v in record.items() if k not in ("format_version", "model", "stream")}
    extra["qat"] = {"source": str(src), "epochs": epochs, "lr": lr, "losses": losses, "config": config.to_dict()}
    save_model(dst, model, stream, extra=extra)
    if folder.aux_file.exists():
        with atomic_path(RunFolder(dst).aux_file) as tmp:
            tmp.write_bytes(folder.aux_file.read_bytes())
    return {"out": str(dst), "losses": losses}
