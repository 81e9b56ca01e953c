"""Training on several processes: 2 gloo ranks on CPU, spawned by the tests and always killed.

Run as a script, this file is a rank that fails: ``python test_distributed.py die|hang N ARGS...``
runs ``stdl-edge ARGS...``, and rank 1 exits (code 3, no cleanup, like a crash) or sleeps
for an hour when it starts its ``N``-th batch.
"""

from __future__ import annotations

import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

BATCH = 8
ARGS = ["train", "--dataset", "digits-dvs", "--limit", "40", "--steps", "4", "--batch-size", str(BATCH),
        "--epochs", "2", "--subnets", "2", "--lr", "5e-3", "--seed", "3", "--device", "cpu", "--dist-timeout", "60"]
#: every launch ends well within this (a few seconds of work each; imports dominate)
LAUNCH_TIMEOUT_S = 240


def _config():
    from stdl_edge.stdl.trainer import TrainConfig

    return TrainConfig(dataset="digits-dvs", limit=40, steps=4, batch_size=BATCH, epochs=2, subnets=2, lr=5e-3,
                       seed=3, device="cpu")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _launch(command: list[str], world: int = 2, until: int | None = None) -> list[subprocess.CompletedProcess]:
    """Run ``command`` as ``world`` ranks (the environment torchrun gives), until all have ended
    (or rank ``until`` has: the others are killed then); kill them all on the way out."""
    env = dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_free_port()), WORLD_SIZE=str(world))
    procs = [subprocess.Popen(command, env=dict(env, RANK=str(r), LOCAL_RANK=str(r)), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for r in range(world)]
    try:
        if until is not None:
            procs[until].wait(timeout=LAUNCH_TIMEOUT_S)
            for p in procs:
                p.kill()
        outs = [p.communicate(timeout=LAUNCH_TIMEOUT_S) for p in procs]
        return [subprocess.CompletedProcess(command, p.returncode, o, e) for p, (o, e) in zip(procs, outs)]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "stdl_edge", *ARGS, *args]


def _state(folder: Path) -> dict[str, torch.Tensor]:
    from stdl_edge.io import load_tensors

    tensors = load_tensors(folder / "checkpoint" / "state.safetensors")
    return {k: v for k, v in tensors.items() if not k.startswith("rng.")}


@pytest.fixture(scope="module")
def single(tmp_path_factory) -> Path:
    """One process, the global batch of 8: what both kinds of parallel training must reproduce."""
    from stdl_edge.stdl.trainer import train

    out = tmp_path_factory.mktemp("single") / "run"
    train(_config(), out)
    return out


