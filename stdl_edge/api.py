"""The Python API: what the ``stdl-edge`` commands do, as functions (``docs/api.md``).

::

    import stdl_edge

    result = stdl_edge.train("runs/demo", dataset="digits-dvs", epochs=6)    # stdl-edge train
    run = stdl_edge.load_run("runs/demo")                                   # model, stream, subnetworks
    stdl_edge.export("runs/demo", to="onnx")                                # stdl-edge export
    stdl_edge.check_target("runs/demo", "if-chip")                          # stdl-edge check-target
    stdl_edge.import_nir("model.nir", "runs/imported")                      # stdl-edge import
    dev = stdl_edge.open_device("runs/demo", "loihi-sim")                   # its netx export
    out = stdl_edge.run_events(dev, "digits-dvs:test")                      # stdl-edge run
    cmp = stdl_edge.verify("runs/demo", ["torch", "onnxruntime"])           # stdl-edge verify

Each function is a thin, documented entry to the module that does the work; the exporters
and devices are imported inside the functions, so ``import stdl_edge`` stays light.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

if TYPE_CHECKING:
    from .artifact import StreamInfo, TrainedRun
    from .data import TensorData
    from .devices.base import Device
    from .devices.compare import Comparison
    from .devices.streaming import RunResult
    from .targets import Target
    from .stdl.trainer import EpochMetrics, TrainConfig, TrainResult


def train(out: str | Path, config: TrainConfig | None = None, *, resume: bool = False,
          data: tuple[TensorData, TensorData, StreamInfo] | None = None,
          on_epoch: Callable[[EpochMetrics], None] | None = None,
          progress: Callable[[int, int, int], None] | None = None, **options: Any) -> TrainResult:
    """Train a spiking network (STDL by default) and write the run folder ``out``.

    config: a :class:`~stdl_edge.stdl.trainer.TrainConfig`; ``options`` are its fields
    (``dataset``, ``model``, ``method``, ``subnets``, ``epochs``, ``batch_size``, ``lr``,
    ``steps``, ``limit``, ``width``, ``device``, ...; for the data: ``dataset="folder:PATH"`` or a tonic
    name with ``data_root``, ``sensor_size``, ``slice_by``/``slice_length``/``slice_overlap``, ``augment``,
    ``loader``, ``workers``, ``skip_bad``; docs/data.md), given alone or overriding ``config``.
    The neuron: ``threshold``, ``current_decay``/``tau_current_us``, ``voltage_decay``/
    ``tau_voltage_us``, ``surrogate``, ``surrogate_width``, ``reset``, ``batchnorm``, ``dt_us``.
    The network: ``model`` a zoo name, a plug-in (entry point ``stdl_edge.models``) or a
    ``.toml``/``.json`` model file, or ``layers=[Conv(16, stride=2), Flatten(), Readout()]``
    (:mod:`stdl_edge.netspec`). Conveniences: ``val_fraction``, ``patience``, ``save_best``
    (``out/best/``), ``tensorboard`` (``out/tensorboard/``).
    resume: continue the interrupted run in ``out`` from its last checkpoint.
    data: ``(train, test, stream)`` instead of a named data set (frames ``(N, T, C, H, W)``).
    on_epoch(metrics): after each epoch. progress(epoch, batch, batches): after each batch.
    Under ``torchrun`` every process calls this and trains its share (``pipeline=G``: stages of
    subnetworks; else data parallel), rank 0 writes ``out`` (``docs/distributed.md``).
    Returns the :class:`~stdl_edge.stdl.trainer.TrainResult` (``test_acc`` in 0..1, ``exit_acc``
    per auxiliary head, peak ``memory`` in bytes, per-epoch ``history``)::

        result = train("runs/demo", dataset="shapes-dvs", epochs=2, limit=200)
    """
    from .stdl.config import with_model_file
    from .stdl.trainer import TrainConfig, train as train_run

    options = with_model_file(options)
    if config is None:
        config = TrainConfig.from_dict(options)
    elif options:
        config = TrainConfig.from_dict({**config.to_dict(), **options})
    return train_run(config, out, resume=resume, on_epoch=on_epoch, progress=progress, data=data)


def load_run(folder: str | Path, map_location: str = "cpu") -> TrainedRun:
    """The trained run in ``folder``: ``model`` (eval mode), ``stream`` (sensor, ``dt_us``,
    ``num_steps``, class names), the K subnetworks' layer ranges ``boundaries`` and the K - 1
    ``aux_heads`` (early exits). Never unpickles::

        run = load_run("runs/demo")
        run.model.num_classes, run.stream.dt_us, run.num_subnets
    """
    from .artifact import RunFolder

    return RunFolder(folder).load(map_location)


def export(run: str | Path, to: str = "onnx", out: str | Path | None = None, *, target: str | Target | None = None,
           **options: Any) -> list[Path]:
    """Export the run folder ``run`` with the exporter ``to`` (``"onnx"``, ``"netx"`` or ``"nir"``,
    see ``stdl-edge info``) into ``out`` (default ``RUN/export/<to>``); returns the written files.

    target: a hardware-target preset (``"if-chip"``, :mod:`stdl_edge.targets`); a network that
    breaks it is refused before anything is written (:class:`~stdl_edge.targets.TargetError`,
    one line naming every layer at fault; :func:`check_target` lists them). The NIR manifest
    records the target.

    options go to the exporter: ``sequence_steps=T`` (onnx: also a fixed-T sequence graph),
    ``subnets``, ``aux`` (both: per-subnetwork and auxiliary-head files, default True),
    ``evaluate`` (netx: the float vs fixed-point accuracy of ``model.net`` on loihi-sim over
    the run's test split, recorded in ``quantization.json``; default True, or a callable
    ``evaluate(model_net) -> report``, or False)::

        files = export("runs/demo", to="onnx")      # model.onnx, subnet<k>.onnx, ..., manifest.json
    """
    from . import exporters  # noqa: F401  (registers the exporters)
    from .artifact import RunFolder
    from .registry import EXPORTERS

    folder = RunFolder(run)
    folder.record()  # a clear error when ``run`` is not a run folder
    exporter = EXPORTERS.get(to)
    if target is not None:
        from .targets import require_target

        require_target(folder.load().model, target)
        if to == "nir":
            options["target"] = target
    if to == "netx":
        evaluate = options.pop("evaluate", True)
        if evaluate is True:
            from .devices.fixed_point import evaluate_fixed_point

            evaluate = partial(evaluate_fixed_point, folder.path)
        options["evaluate"] = evaluate or None
    return exporter(folder.path, Path(out) if out is not None else folder.export_dir(to), **options)


def check_target(run: str | Path, target: str | Target = "if-chip") -> list[str]:
    """Every constraint of the hardware target ``target`` (a preset name such as ``"if-chip"``
    or a :class:`~stdl_edge.targets.Target`) that the run folder ``run``'s network breaks, one
    line each naming the layer; ``[]`` when it meets them all (``stdl-edge check-target``)::

        problems = check_target("runs/demo", "if-chip")   # ['layer 0.conv: neuron has ...', ...]
    """
    from .artifact import RunFolder
    from .targets import check_target as check

    return check(RunFolder(run).load().model, target)


def import_nir(path: str | Path, out: str | Path, *, dt_us: int | None = None, num_steps: int | None = None,
               input_shape: tuple[int, int, int] | None = None, class_names: Sequence[str] = (),
               bin_mode: str | None = None) -> Path:
    """Import the NIR graph file ``path`` (from stdl-edge, snnTorch, Norse, ...) as the run
    folder ``out`` (``stdl-edge import``); returns ``out``, ready to export, verify and run.

    dt_us: the simulation step in microseconds (default: the graph's; NIR is continuous
    time, snnTorch writes for 100 us). num_steps: time steps per sample (needed for a graph
    not written by stdl-edge). input_shape: ``(C, H, W)`` of the event frames a graph with a
    flat input reads. class_names: default the graph's, else the output indices.
    bin_mode: ``"binary"`` or ``"count"`` (default the graph's, else binary). A node the
    import cannot map raises one line naming it and its type
    (:func:`stdl_edge.formats.nir.import_run`)::

        folder = import_nir("snntorch_model.nir", "runs/imported", num_steps=16, input_shape=(2, 34, 34))
    """
    from .formats.nir import import_run

    return import_run(path, out, dt_us=dt_us, num_steps=num_steps, input_shape=input_shape,
                      class_names=tuple(class_names), bin_mode=bin_mode)


def open_device(artifact: str | Path, device: str | None = None, **options: Any) -> Device:
    """Open ``artifact`` on ``device`` (torch, onnxruntime, loihi-sim, lava; see ``stdl-edge info``).

    Without ``device`` the artifact decides: a run folder runs on torch, an ``.onnx`` file or
    ONNX export folder on onnxruntime, a netx ``.net`` file on loihi-sim. A run folder with
    another device opens the run's export for it (exported first when missing). options go
    to the device: ``record=True`` (per-layer spikes and states after each step), ``chain=True``
    (onnxruntime: subnetwork chain, early exit), ``threads=N`` (torch: compute threads during
    each step, default 1, restored after it), ``intra_op_threads=N`` (onnxruntime, default 1),
    ``input_mode='spike'|'graded'|'bias'`` and netx's ``input_message_bits``, ``num_layers``,
    ``skip_layers`` (loihi-sim and lava; see ``docs/loihi.md``), ...

    The device steps a batch: ``dev.reset(B)``, then ``dev.step(frame)`` with ``frame (B, 2, H, W)``
    float32 spikes gives the readout ``(B, classes)``; ``dev.stream`` says how events are binned::

        dev = open_device("runs/demo", "loihi-sim")     # runs/demo/export/netx/model.net
    """
    from .devices.choose import open_artifact

    return open_artifact(artifact, device, **options)


def run_events(device: Device, events: Any, *, sensor_size: tuple[int, int] | None = None,
               data_root: str | Path | None = None, **options: Any) -> RunResult:
    """Run an event stream on an opened ``device`` and measure it.

    events: an :class:`~stdl_edge.sources.EventSource`, or what
    :func:`~stdl_edge.sources.open_source` opens (an event file, a ``NAME:SPLIT`` data
    set, an event array with ``sensor_size=(W, H)``, ...), then cropped and downsampled to fit
    the artifact's sensor. data_root: where the tonic data sets are (``nmnist:test``). options (:func:`stdl_edge.devices.streaming.run_events`):
    ``window_steps`` (classify windows of that many time steps), ``per_sample`` (labelled
    sources: one prediction per sample, their default), ``limit``, ``batch``, ``energy``,
    ``keep_steps``, ``early_exit``, ``on_prediction``, ``on_progress``; for windows ``span``
    (a :class:`~stdl_edge.devices.base.TimeSpan`), ``skip_empty``, ``reset_after_gap_us``.
    A window run's time 0 is the stream's first event (records give ``t_us`` from it and
    ``t_abs_us`` on the file's clock); ``result.counts`` says how many events were read, kept
    and dropped by the crop or the span, and the first and last event times.
    Returns the :class:`~stdl_edge.devices.streaming.RunResult`: ``predictions`` (one dict
    per window or sample), ``accuracy`` (0..1, labelled sources), ``latency_ms()`` per step,
    ``realtime_factor``, per-layer ``spikes`` and ``synops``, ``energy_uj`` (microjoules),
    and ``summary()`` as JSON::

        result = run_events(dev, "digits-dvs:test", limit=64)
    """
    from .sources import EventSource, open_source
    from .devices.streaming import run_events as run

    if not isinstance(events, EventSource):
        events = open_source(events, sensor_size=sensor_size, fit=device.stream.sensor[:2],
                             **({"root": str(data_root)} if data_root else {}))
    elif sensor_size is not None:
        raise ValueError("sensor_size= is for events that are not opened yet; this EventSource has its own")
    return run(device, events, **options)


def verify(run: str | Path, devices: Sequence[str] = ("torch", "onnxruntime"), samples: int = 64,
           dataset: str | None = None, batch: int = 16, *, device_options: dict[str, dict[str, Any]] | None = None,
           notify: Callable[[str], None] | None = None,
           on_batch: Callable[[int, int | None], None] | None = None) -> Comparison:
    """Run the first ``samples`` test samples of ``run``'s data set (or ``dataset``; ``"random"``:
    random frames) through every device in ``devices``, step by step, and compare them.

    Exports the run first where a device's artifact is missing (``notify(message)`` is told).
    device_options: per device, extra :func:`open_device` options. on_batch(done, total):
    after each batch of ``batch`` samples. Returns the
    :class:`~stdl_edge.devices.compare.Comparison` that ``stdl-edge verify`` prints: ``ok``
    (torch/onnxruntime and loihi-sim/lava identical), ``accuracy(name)``, and per pair
    ``pairs[(a, b)]`` the agreement and the first mismatches (layer, step, sample)::

        comparison = verify("runs/demo", ["torch", "onnxruntime", "loihi-sim"])
        assert comparison.ok
    """
    from .devices.verify import run_verify

    return run_verify(run, list(devices), samples=samples, dataset=dataset, batch=batch, options=device_options,
                      notify=notify, on_batch=on_batch)


__all__ = ["check_target", "export", "import_nir", "load_run", "open_device", "run_events", "train", "verify"]
