"""``stdl-edge data``: summary table, per-class counts, preview PNG, --list and errors."""

from __future__ import annotations

import struct

import pytest
from typer.testing import CliRunner

from stdl_edge.cli import app

runner = CliRunner()


def _png_size(path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG file"
    return struct.unpack(">II", head[16:24])


def test_data_command_prints_summary_and_writes_preview(tmp_path):
    out = tmp_path / "shapes.png"
    result = runner.invoke(app, ["data", "shapes-dvs", "--limit", "40", "--out", str(out)], terminal_width=200)
    assert result.exit_code == 0, result.output
    text = result.output
    assert "samples" in text and "40 (train 32, test 8)" in text
    assert "4: right, left, up, down" in text and "(32, 32, 2)" in text
    assert "events / sample" in text and "mean" in text and "ON / OFF" in text
    assert "8 steps x 25000 us" in text and "200 ms" in text and "shapes-dvs-v1" in text
    rows = [[c.strip() for c in line.split("│")[1:-1]] for line in text.splitlines() if line.count("│") == 5]
    for name in ("right", "left", "up", "down"):
        assert [name, "8", "2"] in [r[:3] for r in rows]  # class, train, test
    width, height = _png_size(out)
    assert width > 500 and height > 300  # 4 classes x 8 steps of small images


def test_data_command_defaults_preview_to_the_cache_folder(tmp_path, monkeypatch):
    from stdl_edge.data import cache_dir

    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["data", "shapes-dvs", "--limit", "40"])
    assert result.exit_code == 0, result.output
    preview = cache_dir() / "shapes-dvs-preview.png"
    assert _png_size(preview)[0] > 500 and f"preview: {preview}" in result.output
    assert list(tmp_path.iterdir()) == []  # nothing in the working directory


def test_data_command_writes_the_preview_into_an_out_folder(tmp_path):
    folder = tmp_path / "previews"  # no suffix: a folder, created
    result = runner.invoke(app, ["data", "shapes-dvs", "--limit", "40", "--out", str(folder)])
    assert result.exit_code == 0, result.output
    assert _png_size(folder / "shapes-dvs-preview.png")[0] > 500
    assert f"preview: {folder / 'shapes-dvs-preview.png'}" in result.output


def test_data_list_names_the_data_sets():
    result = runner.invoke(app, ["data", "--list"], terminal_width=200)
    assert result.exit_code == 0
    assert "digits-dvs" in result.output and "shapes-dvs" in result.output


@pytest.mark.parametrize("args, match", [
    (["data", "no-such-set"], "unknown data set 'no-such-set'"),
    (["data"], "give a data set name"),
    (["data", "shapes-dvs", "--limit", "1"], "limit=1"),
])
def test_data_command_errors_are_clear(args, match, tmp_path):
    result = runner.invoke(app, args + ["--out", str(tmp_path / "x.png")])
    assert result.exit_code != 0
    assert isinstance(result.exception, ValueError) and match in str(result.exception)
    assert not (tmp_path / "x.png").exists()


def _nmnist_tree(root, per_digit: dict[str, int]) -> None:
    """NMNIST/Train and NMNIST/Test in tonic's layout, one random recording per file."""
    import numpy as np

    from stdl_edge.events import make_events
    from stdl_edge.sources import write_events

    rng = np.random.default_rng(5)
    for folder, count in per_digit.items():
        for digit in range(10):
            for k in range(count):
                n = 80
                ev = make_events(rng.integers(0, 34, n), rng.integers(0, 34, n), np.sort(rng.integers(0, 60_000, n)),
                                 rng.integers(0, 2, n))
                path = root / "NMNIST" / folder / str(digit) / f"{k:05d}.bin"
                path.parent.mkdir(parents=True, exist_ok=True)
                write_events(path, ev, (34, 34), format="nmnist")


