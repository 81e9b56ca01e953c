"""``stdl-edge run``: predictions equal the device's ``classify`` on the same frames, per window and
per sample; bad input exits non-zero and writes nothing."""

from __future__ import annotations

import json
from dataclasses import replace
import subprocess
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from stdl_edge.artifact import StreamInfo, save_model
from stdl_edge.cli import app
from stdl_edge.devices import classify, open_device
from stdl_edge.sources import EventSource, SourceError, open_source, write_events
from stdl_edge.binning import bin_events
from stdl_edge.events import SensorSize, make_events
from stdl_edge.models import ModelConfig, build_model

S = 16  # model sensor
DT = 1000
STEPS = 8


@pytest.fixture
def run_folder(tmp_path):
    model = build_model(ModelConfig(input_shape=(2, S, S), num_classes=3, width=0.5), seed=3)
    return save_model(tmp_path / "run", model, StreamInfo((S, S, 2), DT, STEPS, class_names=("a", "b", "c")))


def _events(rng, n, size, duration_us):
    return make_events(rng.integers(0, size, n), rng.integers(0, size, n), np.sort(rng.integers(0, duration_us, n)),
                       rng.integers(0, 2, n))


def test_windows_equal_classify_on_the_binned_stream(tmp_path, run_folder, rng):
    ev = _events(rng, 6000, 2 * S, 3 * STEPS * DT + 500)  # 32x32 file: run downsamples by 2 to fit
    path = tmp_path / "rec.raw"
    write_events(path, ev, (2 * S, 2 * S), format="evt2")
    out = tmp_path / "pred.jsonl"
    result = CliRunner().invoke(app, ["run", str(run_folder), "--events", str(path), "--window-ms", "8",
                                      "--out", str(out)])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    preds, summary = lines[:-1], lines[-1]["summary"]
    assert [p["window"] for p in preds] == [0, 1, 2, 3]  # 3 full windows + the partial last one
    # reference: bin the downsampled stream from its first event (time 0 of the run), classify
    # each window on the torch device
    small = ev.copy()
    small["x"] //= 2
    small["y"] //= 2
    dev = open_device("torch", run_folder)
    frames = bin_events(small, SensorSize(S, S), replace(dev.stream.bin_spec, t_start_us=int(ev["t"][0])))
    for p in preds:
        k = p["window"]
        ref = classify(dev, frames[k * STEPS:(k + 1) * STEPS][:, None])[0]
        np.testing.assert_allclose(p["scores"], ref, atol=1e-5)
        assert p["prediction"] == int(np.argmax(ref)) and p["class"] == "abc"[p["prediction"]]
    assert summary["events"] == len(ev)
    assert summary["mode"] == "window" and summary["realtime_factor"] > 0
    assert len(summary["layers"]) == len(dev.model.layers)
    assert summary["synops_estimated"] and summary["energy"]["pJ_per_synop"] == 23.6
    assert "activity per layer" in result.output and "real-time factor" in result.output


class _Labelled(EventSource):
    """A small labelled source (what DatasetSource gives for NAME:SPLIT)."""

    labelled = True

    def __init__(self, samples):
        self._samples = samples
        self.native_size = SensorSize(S, S)
        self.name = "labelled"

    def samples(self):
        yield from self._samples

    def _raw_chunks(self):
        for i, (ev, _) in enumerate(self._samples):
            shifted = ev.copy()
            shifted["t"] += i * STEPS * DT
            yield shifted


def test_per_sample_predictions_and_accuracy_equal_classify(run_folder, rng):
    from stdl_edge.devices.streaming import run_events

    samples = [(_events(rng, 300, S, STEPS * DT), int(rng.integers(0, 3))) for _ in range(7)]
    dev = open_device("torch", run_folder)
    result = run_events(dev, _Labelled(samples), batch=3, limit=6)
    assert result.mode == "sample" and len(result.predictions) == 6
    frames = np.stack([bin_events(ev, SensorSize(S, S), dev.stream.bin_spec, num_steps=STEPS)
                       for ev, _ in samples[:6]], axis=1)
    ref = classify(dev, frames)
    got = np.array([p["scores"] for p in result.predictions])
    np.testing.assert_allclose(got, ref, atol=1e-5)
    labels = np.array([lab for _, lab in samples[:6]])
    assert result.accuracy == pytest.approx(float((ref.argmax(1) == labels).mean()))
    assert result.sample_steps == 6 * STEPS
    assert len(result.latencies_s) == 2 * STEPS  # two batches of 3 samples, one step each
    with pytest.raises(ValueError, match="no labels"):
        run_events(dev, open_source(samples[0][0], sensor_size=(S, S)), per_sample=True)


