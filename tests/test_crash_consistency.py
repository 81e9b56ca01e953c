"""Training killed at every file write resumes to exactly the uninterrupted result (or refuses
in one line); a damaged checkpoint or run folder is refused in one line naming the file."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from stdl_edge.artifact import RunFolder, StreamInfo
from stdl_edge.data import TensorData
from stdl_edge.io import TEMP_FILE, atomic_path, load_tensors
from stdl_edge.stdl import trainer
from stdl_edge.stdl.trainer import TrainConfig, train

H = 8
STREAM = StreamInfo((H, H, 2), 1000, 2, class_names=("a", "b", "c"))
CFG = TrainConfig(method="stdl", subnets=3, epochs=2, batch_size=8, lr=5e-3, seed=1)
#: what one epoch writes, in order (checkpoint, metrics, run artifact, plots)
EPOCH_WRITES = ["state.safetensors", "state.json", "metrics.jsonl", "aux.safetensors", "model.safetensors",
                "model.json", "loss.png", "accuracy.png", "memory.png", "firing_rate.png"]


def _random(n: int, seed: int) -> TensorData:
    g = torch.Generator().manual_seed(seed)
    return TensorData((torch.rand(n, STREAM.num_steps, 2, H, H, generator=g) < 0.2).to(torch.uint8),
                      torch.randint(0, 3, (n,), generator=g))


def _data():
    return _random(16, 0), _random(8, 1), STREAM


class Killed(BaseException):
    """Stands for SIGKILL: nothing may catch it (it is no Exception)."""


class Renames:
    """``os.replace`` of the atomic writer, counting its renames; with ``kill_at=n`` the n-th
    (from 0) raises :class:`Killed` instead, leaving its temporary file behind as a real kill does."""

    def __init__(self, kill_at: int | None = None) -> None:
        self.kill_at, self.done, self._replace = kill_at, [], os.replace

    def __call__(self, src, dst) -> None:
        if not TEMP_FILE.match(Path(src).name):
            return self._replace(src, dst)
        if len(self.done) == self.kill_at:
            Path(src).with_name(f".{Path(dst).name}.killed00.tmp").write_bytes(Path(src).read_bytes())
            raise Killed(dst)
        self._replace(src, dst)
        self.done.append(Path(dst).name)


def _final_state(folder: Path) -> dict:
    """Everything the run folder holds, less the wall-clock times."""
    metrics = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    record = json.loads((folder / "checkpoint" / "state.json").read_text())
    for m in metrics + record["history"]:
        m.pop("epoch_time_s")
    return {"model": load_tensors(folder / "model.safetensors"), "aux": load_tensors(folder / "aux.safetensors"),
            "checkpoint": load_tensors(folder / "checkpoint" / "state.safetensors"),
            "model.json": json.loads((folder / "model.json").read_text()), "metrics": metrics, "state.json": record}


def _same(a, b) -> bool:
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return torch.equal(a, b) if isinstance(a, torch.Tensor) else a == b


def _quick_plots(out: Path, history: list) -> None:
    """Stands for trainer._plot (90 % of a tiny run's time): the same files, atomic writes, in order."""
    for name in EPOCH_WRITES[-4:]:
        with atomic_path(out / name) as tmp:
            tmp.write_text(f"{len(history)} epochs")


@pytest.fixture(autouse=True)
def quick_plots(monkeypatch):
    real = trainer._plot
    monkeypatch.setattr(trainer, "_plot", _quick_plots)
    return real


def test_a_kill_at_any_write_resumes_to_the_uninterrupted_result(tmp_path, monkeypatch):
    counter = Renames()
    monkeypatch.setattr(os, "replace", counter)
    train(CFG, tmp_path / "full", data=_data())
    assert counter.done == EPOCH_WRITES * CFG.epochs
    expected = _final_state(tmp_path / "full")

    outcomes = []
    for n in range(len(counter.done)):
        folder = tmp_path / f"kill{n}"
        monkeypatch.setattr(os, "replace", Renames(kill_at=n))
        with pytest.raises(Killed):
            train(CFG, folder, data=_data())
        monkeypatch.setattr(os, "replace", counter._replace)
        if RunFolder(folder).is_run():  # a torn run folder is refused, never loaded mixed
            try:
                RunFolder(folder).load()
            except ValueError as e:
                assert "torn by a kill" in str(e) and "--resume" in str(e) and "\n" not in str(e)
        try:
            train(CFG, folder, data=_data(), resume=True)
            outcomes.append("resumed")
        except FileNotFoundError as e:  # killed before the first checkpoint: nothing to resume
            assert f"{folder / 'checkpoint'} has no checkpoint; start without --resume" in str(e)
            train(CFG, folder, data=_data())
            outcomes.append("refused")
        assert _same(_final_state(folder), expected), f"kill before rename {n} ({counter.done[n]})"
        assert not [p for p in folder.rglob("*") if TEMP_FILE.match(p.name)], "temporary files left behind"
    assert outcomes == ["refused"] + ["resumed"] * (len(counter.done) - 1)


def test_the_checkpoint_of_the_last_epoch_rewrites_a_stale_run_artifact(tmp_path, monkeypatch, quick_plots):
    """The reported bug: checkpoint at the last epoch, model of the epoch before, resume kept it."""
    monkeypatch.setattr(trainer, "_plot", quick_plots)  # the real plots, this once
    killer = Renames(kill_at=len(EPOCH_WRITES) + 2)  # after epoch 2's checkpoint
    monkeypatch.setattr(os, "replace", killer)
    with pytest.raises(Killed):
        train(CFG, tmp_path / "run", data=_data())
    monkeypatch.setattr(os, "replace", killer._replace)
    monkeypatch.setattr(trainer, "_plot", _quick_plots)
    assert killer.done == EPOCH_WRITES + EPOCH_WRITES[:2]  # the real plots write what _quick_plots stands for
    assert json.loads((tmp_path / "run" / "model.json").read_text())["stdl"]["results"]["epochs"] == 1
    train(CFG, tmp_path / "run", data=_data(), resume=True)
    train(CFG, tmp_path / "full", data=_data())
    assert _same(_final_state(tmp_path / "run"), _final_state(tmp_path / "full"))
    assert json.loads((tmp_path / "run" / "model.json").read_text())["stdl"]["results"]["epochs"] == 2


class Stop(Exception):
    pass


def _stop(metrics) -> None:
    raise Stop


@pytest.fixture
def run(tmp_path):
    """A run folder of CFG interrupted after its first epoch."""
    with pytest.raises(Stop):
        train(CFG, tmp_path / "run", data=_data(), on_epoch=_stop)
    return tmp_path / "run"


def _resume_error(folder: Path) -> str:
    with pytest.raises(ValueError) as info:
        train(CFG, folder, data=_data(), resume=True)
    message = str(info.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize("cut", [0, 7, 100, -100])
def test_a_truncated_checkpoint_is_refused_in_one_line(run, cut):
    tensors = run / "checkpoint" / "state.safetensors"
    data = tensors.read_bytes()
    tensors.write_bytes(data[:cut] if cut >= 0 else data[:cut])
    message = _resume_error(run)
    assert f"{tensors} is not a readable safetensors file" in message and "corrupt or truncated" in message
    assert "cannot be resumed: train into a new --out" in message


@pytest.mark.parametrize("content", ["{\"format_version\": 1, \"epo", "", "[1, 2]", "\x00\xff"])
def test_a_corrupt_state_json_is_refused_in_one_line(run, content):
    record = run / "checkpoint" / "state.json"
    record.write_bytes(content.encode("latin-1"))
    message = _resume_error(run)
    assert str(record) in message and "corrupt" in message
    assert message.endswith(f"delete {record} to resume from {run / 'checkpoint' / 'state.safetensors'}, or train "
                            "into a new --out")


def test_a_state_json_of_another_write_is_refused_and_the_fix_works(run):
    record = run / "checkpoint" / "state.json"
    data = json.loads(record.read_text())
    record.write_text(json.dumps({**data, "epoch": 5}))
    message = _resume_error(run)
    assert "inconsistent" in message and f"delete {record} to resume from" in message
    record.unlink()
    train(CFG, run, data=_data(), resume=True)
    assert json.loads(record.read_text())["epoch"] == 2


def test_a_checkpoint_record_of_the_wrong_shape_is_refused_in_one_line(run):
    from safetensors.torch import save

    tensors = run / "checkpoint" / "state.safetensors"
    record = json.loads((run / "checkpoint" / "state.json").read_text())
    del record["plan"]
    tensors.write_bytes(save(load_tensors(tensors), metadata={"epoch": "1", "record": json.dumps(record)}))
    (run / "checkpoint" / "state.json").unlink()
    message = _resume_error(run)
    assert f"{tensors} does not fit" in message and "no 'plan' entry" in message


def test_weights_from_another_write_are_refused(run, tmp_path):
    with pytest.raises(Stop):
        train(CFG.replace(seed=2), tmp_path / "other", data=_data(), on_epoch=_stop)
    (run / "aux.safetensors").write_bytes((tmp_path / "other" / "aux.safetensors").read_bytes())
    with pytest.raises(ValueError, match="aux.safetensors is not the file its record lists") as info:
        RunFolder(run).load()
    assert f"`stdl-edge train --resume --out {run}` rewrites the run" in str(info.value)
    assert "\n" not in str(info.value)
    train(CFG, run, data=_data(), resume=True)  # the fix the message gives
    RunFolder(run).load()


def test_a_checkpoint_of_the_earlier_layout_resumes_when_its_files_agree(run, tmp_path):
    """Before the record moved into the tensors' metadata: the JSON alone, the epochs compared."""
    from safetensors.torch import save

    tensors = run / "checkpoint" / "state.safetensors"
    tensors.write_bytes(save(load_tensors(tensors), metadata={"epoch": "1"}))
    train(CFG, run, data=_data(), resume=True)
    train(CFG, tmp_path / "full", data=_data())
    assert _same(_final_state(run), _final_state(tmp_path / "full"))

    tensors.write_bytes(save(load_tensors(tensors), metadata={"epoch": "3"}))
    message = _resume_error(run)
    assert "inconsistent (tensors of epoch 3, record of epoch 2)" in message and "cannot be resumed" in message
