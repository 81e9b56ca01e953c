"""``stdl-edge run`` on recordings in their real byte layouts whose clocks do not start at 0
(DV's Unix-epoch AEDAT4, an EVT2 at 913 s, an EVT3 at 11.2 s, a DAT at 100 s): counts, spans,
time origin, predictions, bounded memory, and the gap options."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
from typer.testing import CliRunner

from stdl_edge.artifact import StreamInfo, save_model
from stdl_edge.cli import app
from stdl_edge.devices import classify, open_device, stream_windows
from stdl_edge.devices.base import StreamCounts, TimeSpan
from stdl_edge.binning import bin_events
from stdl_edge.events import SensorSize, make_events
from stdl_edge.models import ModelConfig, build_model
from stdl_edge.sources import write_events

S, DT, STEPS = 16, 1000, 8  # model sensor, time step (us), window steps
FILE = 34  # the recordings' sensor: run fits it by cropping (1, 1, 32, 32) and downsampling by 2


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    model = build_model(ModelConfig(input_shape=(2, S, S), num_classes=3, width=0.5), seed=3)
    return save_model(tmp_path_factory.mktemp("m") / "run", model,
                      StreamInfo((S, S, 2), DT, STEPS, class_names=("a", "b", "c")))


def _recording(t0: int, n: int = 3000, duration_us: int = 20_000, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = t0 + np.sort(rng.integers(0, duration_us, n))
    return make_events(rng.integers(0, FILE, n), rng.integers(0, FILE, n), t, rng.integers(0, 2, n))


def _run(tmp_path, run_folder, path, *extra):
    out = tmp_path / "pred.jsonl"
    result = CliRunner().invoke(app, ["run", str(run_folder), "--events", str(path), "--window-ms", "8",
                                      "--out", str(out), *extra])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    return lines[:-1], lines[-1]["summary"], result.output


def _fitted(ev: np.ndarray) -> np.ndarray:
    """What the model sees: crop (1, 1, 32, 32), downsample 2."""
    keep = (ev["x"] >= 1) & (ev["x"] < 33) & (ev["y"] >= 1) & (ev["y"] < 33)
    out = ev[keep].copy()
    out["x"] = (out["x"] - 1) // 2
    out["y"] = (out["y"] - 1) // 2
    return out


@pytest.mark.parametrize("fmt, suffix, t0", [
    ("aedat4", ".aedat4", 1_590_000_000_123_456),  # DV writes Unix-epoch microseconds
    ("evt2", ".raw", 913_000_000),
    ("evt3", ".raw", 11_200_000),
    ("dat", ".dat", 100_000_000),
    ("npy", ".npy", 2**62),  # near the end of int64
])
def test_run_starts_at_the_first_event_of_a_late_clock(tmp_path, run_folder, fmt, suffix, t0):
    ev = _recording(t0)
    path = write_events(tmp_path / f"rec{suffix}", ev, (FILE, FILE), format=fmt)
    preds, summary, output = _run(tmp_path, run_folder, path, "--format", fmt)
    small = _fitted(ev)
    first, last = int(ev["t"][0]), int(ev["t"][-1])
    assert summary["events_read"] == len(ev) and summary["events_kept"] == len(small) == summary["events"]
    assert summary["dropped"] == {"outside_crop": len(ev) - len(small), "outside_span": 0}
    assert (summary["t_first_us"], summary["t_last_us"], summary["t_origin_us"]) == (first, last, first)
    assert abs(summary["stream_s"] - (last - first + 1) / 1e6) < 1e-9
    # the first window is the first event's (not thousands of empty ones before it)
    window_us = STEPS * DT
    n_windows = (last - first) // window_us + 1
    assert [p["window"] for p in preds] == list(range(n_windows))
    assert [p["t_us"] for p in preds] == [k * window_us for k in range(n_windows)]
    assert [p["t_abs_us"] for p in preds] == [first + k * window_us for k in range(n_windows)]
    dev = open_device("torch", run_folder)
    frames = bin_events(small, SensorSize(S, S), replace(dev.bin_spec, t_start_us=first))
    for p in preds:
        k = p["window"]
        np.testing.assert_allclose(p["scores"], classify(dev, frames[k * STEPS:(k + 1) * STEPS][:, None])[0],
                                   atol=1e-5)
    assert f"{len(ev):,}" in output and str(first) in output  # events read and the span are printed


def test_t_start_and_t_stop_choose_a_span(tmp_path, run_folder):
    ev = _recording(913_000_000)
    path = write_events(tmp_path / "rec.raw", ev, (FILE, FILE), format="evt2")
    first = int(ev["t"][0])
    preds, summary, _ = _run(tmp_path, run_folder, path, "--t-start", "+4000", "--t-stop", str(first + 12_000))
    t = ev["t"]
    kept = _fitted(ev[(t >= first + 4000) & (t < first + 12_000)])
    assert summary["t_origin_us"] == first + 4000 and summary["events_kept"] == len(kept)
    assert summary["events_read"] == len(ev)  # one chunk: read whole, then cut
    # the crop drops first, then the span drops from what the crop kept
    cropped = len(_fitted(ev))
    assert summary["dropped"] == {"outside_crop": len(ev) - cropped, "outside_span": cropped - len(kept)}
    assert [(p["t_us"], p["t_abs_us"]) for p in preds] == [(0, first + 4000)]  # 8 ms: one window


def _gappy(gap_us: int) -> np.ndarray:
    a = _recording(1_590_000_000_000_000, n=400, duration_us=6_000, seed=1)
    b = _recording(int(a["t"][-1]) + gap_us, n=400, duration_us=6_000, seed=2)
    return np.concatenate([a, b])


@pytest.mark.parametrize("skip", [False, True])
def test_empty_windows_are_one_reused_readout_or_skipped(run_folder, skip):
    dev = open_device("torch", run_folder)
    ev = _fitted(_gappy(gap_us=10 * STEPS * DT))  # ten windows without events between the two bursts
    stepped = []
    real_step = dev.step
    dev.step = lambda frame: stepped.append(1) or real_step(frame)
    got = list(stream_windows(dev, [ev[:300], ev[300:]], STEPS, skip_empty=skip))
    indices = [w.index for w in got]
    busy = sorted({int((t - ev["t"][0]) // (STEPS * DT)) for t in ev["t"]})
    if skip:
        assert indices == busy and not any(w.empty for w in got)
    else:
        assert indices == list(range(busy[-1] + 1))
        empties = [w for w in got if w.empty]
        assert len(empties) >= 9 and all(np.array_equal(w.scores, empties[0].scores) for w in empties)
        zeros = np.zeros((STEPS, 1, 2, S, S), np.float32)
        np.testing.assert_allclose(empties[0].scores, classify(dev, zeros)[0], atol=1e-6)
    # the device stepped the windows with events (and one empty window at most), never the gap
    assert len(stepped) <= (len(busy) + 2) * STEPS + STEPS


def test_a_long_gap_resets_and_the_next_window_starts_at_its_event(run_folder):
    import tracemalloc

    dev = open_device("torch", run_folder)
    ev = _fitted(_gappy(gap_us=3_600_000_000))  # the camera paused for an hour
    counts = StreamCounts()
    tracemalloc.start()
    got = list(stream_windows(dev, [ev], STEPS, reset_after_gap_us=1_000_000, counts=counts))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 2**22  # a few windows of 2x16x16 frames, not 450,000 windows of the hour
    after = next(w for w in got if w.restarted)
    second = ev[ev["t"] >= ev["t"][0] + 3_600_000_000]
    assert after.t_abs_us == int(second["t"][0]) and after.index == got.index(after)
    assert len(got) <= 4 and not any(w.empty for w in got)  # no window for the hour
    frames = bin_events(second, SensorSize(S, S), replace(dev.bin_spec, t_start_us=int(second["t"][0])))
    np.testing.assert_allclose(after.scores, classify(dev, frames[:STEPS][:, None])[0], atol=1e-5)
    assert counts.origin_us == int(ev["t"][0])


def test_time_span_parses_absolute_and_relative_microseconds():
    span = TimeSpan.parse("+500", "913001000")
    assert span.resolve(913_000_000) == (913_000_500, 913_001_000)
    assert TimeSpan.parse(None, None).resolve(7) == (7, None)
    for bad in ("1.5s", "-3"):
        with pytest.raises(ValueError, match="--t-start"):
            TimeSpan.parse(bad, None)
    with pytest.raises(ValueError, match="after --t-start"):
        TimeSpan.parse("+10", "+5").resolve(0)


def test_plots_name_layers_and_units_alike_on_every_device(tmp_path, run_folder):
    from stdl_edge.api import export, run_events
    from stdl_edge.devices.plots import plot_layers, write_plots
    from stdl_edge.sources import ArraySource

    net = [p for p in export(run_folder, to="netx", out=tmp_path / "netx") if p.name == "model.net"][0]
    ev = _fitted(_recording(913_000_000))
    layers = {}
    for name, artifact in (("torch", run_folder), ("loihi-sim", net)):
        dev = open_device(name, artifact, record=True)
        result = run_events(dev, ArraySource(ev, (S, S)), window_steps=STEPS, keep_steps=STEPS)
        layers[name] = [(label, size) for _, label, size in plot_layers(result)]
        paths = write_plots(result, tmp_path / name, ["a", "b", "c"], source="rec", dt_us=DT)
        assert [p.name for p in paths] == ["events.png", "raster.png", "rates.png"]
    assert layers["torch"] == layers["loihi-sim"] == [("layer 1", 512), ("layer 2", 256), ("layer 3", 128),
                                                      ("layer 4", 64)]


def test_cli_gap_options_and_threads(tmp_path, run_folder):
    import torch

    ev = _gappy(gap_us=5 * STEPS * DT)  # five empty windows between two bursts
    path = write_events(tmp_path / "rec.aedat4", ev, (FILE, FILE), format="aedat4")
    before = torch.get_num_threads()
    preds, _, _ = _run(tmp_path, run_folder, path, "--threads", "2")
    assert any(p.get("empty") for p in preds) and torch.get_num_threads() == before  # not leaked
    skipped, _, _ = _run(tmp_path, run_folder, path, "--skip-empty")
    assert [p["window"] for p in skipped] == [p["window"] for p in preds if not p.get("empty")]
    reset, _, _ = _run(tmp_path, run_folder, path, "--reset-after-gap-ms", "20")
    restarted = [p for p in reset if p.get("restarted")]
    assert len(restarted) == 1 and not any(p.get("empty") for p in reset)
    assert restarted[0]["t_abs_us"] == int(ev["t"][np.flatnonzero(np.diff(ev["t"]) > 20_000)[0] + 1])
    result = CliRunner().invoke(app, ["run", str(run_folder), "--events", str(path), "--t-start", "1.5s"])
    assert result.exit_code != 0 and "--t-start '1.5s' must be whole microseconds" in str(result.exception)
