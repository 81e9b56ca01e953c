"""ONNX export: torch and onnxruntime give identical spikes for every zoo model.

Exporting with the torch.export-based exporter takes seconds per graph, so each model is
exported once per module (module-scoped fixtures) at a tiny width and a 2x16x16 input.
"""

from __future__ import annotations

import functools
import json
import logging
import warnings

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

import stdl_edge  # noqa: E402
from stdl_edge.artifact import StreamInfo  # noqa: E402
from stdl_edge.devices import classify, open_device  # noqa: E402
from stdl_edge.devices.onnxruntime_device import StepSession  # noqa: E402
from stdl_edge.binning import BinSpec, bin_events
from stdl_edge.events import make_events
from stdl_edge.exporters.onnx import export, fold_batchnorm  # noqa: E402
from stdl_edge.models import ModelConfig, build_model  # noqa: E402
from stdl_edge.stdl import build_aux_head, save_run  # noqa: E402

SHAPE = (2, 16, 16)
CLASSES = ("zero", "one", "two", "three")
STREAM = StreamInfo(sensor_size=(16, 16, 2), dt_us=1000, num_steps=8, class_names=CLASSES)
#: weight gain (on top of the spiking init) that gives 4-35 % firing in every layer of the tiny models
GAIN = {"dvs-cnn": 1.5, "dvs-crnn": 1.5, "vgg11": 1.5, "resnet": 1.5}
#: subnetwork split points per model (layer indices; K = len + 1)
SPLITS = {"dvs-cnn": [3], "dvs-crnn": [3], "vgg11": [4], "resnet": [3]}
ARCHS = list(SPLITS)
SEQ_STEPS = 3