def test_data_list_says_where_each_set_is_looked_for_and_whether_it_is_there(tmp_path):
    pytest.importorskip("tonic")
    _nmnist_tree(tmp_path, {"Train": 1, "Test": 1})
    result = runner.invoke(app, ["data", "--list", "--data-root", str(tmp_path)], terminal_width=200)
    assert result.exit_code == 0, result.output
    rows = {line.split("│")[1].strip(): line for line in result.output.splitlines() if line.count("│") > 5}
    assert {"nmnist", "dvs-gesture", "cifar10-dvs", "ncaltech101", "asl-dvs", "dvs-lip", "poker-dvs"} <= set(rows)
    assert "yes" in rows["nmnist"] and "tonic" in rows["nmnist"] and "no" in rows["dvs-gesture"]
    assert f"nmnist: {tmp_path / 'NMNIST' / 'Test'}, {tmp_path / 'NMNIST' / 'Train'}" in result.output
    assert f"cifar10-dvs: {tmp_path / 'CIFAR10DVS'}" in result.output


def test_data_on_a_missing_tonic_set_is_one_line_naming_the_folder(tmp_path):
    pytest.importorskip("tonic")
    result = runner.invoke(app, ["data", "dvs-gesture", "--data-root", str(tmp_path)])
    assert result.exit_code != 0 and isinstance(result.exception, FileNotFoundError)
    message = str(result.exception)
    assert str(tmp_path / "DVSGesture" / "ibmGestureTrain") in message and "https://" in message


def test_nmnist_trains_exports_verifies_and_runs_from_a_tree_in_the_real_layout(tmp_path):
    """The issue's "done when": train --dataset nmnist --data-root DIR, then export, verify and run."""
    pytest.importorskip("tonic")
    pytest.importorskip("onnxruntime")
    import json

    _nmnist_tree(tmp_path / "data", {"Train": 2, "Test": 1})
    run = tmp_path / "run"
    result = runner.invoke(app, ["train", "--dataset", "nmnist", "--data-root", str(tmp_path / "data"), "--epochs", "1",
                                 "--steps", "4", "--subnets", "2", "--batch-size", "8", "--device", "cpu",
                                 "--out", str(run)], terminal_width=200)
    assert result.exit_code == 0, result.output
    record = json.loads((run / "model.json").read_text())
    assert record["stdl"]["train"]["data_root"] == str(tmp_path / "data")
    assert len(record["stream"]["class_names"]) == 10
    result = runner.invoke(app, ["verify", str(run), "--devices", "torch,onnxruntime", "--samples", "10"],
                           terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "devices (10 samples)" in result.output and "verify passed" in result.output  # the 10 Test recordings
    out = tmp_path / "pred.jsonl"
    result = runner.invoke(app, ["run", str(run), "--events", "nmnist:test", "--data-root", str(tmp_path / "data"),
                                 "--device", "onnxruntime", "--out", str(out)], terminal_width=200)
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == 11 and "summary" in lines[-1]  # one prediction per Test recording


def test_train_on_a_folder_with_skip_bad_counts_the_corrupt_file(tmp_path):
    import numpy as np

    from stdl_edge.events import make_events
    from stdl_edge.sources import write_events

    rng = np.random.default_rng(2)
    for cls in ("a", "b"):
        for k in range(5):
            n = 100
            ev = make_events(rng.integers(0, 16, n), rng.integers(0, 16, n), np.sort(rng.integers(0, 50_000, n)),
                             rng.integers(0, 2, n))
            (tmp_path / "rec" / cls).mkdir(parents=True, exist_ok=True)
            write_events(tmp_path / "rec" / cls / f"{k}.csv", ev, (16, 16))
    (tmp_path / "rec" / "b" / "bad.csv").write_text("t,x,y,p\n1,2,3,oops\n")
    args = ["train", "--dataset", f"folder:{tmp_path / 'rec'}", "--epochs", "1", "--steps", "4", "--subnets", "2",
            "--sensor-size", "16,16", "--device", "cpu", "--out", str(tmp_path / "run")]
    result = runner.invoke(app, args, terminal_width=200)
    assert result.exit_code != 0 and "bad.csv" in str(result.exception) and "--skip-bad" in str(result.exception)
    result = runner.invoke(app, args + ["--skip-bad"], terminal_width=300)
    assert result.exit_code == 0, result.output
    assert "skipped 1 unreadable recording(s), first" in result.output and "bad.csv" in result.output
    result = runner.invoke(app, ["verify", str(tmp_path / "run"), "--devices", "torch,torch", "--samples", "2"],
                           terminal_width=200)
    assert result.exit_code == 0, result.output
