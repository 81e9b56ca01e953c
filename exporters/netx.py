"""Lava netx HDF5 exporter: ``model.net``, ``subnet<k>.net``, ``aux<k>.net`` + ``quantization.json``.

The files follow what lava-dl's ``netx.hdf5.Network`` reads (and what slayer's
``export_hdf5`` writes)::

    layer/0  type='input', shape=[C, H, W]               (no neuron: spikes go straight to layer 1)
    layer/i  type='conv',  shape=[C, H, W], weight (O, I, kh, kw) int, stride/padding/dilation [y, x],
             groups, bias (O,) int (optional), neuron/{type='CUBA', iDecay, vDecay, vThMant,
             refDelay, gradedSpike}
    layer/i  type='flatten', shape=[N]                   (netx flattens (x, y, c) as (c, y, x) = PyTorch)
    layer/i  type='dense', shape=[N], weight (N, N_in) int, bias (N,) int (optional), neuron/...

Weights are even integers in [-254, 254] (8-bit mantissa, step 2, lava-dl's convention) at a
per-layer scale ``64 * 2**e`` (:mod:`stdl_edge.quant`). The readout is a dense CUBA layer with
``iDecay = vDecay = 4096`` and ``vThMant = 2**18 - 1`` (lava-dl's own non-spiking readout): its
voltage is ``(W s + b) << 6`` in units of ``1 / (64 * scale)``. Things netx ignores are HDF5
attributes: root ``dt_us``, ``sensor_size``, ``num_steps``, ``bin_mode``, ``class_names``,
``input_message_bits``, ``latency``, ``subnet``, ``layers`` (source layer range); per layer group
``scale``, ``exponent``, ``source`` (the SpikingNet layer name).

Subnetwork files cut the model at the STDL boundaries (``stdl_edge.stdl.load_run``); a
boundary right after a pooling or flatten layer moves before it (the chip boundary carries
spikes; pooling folds into the next synapse). Their input layer has the shape of the
previous subnetwork's output spikes.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from stdl_edge.artifact import RunFolder, StreamInfo
from stdl_edge.io import FORMAT_VERSION, atomic_path, write_json
from stdl_edge.models import SpikingNet
from stdl_edge.quant import FoldedLayer, LayerQuant, QuantConfig, QuantError, quantize_model
from stdl_edge.registry import EXPORTERS

FORMAT = "stdl-edge-netx"


def _netx_dense_weights(w: np.ndarray) -> tuple[np.ndarray, int]:
    from stdl_edge.devices.loihi_sim import netx_dense_weights

    return netx_dense_weights(w)


def make_dense_netx_exact(weight: np.ndarray, name: str, step: int = 2) -> tuple[np.ndarray, int]:
    """Return weights that netx's dense pipeline reproduces exactly, and how many were nudged.

    netx's ``optimize_weight_bits`` + Lava's clip/truncate lose a single-sign (all <= 0)
    matrix whose most negative weight is a power of two (it is shifted to -256 and clipped to
    -255, then truncated), the family of lava-dl issue 170. Such a weight moves one step
    toward zero until the pipeline is exact; an all-zero matrix cannot be loaded at all.
    """
    from stdl_edge.devices.loihi_sim import NetxError

    w = weight.astype(np.int64).copy()
    if not np.any(w):
        raise QuantError(f"layer {name}: all weights are zero; netx cannot load an all-zero dense matrix "
                         "(lava-dl optimize_weight_bits divides by zero). Retrain, or drop the layer")
    nudged = 0
    for _ in range(64):
        try:
            eff, exp = _netx_dense_weights(w)
        except NetxError as e:
            raise QuantError(f"layer {name}: {e}") from None
        back = eff >> -exp if exp <= 0 else eff << exp
        bad = back != w
        if not bad.any():
            return w, nudged
        lo = int(w.min())
        sel = w == lo
        w[sel] += step if lo < 0 else -step
        nudged += int(sel.sum())
    raise QuantError(f"layer {name}: could not make the weights exact under netx's weight optimisation")


def _str(handle: Any, key: str, value: str) -> None:
    handle.create_dataset(key, (1,), "S10", [value.encode("ascii")])


def _neuron(handle: Any, q: LayerQuant) -> None:
    n = handle.create_group("neuron")
    _str(n, "type", "CUBA")
    n.create_dataset("iDecay", data=np.int64(q.i_decay))
    n.create_dataset("vDecay", data=np.int64(q.v_decay))
    n.create_dataset("vThMant", data=np.int64(q.vth))
    n.create_dataset("refDelay", data=np.int64(1))
    n.create_dataset("gradedSpike", data=np.bool_(False))


def write_netx(path: str | Path, layers: list[LayerQuant | FoldedLayer], input_shape: tuple[int, ...],
               attrs: dict[str, Any]) -> Path:
    """Write quantized layers as a netx HDF5 file (atomic). Dense weights must already be netx-exact."""
    import h5py

    path = Path(path)
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            for k, v in attrs.items():
                if v is None:
                    continue
                if isinstance(v, (list, tuple)) and v and isinstance(v[0], str):
                    f.attrs[k] = np.array([s.encode("utf-8") for s in v])
                elif isinstance(v, (list, tuple)) and not v:
                    f.attrs[k] = np.array([], dtype="S1")
                else:
                    f.attrs[k] = v
            group = f.create_group("layer")
            g = group.create_group("0")
            _str(g, "type", "input")
            g.create_dataset("shape", data=np.array(input_shape, dtype=np.int64))
            for i, q in enumerate(layers, start=1):
                g = group.create_group(str(i))
                if isinstance(q, FoldedLayer):  # flatten
                    _str(g, "type", "flatten")
                    g.create_dataset("shape", data=np.array(q.out_shape, dtype=np.int64))
                    g.attrs["source"] = q.name
                    continue
                _str(g, "type", q.kind)
                g.create_dataset("shape", data=np.array(q.out_shape, dtype=np.int64))
                if q.kind == "conv":
                    g.create_dataset("inChannels", data=np.int64(q.weight.shape[1]))
                    g.create_dataset("outChannels", data=np.int64(q.weight.shape[0]))
                    g.create_dataset("kernelSize", data=np.array(q.weight.shape[2:], dtype=np.int64))
                    g.create_dataset("stride", data=np.array([q.stride, q.stride], dtype=np.int64))
                    g.create_dataset("padding", data=np.array([q.padding, q.padding], dtype=np.int64))
                    g.create_dataset("dilation", data=np.array([1, 1], dtype=np.int64))
                    g.create_dataset("groups", data=np.int64(1))
                else:
                    g.create_dataset("inFeatures", data=np.int64(q.weight.shape[1]))
                    g.create_dataset("outFeatures", data=np.int64(q.weight.shape[0]))
                g.create_dataset("weight", data=q.weight.astype(np.int16))
                if q.bias is not None and np.any(q.bias):
                    g.create_dataset("bias", data=q.bias.astype(np.int32))
                _neuron(g, q)
                g.attrs["scale"] = float(q.scale)
                g.attrs["exponent"] = int(q.exponent)
                g.attrs["source"] = q.name
                g.attrs["readout"] = bool(q.readout)
    return path


def quantize_for_netx(net: SpikingNet, config: QuantConfig, start: int = 0, stop: int | None = None,
                      input_max: float = 1.0) -> list[LayerQuant | FoldedLayer]:
    """:func:`stdl_edge.quant.quantize_model`, plus the netx dense-weight exactness fix (reported)."""
    layers = quantize_model(net, config, start, stop, input_max=input_max)
    for q in layers:
        if isinstance(q, LayerQuant):
            if q.kind == "dense":
                q.weight, nudged = make_dense_netx_exact(q.weight, q.name, config.weight_step)
            else:
                nudged = 0  # conv: netx passes the kernel to Lava as is (even all zeros)
            q.report["netx_nudged_weights"] = nudged
    return layers


def _stream_attrs(stream: StreamInfo, input_message_bits: int) -> dict[str, Any]:
    return {"format": FORMAT, "format_version": FORMAT_VERSION, "dt_us": int(stream.dt_us),
            "sensor_size": np.array(stream.sensor_size, dtype=np.int64), "num_steps": int(stream.num_steps),
            "bin_mode": stream.bin_mode, "class_names": list(stream.class_names),
            "input_message_bits": int(input_message_bits)}


def _netx_ranges(net: SpikingNet, boundaries: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Move each cut that falls after a pooling/flatten layer to before it."""
    cuts = [b for _, b in boundaries[:-1]]
    moved = []
    for c in cuts:
        while c > 0 and net.layers[c - 1].kind in ("avgpool", "flatten"):
            c -= 1
        moved.append(c)
    edges = [boundaries[0][0], *moved, boundaries[-1][1]]
    return [(a, b) for a, b in zip(edges, edges[1:]) if b > a]


