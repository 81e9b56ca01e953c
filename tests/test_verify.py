"""verify: devices compared step by step; a corrupted ONNX weight is caught with layer, step, sample.

Also the export and bench commands on a plain (K = 1) model folder, exported once per module.
"""

from __future__ import annotations

import json
import shutil
from typing import ClassVar

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

from stdl_edge.artifact import StreamInfo, save_model  # noqa: E402
from stdl_edge.cli import app  # noqa: E402
from stdl_edge.devices import open_device  # noqa: E402
from stdl_edge.devices.base import Device  # noqa: E402
from stdl_edge.artifact import resolve_artifact  # noqa: E402
from stdl_edge.devices.compare import Comparison, expects_identity  # noqa: E402
from stdl_edge.formats.export_record import digest  # noqa: E402
from stdl_edge.models import ModelConfig, build_model  # noqa: E402

runner = CliRunner()
SHAPE = (2, 16, 16)
STREAM = StreamInfo(sensor_size=(16, 16, 2), dt_us=1000, num_steps=6, class_names=("a", "b", "c"))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A plain model folder (no "stdl" key: K = 1, no aux heads), exported by the CLI."""
    folder = tmp_path_factory.mktemp("run")
    model = build_model(ModelConfig(arch="dvs-cnn", input_shape=SHAPE, width=0.125, num_classes=3), seed=4)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(1.5)  # livelier: every layer fires on 10 % input
    save_model(folder, model, STREAM)
    result = runner.invoke(app, ["export", str(folder), "--to", "onnx"])
    assert result.exit_code == 0, result.output
    for name in ("model.onnx", "manifest.json"):
        assert name in result.output and (folder / "export" / "onnx" / name).exists()
    return folder


def frames_of(seed: int, steps: int = 6, batch: int = 4) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.random((steps, batch, *SHAPE)) < 0.1).astype(np.float32)


def test_good_export_has_no_mismatch(run):
    devices = {name: open_device(name, run, record=True) for name in ("torch", "onnxruntime")}
    cmp = Comparison(devices)
    cmp.add_batch(frames_of(1), np.array([0, 1, 2, 0]))
    cmp.add_batch(frames_of(2, batch=3), np.array([1, 1, 2]))
    pair = cmp.pairs[("torch", "onnxruntime")]
    assert pair.identity and pair.traced and pair.ok and cmp.ok
    assert {"0.conv", "1.conv", "2.conv", "4.dense", "5.readout", "0.conv/v", "4.dense/u"} <= pair.keys
    assert pair.compared > 0 and pair.differing == 0 and pair.mismatches == []
    assert pair.samples == 7 and pair.agree == 7
    assert cmp.accuracy("torch") == cmp.accuracy("onnxruntime")


def _rehash(path) -> None:
    """Record the edited file's SHA-256 in its manifest: a consistent but wrong export, which only
    verify can catch (an export folder refuses a file whose hash its manifest does not record)."""
    manifest = path.parent / "manifest.json"
    data = json.loads(manifest.read_text())
    data["files"][path.name] = digest(path)
    manifest.write_text(json.dumps(data))


def test_corrupted_weight_is_reported_with_layer_step_and_sample(run, tmp_path):
    src = run / "export" / "onnx"
    bad = tmp_path / "onnx"
    shutil.copytree(src, bad)
    proto = onnx.load(str(bad / "model.onnx"))
    init = next(i for i in proto.graph.initializer if "layers.1." in i.name and "weight" in i.name)
    w = onnx.numpy_helper.to_array(init).copy()
    w[0] += 2.0  # one output channel of layer 1 much more excitable
    init.CopyFrom(onnx.numpy_helper.from_array(w, init.name))
    onnx.save(proto, str(bad / "model.onnx"))
    _rehash(bad / "model.onnx")
    devices = {"torch": open_device("torch", run, record=True), "onnxruntime": open_device("onnxruntime", bad, record=True)}
    cmp = Comparison(devices)
    cmp.add_batch(frames_of(1), np.array([0, 1, 2, 0]))
    pair = cmp.pairs[("torch", "onnxruntime")]
    assert not pair.ok and not cmp.ok
    first = {m.key: m for m in pair.mismatches}
    assert "1.conv" in first and "0.conv" not in first  # layer 0 is intact
    m = first["1.conv"]
    assert 0 <= m.step < 6 and 0 <= m.sample < 4 and m.count >= 1
    assert m.describe().startswith(f"layer 1.conv step {m.step} sample {m.sample}")


def test_verify_command_passes_and_fails(run, tmp_path):
    ok = runner.invoke(app, ["verify", str(run), "--devices", "torch,onnxruntime", "--dataset", "random",
                             "--samples", "3"])
    assert ok.exit_code == 0, ok.output
    assert "verify passed" in ok.output and "torch vs onnxruntime" in ok.output
    broken = tmp_path / "run"
    shutil.copytree(run, broken)
    proto = onnx.load(str(broken / "export" / "onnx" / "model.onnx"))
    init = next(i for i in proto.graph.initializer if "layers.0." in i.name)
    init.CopyFrom(onnx.numpy_helper.from_array(onnx.numpy_helper.to_array(init) * 3.0, init.name))
    onnx.save(proto, str(broken / "export" / "onnx" / "model.onnx"))
    _rehash(broken / "export" / "onnx" / "model.onnx")
    bad = runner.invoke(app, ["verify", str(broken), "--devices", "torch,onnxruntime", "--dataset", "random",
                              "--samples", "3"])
    assert bad.exit_code == 1
    assert "MISMATCH" in bad.output and "layer 0.conv step 0 sample 0" in bad.output


def test_bench_command_prints_both_devices(run):
    result = runner.invoke(app, ["bench", str(run), "--devices", "torch,onnxruntime", "--steps", "4",
                                 "--batch", "2"])
    assert result.exit_code == 0, result.output
    assert "torch" in result.output and "onnxruntime" in result.output and "throughput" in result.output


class FakeDevice(Device):
    """Integer 'fixed-point' device: spikes and states follow a counter; optionally one bit flipped."""

    name: ClassVar[str] = "fake"

    def __init__(self, latency: int = 0, flip_at: tuple[int, int] | None = None, classes: int = 2) -> None:
        self.latency, self.flip_at, self.num_classes = latency, flip_at, classes
        self.input_shape = (1, 1, 2)

    def reset(self, batch: int) -> None:
        self.t, self.batch = 0, batch

    def step(self, frame: np.ndarray) -> np.ndarray:
        v = np.full((self.batch, 3), self.t, dtype=np.int64)
        s = (v % 2).astype(np.float32)
        if self.flip_at is not None and self.flip_at[0] == self.t:
            s[self.flip_at[1], 0] = 1 - s[self.flip_at[1], 0]
        self.rec = {"0.dense": s, "0.dense/v": v}
        self.t += 1
        y = np.zeros((self.batch, self.num_classes), np.float32)
        y[:, 0] = 1
        return y

    def recorded(self):
        return self.rec


def test_pair_rules_identity_and_latency():
    assert expects_identity("onnxruntime", "torch") and expects_identity("lava", "loihi-sim")
    assert not expects_identity("torch", "loihi-sim")
    frames = np.zeros((4, 3, 1, 1, 2), np.float32)
    cmp = Comparison({"loihi-sim": FakeDevice(), "lava": FakeDevice(flip_at=(2, 1)), "torch": FakeDevice(latency=1)})
    cmp.add_batch(frames, np.zeros(3, np.int64))
    exact = cmp.pairs[("loihi-sim", "lava")]
    assert not exact.ok and exact.differing == 1
    assert [(m.key, m.step, m.sample) for m in exact.mismatches] == [("0.dense", 2, 1)]
    mixed = cmp.pairs[("loihi-sim", "torch")]
    assert not mixed.identity and not mixed.traced and mixed.ok and mixed.agreement == 1.0
    assert cmp.accuracy("torch") == 1.0


def test_numpy_only_example_matches_the_device(run, tmp_path, random_events):
    import json
    import subprocess
    import sys
    from pathlib import Path

    from stdl_edge.devices import classify
    from stdl_edge.binning import bin_events

    paths, frames = [], []
    for i in range(3):
        ev = random_events(600, width=16, height=16, duration_us=6000)
        np.save(tmp_path / f"s{i}.npy", ev)
        paths.append(str(tmp_path / f"s{i}.npy"))
        frames.append(bin_events(ev, STREAM.sensor, STREAM.bin_spec, num_steps=STREAM.num_steps))
    example = Path(__file__).resolve().parents[1] / "examples" / "onnx_numpy_only.py"
    code = ("import runpy, sys\n"
            f"sys.argv = ['x', {str(run / 'export' / 'onnx')!r}, *{paths!r}]\n"
            "try:\n"
            f"    runpy.run_path({str(example)!r}, run_name='__main__')\n"
            "except SystemExit as e:\n"
            "    assert not e.code, e.code\n"
            "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'stdl_edge'))))\n")
    proc = subprocess.run([sys.executable, "-c", "import json\n" + code], capture_output=True, text=True,
                          cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    *lines, modules = proc.stdout.strip().splitlines()
    assert json.loads(modules) == []  # neither torch nor stdl-edge was imported
    expected = classify(open_device("onnxruntime", run / "export" / "onnx"), np.stack(frames, axis=1)).argmax(1)
    names = list(STREAM.class_names)
    assert [line.split(": ")[1].split(" ")[0] for line in lines] == [names[k] for k in expected]


def test_clear_errors_at_the_boundary(run, tmp_path):
    bad = runner.invoke(app, ["export", str(tmp_path / "nope"), "--to", "onnx"])
    assert bad.exit_code != 0 and "does not exist" in str(bad.exception)
    netx_seq = runner.invoke(app, ["export", str(run), "--to", "netx", "--sequence-steps", "4"])
    assert netx_seq.exit_code != 0 and "--sequence-steps is an ONNX option" in str(netx_seq.exception)
    with pytest.raises(FileNotFoundError, match="has no manifest.json"):
        open_device("onnxruntime", tmp_path)
    (tmp_path / "manifest.json").write_text('{"kind": "something-else"}')
    with pytest.raises(ValueError, match="not an stdl-edge ONNX manifest"):
        open_device("onnxruntime", tmp_path / "manifest.json")
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    with pytest.raises(ValueError, match="not a loadable ONNX model"):
        open_device("onnxruntime", tmp_path / "junk.onnx")
    with pytest.raises(ValueError, match="at least two devices"):
        runner.invoke(app, ["verify", str(run), "--devices", "torch"], catch_exceptions=False)


class _Scripted(Device):
    """A fake float device whose recorded spikes and voltages are scripted per step."""

    latency = 0
    num_classes = 2
    input_shape = (1, 1, 1)

    def __init__(self, name: str, script: list[dict[str, np.ndarray]]) -> None:
        self.name = name  # type: ignore[misc]
        self.script = script
        self.t = 0

    def reset(self, batch: int) -> None:
        self.t = 0

    def step(self, frame: np.ndarray) -> np.ndarray:
        self.t += 1
        return np.zeros((frame.shape[0], 2), np.float32)

    def recorded(self) -> dict[str, np.ndarray]:
        return self.script[self.t - 1]


def _script(spike_at_1: float, v_at_1: float, v_later: float) -> list[dict[str, np.ndarray]]:
    s = lambda v: np.array([[v]], np.float32)  # noqa: E731
    return [{"0.dense": s(0.0), "0.dense/v": s(0.5)},
            {"0.dense": s(spike_at_1), "0.dense/v": s(v_at_1)},
            {"0.dense": s(0.0), "0.dense/v": s(v_later)}]


def test_float_threshold_tie_is_reported_as_a_tie_not_a_failure():
    # torch: v = 1.0000001 fires; onnxruntime: v = 0.99999994 does not; afterwards they part ways
    a = _Scripted("torch", _script(1.0, 1.0000001, 0.0))
    b = _Scripted("onnxruntime", _script(0.0, 0.99999994, 0.7))
    cmp = Comparison({"torch": a, "onnxruntime": b})
    cmp.add_batch(np.zeros((3, 1, 1, 1, 1), np.float32))
    pair = cmp.pairs[("torch", "onnxruntime")]
    assert cmp.ok and pair.tied_samples == {0}
    assert pair.ties[0].key == "0.dense" and pair.ties[0].step == 1


def test_spike_difference_with_different_voltages_is_a_mismatch():
    a = _Scripted("torch", _script(1.0, 1.3, 0.0))
    b = _Scripted("onnxruntime", _script(0.0, 0.6, 0.0))
    cmp = Comparison({"torch": a, "onnxruntime": b})
    cmp.add_batch(np.zeros((3, 1, 1, 1, 1), np.float32))
    pair = cmp.pairs[("torch", "onnxruntime")]
    assert not cmp.ok and not pair.tied_samples
    assert {(m.key, m.step) for m in pair.mismatches} >= {("0.dense", 1), ("0.dense/v", 1)}


def test_missing_export_names_the_command_or_is_written_by_the_callers_exporter(run, tmp_path):
    from stdl_edge.api import export

    fresh = tmp_path / "fresh"
    shutil.copytree(run, fresh, ignore=shutil.ignore_patterns("export"))
    with pytest.raises(FileNotFoundError, match=f"run `stdl-edge export {fresh} --to onnx`"):
        resolve_artifact(fresh, "onnx")
    heard = []
    path = resolve_artifact(fresh, "onnx", export=export, notify=heard.append)
    assert path == fresh / "export" / "onnx" and (path / "manifest.json").exists()
    assert heard == [f"{path} is missing: exporting {fresh} to onnx first"]
