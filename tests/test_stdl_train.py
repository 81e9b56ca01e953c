"""The trainer: run folder, exact resume, load_run for exporters, the CLI, and learning on digits-dvs."""

from __future__ import annotations

import errno
import json
import os
from dataclasses import replace

import pytest
import torch
from typer.testing import CliRunner

from stdl_edge.artifact import RunFolder, StreamInfo
from stdl_edge.cli import app
from stdl_edge.io import load_tensors
from stdl_edge.stdl import load_run
from stdl_edge.stdl.engine import evaluate_batch
from stdl_edge.data import TensorData
from stdl_edge.stdl.trainer import TrainConfig, train

H = 12
STREAM = StreamInfo((H, H, 2), 1000, 3, class_names=("right", "down", "left", "up"))


def _bars(n: int, seed: int, steps: int = 3) -> TensorData:
    """A bar sweeping in one of four directions (the class) over noise: learnable in a few batches."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 4, (n,), generator=g)
    frames = (torch.rand(n, steps, 2, H, H, generator=g) < 0.03).to(torch.uint8)
    for i, c in enumerate(labels.tolist()):
        offset = int(torch.randint(0, 3, (1,), generator=g))
        for t in range(steps):
            pos = offset + 3 * t if c in (0, 1) else H - 1 - offset - 3 * t
            if c in (0, 2):
                frames[i, t, 1, :, pos] = 1
            else:
                frames[i, t, 1, pos, :] = 1
    return TensorData(frames, labels)


def _data():
    return _bars(96, 0), _bars(64, 1), STREAM


CFG = TrainConfig(method="stdl", subnets=3, epochs=2, batch_size=16, lr=5e-3, seed=3)


def _weights(folder):
    return load_tensors(folder / "model.safetensors"), load_tensors(folder / "aux.safetensors")


def test_run_folder_and_load_run(tmp_path):
    result = train(CFG, tmp_path / "run", data=_data())
    folder = tmp_path / "run"
    for name in ("model.json", "model.safetensors", "aux.safetensors", "metrics.jsonl", "loss.png",
                 "accuracy.png", "memory.png", "checkpoint/state.safetensors", "checkpoint/state.json"):
        assert (folder / name).exists(), name
    lines = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in lines] == [1, 2]
    assert set(lines[-1]["memory"]) >= {"activation_bytes", "param_bytes", "optimizer_bytes", "total_bytes"}
    assert lines[-1]["memory"]["activation_bytes"] > 0 and len(lines[-1]["exit_acc"]) == 2

    run = load_run(folder)
    assert run.method == "stdl" and run.num_subnets == 3 and len(run.aux_heads) == 2
    assert run.boundaries == [tuple(b) for b in result.plan["boundaries"]]
    assert run.stream == STREAM
    stdl = run.record["stdl"]
    assert stdl["class_names"] == list(STREAM.class_names) and stdl["subnets"] == 3
    for k, head in enumerate(run.aux_heads):
        a, b = run.boundaries[k]
        assert head.input_shape == tuple(run.model.layers[b - 1].out_shape)
    # the loaded run reproduces the accuracies the trainer reported
    test = _bars(64, 1)
    frames, labels = test.batch(torch.arange(len(test)), torch.device("cpu"))
    outs = evaluate_batch(run.model, run.aux_heads, run.boundaries, frames)
    accs = [float((o.argmax(1) == labels).float().mean()) for o in outs]
    assert accs[-1] == pytest.approx(result.test_acc)
    assert accs[:-1] == pytest.approx(result.exit_acc)
    # the primary model alone loads through the artifact API as well
    loaded = RunFolder(folder).load()
    model, stream = loaded.model, loaded.stream
    assert stream == STREAM and len(model.layers) == len(run.model.layers)


def test_resume_gives_the_same_weights_as_an_uninterrupted_run(tmp_path):
    train(CFG, tmp_path / "full", data=_data())

    class Interrupt(Exception):
        pass

    def stop(metrics):
        raise Interrupt

    with pytest.raises(Interrupt):
        train(CFG, tmp_path / "cut", data=_data(), on_epoch=stop)
    assert json.loads((tmp_path / "cut" / "checkpoint" / "state.json").read_text())["epoch"] == 1
    with pytest.raises(ValueError, match="already holds a run"):
        train(CFG, tmp_path / "cut", data=_data())
    with pytest.raises(ValueError, match="different lr"):
        train(CFG.replace(lr=1e-3), tmp_path / "cut", data=_data(), resume=True)
    train(CFG, tmp_path / "cut", data=_data(), resume=True)

    (m1, a1), (m2, a2) = _weights(tmp_path / "full"), _weights(tmp_path / "cut")
    assert m1.keys() == m2.keys() and a1.keys() == a2.keys()
    assert all(torch.equal(m1[k], m2[k]) for k in m1)
    assert all(torch.equal(a1[k], a2[k]) for k in a1)
    h1 = (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()
    h2 = (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["train_loss"] for x in h1] == [json.loads(x)["train_loss"] for x in h2]


def test_checkpoint_round_trip_and_resume_errors(tmp_path):
    from stdl_edge.stdl.checkpoint import RunExistsError, load_checkpoint, resume_from, save_checkpoint
    from stdl_edge.stdl.trainer import _finish_state, build_state

    cpu = torch.device("cpu")
    with pytest.raises(FileNotFoundError, match="has no checkpoint"):
        resume_from(tmp_path, CFG, resume=True)
    assert resume_from(tmp_path, CFG, resume=False) is None
    state = build_state(CFG, (2, H, H), 4, 6, cpu)
    for p in state.parameters():
        p.grad = torch.ones_like(p)
    state.optimizer.step()
    state.scheduler.step()
    state.epoch, state.history = 1, [{"epoch": 1, "test_acc": 0.5}]
    save_checkpoint(tmp_path, state, CFG)
    rng = torch.get_rng_state()
    with pytest.raises(RunExistsError, match="already holds a run"):
        resume_from(tmp_path, CFG, resume=False)

    ckpt = load_checkpoint(tmp_path, CFG)
    torch.rand(3)  # move the RNG on: restore must put it back
    restored = ckpt.restore(_finish_state(CFG, ckpt.model, ckpt.plan, 6, cpu))
    assert torch.equal(torch.get_rng_state(), rng)
    assert (restored.epoch, restored.history, restored.plan_record) == (1, state.history, state.plan.to_dict())
    assert restored.scheduler.state_dict() == state.scheduler.state_dict()
    a, b = state.optimizer.state_dict(), restored.optimizer.state_dict()
    assert a["param_groups"] == b["param_groups"] and a["state"].keys() == b["state"].keys()
    assert all(torch.equal(torch.as_tensor(v), b["state"][i][k]) for i in a["state"] for k, v in a["state"][i].items())
    sd = state.model.state_dict()
    assert all(torch.equal(sd[k], v) for k, v in restored.model.state_dict().items())

    record = tmp_path / "checkpoint" / "state.json"
    record.write_text(record.read_text().replace('"epoch": 1,', '"epoch": 2,', 1))
    with pytest.raises(ValueError, match="inconsistent"):
        load_checkpoint(tmp_path, CFG)


def test_methods_share_initial_weights_and_data_order(tmp_path):
    from stdl_edge.stdl.trainer import build_state, epoch_order

    states = {m: build_state(TrainConfig(method=m, subnets=None), (2, H, H), 4, 6, torch.device("cpu"))
              for m in ("stdl", "bptt")}
    sd = [s.model.state_dict() for s in states.values()]
    assert all(torch.equal(sd[0][k], sd[1][k]) for k in sd[0])
    assert torch.equal(epoch_order(50, 0, 3), epoch_order(50, 0, 3))
    assert not torch.equal(epoch_order(50, 0, 3), epoch_order(50, 0, 4))
    assert len(states["stdl"].heads) == 3 and states["bptt"].heads == []


def test_config_validation_names_the_bad_value():
    with pytest.raises(ValueError, match="--method 'sgd'"):
        TrainConfig(method="sgd")
    with pytest.raises(ValueError, match="unknown training option"):
        TrainConfig.from_dict({"epoch": 3})
    assert TrainConfig(method="bptt").subnets == 1 and TrainConfig().subnets == 4
    assert TrainConfig(splits=(1, 3)).subnets == 3


def test_cli_config_file_and_flag_errors(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('method = "sgd"\n')
    result = CliRunner().invoke(app, ["train", "--config", str(cfg), "--out", str(tmp_path / "r")])
    assert result.exit_code != 0
    assert "sgd" in str(result.exception)


@pytest.mark.slow
def test_short_stdl_run_on_digits_dvs_learns(tmp_path):
    pytest.importorskip("stdl_edge.data")
    cfg = TrainConfig(dataset="digits-dvs", method="stdl", subnets=4, epochs=2, batch_size=32, limit=320,
                      steps=6, seed=0)
    result = CliRunner().invoke(app, ["train", "--dataset", "digits-dvs", "--method", "stdl", "--subnets", "4",
                                      "--epochs", str(cfg.epochs), "--limit", str(cfg.limit), "--steps", "6",
                                      "--out", str(tmp_path / "digits")])
    assert result.exit_code == 0, result.output
    run = load_run(tmp_path / "digits")
    acc = run.record["stdl"]["results"]["test_acc"]
    assert acc > 0.3, f"test accuracy {acc:.2f} is not well above chance (0.10)"
    assert "test accuracy" in result.output and "peak training memory" in result.output


def test_config_file_json_and_toml(tmp_path):
    from stdl_edge.cli.train import read_config_file

    (tmp_path / "a.json").write_text('{"method": "local", "batch-size": 8, "splits": [1, 3]}')
    (tmp_path / "b.toml").write_text('[train]\nmethod = "bptt"\nlr = 0.001\nbudget_mb = 2.5\n')
    a = TrainConfig.from_dict(read_config_file(tmp_path / "a.json"))
    b = TrainConfig.from_dict(read_config_file(tmp_path / "b.toml"))
    assert (a.method, a.batch_size, a.splits, a.subnets) == ("local", 8, (1, 3), 3)
    assert (b.method, b.lr, b.budget_mb, b.subnets) == ("bptt", 0.001, 2.5, 1)
    (tmp_path / "c.json").write_text("{oops")
    with pytest.raises(ValueError, match="not valid JSON"):
        read_config_file(tmp_path / "c.json")


def test_default_init_gives_every_spiking_layer_activity():
    from stdl_edge.models import ModelConfig, build_model

    model = build_model(ModelConfig(), seed=0)
    frames = (torch.rand(8, 16, 2, 34, 34, generator=torch.Generator().manual_seed(0)) < 0.1).float()
    rates: dict[str, float] = {}
    evaluate_batch(model, [], [(0, len(model.layers))], frames, spikes=rates)
    assert set(rates) == {"0.conv", "1.conv", "2.conv", "4.dense"}
    assert all(0.02 < r < 0.5 for r in rates.values()), rates


BAD_OPTIONS = [  # (options, the one line it gives)
    ({"lr": float("inf")}, "--lr inf must be a finite number > 0 and <= 1000"),
    ({"lr": float("nan")}, "--lr nan must be a finite number > 0 and <= 1000"),
    ({"lr": 0}, "--lr 0 must be a finite number > 0 and <= 1000"),
    ({"lr": -1e-3}, "--lr -0.001 must be a finite number > 0 and <= 1000"),
    ({"lr": 1e36}, "--lr 1e+36 must be a finite number > 0 and <= 1000"),
    ({"lr": "0.01"}, "--lr '0.01' must be a finite number > 0 and <= 1000 (it is text)"),
    ({"epochs": 1.5}, "--epochs 1.5 must be a whole number >= 1"),
    ({"epochs": "3"}, "--epochs '3' must be a whole number >= 1 (it is text)"),
    ({"epochs": True}, "--epochs True must be a whole number >= 1"),
    ({"batch_size": 0}, "--batch-size 0 must be a whole number >= 1"),
    ({"batch_size": [16]}, "--batch-size [16] must be a whole number >= 1"),
    ({"steps": 0}, "--steps 0 must be a whole number >= 1"),
    ({"steps": 2.5}, "--steps 2.5 must be a whole number >= 1"),
    ({"dt_us": -1000}, "--dt-us -1000 must be a whole number >= 1"),
    ({"dt_us": 0.5}, "--dt-us 0.5 must be a whole number >= 1"),
    ({"subnets": 0}, "--subnets 0 must be a whole number >= 1"),
    ({"splits": "1,2"}, "--splits '1,2' must be a list of whole numbers >= 1"),
    ({"splits": [1, 2.5]}, "--splits[1] 2.5 must be a whole number >= 1"),
    ({"method": ["stdl"]}, "--method ['stdl'] must be text: one of stdl, bptt, sltt, local"),
    ({"model": "vgg"}, "--model 'vgg' is unknown; use one of dvs-cnn, dvs-crnn, vgg11, resnet, if-cnn, a .toml/.json model file, or custom with a layer list"),
    ({"dataset": 3}, "--dataset 3 must be text"),
    ({"device": "gpu"}, "--device 'gpu' is not a torch device; use auto, cpu, cuda or cuda:N"),
    ({"weight_decay": float("inf")}, "--weight-decay inf must be a finite number >= 0"),
    ({"mse_weight": -1}, "--mse-weight -1 must be a finite number >= 0"),
    ({"budget_mb": 0}, "--budget-mb 0 must be a finite number > 0"),
    ({"width": float("nan")}, "--width nan must be a finite number > 0"),
    ({"online": "yes"}, "--online 'yes' must be true or false"),
    ({"bf16": 1}, "--bf16 1 must be true or false"),
    ({"seed": -1}, "--seed -1 must be a whole number >= 0 and <= 4294967295"),
    ({"limit": 0}, "--limit 0 must be a whole number >= 1"),
    ({"threads": 1.5}, "--threads 1.5 must be a whole number >= 1"),
]


@pytest.mark.parametrize("options, message", BAD_OPTIONS, ids=[str(o) for o, _ in BAD_OPTIONS])
def test_each_bad_option_is_refused_in_one_line(options, message):
    with pytest.raises(ValueError) as info:
        TrainConfig.from_dict(options)
    assert str(info.value) == message
    with pytest.raises(ValueError):  # the Python API checks the same
        TrainConfig(**options)


def test_whole_numbers_are_taken_and_normalised():
    cfg = TrainConfig.from_dict({"epochs": 2.0, "lr": 1, "splits": [1, 3], "seed": 7})
    assert (cfg.epochs, cfg.lr, cfg.splits, cfg.subnets) == (2, 1.0, (1, 3), 3)
    assert type(cfg.epochs) is int and type(cfg.lr) is float
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize("name, content, message", [
    ("a.json", '{"epochs": "3"}', "--epochs '3' must be a whole number"),
    ("b.json", '{"lr": NaN}', "--lr nan must be a finite number"),
    ("c.toml", "epochs = 1.5\n", "--epochs 1.5 must be a whole number"),
    ("d.toml", "lr = inf\n", "--lr inf must be a finite number"),
    ("e.toml", 'method = ["stdl"]\n', "--method ['stdl'] must be text"),
    ("f.json", '{"dataset": {"name": "x"}}', "--dataset {'name': 'x'} must be text"),
])
def test_config_files_with_values_of_the_wrong_type(tmp_path, name, content, message):
    (tmp_path / name).write_text(content)
    result = CliRunner().invoke(app, ["train", "--config", str(tmp_path / name), "--out", str(tmp_path / "r")])
    assert result.exit_code != 0 and isinstance(result.exception, ValueError)
    assert str(result.exception).startswith(message)
    assert not (tmp_path / "r").exists()


def _batch_spoiler(monkeypatch, at: int, spoil):
    """Wrap the trainer's train_batch: call ``spoil(result, model)`` on the ``at``-th batch (from 1)."""
    from stdl_edge.stdl import trainer

    calls = []

    def batch(model, *args, **kwargs):
        result = train_batch(model, *args, **kwargs)
        calls.append(1)
        return spoil(result, model) if len(calls) == at else result

    train_batch = trainer.train_batch
    monkeypatch.setattr(trainer, "train_batch", batch)