@torch.no_grad()
def lively(model, gain: float, seed: int = 0):
    """Scale weights so the tiny random model spikes, and give BatchNorm non-trivial statistics."""
    g = torch.Generator().manual_seed(seed)
    for mod in model.modules():
        if isinstance(mod, (torch.nn.Conv2d, torch.nn.Linear)):
            mod.weight.mul_(gain)
        if isinstance(mod, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            n = mod.num_features
            mod.running_mean.copy_(0.1 * torch.randn(n, generator=g))
            mod.running_var.copy_(0.5 + torch.rand(n, generator=g))
            mod.weight.copy_(0.8 + 0.4 * torch.rand(n, generator=g))
            mod.bias.copy_(0.1 * torch.randn(n, generator=g))
    return model.eval()


def make_run(folder, arch: str):
    """An STDL run folder (stdl_edge.stdl.save_run) with K subnetworks and depth-1 aux heads."""
    model = lively(build_model(ModelConfig(arch=arch, input_shape=SHAPE, width=0.125, num_classes=4), seed=1),
                   GAIN[arch])
    cuts = [0, *SPLITS[arch], len(model.layers)]
    bounds = list(zip(cuts, cuts[1:]))
    torch.manual_seed(3)
    heads = [lively(build_aux_head(model, stop, 1), GAIN[arch], seed=k) for k, (_, stop) in enumerate(bounds[:-1])]
    save_run(folder, model, STREAM, bounds, heads, {"method": "stdl"})
    return folder


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """``get(arch) -> (arch, run folder, files written)``; each model is exported once per module."""
    cache: dict[str, tuple] = {}

    def get(arch: str):
        if arch not in cache:
            run = make_run(tmp_path_factory.mktemp(arch), arch)
            logged: list[logging.LogRecord] = []
            handler = logging.Handler(logging.WARNING)
            handler.emit = logged.append
            logging.getLogger("torch").addHandler(handler)
            try:
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    files = export(run, sequence_steps=SEQ_STEPS if arch == "dvs-cnn" else None)
            finally:
                logging.getLogger("torch").removeHandler(handler)
            get.warnings[arch] = [f"{w.category.__name__}: {w.message}" for w in caught]
            get.warnings[arch] += [f"log {r.name}: {r.getMessage()}" for r in logged]
            cache[arch] = (arch, run, files)
        return cache[arch]

    get.warnings = {}
    return get


@pytest.fixture(params=ARCHS)
def exported(request, exports):
    return exports(request.param)


@pytest.fixture
def cnn(exports):
    return exports("dvs-cnn")


def random_frames(steps: int, batch: int, rate: float = 0.2, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.random((steps, batch, *SHAPE)) < rate).astype(np.float32)


@functools.lru_cache(maxsize=1)
def _digit_frames(steps: int) -> np.ndarray:
    """Frames of digits drifting across a 16x16 DVS (the emulator + the one binning function)."""
    from sklearn.datasets import load_digits

    from stdl_edge.emulator import emulate

    images = load_digits().images[:3] / 16.0
    out = []
    for img in images:
        big = np.kron(img, np.ones((2, 2)))  # 16 x 16
        video = np.stack([np.roll(big, shift=t, axis=1) * 0.9 + 0.05 for t in range(steps + 1)])
        ts = np.arange(steps + 1, dtype=np.int64) * STREAM.dt_us
        events = emulate(video.astype(np.float32), ts)
        out.append(bin_events(events, STREAM.sensor, BinSpec(STREAM.dt_us), num_steps=steps + 1)[1:])
    return np.stack(out, axis=1).astype(np.float32)  # (T, B, 2, 16, 16)


def digit_frames(steps: int = 6) -> np.ndarray:
    return _digit_frames(steps).copy()


def trace(device, frames):
    device.reset(frames.shape[1])
    ys, recs = [], []
    for frame in frames:
        ys.append(device.step(frame))
        recs.append(device.recorded())
    return np.stack(ys), recs


def assert_same_spikes(rec_a, rec_b, spiking_layers):
    for t, (a, b) in enumerate(zip(rec_a, rec_b)):
        for name in spiking_layers:
            assert name in a and name in b, name
            bad = np.argwhere(a[name] != b[name])
            assert len(bad) == 0, f"layer {name} step {t} sample {bad[0][0]}: spikes differ"


def spiking_names(run):
    from stdl_edge.stdl import load_run

    model = load_run(run).model
    return [n for n, layer in zip(model.layer_names(), model.layers) if layer.stateful and layer.kind != "readout"]


@pytest.mark.parametrize("source", ["random", "digits"])
def test_whole_graph_gives_identical_spikes(exported, source):
    arch, run, _ = exported
    frames = random_frames(8, 3) if source == "random" else digit_frames()
    assert frames.any()
    devices = {"torch": open_device("torch", run, record=True),
               "onnxruntime": open_device("onnxruntime", run / "export" / "onnx", record=True)}
    ys_t, rec_t = trace(devices["torch"], frames)
    ys_o, rec_o = trace(devices["onnxruntime"], frames)
    names = spiking_names(run)
    assert_same_spikes(rec_t, rec_o, names)
    # the test is not vacuous: the layers do fire
    assert all(sum(float(r[n].sum()) for r in rec_t) > 0 for n in names)
    np.testing.assert_allclose(ys_o, ys_t, rtol=1e-4, atol=1e-4)
    st_t, st_o = devices["torch"].stats(), devices["onnxruntime"].stats()
    assert st_o.names == st_t.names and st_o.spikes.tolist() == st_t.spikes.tolist() and st_o.spikes.sum() > 0
    for t in range(len(frames)):
        for key in rec_t[t].keys() & rec_o[t].keys():
            if key.endswith(("/u", "/v")):
                np.testing.assert_allclose(rec_o[t][key], rec_t[t][key], rtol=1e-4, atol=1e-4, err_msg=key)


def test_subnetwork_chain_equals_whole(exported):
    arch, run, files = exported
    names = {p.name for p in files}
    k = len(SPLITS[arch]) + 1
    assert {f"subnet{i}.onnx" for i in range(k)} <= names and {f"aux{i}.onnx" for i in range(k - 1)} <= names
    frames = random_frames(6, 2, seed=5)
    folder = run / "export" / "onnx"
    ys_w, rec_w = trace(open_device("onnxruntime", folder, record=True), frames)
    ys_c, rec_c = trace(open_device("onnxruntime", folder, chain=True, record=True), frames)
    assert_same_spikes(rec_w, rec_c, spiking_names(run))
    np.testing.assert_array_equal(ys_c, ys_w)


def test_manifest_and_metadata(exported):
    arch, run, files = exported
    folder = run / "export" / "onnx"
    manifest = json.loads((folder / "manifest.json").read_text())
    assert files[-1] == folder / "manifest.json"
    assert manifest["stream"]["dt_us"] == 1000 and manifest["num_classes"] == 4
    chain = manifest["chain"]
    cuts = [0, *SPLITS[arch], len(manifest["layer_names"])]
    assert [c["layers"] for c in chain] == [list(b) for b in zip(cuts, cuts[1:])]
    for a, b in zip(chain, chain[1:]):
        assert a["output_shape"] == b["input_shape"]
    assert [h["follows"] for h in manifest["aux_heads"]] == list(range(len(chain) - 1))
    for entry in [manifest["whole"], *chain, *manifest["aux_heads"]]:
        proto = onnx.load(str(folder / entry["file"]))
        onnx.checker.check_model(proto)
        assert proto.opset_import[0].version >= 17
        meta = {p.key: p.value for p in proto.metadata_props}
        assert meta["dt_us"] == "1000"
        assert json.loads(meta["sensor_size"]) == [16, 16, 2]
        assert json.loads(meta["class_names"]) == list(CLASSES)
        assert json.loads(meta["neuron"])["voltage_decay"] == 0.5
        assert meta["stdl_edge_version"] == stdl_edge.__version__ and meta["format_version"] == "1"
        assert json.loads(meta["input_names"]) == entry["inputs"] == [i.name for i in proto.graph.input]
        assert json.loads(meta["output_names"]) == entry["outputs"] == [o.name for o in proto.graph.output]
        ops = {n.op_type for n in proto.graph.node}
        assert "BatchNormalization" not in ops  # folded
        if any(not st["layer"].endswith("readout") for st in entry["states"]):
            assert {"Greater", "Cast"} <= ops  # the Heaviside
    assert json.loads({p.key: p.value for p in onnx.load(str(folder / "subnet1.onnx")).metadata_props}
                      ["subnet_index"]) == 1


def test_batchnorm_folding_keeps_outputs(exported):
    arch, run, _ = exported
    from stdl_edge.stdl import load_run

    model = load_run(run).model
    folded = fold_batchnorm(model)
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in folded.modules())
    frames = torch.from_numpy(random_frames(3, 2, seed=9))
    with torch.no_grad():
        torch.testing.assert_close(folded(frames), model(frames), rtol=1e-4, atol=1e-4)