def test_plots_are_written(tmp_path, run_folder, rng):
    path = tmp_path / "rec.npy"
    np.save(path, _events(rng, 2000, S, STEPS * DT * 2))
    result = CliRunner().invoke(app, ["run", str(run_folder), "--events", str(path), "--sensor", f"{S},{S}",
                                      "--plot", str(tmp_path / "plots"), "--limit", "1"])
    assert result.exit_code == 0, result.output
    for name in ("events.png", "raster.png", "rates.png"):
        assert (tmp_path / "plots" / name).read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("case", ["truncated", "out_of_range", "empty", "unknown"])
def test_bad_input_exits_non_zero_and_writes_nothing(tmp_path, run_folder, rng, case):
    ev = _events(rng, 500, S, 50_000)
    path = tmp_path / "rec.raw"
    write_events(path, ev, (S, S), format="evt3")
    args = []
    if case == "truncated":
        path.write_bytes(path.read_bytes()[:-1])
    elif case == "out_of_range":
        path = tmp_path / "rec.npy"
        bad = ev.copy()
        bad["x"][-1] = S + 3  # the last chunk is the bad one: predictions were already made
        np.save(path, bad)
        args = ["--sensor", f"{S},{S}"]
    elif case == "empty":
        path = tmp_path / "rec.csv"
        path.write_text("t,x,y,p\n")
        args = ["--sensor", f"{S},{S}"]
    else:
        path = tmp_path / "rec.unknown"
        path.write_bytes(b"\x00" * 10)
    out = tmp_path / "pred.jsonl"
    result = CliRunner().invoke(app, ["run", str(run_folder), "--events", str(path), "--out", str(out),
                                      "--window-ms", "1", *args])
    assert result.exit_code != 0
    assert isinstance(result.exception, SourceError)
    assert not out.exists() and not list(tmp_path.glob(".pred.jsonl*"))


