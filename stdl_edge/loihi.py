"""Loihi 2 fixed-point constants: the one place the quantizer, the netx format and loihi-sim read them.

Values are those of Lava's bit-accurate CUBA models (``lava.proc.lif.models.AbstractPyLifModelFixed``:
``decay_shift``, ``decay_unity``, ``act_shift``, ``vth_shift``, ``uv_bitwidth``) and of lava-dl's
netx and slayer conventions (``bias_exp = 6``, ``w_scale = 1 << 6``, the readout threshold)::

    u = trunc0(u * (DECAY_UNITY - iDecay) / DECAY_UNITY) + (a << ACT_SHIFT)     # wraps at UV_BITS
    v = trunc0(v * (DECAY_UNITY - vDecay) / DECAY_UNITY) + u + (bias << BIAS_EXP)  # saturates
    s = v > (vThMant << VTH_SHIFT)

>>> DECAY_UNITY, MAX_UV, BASE_SCALE
(4096, 8388608, 64.0)
"""

from __future__ import annotations

#: 12-bit decays: ``iDecay``/``vDecay`` are fractions of ``DECAY_UNITY`` per step
DECAY_SHIFT = 12
DECAY_UNITY = 1 << DECAY_SHIFT
#: synaptic input is MSB-aligned by 6 bits before it enters the 24-bit current
ACT_SHIFT = 6
#: so is the threshold: a neuron fires when ``v > vThMant << VTH_SHIFT``
VTH_SHIFT = 6
#: netx passes ``bias_exp = 6`` to CUBA neurons: the voltage gets ``bias_mant << BIAS_EXP``
BIAS_EXP = 6
#: width of ``u`` and ``v`` (signed); ``MAX_UV = 2**23``
UV_BITS = 24
MAX_UV = 1 << (UV_BITS - 1)
#: lava-dl's slayer weight scale ``w_scale = 1 << 6``: integer units per 1.0 at exponent 0
BASE_SCALE = 64.0
#: ``vThMant`` is a 17-bit unsigned field (``PyLifModelBitAcc``)
MAX_VTH = (1 << 17) - 1
#: largest one-step synaptic sum ``|W s|`` whose ``<< ACT_SHIFT`` still fits the 24-bit current
MAX_CURRENT = (1 << (UV_BITS - 1 - ACT_SHIFT)) - 1
#: lava-dl's own non-spiking readout threshold (slayer ``AbstractDense.export_hdf5``): never reached
READOUT_VTH = (1 << 18) - 1