def test_a_diverging_loss_stops_the_run_in_one_line(tmp_path, monkeypatch):
    from stdl_edge.stdl.trainer import TrainingDiverged

    _batch_spoiler(monkeypatch, 8, lambda result, model: replace(result, loss=float("nan")))
    with pytest.raises(TrainingDiverged) as info:
        train(CFG, tmp_path / "run", data=_data())
    assert str(info.value) == ("training diverged at epoch 2, batch 2/6: the loss is nan; train again with a "
                               "lower --lr (now 0.005) into a new --out")
    record = json.loads((tmp_path / "run" / "model.json").read_text())
    assert record["stdl"]["results"]["epochs"] == 1  # epoch 1 is kept, nothing of epoch 2 is written


def test_weights_that_stop_being_finite_stop_the_run(tmp_path, monkeypatch):
    from stdl_edge.stdl.trainer import TrainingDiverged

    def spoil(result, model):
        with torch.no_grad():
            next(model.parameters()).fill_(float("inf"))
        return result

    _batch_spoiler(monkeypatch, 6, spoil)
    with pytest.raises(TrainingDiverged, match=r"^training diverged at epoch 1: parameter layers\.0\.\S+ is no longer "
                                               r"finite after batch 6/6; train again with a lower --lr"):
        train(CFG, tmp_path / "run", data=_data())
    assert not (tmp_path / "run" / "model.json").exists()


