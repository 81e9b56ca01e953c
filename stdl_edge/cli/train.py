"""``stdl-edge train`` and ``stdl-edge plan``: the STDL engine from the command line."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from .app import app, console
from .options import int_tuple


def _ints(text: str | None, what: str) -> list[int] | None:
    if text is None or text.strip() == "":
        return None
    try:
        return [int(v) for v in text.replace(" ", "").split(",") if v != ""]
    except ValueError:
        raise ValueError(f"{what} {text!r} must be comma-separated integers, e.g. 2,34,34") from None


def read_config_file(path: Path) -> dict[str, Any]:
    """Training options from a JSON or TOML file (keys as the flags: ``batch_size`` or ``batch-size``),
    top level or in a ``[train]`` table; a ``[neuron]`` table holds the neuron's options
    (``threshold``, ``voltage_decay``, ...) and a ``[model]`` table the network's ``layers``."""
    if not path.exists():
        raise FileNotFoundError(f"--config {path} does not exist")
    text = path.read_text()
    if path.suffix.lower() == ".toml":
        import tomllib

        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise ValueError(f"--config {path} is not valid TOML ({e})") from None
    else:
        import json

        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"--config {path} is not valid JSON ({e.msg} at line {e.lineno})") from None
    if not isinstance(data, dict):
        raise ValueError(f"--config {path} must hold a table/object of options")
    top = data
    data = dict(data.get("train", data))  # allow a [train] table
    for name in ("neuron", "model"):  # [neuron] and [model] tables at the top level
        sub = top.get(name)
        if isinstance(sub, dict):
            data.pop(name, None)
            if name == "model":
                unknown = sorted(set(sub) - {"layers"})
                if unknown:
                    raise ValueError(f"--config {path}: [model] has unknown key(s) {', '.join(unknown)}; it takes "
                                     "layers (a list of layer tables); give a model by name with model = ...")
            data.update(sub)
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def _mib(nbytes: float) -> str:
    return f"{nbytes / 2 ** 20:.2f}"


