"""Whole-window runs (``run_frames``: what classify and ``stdl-edge run`` use) against stepping on
the torch device: synapses once per chunk of steps with time folded into the batch, the same
spikes, counts and predictions as one step at a time, readouts equal to float rounding.
(loihi-sim's window path is bit-exact: ``test_loihi_sim_netx_features.py`` and the Lava tests.)"""

from __future__ import annotations

import numpy as np
import pytest

from stdl_edge.artifact import StreamInfo
from stdl_edge.devices.base import Device, classify
from stdl_edge.devices.base import CHUNK_STEPS
from stdl_edge.devices.torch_device import TorchDevice
from stdl_edge.models import ModelConfig, build_model


@pytest.mark.parametrize("arch,batchnorm", [("dvs-cnn", False), ("dvs-cnn", True), ("if-cnn", False), ("dvs-crnn", False),
                                            ("resnet", None)])
def test_torch_window_run_equals_stepping(rng, arch, batchnorm):
    shape = (2, 16, 16)
    cfg = ModelConfig(arch=arch, input_shape=shape, num_classes=4, batchnorm=batchnorm,
                      width=0.25 if arch == "resnet" else 1.0)
    model = build_model(cfg, seed=1)
    model.eval()
    stream = StreamInfo((16, 16, 2), 1000, 8)
    stepped, windowed = TorchDevice(model, stream), TorchDevice(model, stream)
    steps = CHUNK_STEPS + 9  # two chunks, the state carried across
    frames = (rng.random((steps, 3, *shape)) < 0.2).astype(np.float32)
    expected = Device.run_frames(stepped, frames)
    got = windowed.run_frames(frames)
    assert got.shape == expected.shape == (steps, 3, 4)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    a, b = stepped.stats(), windowed.stats()
    assert a.steps == b.steps == steps and a.spikes.sum() > 0
    np.testing.assert_array_equal(a.spikes, b.spikes)
    np.testing.assert_array_equal(classify(windowed, frames).argmax(1), expected.mean(0).argmax(1))


def test_window_frames_of_the_wrong_shape_are_named():
    model = build_model(ModelConfig(input_shape=(2, 8, 8), num_classes=3), seed=0)
    dev = TorchDevice(model, StreamInfo((8, 8, 2), 1000, 8))
    with pytest.raises(ValueError, match=r"frames have shape \(4, 2, 8, 8\), expected \(T, B, 2, 8, 8\)"):
        dev.run_frames(np.zeros((4, 2, 8, 8), np.float32))
    with pytest.raises(ValueError, match=r"expected \(2, 2, 8, 8\)"):
        dev.run_frames(np.zeros((4, 2, 2, 8, 9), np.float32))
