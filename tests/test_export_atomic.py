"""Exports are atomic as a whole: a kill at any write leaves the old export or nothing, never a mix.

Every file write ends in an ``os.replace`` (:func:`stdl_edge.io.atomic_path`), and the folder is
renamed into place by two more (:func:`stdl_edge.io.atomic_dir`); the test kills the export
(a ``BaseException``, as KeyboardInterrupt or SystemExit would) at each of them in turn.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from stdl_edge.artifact import StreamInfo
from stdl_edge.devices import open_device
from stdl_edge.exporters import netx as netx_export
from stdl_edge.exporters import nir as nir_export
from stdl_edge.exporters import onnx as onnx_export
from stdl_edge.formats.export_record import ExportError
from stdl_edge.models import ModelConfig, build_model
from stdl_edge.stdl import build_aux_head, save_run

STREAM = StreamInfo(sensor_size=(8, 8, 2), dt_us=1000, num_steps=4, class_names=("a", "b", "c"))
#: format -> (exporter, the record written last, the device that opens the folder or None)
FORMATS = {"onnx": (onnx_export, "manifest.json", "onnxruntime"), "netx": (netx_export, "export.json", "loihi-sim"),
           "nir": (nir_export, "manifest.json", None)}


class Killed(BaseException):
    """Stands for the process being stopped mid-export."""


def _run(folder: Path, seed: int, cuts: list[int]) -> Path:
    net = build_model(ModelConfig(input_shape=(2, 8, 8), num_classes=3, width=0.25), seed=seed).eval()
    edges = [0, *cuts, len(net.layers)]
    heads = [build_aux_head(net, b, 1).eval() for b in cuts]
    return save_run(folder, net, STREAM, list(zip(edges, edges[1:])), heads, {"method": "stdl"})


def _snapshot(folder: Path) -> dict[str, bytes] | None:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())} if folder.exists() else None


def _kill_after(monkeypatch, n: int) -> list[int]:
    """Make the ``n``-th ``os.replace`` from now raise :class:`Killed`; returns the call counter."""
    real, calls = os.replace, [0]

    def replace(src, dst):
        calls[0] += 1
        if calls[0] == n:
            raise Killed(f"killed at write {n}")
        return real(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    return calls


def _traced_once(monkeypatch) -> None:
    """Trace each ONNX step graph once: the killing loop re-exports one run many times."""
    real, cache = onnx_export.trace_step, {}

    def trace_step(net, start, stop, *args):
        key = (tuple(net.layer_names()), start, stop)
        if key not in cache:
            cache[key] = real(net, start, stop, *args)
        proto = type(cache[key])()
        proto.CopyFrom(cache[key])
        return proto

    monkeypatch.setattr(onnx_export, "trace_step", trace_step)


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_a_killed_export_leaves_the_old_export_or_nothing(tmp_path, monkeypatch, fmt):
    exporter, record, _ = FORMATS[fmt]
    patches = pytest.MonkeyPatch()
    _traced_once(patches)
    run = _run(tmp_path / "run", 0, [2])
    out = tmp_path / "out"
    fresh = _kill_after(monkeypatch, 0)
    exporter.export(run, out)  # into nothing: every file, the record, one folder rename
    monkeypatch.undo()
    over = _kill_after(monkeypatch, 0)
    exporter.export(run, out)  # over an export: the old folder is moved aside first
    monkeypatch.undo()
    assert over[0] == fresh[0] + 1 >= 4
    old = _snapshot(out)
    for with_old, writes in ((True, over[0]), (False, fresh[0])):
        for n in range(1, writes + 1):
            if not with_old:
                shutil.rmtree(out, ignore_errors=True)
            _kill_after(monkeypatch, n)
            with pytest.raises(Killed):
                exporter.export(run, out)
            monkeypatch.undo()
            assert _snapshot(out) == (old if with_old else None), f"killed at write {n} of {writes}"
            assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary left
    exporter.export(run, out)
    patches.undo()
    assert json.loads(_snapshot(out)[record])["export_id"] != json.loads(old[record])["export_id"]


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_a_re_export_over_another_models_folder_keeps_no_file_of_it(tmp_path, fmt):
    exporter, record, device = FORMATS[fmt]
    other = _run(tmp_path / "other", 1, [2, 4])  # K = 3: subnet2 and aux1 exist only here
    run = _run(tmp_path / "run", 0, [2])
    out = tmp_path / "out"
    exporter.export(other, out)
    names = {p.name for p in exporter.export(run, out)}
    assert {p.name for p in out.iterdir()} == names
    assert not any("subnet2" in n or "aux1" in n for n in names)
    if device is not None:
        open_device(device, out)


def test_an_export_refuses_to_replace_a_folder_that_is_no_export(tmp_path):
    run = _run(tmp_path / "run", 0, [2])
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("keep me")
    for exporter, _, _ in FORMATS.values():
        with pytest.raises(ExportError, match="holding no export"):
            exporter.export(run, tmp_path / "mine")
    assert (tmp_path / "mine" / "thesis.tex").read_text() == "keep me"
