"""docs/api.md: every entry point of stdl_edge.api has an example there, and the examples run."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import pytest

import stdl_edge.api

DOC = Path(__file__).resolve().parents[1] / "docs" / "api.md"


def python_blocks(text: str) -> list[str]:
    """The code of every fenced ```python block, in order."""
    return re.findall(r"^```python\n(.*?)^```$", text, flags=re.S | re.M)


def test_every_entry_point_has_an_example():
    code = "\n".join(python_blocks(DOC.read_text()))
    for name in stdl_edge.api.__all__:
        assert f"stdl_edge.{name}(" in code, f"docs/api.md has no example of stdl_edge.{name}"


@pytest.mark.slow
def test_the_examples_run_in_order(tmp_path, monkeypatch, capsys):
    pytest.importorskip("onnxruntime")
    monkeypatch.chdir(tmp_path)  # nothing may land in the working directory
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    namespace: dict = {"__name__": "docs_api"}
    blocks = python_blocks(DOC.read_text())
    assert len(blocks) >= 6
    for i, block in enumerate(blocks):
        exec(compile(block, f"{DOC}:block{i + 1}", "exec"), namespace)  # noqa: S102
    out = capsys.readouterr().out
    assert "test accuracy" in out and "model.onnx" in out and "model.net" in out and "raster.png" in out
    assert namespace["comparison"].ok
    assert not namespace["folder"].exists()  # the last block removes what the examples wrote
    assert [p.name for p in tmp_path.iterdir()] == ["tmp"]
