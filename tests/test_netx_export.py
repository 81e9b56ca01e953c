"""netx exporter: file structure, lava-dl loads it, loihi-sim runs it like the float model."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from torch.nn import functional as F

from stdl_edge.artifact import StreamInfo, save_model
from stdl_edge.devices.base import classify
from stdl_edge.devices.loihi_sim import LoihiSim
from stdl_edge.exporters.netx import export, make_dense_netx_exact
from stdl_edge.models import ModelConfig, build_model
from stdl_edge.quant import LayerQuant, QuantError, quantize_model
from stdl_edge.registry import EXPORTERS
from stdl_edge.stdl import build_aux_head, save_run

sys.path.insert(0, str(Path(__file__).parent))  # --import-mode=importlib: the tests' own helper module
from fixed_point_ref import assert_loihi_sim_follows_float, dequantized  # noqa: E402

STREAM = StreamInfo(sensor_size=(12, 12, 2), dt_us=2000, num_steps=6, class_names=("a", "b", "c", "d"))


def _model(seed: int = 0, batchnorm: bool = True, arch: str = "dvs-cnn"):
    net = build_model(ModelConfig(arch=arch, input_shape=(2, 12, 12), num_classes=4, width=0.25, batchnorm=batchnorm),
                      seed=seed)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in net.layers:
            for lin in (getattr(layer, "conv", None) or getattr(layer, "linear", None), getattr(layer, "recurrent", None)):
                if lin is not None and layer.kind != "readout":
                    lin.weight.mul_(3.0)  # enough activity to exercise every layer
            bn = getattr(layer, "bn", None)
            if bn is not None:
                bn.running_mean.copy_(torch.rand(bn.running_mean.shape, generator=gen) * 0.4 - 0.2)
                bn.running_var.copy_(torch.rand(bn.running_var.shape, generator=gen) + 0.5)
                bn.bias.copy_(torch.rand(bn.bias.shape, generator=gen) * 0.4 - 0.1)
    return net.eval()


@pytest.fixture
def run_folder(tmp_path):
    torch.manual_seed(0)
    net = _model()
    head = build_aux_head(net, 2, 1).eval()
    return save_run(tmp_path / "run", net, STREAM, [(0, 2), (2, 6)], [head], {"method": "stdl"})


def test_export_writes_netx_files_with_metadata(run_folder):
    paths = export(run_folder)
    out = run_folder / "export" / "netx"
    assert sorted(p.name for p in paths) == ["aux0.net", "export.json", "model.net", "quantization.json", "subnet0.net",
                                             "subnet1.net"]
    with h5py.File(out / "model.net") as f:
        assert f.attrs["dt_us"] == 2000 and json.loads(f.attrs["sensor_size"]) == [12, 12, 2]
        assert json.loads(f.attrs["class_names"]) == ["a", "b", "c", "d"]
        types = [f[f"layer/{i}/type"][0].decode() for i in range(len(f["layer"]))]
        assert types == ["input", "conv", "conv", "conv", "flatten", "dense", "dense"]
        assert f["layer/0/shape"][()].tolist() == [2, 12, 12]
        assert f["layer/1/shape"][()].tolist() == [4, 6, 6] and f["layer/1/stride"][()].tolist() == [2, 2]
        for i in (1, 2, 3, 5, 6):
            w = f[f"layer/{i}/weight"][()]
            assert np.abs(w).max() <= 254 and np.all(w % 2 == 0)
            assert f[f"layer/{i}/neuron/type"][0] == b"CUBA"
        assert f["layer/1/neuron/vDecay"][()] == 2048 and f["layer/1/neuron/iDecay"][()] == 4096
        assert f["layer/1/neuron/vThMant"][()] == round(f["layer/1"].attrs["scale"])  # theta = 1
        readout = f["layer/6/neuron"]
        assert (readout["iDecay"][()], readout["vDecay"][()], readout["vThMant"][()]) == (4096, 4096, (1 << 18) - 1)
        assert "bias" in f["layer/1"]  # folded BatchNorm
    with h5py.File(out / "subnet1.net") as f:
        assert f["layer/0/shape"][()].tolist() == [8, 3, 3] and f.attrs["layers"].tolist() == [2, 6]
    report = json.loads((out / "quantization.json").read_text())
    layers = report["files"]["model.net"]["layers"]
    assert [entry["layer"] for entry in layers] == ["0.conv", "1.conv", "2.conv", "4.dense", "5.readout"]
    assert all(entry["clipped_weights"] == 0 for entry in layers)
    assert {"scale", "exponent", "max_abs_weight_error", "vThMant"} <= set(layers[0])


def test_exporter_is_registered_and_checks_options(run_folder):
    assert EXPORTERS.get("netx") is export
    with pytest.raises(ValueError, match="unknown option"):
        export(run_folder, bogus=1)


def test_lava_dl_netx_loads_our_export(run_folder, tmp_path):
    from stdl_edge.devices.lava_compat import import_lava, lava_available

    ok, why = lava_available()
    if not ok:
        pytest.skip(why)
    netx = import_lava().netx
    export(run_folder, tmp_path / "nx", subnets=False, aux=False)
    net = netx.hdf5.Network(net_config=str(tmp_path / "nx" / "model.net"))
    assert len(net.layers) == 5 and net.inp.shape == (12, 12, 2) and net.out.shape == (4,)
    q = [x for x in quantize_model(_model()) if isinstance(x, LayerQuant)]
    # conv: Lava's kernel is ours flipped and in (out, x, y, in) order
    lava_conv = net.layers[0].synapse.weight.init
    assert np.array_equal(lava_conv, q[0].weight[:, :, ::-1, ::-1].transpose(0, 3, 2, 1))
    # dense: netx re-optimises the exponent; the effective integer weights are ours
    syn = net.layers[3].synapse
    exp = syn.proc_params["weight_exp"]
    assert np.array_equal(np.asarray(syn.weights.init) >> -exp, q[3].weight)
    assert int(net.layers[4].neuron.vth.init) == (1 << 18) - 1


@pytest.mark.parametrize("arch", ["dvs-cnn", "dvs-crnn"])
def test_loihi_sim_equals_the_float_model_with_dequantized_weights(tmp_path, arch):
    """Export + simulator are exact: the float network with the exported integers / scale
    (and theta = vThMant / scale) gives identical spikes at every layer and the same readout.
    dvs-crnn: the float recurrence (``s[t-1]`` into the current at ``t``) is the chip's."""
    net = _model(1, arch=arch)
    save_model(tmp_path / "r", net, STREAM)
    export(tmp_path / "r")
    ref, q = dequantized(net)
    sim = LoihiSim.from_netx(tmp_path / "r" / "export" / "netx" / "model.net")
    rng = np.random.default_rng(0)
    steps = 6
    frames = (rng.random((steps, 3, 2, 12, 12)) < 0.3).astype(np.float32)
    total_spikes = assert_loihi_sim_follows_float(sim, ref, frames)
    assert total_spikes > 100