def test_out_that_is_a_file_fails_before_the_first_epoch(tmp_path):
    (tmp_path / "f").write_text("not a folder")
    batches = []
    with pytest.raises(NotADirectoryError) as info:
        train(CFG, tmp_path / "f", data=_data(), progress=lambda *a: batches.append(a))
    assert str(info.value) == f"{tmp_path / 'f'} cannot be a folder: {tmp_path / 'f'} is a file; choose another path"
    assert batches == [] and (tmp_path / "f").read_text() == "not a folder"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders anyway (test_io covers the "
                                               "message with a refused file creation)")
def test_out_in_a_read_only_folder_fails_before_the_first_epoch(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o555)
    batches = []
    try:
        for out, start in ((ro, f"cannot write into {ro}"), (ro / "run", f"cannot create the folder {ro / 'run'}")):
            with pytest.raises(PermissionError, match=f"^{start} \\(Permission denied\\)"):
                train(CFG, out, data=_data(), progress=lambda *a: batches.append(a))
    finally:
        ro.chmod(0o755)
    assert batches == []


def test_a_full_disk_during_training_names_the_file_and_resumes_after(tmp_path, monkeypatch):
    from pathlib import Path

    from stdl_edge.io import TEMP_FILE, DiskFullError
    from stdl_edge.stdl import trainer

    write_bytes, calls = Path.write_bytes, []

    def full_from_epoch_2(self, data):  # each epoch writes 3 tensor files; the 4th finds the disk full
        calls.append(self)
        if len(calls) == 4:
            write_bytes(self, data[:100])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return write_bytes(self, data)

    monkeypatch.setattr(trainer, "_plot", lambda out, history: None)  # quicker; they are no tensor files
    out = tmp_path / "run"
    with monkeypatch.context() as patch, pytest.raises(DiskFullError) as info:
        patch.setattr(Path, "write_bytes", full_from_epoch_2)
        train(CFG, out, data=_data())
    assert str(info.value) == (f"no space left on device while writing {out / 'checkpoint' / 'state.safetensors'}: "
                               f"free space on that disk and continue with `stdl-edge train --resume --out {out}` "
                               "(the last checkpoint is intact)")
    assert not [p for p in out.rglob("*") if TEMP_FILE.match(p.name)]
    train(CFG, out, data=_data(), resume=True)
    train(CFG, tmp_path / "full", data=_data())
    (m1, a1), (m2, a2) = _weights(out), _weights(tmp_path / "full")
    assert all(torch.equal(m1[k], m2[k]) for k in m1) and all(torch.equal(a1[k], a2[k]) for k in a1)