@app.command()
def train(
    dataset: Optional[str] = typer.Option(None, help="data set: digits-dvs, shapes-dvs, nmnist, dvs-gesture, ..., "
                                          "folder:PATH or a plug-in's (stdl-edge data --list; default digits-dvs)"),
    model: Optional[str] = typer.Option(None, help="model: dvs-cnn, dvs-crnn (recurrent), vgg11, resnet, if-cnn, a "
                                                   "plug-in, or a .toml/.json file of layers (default dvs-cnn)"),
    method: Optional[str] = typer.Option(None, help="stdl | bptt | sltt | local (default stdl)"),
    subnets: Optional[int] = typer.Option(None, help="K subnetworks (default 4 for stdl/local, 1 otherwise)"),
    splits: Optional[str] = typer.Option(None, help="explicit split points: first layer index of subnets 1.., e.g. 1,2,3"),
    epochs: Optional[int] = typer.Option(None, help="training epochs (default 6)"),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="samples per optimizer step (default 32)"),
    lr: Optional[float] = typer.Option(None, help="Adam learning rate, peak of the cosine schedule (default 3e-3)"),
    seed: Optional[int] = typer.Option(None, help="seed of weights, heads and data order (default 0)"),
    steps: Optional[int] = typer.Option(None, help="time steps T per sample (default: the data set's)"),
    budget_mb: Optional[float] = typer.Option(None, "--budget-mb",
                                              help="per-step memory budget (saved tensors + carried state) of subnet + aux head, MiB (default: 2 x the largest subnet)"),
    mse_weight: Optional[float] = typer.Option(None, "--mse-weight", help="weight of the MSE(logits, one-hot) term"),
    online: Optional[bool] = typer.Option(None, "--online/--per-batch", help="optimizer step per time step"),
    device: Optional[str] = typer.Option(None, help="auto | cpu | cuda[:N] (default auto)"),
    bf16: Optional[bool] = typer.Option(None, "--bf16/--fp32", help="bfloat16 autocast"),
    limit: Optional[int] = typer.Option(None, help="use a class-balanced subset of about this many samples (80/20 train/test)"),
    width: Optional[float] = typer.Option(None, help="channel multiplier of the model (default 1.0)"),
    threads: Optional[int] = typer.Option(None, help="torch CPU threads (default 1: fastest for these small ops)"),
    data_root: Optional[str] = typer.Option(None, "--data-root", help="folder holding the tonic data sets "
                                            "(default $STDL_EDGE_DATA_ROOT; see stdl-edge data --list)"),
    sensor_size: Optional[str] = typer.Option(None, "--sensor-size", help="W,H of a folder data set whose files "
                                              "do not say their sensor"),
    slice_by: Optional[str] = typer.Option(None, "--slice-by", help="cut recordings into windows by 'time' or "
                                           "'events' (with --slice-length)"),
    slice_length: Optional[int] = typer.Option(None, "--slice-length", help="window length: microseconds "
                                               "(--slice-by time) or events"),
    slice_overlap: Optional[int] = typer.Option(None, "--slice-overlap", help="overlap of consecutive windows, "
                                                "same unit (default 0)"),
    augment: Optional[str] = typer.Option(None, "--augment", help="tonic transforms for training samples, e.g. "
                                          "'RandomFlipPolarity p=0.5; SpatialJitter var_x=1 var_y=1'"),
    loader: Optional[str] = typer.Option(None, "--loader", help="auto | memory | stream | cache (default auto: "
                                         "memory for the bundled sets, cache of binned frames for others)"),
    workers: Optional[int] = typer.Option(None, "--workers", help="DataLoader worker processes (stream, cache)"),
    skip_bad: Optional[bool] = typer.Option(None, "--skip-bad", help="leave unreadable recordings out (counted) "
                                            "instead of stopping"),
    dt_us: Optional[int] = typer.Option(None, "--dt-us", help="time step in microseconds (default: the data set's)"),
    threshold: Optional[float] = typer.Option(None, help="neuron threshold theta (default 1)", rich_help_panel="Neuron"),
    current_decay: Optional[float] = typer.Option(None, "--current-decay", rich_help_panel="Neuron",
                                                  help="current decay a_u per step, 0..1 (default 1: no synaptic memory)"),
    voltage_decay: Optional[float] = typer.Option(None, "--voltage-decay", rich_help_panel="Neuron",
                                                  help="voltage decay a_v per step, 0..1 (default 0.5)"),
    tau_current_us: Optional[float] = typer.Option(None, "--tau-current-us", rich_help_panel="Neuron",
                                                   help="current time constant in us: a_u = dt / tau"),
    tau_voltage_us: Optional[float] = typer.Option(None, "--tau-voltage-us", rich_help_panel="Neuron",
                                                   help="voltage (membrane) time constant in us: a_v = dt / tau"),
    surrogate: Optional[str] = typer.Option(None, help="surrogate gradient: triangle | atan (default triangle)",
                                            rich_help_panel="Neuron"),
    surrogate_width: Optional[float] = typer.Option(None, "--surrogate-width", rich_help_panel="Neuron",
                                                    help="surrogate width, in units of the threshold (default 1)"),
    reset: Optional[str] = typer.Option(None, rich_help_panel="Neuron",
                                        help="after a spike: zero (Loihi's CUBA, default) | subtract (ONNX only)"),
    batchnorm: Optional[bool] = typer.Option(None, "--batchnorm/--no-batchnorm", rich_help_panel="Neuron",
                                             help="BatchNorm after each synapse (default: the model's)"),
    val_fraction: Optional[float] = typer.Option(None, "--val-fraction", help="hold out this stratified fraction of "
                                                 "the training set to pick the best epoch and stop early"),
    patience: Optional[int] = typer.Option(None, help="stop when the validation (else test) accuracy has not "
                                           "improved for this many epochs"),
    save_best: Optional[bool] = typer.Option(None, "--save-best/--no-save-best",
                                             help="keep the best epoch's model in OUT/best (a run folder)"),
    tensorboard: Optional[bool] = typer.Option(None, "--tensorboard/--no-tensorboard",
                                               help="log every epoch to OUT/tensorboard (needs tensorboard)"),
    pipeline: Optional[int] = typer.Option(None, help="under torchrun: G pipeline stages per data-parallel replica, "
                                                      "each training a group of subnetworks (default 1)"),
    dist_timeout: Optional[float] = typer.Option(
        None, "--dist-timeout", help="under torchrun: seconds to wait for the other ranks (default 300)"),
    temporal_credit: Optional[str] = typer.Option(
        None, "--temporal-credit", help="none | trace | window: credit to earlier steps in the decoupled methods "
        "(default window for stdl, none for local/sltt; see docs/stdl.md)"),
    window: Optional[int] = typer.Option(None, help="steps per backward window of --temporal-credit window (default 2)"),
    config: Optional[Path] = typer.Option(None, help="JSON/TOML file with the same keys; flags override it"),
    out: Path = typer.Option(..., help="run folder to write (model, aux heads, checkpoint, metrics, plots)"),
    resume: bool = typer.Option(False, help="continue the interrupted run in --out from its last checkpoint"),
) -> None:
    """Train a spiking network with STDL (or a baseline) and write a run folder."""
    from stdl_edge.stdl.config import with_model_file
    from stdl_edge.stdl.distributed import world_from_env
    from stdl_edge.stdl.memory import mb
    from stdl_edge.stdl.trainer import TrainConfig, train as run_training

    options: dict[str, Any] = read_config_file(config) if config is not None else {}
    flags = {"dataset": dataset, "model": model, "method": method, "subnets": subnets,
             "splits": _ints(splits, "--splits"), "epochs": epochs, "batch_size": batch_size, "lr": lr,
             "seed": seed, "steps": steps, "budget_mb": budget_mb, "mse_weight": mse_weight, "online": online,
             "device": device, "bf16": bf16, "limit": limit, "width": width, "threads": threads, "dt_us": dt_us,
             "threshold": threshold, "current_decay": current_decay, "voltage_decay": voltage_decay,
             "tau_current_us": tau_current_us, "tau_voltage_us": tau_voltage_us, "surrogate": surrogate,
             "surrogate_width": surrogate_width, "reset": reset, "batchnorm": batchnorm,
             "val_fraction": val_fraction, "patience": patience, "save_best": save_best, "tensorboard": tensorboard,
             "data_root": data_root, "sensor_size": int_tuple(sensor_size, "--sensor-size", 2, "W,H, e.g. 346,260"),
             "slice_by": slice_by, "slice_length": slice_length, "slice_overlap": slice_overlap, "augment": augment,
             "loader": loader, "workers": workers, "skip_bad": skip_bad,
             "pipeline": pipeline, "dist_timeout_s": dist_timeout,
             "temporal_credit": temporal_credit, "window": window}
    given = {k: v for k, v in flags.items() if v is not None}
    if "model" in given:
        options.pop("layers", None)  # --model replaces a [model] table of --config
    options.update(given)
    cfg = TrainConfig.from_dict(with_model_file(options))
    console.quiet = world_from_env()[0] != 0  # under torchrun, rank 0 reports (errors: every rank)
    if cfg.skip_bad:
        from stdl_edge.data import load_dataset

        for split in ("train", "test"):
            skipped = getattr(load_dataset(cfg.dataset, split, **cfg.data_options()).samples, "skipped", [])
            if skipped:
                console.print(f"[yellow]{split}: skipped {len(skipped)} unreadable recording(s), first {skipped[0][0]}: "
                              f"{skipped[0][1]}[/]", soft_wrap=True, highlight=False)

    console.print(f"[bold]train[/] {cfg.model} on {cfg.dataset} with [bold]{cfg.method}[/] "
                  f"(K={cfg.subnets}, T={cfg.steps or 'default'}, batch {cfg.batch_size}, lr {cfg.lr}, "
                  f"seed {cfg.seed}) -> {out}")
    header = (f"{'epoch':>5} {'loss':>8} {'train':>7} {'test':>7}  {'exits':<24} {'act MiB':>8} "
              f"{'total MiB':>9} {'time s':>7}")
    printed_header = False

    with Progress(TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeRemainingColumn(), console=console, transient=True) as bar:
        task = bar.add_task("epoch 1", total=None)

        def progress(epoch: int, batch: int, batches: int) -> None:
            bar.update(task, description=f"epoch {epoch + 1}/{cfg.epochs}", completed=batch, total=batches)

        def on_epoch(m: Any) -> None:
            nonlocal printed_header
            if not printed_header:
                bar.console.print(header)
                printed_header = True
            exits = " ".join(f"{a * 100:.1f}" for a in m.exit_acc) or "-"
            bar.console.print(f"{m.epoch:>5} {m.train_loss:>8.4f} {m.train_acc * 100:>6.1f}% {m.test_acc * 100:>6.1f}%  "
                              f"{exits:<24} {_mib(m.memory['activation_bytes']):>8} "
                              f"{_mib(m.memory['total_bytes']):>9} {m.epoch_time_s:>7.1f}")

        result = run_training(cfg, out, resume=resume, on_epoch=on_epoch, progress=progress)

    summary = Table(title=f"{cfg.method} on {cfg.dataset}: {out}")
    summary.add_column("exit")
    summary.add_column("layers")
    summary.add_column("test accuracy", justify="right")
    for k, sub in enumerate(result.plan["subnets"]):
        is_last = k == len(result.plan["subnets"]) - 1
        acc = result.test_acc if is_last else result.exit_acc[k]
        summary.add_row("full model" if is_last else f"aux head {k}",
                        f"layers 0:{sub['stop']}" + ("" if is_last else
                                                      f" + head ({len(sub['aux_source'])} copied layers)"),
                        f"{acc * 100:.2f}%")
    console.print(summary)
    mem = result.memory
    console.print(f"peak training memory: activations {mb(mem.get('activation_bytes', 0)):.2f} MiB (saved tensors, "
                  f"exact), total {mb(mem.get('total_bytes', 0)):.2f} MiB incl. parameters, gradients and Adam"
                  + (f"; CUDA max allocated {mb(mem['cuda_max_allocated']):.2f} MiB"
                     if mem.get("cuda_max_allocated") else ""))
    if result.history and len(result.history) < cfg.epochs:
        console.print(f"stopped early after epoch {len(result.history)}: no better accuracy for {cfg.patience} epochs")
    console.print(f"wrote {out}/model.json, model.safetensors, aux.safetensors, metrics.jsonl, "
                  "loss.png, accuracy.png, memory.png, firing_rate.png, checkpoint/"
                  + (", best/" if cfg.save_best else "") + (", tensorboard/" if cfg.tensorboard else ""))