def export_network(net: SpikingNet, stream: StreamInfo, path: str | Path, config: QuantConfig = QuantConfig(),
                   start: int = 0, stop: int | None = None, extra_attrs: dict[str, Any] | None = None
                   ) -> tuple[Path, list[dict[str, Any]]]:
    """Quantize layers ``start:stop`` of ``net`` and write one netx file; returns ``(path, report)``."""
    input_max = 1.0 if stream.bin_mode == "binary" or start > 0 else 255.0
    msg_bits = 0 if input_max == 1.0 else 8
    layers = quantize_for_netx(net, config, start, stop, input_max=input_max)
    in_shape = tuple(net.layers[start].in_shape)
    latency = sum(1 for q in layers if isinstance(q, LayerQuant))
    attrs = {**_stream_attrs(stream, msg_bits), "latency": latency,
             "layers": np.array([start, stop if stop is not None else len(net.layers)], dtype=np.int64),
             **(extra_attrs or {})}
    write_netx(path, layers, in_shape, attrs)
    return Path(path), [q.report for q in layers if isinstance(q, LayerQuant)]


def evaluate_fixed_point(run_folder: Path, model_net: Path, stream: StreamInfo, model: SpikingNet,
                         limit: int | None = None, batch: int = 64) -> dict[str, Any] | None:
    """Accuracy of the float model (torch) and of ``model_net`` on loihi-sim over the test split."""
    import torch

    from stdl_edge.devices.base import classify
    from stdl_edge.devices.loihi_sim import LoihiSim

    name = RunFolder(run_folder).dataset()
    if name is None:
        return None
    from stdl_edge.data import load_dataset, materialize

    ds = load_dataset(name, "test", num_steps=stream.num_steps, dt_us=stream.dt_us, bin_mode=stream.bin_mode)
    n = len(ds.labels) if limit is None else min(limit, len(ds.labels))
    sim = LoihiSim.from_netx(model_net)
    correct_f = correct_q = agree = 0
    t0 = time.perf_counter()
    for frames, labels in materialize(ds).batches(batch, order=torch.arange(n)):  # (T, B, C, H, W), (B,)
        labels = labels.numpy()
        with torch.no_grad():
            pf = model(frames).argmax(1).numpy()
        pq = classify(sim, frames.numpy()).argmax(1)
        correct_f += int((pf == labels).sum())
        correct_q += int((pq == labels).sum())
        agree += int((pf == pq).sum())
    return {"dataset": name, "split": "test", "samples": n, "float_accuracy": correct_f / max(n, 1),
            "fixed_point_accuracy": correct_q / max(n, 1), "prediction_agreement": agree / max(n, 1),
            "gap_points": 100.0 * (correct_f - correct_q) / max(n, 1),
            "seconds": round(time.perf_counter() - t0, 2)}