# ------------------------------------------------------------------ conveniences (issue 11)


def test_validation_split_is_stratified_seeded_and_disjoint():
    from stdl_edge.stdl.trainer import validation_split

    data = _bars(80, 0)
    train_a, val_a = validation_split(data, 0.25, seed=1)
    train_b, val_b = validation_split(data, 0.25, seed=1)
    assert torch.equal(val_a.frames, val_b.frames) and torch.equal(val_a.labels, val_b.labels)
    assert len(train_a) + len(val_a) == 80
    counts = torch.bincount(data.labels, minlength=4)
    assert torch.bincount(val_a.labels, minlength=4).tolist() == [round(0.25 * int(c)) for c in counts]
    _, val_c = validation_split(data, 0.25, seed=2)
    assert not torch.equal(val_a.labels, val_c.labels) or not torch.equal(val_a.frames, val_c.frames)
    with pytest.raises(ValueError, match=r"--val-fraction 0.01 of 80 training samples leaves 0 for validation"):
        validation_split(data, 0.01, seed=1)


def test_early_stopping_best_checkpoint_and_validation(tmp_path, monkeypatch):
    """The run stops once the validation accuracy has not improved for `patience` epochs; best/
    holds the weights of the best epoch; a resume of the stopped run trains no more."""
    from stdl_edge.stdl import trainer

    accs = iter([0.5, 0.7, 0.6, 0.65, 0.9, 0.9])  # validation accuracy per epoch: best at epoch 2
    real = trainer.evaluate

    def evaluate(model, heads, boundaries, data, device, batch_size=128):
        acc, exits, rates = real(model, heads, boundaries, data, device, batch_size)
        return (next(accs), exits, rates) if not heads and len(data) == 24 else (acc, exits, rates)

    monkeypatch.setattr(trainer, "evaluate", evaluate)
    cfg = replace(CFG, epochs=6, val_fraction=0.25, patience=2, save_best=True)
    seen = []
    result = train(cfg, tmp_path / "run", data=_data(), on_epoch=lambda m: seen.append(m.epoch))
    assert seen == [1, 2, 3, 4] and [h["val_acc"] for h in result.history] == [0.5, 0.7, 0.6, 0.65]
    best = RunFolder(tmp_path / "run" / "best").record()["stdl"]["results"]
    assert best["epochs"] == 2 and best["best_epoch"] == 2 and best["val_acc"] == 0.7
    # best/ is the run folder of epoch 2: its weights are what the checkpoint held then, not the last ones
    last, _ = _weights(tmp_path / "run")
    kept, _ = _weights(tmp_path / "run" / "best")
    assert any(not torch.equal(last[k], kept[k]) for k in last)
    assert load_run(tmp_path / "run" / "best").model.num_classes == 4
    again = train(cfg, tmp_path / "run", data=_data(), resume=True, on_epoch=lambda m: seen.append(m.epoch))
    assert seen == [1, 2, 3, 4] and len(again.history) == 4


