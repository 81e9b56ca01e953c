"""How a frame enters a netx network: the input modes of the ``loihi-sim`` and ``lava`` devices.

Three modes, as a Lava user drives a ``netx.hdf5.Network``:

* ``spike``: unary spikes into the first synapse (``net.inp``); any non-zero pixel is a spike.
* ``graded``: the frame's integer values as graded-spike payloads. Into the first synapse, which
  multiplies its weights by them (netx's ``Network(input_message_bits=N)``; a file that records
  none gets :data:`GRADED_INPUT_BITS`); or, when the first layer is an SDNN input layer (Lava's
  ``Delta``), into its neurons' ``a_in``, which netx's ``Input`` block leaves unconnected.
* ``bias``: the frame written into the bias of a CUBA input layer's neurons every step,
  ``bias_mant = weight * x + bias`` (lava-dl's ``Input`` block; its ``inp`` port is unconnected,
  so this is the only way in).

:func:`resolve_input_mode` picks the default from the file's first block and refuses a mode the
network cannot take; :func:`encode_input` turns a float frame into the integers that mode sends.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from stdl_edge.formats.netx import CUBA_MODEL, INPUT, NetxNetwork

SPIKE, GRADED, BIAS = "spike", "graded", "bias"
INPUT_MODES = (SPIKE, GRADED, BIAS)
#: payload bits of graded input when the file records none (8-bit pixels, counts up to 255)
GRADED_INPUT_BITS = 8
#: a Delta input layer shifts its input left by 12 bits into int32: |x| must stay below this
DELTA_INPUT_LIMIT = 1 << 19


def resolve_input_mode(net: NetxNetwork, mode: str | None) -> tuple[str, NetxNetwork]:
    """``(mode, network)``: the mode a device runs (``mode``, or the file's default when None),
    and the network it runs, with :data:`GRADED_INPUT_BITS` at its input for ``graded`` when the
    file records 0. Raises ValueError naming the mode and the fix when the network cannot take it."""
    if mode is not None and mode not in INPUT_MODES:
        raise ValueError(f"input_mode={mode!r} is unknown; use one of {', '.join(INPUT_MODES)}")
    first = net.layers[0]
    if first.kind == INPUT:
        takes = BIAS if first.neuron.model == CUBA_MODEL else GRADED
        if mode not in (None, takes):
            what = "a CUBA input layer (netx's Input block), fed through its neurons' bias" if takes == BIAS \
                else "an SDNN input layer (Lava's Delta), fed through its neurons' a_in"
            raise ValueError(f"{net.path.name}: input_mode={mode!r} does not fit: the first block is {what}; "
                             f"use input_mode={takes!r} (or skip_layers=1 to feed the next layer)")
        return takes, net
    if mode == BIAS:
        raise ValueError(f"{net.path.name}: input_mode='bias' needs an input layer with a neuron (netx's Input "
                         f"block), and the first block is {first.kind}; use 'spike' or 'graded'")
    if mode is None:
        return (GRADED if net.input_message_bits > 0 else SPIKE), net
    if mode == GRADED and net.input_message_bits == 0:
        if net.bits_from_file:
            raise ValueError(f"{net.path.name}: input_mode='graded' into {first.name} (layer/{first.index}): netx "
                             "takes its input's message bits from the layer before it in the file, which sends "
                             "unary spikes (messageBits 0); use input_mode='spike', or skip fewer layers")
        return GRADED, net.with_input_message_bits(GRADED_INPUT_BITS)
    return mode, net


def encode_input(net: NetxNetwork, mode: str, frame: np.ndarray, device: str, spike_dtype: Any = np.int64
                 ) -> np.ndarray:
    """The integers ``mode`` sends for ``frame (B, *input_shape)``: 0/1 spikes (``spike_dtype``;
    loihi-sim takes bool), or int64 whole numbers (payloads, bias values) checked to fit;
    ValueError names the value and the fix."""
    if mode == SPIKE:
        spikes = frame != 0
        return spikes if spike_dtype is bool else spikes.astype(spike_dtype)
    if frame.size and not np.all(frame == np.round(frame)):
        raise ValueError(f"{device}: input_mode={mode!r} needs whole numbers in the frame (payloads or bias "
                         "values); bin with counts, or use input_mode='spike'")
    x = frame.astype(np.int64)
    if mode == GRADED and x.size:
        first = net.layers[0]
        limit = DELTA_INPUT_LIMIT if first.kind == INPUT else 1 << first.input_message_bits
        peak = int(np.abs(x).max())
        if peak >= limit:
            raise ValueError(f"{device}: graded input value {peak} does not fit the input's "
                             f"{int(np.log2(limit))}-bit payload; scale the frames down or raise "
                             "input_message_bits")
    return x