def test_subnetworks_chain_to_the_whole_model(run_folder):
    export(run_folder)
    out = run_folder / "export" / "netx"
    whole = LoihiSim.from_netx(out / "model.net")
    parts = [LoihiSim.from_netx(out / f"subnet{k}.net") for k in range(2)]
    assert whole.latency == parts[0].latency + parts[1].latency
    rng = np.random.default_rng(3)
    frames = (rng.random((8, 2, 2, 12, 12)) < 0.3).astype(np.int64)
    ref = whole.run(frames)
    for p in parts:
        p.set_reset(None)  # plain netx Network semantics, like whole.run()
        p.reset(2)
    last = len(parts[0].net.layers) - 1
    for t in range(8):
        s0 = parts[0].step_int(frames[t])[last][0].astype(np.int64)
        s1 = parts[1].step_int(s0)
        assert np.array_equal(s1[-1][1]["v"], ref[f"layer{len(whole.net.layers) - 1}/v"][t])


def _bars(n: int, seed: int, steps: int = 5, size: int = 12):
    """Four classes of moving bars (ON/OFF, horizontal/vertical) in sparse noise."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, n)
    x = (rng.random((steps, n, 2, size, size)) < 0.02).astype(np.float32)
    for i, c in enumerate(y):
        for t in range(steps):
            p = (t + int(rng.integers(0, 3))) % size
            pol = 1 if c < 2 else 0
            if c % 2 == 0:
                x[t, i, pol, p, :] = 1
            else:
                x[t, i, pol, :, p] = 1
    return torch.from_numpy(x), torch.from_numpy(y)


@pytest.mark.slow
def test_trained_model_float_vs_loihi_sim_agreement(tmp_path):
    torch.manual_seed(0)
    net = build_model(ModelConfig(input_shape=(2, 12, 12), num_classes=4, width=0.25, batchnorm=True), seed=0)
    xtr, ytr = _bars(160, 0)
    xte, yte = _bars(128, 1)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    net.train()
    for _ in range(4):
        for i in range(0, 160, 32):
            loss = F.cross_entropy(net(xtr[:, i:i + 32]), ytr[i:i + 32])
            opt.zero_grad()
            loss.backward()
            opt.step()
    net.eval()
    with torch.no_grad():
        float_pred = net(xte).argmax(1).numpy()
    save_model(tmp_path / "t", net, STREAM.__class__(sensor_size=(12, 12, 2), dt_us=1000, num_steps=5))
    export(tmp_path / "t")
    sim = LoihiSim.load(tmp_path / "t")
    fixed_pred = classify(sim, xte.numpy()).argmax(1)
    float_acc = float((float_pred == yte.numpy()).mean())
    fixed_acc = float((fixed_pred == yte.numpy()).mean())
    agreement = float((fixed_pred == float_pred).mean())
    print(f"float acc {float_acc:.3f}  loihi-sim acc {fixed_acc:.3f}  agreement {agreement:.3f}")
    assert float_acc > 0.5  # it learned something
    assert agreement >= 0.9 and abs(float_acc - fixed_acc) <= 0.05


def test_what_netx_cannot_express_fails_clearly(tmp_path):
    res = build_model(ModelConfig(arch="resnet", input_shape=(2, 8, 8), num_classes=3, width=0.125), seed=0)
    save_model(tmp_path / "res", res, StreamInfo((8, 8, 2), 1000, 4))
    with pytest.raises(QuantError, match="resblock"):
        export(tmp_path / "res")
    net = build_model(ModelConfig(input_shape=(2, 12, 12), num_classes=4, width=0.25), seed=0)
    net.layers[4].linear.weight.data.zero_()
    save_model(tmp_path / "zero", net, STREAM)
    with pytest.raises(QuantError, match="layer 4.dense: all weights are zero"):
        export(tmp_path / "zero")


def test_dense_weights_are_made_exact_for_netx():
    # all <= 0 with -128 at the extreme: netx would turn -128 into -64 (lava-dl issue 170 family)
    fixed, nudged = make_dense_netx_exact(np.array([[-128, -64, 0]]), "x")
    assert nudged == 1 and fixed.tolist() == [[-126, -64, 0]]
    same, nudged = make_dense_netx_exact(np.array([[254, -254, 2]]), "x")
    assert nudged == 0 and same.tolist() == [[254, -254, 2]]


class _Labelled:
    """Stands in for a data set: ``labels`` and ``ds[i] -> (frames (T, C, H, W), label)``."""

    def __init__(self, n: int = 10) -> None:
        gen = torch.Generator().manual_seed(1)
        self.labels = np.arange(n) % 4
        self.frames = (torch.rand(n, 6, 2, 12, 12, generator=gen) < 0.3).float()

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return self.frames[i], int(self.labels[i])


def test_export_command_records_float_vs_fixed_point_accuracy(tmp_path, monkeypatch):
    import stdl_edge.data as data
    from typer.testing import CliRunner

    from stdl_edge.cli import app
    from stdl_edge.devices.fixed_point import evaluate_fixed_point

    run = save_run(tmp_path / "run", _model(), STREAM, [(0, 6)], [], {"train": {"dataset": "tiny"}})
    calls = []
    monkeypatch.setattr(data, "load_dataset", lambda name, split, **kw: calls.append((name, split, kw)) or _Labelled())
    result = CliRunner().invoke(app, ["export", str(run), "--to", "netx"])
    assert result.exit_code == 0, result.output
    assert calls == [("tiny", "test", {"num_steps": 6, "dt_us": 2000, "bin_mode": "binary"})]
    acc = json.loads((run / "export" / "netx" / "quantization.json").read_text())["accuracy"]
    assert acc["dataset"] == "tiny" and acc["split"] == "test" and acc["samples"] == 10
    direct = evaluate_fixed_point(run, run / "export" / "netx" / "model.net")
    assert {k: v for k, v in acc.items() if k != "seconds"} == {k: v for k, v in direct.items() if k != "seconds"}
    assert 0.0 <= acc["fixed_point_accuracy"] <= 1.0 and 0.0 <= acc["prediction_agreement"] <= 1.0
    export(run)  # the exporter alone (no evaluate=) runs no device
    assert "accuracy" not in json.loads((run / "export" / "netx" / "quantization.json").read_text())
