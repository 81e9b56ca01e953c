"""Artifact formats: StreamInfo's one flat encoding (HDF5 attributes and ONNX metadata), legacy encodings."""

from __future__ import annotations

import doctest
import json

import h5py
import numpy as np
import pytest

import stdl_edge.artifact
import stdl_edge.loihi
from stdl_edge.artifact import StreamInfo

STREAM = StreamInfo(sensor_size=(4, 4, 2), dt_us=2000, num_steps=5, class_names=("a", "b", "c"))


@pytest.mark.parametrize("module", [stdl_edge.loihi, stdl_edge.artifact])
def test_docstring_examples(module):
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0


# ----------------------------------------------------------------------------- StreamInfo attrs
def _onnx_strings(attrs: dict) -> dict[str, str]:
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in attrs.items()}


@pytest.mark.parametrize("stream", [STREAM, StreamInfo((4, 4, 2), None, 1), StreamInfo((8, 2, 1), 7, 3, "count")])
def test_stream_attrs_round_trip_through_hdf5_and_onnx_strings(tmp_path, stream):
    with h5py.File(tmp_path / "a.h5", "w") as f:
        f.attrs.update(stream.to_attrs())
    with h5py.File(tmp_path / "a.h5") as f:
        assert StreamInfo.from_attrs(dict(f.attrs.items())) == stream
    assert StreamInfo.from_attrs(_onnx_strings(stream.to_attrs())) == stream
    assert StreamInfo.from_dict(json.loads(json.dumps(stream.to_dict()))) == stream


def test_legacy_hdf5_and_onnx_stream_encodings_still_load(tmp_path):
    """What the exporters wrote before to_attrs: HDF5 int / bytes arrays, ONNX strings."""
    with h5py.File(tmp_path / "old.h5", "w") as f:
        f.attrs.update({"dt_us": np.int64(2000), "sensor_size": np.array([4, 4, 2], dtype=np.int64),
                        "num_steps": np.int64(5), "bin_mode": "binary",
                        "class_names": np.array([b"a", b"b", b"c"])})
        g = f.create_group("empty")
        g.attrs.update({"dt_us": 2000, "sensor_size": np.array([4, 4, 2]), "num_steps": 5, "bin_mode": "binary",
                        "class_names": np.array([], dtype="S1")})
    with h5py.File(tmp_path / "old.h5") as f:
        assert StreamInfo.from_attrs(dict(f.attrs.items())) == STREAM
        assert StreamInfo.from_attrs(dict(f["empty"].attrs.items())).class_names == ()
    old_onnx = {"dt_us": "2000", "sensor_size": "[4, 4, 2]", "bin_mode": "binary", "num_steps": "5",
                "class_names": '["a", "b", "c"]'}
    assert StreamInfo.from_attrs(old_onnx) == STREAM
    with pytest.raises(ValueError, match="no stream recorded"):
        StreamInfo.from_attrs({"dt_us": 5})


def test_no_time_step_means_no_binning():
    s = StreamInfo((4, 4, 2), None, 1)
    assert "dt_us" not in s.to_attrs()
    with pytest.raises(ValueError, match="records no time step"):
        s.bin_spec