def test_sequence_graph_equals_step_graph_looped(cnn):
    _, run, files = cnn  # only dvs-cnn is exported with a sequence graph (export time)
    import onnxruntime as ort

    folder = run / "export" / "onnx"
    assert folder / f"model_seq{SEQ_STEPS}.onnx" in files
    frames = random_frames(SEQ_STEPS, 3, seed=2)
    seq = ort.InferenceSession(str(folder / f"model_seq{SEQ_STEPS}.onnx"), providers=["CPUExecutionProvider"])
    y_mean, y_seq = seq.run(["y", "y_seq"], {"x": frames})
    dev = open_device("onnxruntime", folder / "model.onnx")
    looped = classify(dev, frames)
    dev.reset(3)
    steps = np.stack([dev.step(f) for f in frames])
    np.testing.assert_allclose(y_seq, steps, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(y_mean, looped, rtol=1e-5, atol=1e-5)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["sequence"] == {**manifest["sequence"], "file": f"model_seq{SEQ_STEPS}.onnx", "steps": SEQ_STEPS}


def test_step_session_errors_name_the_input(cnn):
    _, run, _ = cnn
    sess = StepSession(run / "export" / "onnx" / "model.onnx")
    state = sess.zero_state(2)
    x = np.zeros((2, *SHAPE), dtype=np.float32)
    y, new = sess.run(x, state)
    assert y.shape == (2, 4) and set(new) == set(state)
    with pytest.raises(ValueError, match=r"input 'x' has shape \(2, 2, 8, 8\)"):
        sess.run(np.zeros((2, 2, 8, 8), np.float32), state)
    with pytest.raises(ValueError, match=r"input 'x' has dtype float64"):
        sess.run(x.astype(np.float64), state)
    missing = dict(state)
    del missing["0.conv.v"]
    with pytest.raises(ValueError, match=r"missing state input 'state_in.0.conv.v'"):
        sess.run(x, missing)
    bad = dict(state)
    bad["1.conv.s"] = np.zeros((3, *state["1.conv.s"].shape[1:]), np.float32)
    with pytest.raises(ValueError, match=r"input 'state_in.1.conv.s' has shape"):
        sess.run(x, bad)
    dev = open_device("onnxruntime", run / "export" / "onnx")
    dev.reset(2)
    with pytest.raises(ValueError, match=r"frame has shape \(1, 2, 16, 16\)"):
        dev.step(np.zeros((1, *SHAPE), np.float32))


def test_early_exit_reports_exits(cnn):
    _, run, _ = cnn
    frames = random_frames(6, 5, seed=11)
    dev = open_device("onnxruntime", run / "export" / "onnx", chain=True)
    full = classify(dev, frames)
    never = dev.classify_early_exit(frames, threshold=1.0)  # softmax never reaches exactly 1 here
    assert (never.exits == 1).all()
    np.testing.assert_allclose(never.logits, full, rtol=1e-5, atol=1e-5)
    always = dev.classify_early_exit(frames, threshold=1e-6)
    assert (always.exits == 0).all()
    # the first head's logits: subnet0 then aux0, averaged over time
    sub0 = open_device("onnxruntime", run / "export" / "onnx" / "subnet0.onnx")
    aux0 = StepSession(run / "export" / "onnx" / "aux0.onnx")
    sub0.reset(5)
    st = aux0.zero_state(5)
    total = 0
    for f in frames:
        z, st = aux0.run(sub0.step(f), st)
        total = total + z
    np.testing.assert_allclose(always.logits, total / len(frames), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="chain=True"):
        open_device("onnxruntime", run / "export" / "onnx").classify_early_exit(frames, threshold=0.5)
    mid = dev.classify_early_exit(frames, threshold=float(np.median(always.confidence)))
    assert set(mid.exits.tolist()) <= {0, 1} and (mid.exits == 0).sum() >= 1


@pytest.mark.parametrize("arch", ARCHS)
def test_export_shows_the_user_no_warnings(exports, arch):
    exports(arch)
    assert exports.warnings[arch] == []  # no (deprecation) warning and no exporter log line


def test_export_rejects_unknown_options(cnn):
    _, run, _ = cnn
    with pytest.raises(ValueError, match="unknown ONNX export option"):
        export(run, run / "elsewhere", sequence_step=3)


class _LabelledEvents:
    """A minimal labelled source for run_events: random events per sample."""

    name = "labelled-random"
    labelled = True
    sensor_size = (16, 16, 2)

    def __init__(self, n: int, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.items = []
        for i in range(n):
            m = 600
            t = np.sort(rng.integers(0, STREAM.dt_us * STREAM.num_steps, m))
            self.items.append((make_events(rng.integers(0, 16, m), rng.integers(0, 16, m), t,
                                           rng.integers(0, 2, m)), i % len(CLASSES)))

    def samples(self):
        return iter(self.items)


def test_run_with_early_exit_reports_the_exit_of_each_sample(cnn):
    from stdl_edge.devices.streaming import run_events

    _, run, _ = cnn
    dev = open_device("onnxruntime", run / "export" / "onnx", chain=True)
    src = _LabelledEvents(6)
    frames = np.stack([bin_events(ev, STREAM.sensor, STREAM.bin_spec, num_steps=STREAM.num_steps)
                       for ev, _ in src.items], axis=1)
    threshold = float(np.median(dev.classify_early_exit(frames, threshold=1e-6).confidence))
    expected = dev.classify_early_exit(frames, threshold=threshold)
    result = run_events(dev, src, per_sample=True, batch=6, early_exit=threshold)
    assert [p["exit"] for p in result.predictions] == expected.exits.tolist()
    assert [p["prediction"] for p in result.predictions] == expected.logits.argmax(axis=1).tolist()
    assert sum(result.exits.values()) == 6
    with pytest.raises(ValueError, match="onnxruntime device"):
        run_events(open_device("torch", run), src, per_sample=True, early_exit=0.5)
