"""Lava netx HDF5 exporter: ``model.net``, ``subnet<k>.net``, ``aux<k>.net``, ``quantization.json``, ``export.json``.

The files follow what lava-dl's ``netx.hdf5.Network`` reads; the layout, its keys, the writer
and the parser are :mod:`stdl_edge.formats.netx`, and this module decides what goes in them:
layer 0 is a shape-only ``input`` (spikes go straight into layer 1), then ``conv``,
``flatten``, ``dense`` and ``dense_rec`` (recurrent dense: ``weight`` and ``weight_rec`` at one
exponent) layers with CUBA neurons.

Weights are even integers in [-254, 254] (8-bit mantissa, step 2, lava-dl's convention) at a
per-layer scale ``64 * 2**e`` (:mod:`stdl_edge.quant`). The readout is a dense CUBA layer with
``iDecay = vDecay = 4096`` and ``vThMant = 2**18 - 1`` (lava-dl's own non-spiking readout): its
voltage is ``(W s + b) << 6`` in units of ``1 / (64 * scale)``. Things netx ignores are HDF5
attributes: at the root the stream (``StreamInfo.to_attrs``), ``input_message_bits``,
``latency``, ``subnet``, ``layers`` (source layer range); per layer group ``scale``,
``exponent``, ``source`` (the SpikingNet layer name). ``quantization.json`` reports what the
quantizer did per layer, and under ``accuracy`` the float vs fixed-point test accuracy when the
caller passes ``evaluate`` (``stdl-edge export`` passes
:func:`stdl_edge.devices.fixed_point.evaluate_fixed_point`: running loihi-sim is a device's job).

Subnetwork files cut the model at the STDL boundaries (``stdl_edge.stdl.load_run``); a
boundary right after a pooling or flatten layer moves before it (the chip boundary carries
spikes; pooling folds into the next synapse). Their input layer has the shape of the
previous subnetwork's output spikes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np

from stdl_edge.artifact import RunFolder, StreamInfo, TrainedRun
from stdl_edge.formats.export_record import export_folder, new_export_id
from stdl_edge.formats.netx import (DENSE, DENSE_REC, EXPORT_RECORD, FORMAT, MODEL_FILE, VERSION, NetxError,
                                    netx_dense_weights, netx_recurrent_weights, write_export_record, write_netx)
from stdl_edge.io import write_json
from stdl_edge.models import SpikingNet
from stdl_edge.quant import FoldedLayer, LayerQuant, QuantConfig, QuantError, quantize_model
from stdl_edge.registry import EXPORTERS

#: the export report written beside the .net files
REPORT = "quantization.json"
#: ``evaluate(model_net) -> accuracy report | None``, run on the written ``model.net``
Evaluate = Callable[[Path], "dict[str, Any] | None"]


def make_dense_netx_exact(weight: np.ndarray, name: str, step: int = 2) -> tuple[np.ndarray, int]:
    """Return weights that netx's dense pipeline reproduces exactly, and how many were nudged.

    netx's ``optimize_weight_bits`` + Lava's clip/truncate lose a single-sign (all <= 0)
    matrix whose most negative weight is a power of two (it is shifted to -256 and clipped to
    -255, then truncated), the family of lava-dl issue 170. Such a weight moves one step
    toward zero until the pipeline is exact; an all-zero matrix cannot be loaded at all.
    """
    (w,), nudged = _netx_exact([weight], name, step)
    return w, nudged


def make_recurrent_netx_exact(weight: np.ndarray, weight_rec: np.ndarray, name: str, step: int = 2
                              ) -> tuple[np.ndarray, np.ndarray, int]:
    """:func:`make_dense_netx_exact` for a ``dense_rec`` layer: both matrices go through netx's
    ``RecurrentDense`` pipeline (one exponent, each synapse its own sign mode) and each is
    nudged on its own; returns ``(weight, weight_rec, nudged)``."""
    (w, w_rec), nudged = _netx_exact([weight, weight_rec], name, step)
    return w, w_rec, nudged


def _netx_exact(weights: list[np.ndarray], name: str, step: int) -> tuple[list[np.ndarray], int]:
    """The nudging loop of :func:`make_dense_netx_exact` over one matrix or a recurrent pair."""
    ws = [m.astype(np.int64).copy() for m in weights]
    if not any(np.any(w) for w in ws):
        raise QuantError(f"layer {name}: all weights are zero; netx cannot load an all-zero dense matrix "
                         "(lava-dl optimize_weight_bits divides by zero). Retrain, or drop the layer")
    nudged = 0
    for _ in range(64):
        try:
            *effs, exp = netx_dense_weights(ws[0]) if len(ws) == 1 else netx_recurrent_weights(*ws)
        except NetxError as e:
            raise QuantError(f"layer {name}: {e}") from None
        exact = True
        for w, eff in zip(ws, effs):
            back = eff >> -exp if exp <= 0 else eff << exp
            if not (back != w).any():
                continue
            exact = False
            lo = int(w.min())
            sel = w == lo
            w[sel] += step if lo < 0 else -step
            nudged += int(sel.sum())
        if exact:
            return ws, nudged
    raise QuantError(f"layer {name}: could not make the weights exact under netx's weight optimisation")


def quantize_for_netx(net: SpikingNet, config: QuantConfig, start: int = 0, stop: int | None = None,
                      input_max: float = 1.0) -> list[LayerQuant | FoldedLayer]:
    """:func:`stdl_edge.quant.quantize_model`, plus the netx dense-weight exactness fix (reported)."""
    layers = quantize_model(net, config, start, stop, input_max=input_max)
    for q in layers:
        if isinstance(q, LayerQuant):
            if q.kind == DENSE:
                q.weight, nudged = make_dense_netx_exact(q.weight, q.name, config.weight_step)
            elif q.kind == DENSE_REC:
                q.weight, q.weight_rec, nudged = make_recurrent_netx_exact(q.weight, q.weight_rec, q.name,
                                                                           config.weight_step)
            else:
                nudged = 0  # conv: netx passes the kernel to Lava as is (even all zeros)
            q.report["netx_nudged_weights"] = nudged
    return layers


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
                   start: int = 0, stop: int | None = None, subnet: int = -1, aux: bool = False
                   ) -> tuple[Path, list[dict[str, Any]]]:
    """Quantize layers ``start:stop`` of ``net`` and write one netx file; returns ``(path, report)``.

    subnet: -1 for the whole model, ``k`` for STDL subnetwork ``k`` (with ``aux``: its auxiliary head).
    """
    input_max = 1.0 if stream.bin_mode == "binary" or start > 0 else 255.0
    layers = quantize_for_netx(net, config, start, stop, input_max=input_max)
    write_netx(path, layers, tuple(net.layers[start].in_shape), stream,
               input_message_bits=0 if input_max == 1.0 else 8, subnet=subnet, aux=aux,
               layer_range=(start, stop if stop is not None else len(net.layers)))
    return Path(path), [q.report for q in layers if isinstance(q, LayerQuant)]


def export(run_folder: str | Path, out_dir: str | Path | None = None, config: QuantConfig | None = None,
           evaluate: Evaluate | None = None, subnets: bool = True, aux: bool = True, **options: Any) -> list[Path]:
    """Export a run folder to Lava netx HDF5 (default ``RUN/export/netx``); returns the written paths.

    Writes ``model.net`` (whole model), ``subnet<k>.net`` per STDL subnetwork when K > 1,
    ``aux<k>.net`` per auxiliary head that netx can express, and ``quantization.json`` (per
    layer scales, exponents, clipped weights, errors; under ``accuracy`` what
    ``evaluate(model.net)`` returns, when ``evaluate`` is given and returns a report), then
    ``export.json`` (the export id and each file's SHA-256,
    :func:`stdl_edge.formats.netx.check_export`). The folder is written beside ``out_dir`` and
    renamed into place whole: a failed or killed export leaves the previous one, or nothing.
    """
    if options:
        raise ValueError(f"netx export: unknown option(s) {', '.join(sorted(options))}; known: config, "
                         "evaluate, subnets, aux")
    run_folder = Path(run_folder)
    config = config or QuantConfig()
    trained = RunFolder(run_folder).load()
    out = Path(out_dir) if out_dir is not None else RunFolder(run_folder).export_dir("netx")
    with export_folder(out, (EXPORT_RECORD, REPORT)) as tmp:
        names = _write_files(trained, tmp, config, evaluate, subnets, aux)
        names.append(write_export_record(tmp, new_export_id(RunFolder(run_folder).weights_file), names).name)
    return [out / name for name in names]


def _write_files(trained: TrainedRun, out: Path, config: QuantConfig, evaluate: Evaluate | None, subnets: bool,
                 aux: bool) -> list[str]:
    """Write the ``.net`` files and ``quantization.json`` of :func:`export` into ``out``; returns their names."""
    model, stream, boundaries, heads = trained.model, trained.stream, trained.boundaries, trained.aux_heads
    written: list[str] = []
    report: dict[str, Any] = {"format": FORMAT, "format_version": VERSION, "config": config.to_dict(), "files": {}}
    _, layers = export_network(model, stream, out / MODEL_FILE, config)
    written.append(MODEL_FILE)
    report["files"][MODEL_FILE] = {"layers": layers}
    if subnets and len(boundaries) > 1:
        ranges = _netx_ranges(model, boundaries)
        for k, (a, b) in enumerate(ranges):
            p, lr = export_network(model, stream, out / f"subnet{k}.net", config, start=a, stop=b, subnet=k)
            written.append(p.name)
            report["files"][p.name] = {"layers": lr, "range": [a, b]}
    skipped = {}
    if aux:
        for k, head in enumerate(heads):
            try:
                p, lr = export_network(head, stream, out / f"aux{k}.net", config, subnet=k, aux=True)
            except QuantError as e:
                skipped[f"aux{k}.net"] = str(e)
                continue
            written.append(p.name)
            report["files"][p.name] = {"layers": lr}
    if skipped:
        report["skipped"] = skipped
    if evaluate is not None:
        acc = evaluate(out / MODEL_FILE)
        if acc is not None:
            report["accuracy"] = acc
    write_json(out / REPORT, report)
    written.append(REPORT)
    return written


EXPORTERS.register("netx", export, "Lava netx HDF5 (Loihi 2): model.net, subnet<k>.net, aux<k>.net",
                   requires=("h5py",))