def export(run_folder: str | Path, out_dir: str | Path | None = None, config: QuantConfig | None = None,
           evaluate: bool = True, eval_limit: int | None = None, subnets: bool = True, aux: bool = True,
           **options: Any) -> list[Path]:
    """Export a run folder to Lava netx HDF5 (default ``RUN/export/netx``); returns the written paths.

    Writes ``model.net`` (whole model), ``subnet<k>.net`` per STDL subnetwork when K > 1,
    ``aux<k>.net`` per auxiliary head that netx can express, and ``quantization.json`` (per
    layer scales, exponents, clipped weights, errors; float vs fixed-point test accuracy on
    loihi-sim when the run's data set is available and ``evaluate``).
    """
    if options:
        raise ValueError(f"netx export: unknown option(s) {', '.join(sorted(options))}; known: config, "
                         "evaluate, eval_limit, subnets, aux")
    run_folder = Path(run_folder)
    config = config or QuantConfig()
    trained = RunFolder(run_folder).load()
    model, stream, boundaries, heads = trained.model, trained.stream, trained.boundaries, trained.aux_heads
    out = Path(out_dir) if out_dir is not None else RunFolder(run_folder).export_dir("netx")
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    report: dict[str, Any] = {"format": FORMAT, "format_version": FORMAT_VERSION, "config": config.to_dict(),
                              "files": {}}
    path, layers = export_network(model, stream, out / "model.net", config, extra_attrs={"subnet": -1})
    written.append(path)
    report["files"]["model.net"] = {"layers": layers}
    if subnets and len(boundaries) > 1:
        ranges = _netx_ranges(model, boundaries)
        for k, (a, b) in enumerate(ranges):
            p, lr = export_network(model, stream, out / f"subnet{k}.net", config, start=a, stop=b,
                                   extra_attrs={"subnet": k})
            written.append(p)
            report["files"][p.name] = {"layers": lr, "range": [a, b]}
    skipped = {}
    if aux:
        for k, head in enumerate(heads):
            try:
                p, lr = export_network(head, stream, out / f"aux{k}.net", config, extra_attrs={"subnet": k, "aux": 1})
            except QuantError as e:
                skipped[f"aux{k}.net"] = str(e)
                continue
            written.append(p)
            report["files"][p.name] = {"layers": lr}
    if skipped:
        report["skipped"] = skipped
    if evaluate:
        acc = evaluate_fixed_point(run_folder, out / "model.net", stream, model, limit=eval_limit)
        if acc is not None:
            report["accuracy"] = acc
    write_json(out / "quantization.json", report)
    written.append(out / "quantization.json")
    return written


EXPORTERS.register("netx", export, "Lava netx HDF5 (Loihi 2): model.net, subnet<k>.net, aux<k>.net",
                   requires=("h5py",))