@app.command()
def plan(
    model: str = typer.Option("dvs-cnn", help="model: a zoo name, a plug-in, or a .toml/.json file of layers"),
    method: str = typer.Option("stdl", help="stdl | local | sltt | bptt"),
    subnets: Optional[int] = typer.Option(None, help="K subnetworks (default 4 for stdl/local, 1 otherwise)"),
    splits: Optional[str] = typer.Option(None, help="explicit split points, e.g. 1,2,3"),
    budget_mb: Optional[float] = typer.Option(None, "--budget-mb", help="memory budget, MiB"),
    batch: int = typer.Option(32, help="batch size the memory is measured at"),
    input: str = typer.Option("2,34,34", "--input", help="input shape C,H,W of one event frame"),
    classes: int = typer.Option(10, help="number of classes"),
    width: float = typer.Option(1.0, help="channel multiplier"),
    pipeline: int = typer.Option(1, help="also group the subnetworks into this many pipeline stages (ranks)"),
    balance: str = typer.Option("memory", help="what the stages balance: memory (as training does) or time "
                                                "(measured here)"),
) -> None:
    """Show how a model is partitioned, which auxiliary layers each subnetwork gets, and their memory."""
    from stdl_edge.models import ModelConfig, build_model, resolve_model
    from stdl_edge.stdl.auxiliary import make_plan
    from stdl_edge.stdl.config import with_model_file

    shape = _ints(input, "--input")
    if shape is None or len(shape) != 3:
        raise ValueError(f"--input {input!r} must be C,H,W, e.g. 2,34,34")
    split_list = _ints(splits, "--splits")
    if subnets is None:
        subnets = len(split_list) + 1 if split_list else (4 if method in ("stdl", "local") else 1)
    chosen = with_model_file({"model": model})
    base = ModelConfig(input_shape=tuple(shape), num_classes=classes, width=width)
    net = build_model(resolve_model(chosen["model"], base, chosen.get("layers", ())), seed=0)
    p = make_plan(net, method, subnets, split_list, budget_mb, batch)
    table = Table(title=f"{method} plan of {model} {tuple(shape)}, batch {batch}: one time step, "
                        f"budget {_mib(p.budget_bytes)} MiB")
    for col, justify in (("k", "right"), ("subnetwork", "left"), ("auxiliary head", "left"),
                         ("act", "right"), ("+aux act", "right"), ("+aux step", "right"), ("+aux train", "right"), ("fits", "center"),
                         ("why", "left")):
        table.add_column(col, justify=justify)
    names = net.layer_names()
    for s in p.subnets:
        last = s.index == len(p.subnets) - 1
        if last:
            aux = "model readout"
        else:
            tail = s.aux_layers[len(s.aux_source):]
            reduce = (" + pool" if any(n.endswith("avgpool") for n in tail)
                      else " + flatten" if any(n.endswith("flatten") for n in tail) else "")
            aux = (("copies " + " ".join(names[i] for i in s.aux_source)) if s.aux_source else "") + \
                  reduce + " + readout"
            aux = aux.lstrip(" +") if not s.aux_source else aux
        table.add_row(str(s.index), " ".join(s.layers), aux, _mib(s.subnet.activation_bytes),
                      _mib(s.total.activation_bytes), _mib(s.total.step_bytes), _mib(s.total.training_bytes),
                      "[green]yes[/]" if s.fits else "[red]no[/]", s.why())
    console.print(table)
    console.print("MiB for one decoupled step: 'act' = tensors saved for backward (exact), "
                  "'step' = act + the neuron state carried to the next step, "
                  "'train' = act + 4 x parameter bytes (weights, gradients, Adam moments). "
                  f"Aux depth d: the largest whose 'step' fits {_mib(p.budget_bytes)} MiB; its layers are AugLocal's "
                  "offsets round(D/d*i), i = 1..d, among the D spiking layers that follow (1 = the next one).")
    if pipeline > 1:
        _print_stages(net, p, pipeline, balance)


def _print_stages(net: Any, p: Any, stages: int, balance: str) -> None:
    """The --pipeline table: which subnetworks each stage trains and what it costs."""
    from stdl_edge.stdl.pipeline import plan_stages

    names = net.layer_names()
    table = Table(title=f"--pipeline {stages}: stages balanced by {balance} (one rank each)")
    timed = balance == "time"
    for col, justify in (("stage", "right"), ("subnetworks", "left"), ("layers", "left"),
                         ("train MiB", "right"), ("ms / step", "right"))[:5 if timed else 4]:
        table.add_column(col, justify=justify)
    for s in plan_stages(net, p, stages, balance):
        row = [str(s.index), f"{s.first}..{s.stop - 1}", f"{names[s.start]} .. {names[s.end - 1]}",
               _mib(s.training_bytes)]
        table.add_row(*row, *([f"{s.step_seconds * 1e3:.1f}"] if timed else []))
    console.print(table)
    console.print("A stage receives the previous stage's detached outputs, one (T, B, ...) tensor per batch; "
                  "training (torchrun ... train --pipeline N) groups by memory.")
