"""``stdl-edge run``: a trained or exported network on an event stream, on any device.

Argument handling and printing only; the work is :func:`stdl_edge.api.run_events`
(:mod:`stdl_edge.devices.streaming`) and the plots :func:`stdl_edge.devices.plots.write_plots`.
Without ``--device`` the artifact decides (:func:`stdl_edge.devices.choose.device_for`); a run
folder with ``--device onnxruntime|loihi-sim|lava`` runs the run's own export.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from stdl_edge.checks import number

from .app import app, console
from .options import int_tuple


@app.command()
def run(
    artifact: Path = typer.Argument(..., help="run folder (torch; with --device onnxruntime, loihi-sim or lava: "
                                             "its export), ONNX file/folder/manifest (onnxruntime) or netx "
                                             ".net file (loihi-sim, lava)"),
    events: str = typer.Option(..., "--events", "-e", help="event file, frames folder, video, camera:[dev], "
                                                          "or a data set NAME:SPLIT (e.g. digits-dvs:test)"),
    device: str | None = typer.Option(None, "--device", "-d", help="torch | onnxruntime | loihi-sim | lava "
                                                                  "[default: from the artifact]",
                                      show_default=False),
    window_ms: float | None = typer.Option(None, "--window-ms", help="classify windows of this length (ms); "
                                                                    "default for unlabelled sources: the "
                                                                    "training sample length"),
    per_sample: bool = typer.Option(False, "--per-sample", help="classify each labelled sample (data sets)"),
    limit: int | None = typer.Option(None, "--limit", "-n", help="at most N windows or samples"),
    out: Path | None = typer.Option(None, "--out", "-o", help="predictions as JSON lines (+ a summary line)"),
    plot: Path | None = typer.Option(None, "--plot", help="folder for events.png, raster.png, rates.png"),
    sensor: str | None = typer.Option(None, "--sensor", help="W,H of the file's sensor when it does not say"),
    crop: str | None = typer.Option(None, "--crop", help="x0,y0,W,H window of the sensor to keep"),
    downsample: int | None = typer.Option(None, "--downsample", help="integer pixel-block factor"),
    fmt: str | None = typer.Option(None, "--format", help="file format when the suffix does not say"),
    time_unit: str = typer.Option("us", "--time-unit", help="unit of the timestamps in an npy/npz/HDF5/CSV file "
                                                            "that stores them as numbers of another unit: us, ms "
                                                            "or s (floats are converted, never truncated)"),
    batch: int = typer.Option(16, "--batch", help="samples per device batch (per-sample mode)"),
    pj_synop: float = typer.Option(23.6, "--pj-synop", help="energy per synaptic op, pJ (Loihi: 23.6)"),
    pj_spike: float = typer.Option(1.7, "--pj-spike", help="energy per spike, pJ (Loihi within-tile: 1.7)"),
    early_exit: float | None = typer.Option(None, "--early-exit", help="onnxruntime, per sample: leave at the "
                                                                      "first auxiliary head whose softmax "
                                                                      "confidence reaches this (0-1]"),
    dt_us: int | None = typer.Option(None, "--dt-us", min=1, help="time step (us) of a netx file that records "
                                                                 "none (lava-dl's own exports)"),
    t_start: str | None = typer.Option(None, "--t-start", help="start of the span to run, us on the file's clock, "
                                                              "or +US after the first event [default: the "
                                                              "first event]"),
    t_stop: str | None = typer.Option(None, "--t-stop", help="end of the span (excluded), us, or +US after the "
                                                            "first event"),
    skip_empty: bool = typer.Option(False, "--skip-empty", help="leave windows without events out of the "
                                                               "predictions"),
    reset_after_gap_ms: float | None = typer.Option(None, "--reset-after-gap-ms",
                                                    help="a gap between events longer than this ends the "
                                                         "window; the next starts at the next event"),
    threads: int = typer.Option(1, "--threads", min=1, help="compute threads of the device (torch, "
                                                           "onnxruntime, loihi-sim); 1 is fastest for one stream"),
    input_mode: str | None = typer.Option(None, "--input-mode", help="loihi-sim, lava: how frames enter the netx "
                                                                    "network: spike | graded (counts as payloads) "
                                                                    "| bias (into an input layer's bias) "
                                                                    "[default: from the file]", show_default=False),
    data_root: str | None = typer.Option(None, "--data-root", help="folder holding the tonic data sets, for "
                                                                  "--events nmnist:test and the like "
                                                                  "[default: $STDL_EDGE_DATA_ROOT]"),
) -> None:
    """Run a network on an event stream and print predictions, latency, activity and energy."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from stdl_edge.api import export
    from stdl_edge.devices.base import TimeSpan
    from stdl_edge.devices.threads import thread_options
    from stdl_edge.devices.choose import device_for, open_artifact
    from stdl_edge.devices.plots import write_plots
    from stdl_edge.sources import fit_geometry, open_source
    from stdl_edge.devices.streaming import MAX_WINDOW_STEPS, EnergyModel, RunResult, run_events
    from stdl_edge.io import atomic_path

    energy = EnergyModel(pj_synop, pj_spike)
    if window_ms is not None:
        window_ms = number(window_ms, "--window-ms", above=0)
    if window_ms is not None and per_sample:
        raise ValueError("pass either --window-ms or --per-sample, not both")
    if reset_after_gap_ms is not None and not reset_after_gap_ms > 0:
        raise ValueError(f"--reset-after-gap-ms {reset_after_gap_ms} must be > 0")
    span = TimeSpan.parse(t_start, t_stop)
    options: dict[str, Any] = {"chain": True} if early_exit is not None else {}
    if dt_us is not None:
        options["dt_us"] = dt_us
    device = device or device_for(artifact)
    options |= thread_options(device, threads)
    if input_mode is not None:
        if device not in ("loihi-sim", "lava"):
            raise ValueError(f"--input-mode is for the netx devices (loihi-sim, lava), not {device}")
        options["input_mode"] = input_mode
    dev = open_artifact(artifact, device, export=export, notify=lambda msg: console.print(f"[yellow]{msg}[/]"),
                        record=bool(plot), **options)
    stream = dev.stream
    src = open_source(events, format=fmt, time_unit=time_unit, sensor_size=int_tuple(sensor, "--sensor", 2),
                      crop=int_tuple(crop, "--crop", 4), downsample=downsample if downsample is not None else 1,
                      limit=limit if (per_sample or window_ms is None) else None,
                      **({"root": data_root} if data_root else {}))
    if crop is None and downsample is None and tuple(src.sensor_size[:2]) != tuple(stream.sensor[:2]):
        src.geometry = fit_geometry(src.native_size, stream.sensor[:2])
        console.print(f"[dim]source {src.native_size.width}x{src.native_size.height} -> model "
                      f"{stream.sensor.width}x{stream.sensor.height}: crop {src.geometry.crop}, "
                      f"downsample {src.geometry.downsample}[/]")
    window_steps = None
    if window_ms is not None:
        dt_ms = dev.bin_spec.dt_us / 1000
        if window_ms / dt_ms > MAX_WINDOW_STEPS:
            raise ValueError(f"--window-ms {window_ms:g} is too long: one window holds at most {MAX_WINDOW_STEPS:,} "
                             f"steps of {dt_ms:g} ms ({MAX_WINDOW_STEPS * dt_ms:g} ms)")
        window_steps = max(1, int(round(window_ms / dt_ms)))
    elif not (per_sample or src.labelled):
        window_steps = stream.num_steps
    use_samples = per_sample or (src.labelled and window_ms is None)

    def body(sink) -> RunResult:
        with Progress(TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.fields[info]}"),
                      TimeElapsedColumn(), console=console, transient=True) as progress:
            task = progress.add_task(f"{device} {src.name}", total=limit, info="")

            def on_progress(n_events: int, stream_us: int, wall: float) -> None:
                rate = n_events / wall if wall > 0 else 0.0
                rtf = stream_us / 1e6 / wall if wall > 0 else 0.0
                progress.update(task, advance=0, info=f"{n_events:,} ev  {rate / 1e6:.2f} Mev/s  {rtf:.1f}x real time")

            def on_prediction(record: dict[str, Any]) -> None:
                progress.advance(task)
                if sink is not None:
                    sink.write(json.dumps(record) + "\n")

            return run_events(dev, src, window_steps=None if use_samples else window_steps,
                              per_sample=use_samples, limit=limit, batch=batch, energy=energy,
                              on_prediction=on_prediction, on_progress=on_progress,
                              keep_steps=(window_steps or stream.num_steps) if plot else 0, early_exit=early_exit,
                              span=span, skip_empty=skip_empty,
                              reset_after_gap_us=None if reset_after_gap_ms is None
                              else max(1, round(reset_after_gap_ms * 1000)))

    def checked(sink) -> RunResult:
        result = body(sink)
        if not result.predictions:  # raised inside the atomic write: --out is left as it was
            raise ValueError(f"{src.name}: no complete window or sample to classify")
        return result

    if out is not None:
        with atomic_path(out) as tmp, open(tmp, "w") as sink:
            result = checked(sink)
            sink.write(json.dumps({"summary": result.summary()}) + "\n")
            sink.flush()
    else:
        result = checked(None)

    head = Table(title=f"{device}: {artifact}", show_header=False)
    head.add_row("source", f"{src.name} ({src.sensor_size.width}x{src.sensor_size.height})")
    head.add_row("mode", f"{'per sample' if result.mode == 'sample' else f'windows of {window_steps} steps'} "
                         f"at dt = {stream.dt_us} us")
    head.add_row(result.mode + "s", str(len(result.predictions)))
    if result.accuracy is not None:
        head.add_row("accuracy", f"{100 * result.accuracy:.2f} %")
    if result.exits is not None:
        full = len(getattr(dev, "stages", ())) - 1  # exit index of the full model
        head.add_row("exits", "  ".join(f"{'full model' if k == full else f'head {k}'}: {n}"
                                        for k, n in sorted(result.exits.items())))
    head.add_row("events", f"{result.events:,}  ({result.events_per_s / 1e6:.3f} M events/s)")
    c = result.counts
    if c is not None:
        head.add_row("events read", f"{c.read:,}; kept {c.kept:,}; dropped: {c.outside_crop:,} outside the crop, "
                                    f"{c.outside_span:,} outside --t-start/--t-stop")
        head.add_row("stream time", f"{c.first_t_us} .. {c.last_t_us} us on the file's clock; time 0 = "
                                    f"{c.origin_us} us")
    head.add_row("real-time factor", f"{result.realtime_factor:.1f}x  ({result.stream_us / 1e6:.3f} s of stream in "
                                     f"{result.wall_s:.3f} s)")
    lat = result.latency_ms()
    if lat:
        head.add_row(f"step latency (batch {result.batch})",
                     f"p50 {lat['p50']:.3f} ms  p90 {lat['p90']:.3f} ms  p99 {lat['p99']:.3f} ms  "
                     f"max {lat['max']:.3f} ms")
    console.print(head)
    layers = Table(title="activity per layer" + (" (synops estimated from fan-out)" if result.synops_estimated
                                                  else ""))
    for col in ("layer", "spikes", "synaptic ops", "rate (spikes/neuron/step)"):
        layers.add_column(col, justify="right" if col != "layer" else "left")
    for row in result.summary()["layers"]:
        layers.add_row(row["name"], f"{row['spikes']:,}", f"{row['synops']:,}" if result.synops_counted else "-",
                       "-" if row["rate"] is None else f"{row['rate']:.4f}")
    console.print(layers)
    if result.energy_uj is None:
        console.print(f"energy estimate: n/a ({device} counts no synaptic operations; run the same artifact on "
                      "loihi-sim, or the run folder on torch, for counts)")
    else:
        per = result.energy_uj / max(len(result.predictions), 1)
        console.print(f"energy estimate: {result.energy_uj:.3f} uJ total, {per:.3f} uJ per {result.mode} "
                      f"(assuming {energy.pj_per_synop} pJ/synop and {energy.pj_per_spike} pJ/spike: Loihi, "
                      "Davies et al., IEEE Micro 38(1), 2018, Table 2)")
    if plot is not None:
        paths = write_plots(result, plot, list(stream.class_names), source=f"{device} on {src.name}",
                            dt_us=stream.dt_us)
        console.print("plots: " + ", ".join(str(p) for p in paths))
    if out is not None:
        console.print(f"predictions: {out}")