def test_main_prints_one_line_and_exits_2(tmp_path, run_folder):
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"\x01\x02\x03")
    proc = subprocess.run([sys.executable, "-c", "from stdl_edge.cli import main; main()", "run", str(run_folder),
                           "--events", str(bad)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "error:" in proc.stderr and "bad.bin" in proc.stderr and "5-byte records" in proc.stderr
    assert "Traceback" not in proc.stderr
    with pytest.raises(SourceError):
        open_source(bad)


def test_device_for_reads_the_kind_of_artifact(tmp_path, run_folder):
    from stdl_edge.devices.choose import device_for

    onnx_dir, netx_dir = tmp_path / "onnx", tmp_path / "netx"
    onnx_dir.mkdir()
    netx_dir.mkdir()
    for path in (onnx_dir / "manifest.json", onnx_dir / "model.onnx", netx_dir / "model.net", tmp_path / "x.bin"):
        path.write_bytes(b"")
    expected = {run_folder: "torch", run_folder / "model.json": "torch", onnx_dir: "onnxruntime",
                onnx_dir / "manifest.json": "onnxruntime", onnx_dir / "model.onnx": "onnxruntime",
                netx_dir: "loihi-sim", netx_dir / "model.net": "loihi-sim"}
    assert {path: device_for(path) for path in expected} == expected
    with pytest.raises(ValueError, match=r"cannot tell which device runs .*x.bin.*--device"):
        device_for(tmp_path / "x.bin")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        device_for(tmp_path / "nope.net")


def test_run_picks_the_device_and_finds_the_run_s_exports(tmp_path, run_folder, rng):
    pytest.importorskip("onnxruntime")
    path = tmp_path / "rec.npy"
    np.save(path, _events(rng, 2000, S, STEPS * DT * 2))
    args = ["--events", str(path), "--sensor", f"{S},{S}", "--limit", "1"]

    def run(*argv: str) -> str:
        result = CliRunner().invoke(app, ["run", *argv, *args])
        assert result.exit_code == 0, result.output
        return "".join(result.output.split())  # rich wraps long titles

    for device, export in (("loihi-sim", "export/netx/model.net"), ("onnxruntime", "export/onnx")):
        assert not (run_folder / export).exists()
        out = run(str(run_folder), "--device", device)  # a run folder: its export, written first
        assert "ismissing:exporting" in out and f"{device}:{run_folder}" in out
        assert (run_folder / export).exists()
    picked = {run_folder: "torch", run_folder / "export" / "netx" / "model.net": "loihi-sim",
              run_folder / "export" / "onnx": "onnxruntime",
              run_folder / "export" / "onnx" / "manifest.json": "onnxruntime",
              run_folder / "export" / "onnx" / "model.onnx": "onnxruntime"}
    for artifact, device in picked.items():
        out = run(str(artifact))
        assert f"{device}:{artifact}" in out and "ismissing" not in out, (artifact, out)


def test_time_unit_converts_float_seconds_and_without_it_the_file_is_refused(tmp_path, run_folder, rng):
    ev = _events(rng, 3000, S, 2 * STEPS * DT)
    as_seconds = np.zeros(len(ev), dtype=[("x", "<i2"), ("y", "<i2"), ("t", "<f8"), ("p", "?")])
    for name in ("x", "y", "p"):
        as_seconds[name] = ev[name]
    as_seconds["t"] = ev["t"] / 1e6
    np.save(tmp_path / "seconds.npy", as_seconds)
    np.save(tmp_path / "us.npy", ev)
    args = ["--sensor", f"{S},{S}", "--window-ms", "8"]

    def scores(name: str, *extra: str) -> list:
        out = tmp_path / f"{name}.jsonl"
        result = CliRunner().invoke(app, ["run", str(run_folder), "--events", str(tmp_path / name), *args,
                                          "--out", str(out), *extra])
        assert result.exit_code == 0, result.output
        return [json.loads(line)["scores"] for line in out.read_text().splitlines()[:-1]]

    refused = CliRunner().invoke(app, ["run", str(run_folder), "--events", str(tmp_path / "seconds.npy"), *args])
    assert refused.exit_code != 0 and "time_unit" in str(refused.exception)
    np.testing.assert_allclose(scores("seconds.npy", "--time-unit", "s"), scores("us.npy"), atol=1e-6)


@pytest.mark.parametrize("option, value, says", [
    ("--window-ms", "inf", "--window-ms inf must be a finite number > 0"),
    ("--window-ms", "nan", "--window-ms nan must be a finite number > 0"),
    ("--window-ms", "1e300", "--window-ms 1e+300 is too long"),
    ("--downsample", "0", "downsample=0 must be a whole number >= 1"),
    ("--pj-synop", "nan", "--pj-synop"),
    ("--pj-spike", "inf", "--pj-spike"),
])
def test_non_finite_or_out_of_range_run_options_are_refused_by_name(tmp_path, run_folder, rng, option, value, says):
    np.save(tmp_path / "ev.npy", _events(rng, 500, S, STEPS * DT))
    out = tmp_path / "pred.jsonl"
    result = CliRunner().invoke(app, ["run", str(run_folder), "--events", str(tmp_path / "ev.npy"), "--sensor",
                                      f"{S},{S}", "--out", str(out), option, value])
    assert isinstance(result.exception, ValueError) and says in str(result.exception)
    assert "\n" not in str(result.exception) and not out.exists()


def test_a_run_with_nothing_to_classify_leaves_no_output_file(tmp_path, run_folder, rng):
    np.save(tmp_path / "ev.npy", _events(rng, 500, S, STEPS * DT))
    out = tmp_path / "pred.jsonl"
    result = CliRunner().invoke(app, ["run", str(run_folder), "--events", str(tmp_path / "ev.npy"), "--sensor",
                                      f"{S},{S}", "--window-ms", "8", "--t-start", "+99999999", "--out", str(out)])
    assert isinstance(result.exception, ValueError) and "no complete window" in str(result.exception)
    assert list(tmp_path.glob("*pred.jsonl*")) == []


def test_firing_rates_are_per_input_step_on_every_device(run_folder, tmp_path, rng):
    """loihi-sim steps ``latency`` empty frames after each window to drain its pipeline; those
    spikes belong to the window's input steps, so the steps the rates divide by are the input
    steps on every device (the plots and the summary once divided loihi-sim's by T + latency)."""
    from stdl_edge.devices.streaming import run_events
    from stdl_edge.exporters import netx as netx_export

    netx_export.export(run_folder, tmp_path / "netx")
    events = _events(rng, 3000, S, 3 * STEPS * DT)
    steps = {}
    for name, artifact in (("torch", run_folder), ("loihi-sim", tmp_path / "netx")):
        dev = open_device(name, artifact)
        result = run_events(dev, open_source(events, sensor_size=(S, S)), window_steps=STEPS)
        steps[name] = (result.sample_steps, len(result.predictions), dev.latency)
    assert steps["loihi-sim"][2] > 0 == steps["torch"][2]
    assert steps["torch"][:2] == steps["loihi-sim"][:2]
    sample_steps, windows, _ = steps["torch"]
    assert (windows - 1) * STEPS < sample_steps <= windows * STEPS  # the last window ends at the last event