def test_default_run_has_no_validation_best_or_tensorboard(tmp_path):
    result = train(replace(CFG, epochs=1), tmp_path / "run", data=_data())
    assert result.history[0]["val_acc"] is None
    assert not (tmp_path / "run" / "best").exists() and not (tmp_path / "run" / "tensorboard").exists()


def test_tensorboard_missing_is_one_line_before_training(tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else real(name, *a))
    with pytest.raises(ValueError, match=r"--tensorboard needs the tensorboard package: "
                                         r"pip install 'stdl-edge\[tensorboard\]'"):
        train(replace(CFG, tensorboard=True), tmp_path / "run", data=_data())
    assert not (tmp_path / "run" / "checkpoint").exists()


def test_tensorboard_logs_every_epoch(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    train(replace(CFG, tensorboard=True), tmp_path / "run", data=_data())
    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    events.Reload()
    tags = events.Tags()["scalars"]
    for tag in ("loss/train", "loss/subnet0", "loss/subnet2", "accuracy/test", "accuracy/exit0", "lr"):
        assert tag in tags, tag
    assert any(t.startswith("firing_rate/") for t in tags)
    assert [e.step for e in events.Scalars("loss/train")] == [1, 2]


def test_plots_have_labelled_axes_per_subnetwork_losses_and_firing_rates(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    from stdl_edge.stdl import trainer

    drawn = {}

    def savefig(fig, fname, **kwargs):
        ax = fig.axes[0]
        drawn[ax.get_title()] = (ax.get_xlabel(), ax.get_ylabel(), [line.get_label() for line in ax.get_lines()])

    monkeypatch.setattr(Figure, "savefig", savefig)
    result = train(replace(CFG, epochs=1), tmp_path / "run", data=_data())
    trainer._plot(tmp_path / "run", result.history)
    assert all(x == "epoch" and y for x, y, _ in drawn.values())
    assert drawn["training loss"][2] == ["total (sum over subnetworks)", "subnetwork 0", "subnetwork 1", "subnetwork 2"]
    assert drawn["firing rate on the test set"][2] == list(result.history[0]["firing_rate"])
    assert drawn["firing rate on the test set"][1] == "spikes per neuron per step"


def test_cli_neuron_and_convenience_flags(tmp_path, monkeypatch):
    """The flags reach TrainConfig (the trainer itself is faked: the options are what is checked)."""
    from stdl_edge.stdl import trainer

    got = {}

    def fake_train(config, out, **kwargs):
        got["config"] = config
        raise SystemExit(0)

    monkeypatch.setattr(trainer, "train", fake_train)
    (tmp_path / "net.json").write_text(json.dumps([{"kind": "flatten"}, {"kind": "readout"}]))
    result = CliRunner().invoke(app, [
        "train", "--out", str(tmp_path / "run"), "--model", str(tmp_path / "net.json"), "--dt-us", "2000",
        "--threshold", "0.5", "--tau-voltage-us", "8000", "--current-decay", "0.5", "--surrogate", "atan",
        "--surrogate-width", "0.5", "--reset", "subtract", "--batchnorm", "--val-fraction", "0.2",
        "--patience", "3", "--save-best"])
    assert result.exit_code == 0, result.output
    c = got["config"]
    assert c.model == "custom" and [s["kind"] for s in c.layers] == ["flatten", "readout"]
    assert c.neuron(c.dt_us).to_dict() == {"current_decay": 0.5, "voltage_decay": 0.25, "threshold": 0.5,
                                           "surrogate": "atan", "surrogate_width": 0.5, "detach_reset": True,
                                           "reset": "subtract"}
    assert (c.batchnorm, c.val_fraction, c.patience, c.save_best, c.tensorboard) == (True, 0.2, 3, True, False)
    bad = CliRunner().invoke(app, ["train", "--out", str(tmp_path / "r2"), "--reset", "soft"])
    assert isinstance(bad.exception, ValueError)  # main() maps it to exit 2 with the line
    assert str(bad.exception) == "--reset 'soft' is unknown; use one of zero, subtract"


def test_tensorboard_shows_each_epoch_once_after_a_resume(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from stdl_edge.stdl.trainer import EpochMetrics, TensorBoardLog

    def metrics(epoch: int, loss: float) -> EpochMetrics:
        return EpochMetrics(epoch, 1e-3, loss, 0.5, 0.5, [], [loss], {"total_bytes": 0, "activation_bytes": 0},
                            {"0.conv": 0.1}, 1.0)

    for attempt in (((1, 3.0), (2, 2.0), (3, 1.5)), ((2, 2.5), (3, 1.0))):  # killed after 3, resumed from 1
        board = TensorBoardLog(tmp_path)
        for epoch, loss in attempt:
            board.log(metrics(epoch, loss))
        board.close()
    events = EventAccumulator(str(tmp_path))
    events.Reload()
    assert [(e.step, e.value) for e in events.Scalars("loss/train")] == [(1, 3.0), (2, 2.5), (3, 1.0)]
