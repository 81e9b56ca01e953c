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