@pytest.fixture(scope="module")
def data_parallel(tmp_path_factory) -> Path:
    """2-way data parallel through torchrun itself: 2 x 4 samples per optimizer step."""
    out = tmp_path_factory.mktemp("dp") / "run"
    torchrun = Path(sys.executable).with_name("torchrun")
    proc = subprocess.run([str(torchrun), "--standalone", "--nproc-per-node", "2", "-m", "stdl_edge", *ARGS,
                           "--out", str(out)], capture_output=True, text=True, timeout=LAUNCH_TIMEOUT_S)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def test_data_parallel_equals_one_process_with_the_same_global_batch(single, data_parallel):
    """Tolerance: each rank's loss is the mean over its 4 samples and the gradients are combined
    as 1/2 (g_0 + g_1), so they equal the 8-sample gradient up to float32 summation order
    (~1e-7 relative); after 2 epochs of Adam the weights agree within 1e-5 (measured: ~1e-7)."""
    import json

    a, b = _state(single), _state(data_parallel)
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=1e-4, atol=1e-5, msg=name)
    history = [json.loads(line) for line in (data_parallel / "metrics.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in history] == [1, 2]  # rank 0 wrote each epoch once
    assert len(history[-1]["rank_memory"]) == 2 and history[-1]["memory"]["activation_bytes"] > 0
    assert (data_parallel / "model.safetensors").exists() and (data_parallel / "loss.png").exists()


def test_the_pipeline_equals_one_process_bit_for_bit_across_a_dead_rank_and_resume(single, tmp_path):
    """Stage 0 trains subnetwork 0 and sends its outputs, stage 1 trains subnetwork 1 on them.
    Stage 1 dies at the start of epoch 2: stage 0 stops with one line instead of waiting; the
    resumed run ends with exactly the weights of one uninterrupted process."""
    from stdl_edge.stdl.trainer import load_split

    out = tmp_path / "run"
    per_epoch = math.ceil(len(load_split(_config(), "train")[0]) / BATCH)
    ranks = _launch([sys.executable, __file__, "die", str(per_epoch + 1), *ARGS, "--pipeline", "2", "--out",
                     str(out)])
    assert ranks[1].returncode == 3  # died
    assert ranks[0].returncode == 2, ranks[0].stderr[-3000:]
    message = " ".join(ranks[0].stderr.split())
    assert message.startswith("error: rank 0: lost another rank while trying to "), message
    assert message.endswith("then continue with --resume from the last checkpoint") and "Traceback" not in message
    assert ranks[1].stdout == ""  # rank 0 reports

    ranks = _launch(_cli("--pipeline", "2", "--resume", "--out", str(out)))
    assert [r.returncode for r in ranks] == [0, 0], ranks[0].stderr[-3000:] + ranks[1].stderr[-3000:]
    a, b = _state(single), _state(out)
    assert a.keys() == b.keys()
    # weights, BatchNorm statistics and Adam moments of both stages
    assert [name for name in a if not torch.equal(a[name], b[name])] == []


def test_a_hung_rank_stops_the_others_at_the_timeout(tmp_path):
    """Rank 1 stops answering in its first batch: rank 0 waits ``--dist-timeout`` seconds in the
    gradient all-reduce, then stops with one line (20 s: well above the ranks' start-up skew)."""
    ranks = _launch([sys.executable, __file__, "hang", "1", *ARGS, "--dist-timeout", "20", "--out",
                     str(tmp_path / "run")], until=0)
    assert ranks[0].returncode == 2, ranks[0].stderr[-3000:]
    message = " ".join(ranks[0].stderr.split())
    assert message.startswith("error: rank 0: lost another rank while trying to all-reduce the gradients (a rank "
                              "exited, or none answered within 20 s: "), message


def test_group_training_chains_to_the_whole_model():
    """The engine contract the pipeline stands on: a group ending in an auxiliary head keeps its
    outputs, and the next group trained on them gives exactly the gradients of the whole."""
    from stdl_edge.models import ModelConfig, build_model
    from stdl_edge.stdl.auxiliary import make_plan
    from stdl_edge.stdl.engine import train_batch

    model = build_model(ModelConfig(arch="dvs-cnn", input_shape=(2, 12, 12), num_classes=4), seed=1)
    plan = make_plan(model, "stdl", 3, None, None, 6, seed=1)
    frames = (torch.rand(3, 6, 2, 12, 12, generator=torch.Generator().manual_seed(0)) < 0.2).float()
    labels = torch.tensor([0, 1, 2, 3, 0, 1])
    modules = [model, *plan.heads]

    def grads() -> list[torch.Tensor]:
        out = [p.grad.clone() for m in modules for p in m.parameters()]
        for m in modules:
            m.zero_grad(set_to_none=True)
        return out

    whole = train_batch(model, plan.heads, plan.boundaries, frames, labels)
    expected = grads()
    first = train_batch(model, plan.heads[:2], plan.boundaries[:2], frames, labels, keep_outputs=True)
    assert first.outputs.shape == (3, 6, *model.layers[plan.boundaries[1][1] - 1].out_shape)
    second = train_batch(model, plan.heads[2:], plan.boundaries[2:], first.outputs, labels)
    assert second.outputs is None
    assert all(torch.equal(a, b) for a, b in zip(grads(), expected))
    assert first.subnet_loss + second.subnet_loss == whole.subnet_loss
    assert torch.equal(second.logits, whole.logits)


def test_replica_shards_are_distributed_sampler_shards_of_the_same_order():
    """Replica r trains ``index[r::R]`` of each global batch: over an epoch, what
    ``DistributedSampler(shuffle=False)`` gives rank r of the single-process order, batch by batch."""
    from torch.utils.data import DistributedSampler

    from stdl_edge.stdl.distributed import Layout, Ranks
    from stdl_edge.stdl.trainer import epoch_order

    order = epoch_order(40, seed=3, epoch=1)
    for rank in range(2):
        ranks = Ranks(Layout(rank, 2), torch.device("cpu"), 1.0)
        ours = torch.cat([ranks.shard(order[b:b + BATCH]) for b in range(0, 40, BATCH)])
        sampler = list(DistributedSampler(order.tolist(), num_replicas=2, rank=rank, shuffle=False))
        assert ours.tolist() == [int(order[i]) for i in sampler]


def test_balanced_groups_minimise_the_largest_stage():
    from stdl_edge.stdl.pipeline import balance_groups

    assert balance_groups([4, 1, 1, 4], 2) == [(0, 2), (2, 4)]
    assert balance_groups([1, 1, 1, 6], 2) == [(0, 3), (3, 4)]
    assert balance_groups([5, 1, 1], 3) == [(0, 1), (1, 2), (2, 3)]
    with pytest.raises(ValueError, match=r"^--pipeline 3 needs between 1 and 2 stages"):
        balance_groups([1, 1], 3)


def test_pipeline_options_are_checked_in_one_line(tmp_path):
    from stdl_edge.stdl.trainer import TrainConfig, train

    with pytest.raises(ValueError, match=r"^--pipeline 2 needs at least 2 subnetworks, one per stage; this run has 1"):
        TrainConfig(method="bptt", pipeline=2)
    with pytest.raises(ValueError, match=r"^--pipeline 2 needs a multiple of 2 processes; launch with torchrun "
                                         r"--nproc-per-node 2"):
        train(_config().replace(pipeline=2), tmp_path / "run")
    with pytest.raises(ValueError, match=r"^--dist-timeout-s 0 must be a finite number > 0"):
        TrainConfig(dist_timeout_s=0)


def test_plan_shows_the_pipeline_stages():
    from typer.testing import CliRunner

    from stdl_edge.cli import app

    result = CliRunner().invoke(app, ["plan", "--input", "2,12,12", "--classes", "4", "--batch", "4",
                                      "--subnets", "3", "--pipeline", "2"], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "--pipeline 2: stages balanced by memory" in result.output
    rows = [line for line in result.output.splitlines() if "│ " in line and " .. " in line]
    assert len(rows) == 2 and "readout" in rows[-1]


def _fail_at(how: str, batch: int) -> None:
    """Rank 1 exits (``die``, as a crashed process would) or stops answering (``hang``) at the
    start of its ``batch``-th batch."""
    import time

    from stdl_edge.stdl import trainer

    train_batch, calls = trainer.train_batch, []

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == batch and os.environ.get("RANK") == "1":
            if how == "die":
                os._exit(3)
            time.sleep(3600)
        return train_batch(*args, **kwargs)

    trainer.train_batch = failing


if __name__ == "__main__":
    _fail_at(sys.argv[1], int(sys.argv[2]))
    from stdl_edge.cli import main

    sys.argv = ["stdl-edge", *sys.argv[3:]]
    main()
