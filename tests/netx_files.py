"""netx files for the loihi-sim tests, written with h5py in netx's layout (as slayer's
``export_hdf5`` writes them): :func:`write_net` by kind."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

#: the kinds :func:`write_net` writes, and each one's input shape
KINDS = {"dense_rec": (6,), "delays": (8,), "dense_rec_delays": (4,), "sdnn": (1, 4, 4), "sdnn_rec": (5,),
         "input": (6,), "conv": (2, 8, 8)}


def _str(g: h5py.Group, key: str, value: str) -> None:
    g.create_dataset(key, (1,), "S10", [value.encode("ascii")])


def _cuba(g: h5py.Group, vth: int = 60, i_decay: int = 1024, v_decay: int = 512) -> None:
    n = g.create_group("neuron")
    _str(n, "type", "CUBA")
    for key, val in (("iDecay", i_decay), ("vDecay", v_decay), ("vThMant", vth), ("refDelay", 1)):
        n.create_dataset(key, data=np.int64(val))
    n.create_dataset("gradedSpike", data=np.bool_(False))


def _sdnn(g: h5py.Group, vth: int = 2, sigma_output: bool = False) -> None:
    n = g.create_group("neuron")
    _str(n, "type", "SDNN")
    n.create_dataset("vThMant", data=np.int64(vth))
    if sigma_output:
        n.create_dataset("sigma_output", data=np.bool_(True))


def _layer(f: h5py.File, i: int, kind: str, shape: tuple[int, ...], neuron: str | None = "cuba", **data) -> h5py.Group:
    g = f.create_group(f"layer/{i}")
    _str(g, "type", kind)
    g.create_dataset("shape", data=np.array(shape))
    for key, value in data.items():
        g.create_dataset(key, data=value)
    if neuron == "cuba":
        _cuba(g)
    elif neuron is not None:
        _sdnn(g, sigma_output=neuron == "sigma")
    return g


def _weights(rng: np.random.Generator, shape: tuple[int, ...], low: int = -60, high: int = 100) -> np.ndarray:
    return (rng.integers(low, high, shape) * 2).astype(np.float32)  # even: netx shifts them back exactly


def write_net(path: Path, kind: str) -> Path:
    rng = np.random.default_rng(11)
    with h5py.File(path, "w") as f:
        if kind == "dense_rec":
            _layer(f, 0, "dense_rec", (5,), weight=_weights(rng, (5, 6)), weight_rec=_weights(rng, (5, 5), -90, 60),
                   bias=rng.integers(0, 30, 5))
            _layer(f, 1, "dense", (3,), weight=_weights(rng, (3, 5)))
        elif kind == "delays":  # a 1-D delay per output, a 2-D per synapse (with one above 62), one per input
            _layer(f, 0, "dense", (6,), weight=_weights(rng, (6, 8)), delay=np.array([0, 1, 3, 2, 0, 1]))
            d2 = rng.integers(0, 3, (4, 6))
            d2[0, 0] = 70  # netx clamps to 62 (and warns)
            _layer(f, 1, "dense", (4,), weight=_weights(rng, (4, 6), 0, 120), delay=d2)
            _layer(f, 2, "dense", (3,), weight=_weights(rng, (3, 4), 0, 120), delay=np.array([2, 0, 1, 1]))
        elif kind == "dense_rec_delays":  # what lava-dl 0.6 does with both (see docs/loihi.md)
            _layer(f, 0, "dense_rec", (4,), weight=_weights(rng, (4, 4), 0, 60), weight_rec=_weights(rng, (4, 4), -8, 8),
                   delay=np.array([1, 0, 2, 1]))
        elif kind == "sdnn":  # Delta input, SigmaDelta conv and dense (graded spikes), Sigma readout
            _layer(f, 0, "input", (1, 4, 4), neuron="sdnn")
            _layer(f, 1, "conv", (2, 2, 2), neuron="sdnn", weight=_weights(rng, (2, 1, 3, 3), -40, 80),
                   stride=np.array([2, 2]), padding=np.array([1, 1]), dilation=np.array([1, 1]), groups=1,
                   bias=rng.integers(-2, 3, 2))
            _layer(f, 2, "flatten", (8,), neuron=None)
            _layer(f, 3, "dense", (4,), neuron="sdnn", weight=_weights(rng, (4, 8), -40, 80))
            _layer(f, 4, "dense", (2,), neuron="sigma", weight=_weights(rng, (2, 4)))
        elif kind == "sdnn_rec":  # SigmaDelta dense_rec: its own graded spikes through weight_rec
            _layer(f, 0, "dense_rec", (4,), neuron="sdnn", weight=_weights(rng, (4, 5), -40, 80),
                   weight_rec=_weights(rng, (4, 4), -20, 20))
            _layer(f, 1, "dense", (2,), neuron="sigma", weight=_weights(rng, (2, 4)))
        elif kind == "conv":  # CUBA convolutions (no input block), flatten, dense
            _layer(f, 0, "input", (2, 8, 8), neuron=None)
            _layer(f, 1, "conv", (3, 4, 4), weight=_weights(rng, (3, 2, 3, 3), -30, 90), stride=np.array([2, 2]),
                   padding=np.array([1, 1]), dilation=np.array([1, 1]), groups=1, bias=rng.integers(0, 20, 3))
            _layer(f, 2, "conv", (4, 2, 2), weight=_weights(rng, (4, 3, 3, 3), -30, 90), stride=np.array([2, 2]),
                   padding=np.array([1, 1]), dilation=np.array([1, 1]), groups=1)
            _layer(f, 3, "flatten", (16,), neuron=None)
            _layer(f, 4, "dense", (3,), weight=_weights(rng, (3, 16), -30, 90))
        elif kind == "input":  # a CUBA input block (bias-fed), then dense layers
            g = _layer(f, 0, "input", (6,))
            g.create_dataset("weight", data=np.int64(8))
            g.create_dataset("bias", data=np.int64(3))
            _layer(f, 1, "dense", (5,), weight=_weights(rng, (5, 6), -20, 100))
            _layer(f, 2, "dense", (3,), weight=_weights(rng, (3, 5), -20, 100))
        else:
            raise ValueError(kind)
    return path
