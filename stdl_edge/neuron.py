"""The one neuron of stdl-edge: a current-based LIF (CUBA) in discrete time.

Per step ``t`` with synaptic input ``I[t]`` (DESIGN.md section 3)::

    u[t] = (1 - a_u) * u[t-1] + I[t]
    v[t] = (1 - a_v) * v[t-1] * (1 - s[t-1]) + u[t]      # reset='zero': to 0 after a spike
    v[t] = (1 - a_v) * (v[t-1] - theta * s[t-1]) + u[t]  # reset='subtract': theta taken off
    s[t] = H(v[t] - theta)                               # H(0) = 0: strict '>'

With the default ``reset='zero'`` this is Lava's CUBA neuron: ``du = a_u * 4096``,
``dv = a_v * 4096`` (12-bit decays) and ``vth = theta`` (in weight units); training, ONNX,
loihi-sim and Lava share it. ``reset='subtract'`` (the "soft" reset of snnTorch and
SpikingJelly) exports to ONNX only: Loihi's CUBA and NIR have no such reset, and their
exporters refuse it with one line naming the setting.
A time constant ``tau`` (microseconds) at a step of ``dt`` microseconds is the decay
``a = dt / tau`` (:func:`decay_of`), the forward-Euler rate NIR's mapping inverts.
The Heaviside has a surrogate gradient (triangle or atan) for training; its forward
pass is a plain comparison, which is what exporters emit.

All functions are pure: state goes in and comes out, nothing is stored on modules.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

import torch

from .checks import boolean, fields_of, number, text

SURROGATES = ("triangle", "atan")
#: what the voltage does after a spike: 'zero' (hard reset, Loihi's CUBA) or 'subtract' (v - theta)
RESETS = ("zero", "subtract")


@dataclass(frozen=True)
class CubaParams:
    """Parameters of a CUBA LIF neuron. Decays are fractions per time step.

    current_decay: ``a_u`` in [0, 1]; 1 means no synaptic memory (``u = I``, plain LIF).
    voltage_decay: ``a_v`` in [0, 1]; ``1 / tau`` with ``tau`` in steps (default tau = 2).
    threshold: ``theta`` (same units as the weights); ``inf`` makes a non-spiking integrator.
    surrogate: pseudo-derivative of the Heaviside used in training ('triangle' or 'atan').
    surrogate_width: width ``alpha`` of the surrogate, in units of ``theta``.
    detach_reset: stop the gradient through the reset term ``(1 - s[t-1])`` (common practice,
        keeps the surrogate from pushing through the reset).
    reset: 'zero' (v to 0 after a spike; Loihi's CUBA) or 'subtract' (theta taken off v).
    """

    current_decay: float = 1.0
    voltage_decay: float = 0.5
    threshold: float = 1.0
    surrogate: str = "triangle"
    surrogate_width: float = 1.0
    detach_reset: bool = True
    reset: str = "zero"

    def __post_init__(self) -> None:
        for name in ("current_decay", "voltage_decay"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"CubaParams.{name}={value} is outside [0, 1]; it is a fraction per step")
        if not self.threshold > 0:
            raise ValueError(f"CubaParams.threshold={self.threshold} must be > 0")
        if self.surrogate not in SURROGATES:
            raise ValueError(f"CubaParams.surrogate={self.surrogate!r} is unknown; use one of {SURROGATES}")
        if not self.surrogate_width > 0:
            raise ValueError(f"CubaParams.surrogate_width={self.surrogate_width} must be > 0")
        if self.reset not in RESETS:
            raise ValueError(f"CubaParams.reset={self.reset!r} is unknown; use one of {RESETS}")

    @property
    def spiking(self) -> bool:
        return math.isfinite(self.threshold)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["threshold"] = None if not self.spiking else self.threshold  # JSON has no inf
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "neuron") -> CubaParams:
        """:meth:`to_dict` read back (threshold None is ``inf``); one ``ValueError`` naming
        ``where.<field>`` for an unknown or mistyped field (the ranges are checked on construction)."""
        d = fields_of(cls, d, where)
        for name in ("current_decay", "voltage_decay", "surrogate_width"):
            if name in d:
                d[name] = number(d[name], f"{where}.{name}")
        d["threshold"] = math.inf if d.get("threshold") is None else number(d["threshold"], f"{where}.threshold")
        for name in ("surrogate", "reset"):
            if name in d:
                d[name] = text(d[name], f"{where}.{name}")
        if "detach_reset" in d:
            d["detach_reset"] = boolean(d["detach_reset"], f"{where}.detach_reset")
        return cls(**d)


def decay_of(tau_us: float, dt_us: float, what: str = "time constant") -> float:
    """The decay per step ``a = dt / tau`` of a time constant ``tau_us`` at a step of ``dt_us``
    (both microseconds); ``tau < dt`` would decay by more than the whole value, so it is refused.

    >>> decay_of(2000, 1000)
    0.5
    """
    if not (math.isfinite(tau_us) and tau_us >= dt_us > 0):
        raise ValueError(f"{what} {tau_us:g} us is shorter than the time step dt = {dt_us:g} us (or not finite); "
                         "give a time constant >= dt, or the decay directly")
    return dt_us / tau_us


#: the non-spiking readout: u = I, v = u (so v[t] = I[t]); predictions average v over time
READOUT_PARAMS = CubaParams(current_decay=1.0, voltage_decay=1.0, threshold=math.inf)

#: integrate-and-fire (no leak): u = I, v[t] = v[t-1] * (1 - s[t-1]) + I[t]; what Speck-class chips run
IF_PARAMS = CubaParams(current_decay=1.0, voltage_decay=0.0, threshold=1.0)


class CubaState(NamedTuple):
    """Neuron state, each tensor of the layer's output shape ``(B, *shape)``."""

    current: torch.Tensor  # u
    voltage: torch.Tensor  # v
    spike: torch.Tensor  # s (0/1, float)


def zero_state(shape: tuple[int, ...], device: torch.device | str | None = None,
               dtype: torch.dtype = torch.float32) -> CubaState:
    """Resting state: all zeros, for a layer output of ``shape = (B, *features)``."""
    z = torch.zeros(shape, device=device, dtype=dtype)
    return CubaState(z, z.clone(), z.clone())


def detach_state(state: Any) -> Any:
    """Detach every tensor of a (nested) state; used by temporal decoupling."""
    if isinstance(state, torch.Tensor):
        return state.detach()
    if isinstance(state, tuple) and hasattr(state, "_fields"):
        return type(state)(*(detach_state(s) for s in state))
    if isinstance(state, (tuple, list)):
        return type(state)(detach_state(s) for s in state)
    return state


def _triangle(x: torch.Tensor, w: float) -> torch.Tensor:
    """Triangle pseudo-derivative ``max(0, 1 - |x|/w) / w`` (integrates to 1)."""
    if w == 1.0:  # the default: two full-tensor passes fewer
        return torch.clamp(1.0 - x.abs(), min=0.0)
    return torch.clamp(1.0 - x.abs() / w, min=0.0) / w


def _atan(x: torch.Tensor, w: float) -> torch.Tensor:
    """Arctan pseudo-derivative ``1 / (w (1 + (pi x / w)^2))`` (integrates to 1)."""
    return 1.0 / (w * (1 + (math.pi * x / w) ** 2))


_PSEUDO_DERIVATIVES = {"triangle": _triangle, "atan": _atan}


class _Spike(torch.autograd.Function):
    """``s = H(v - theta)`` forward; backward ``ds/dv = g((v - theta) / theta) / theta`` with the
    selected pseudo-derivative ``g``. The normalisation runs in the backward only (and not at
    all for ``theta = 1``), so the forward is one comparison."""

    @staticmethod
    def forward(ctx, v: torch.Tensor, theta: float, surrogate: str, width: float) -> torch.Tensor:
        ctx.save_for_backward(v)
        ctx.theta, ctx.surrogate, ctx.width = theta, surrogate, width
        return (v > theta).to(v.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (v,) = ctx.saved_tensors
        theta = ctx.theta
        x = v - theta if theta == 1.0 else (v - theta) / theta
        g = _PSEUDO_DERIVATIVES[ctx.surrogate](x, ctx.width)
        return (grad * g if theta == 1.0 else grad * g / theta), None, None, None


def spike_fn(v: torch.Tensor, params: CubaParams) -> torch.Tensor:
    """Heaviside ``H(v - theta) = [v > theta]`` with the surrogate gradient of ``params``.

    The surrogate reads ``x = (v - theta) / theta``, so its width is in units of the threshold.
    Outside autograd (export, inference) it is a plain comparison.
    """
    if not (torch.is_grad_enabled() and v.requires_grad) or torch.jit.is_tracing():
        return (v > params.threshold).to(v.dtype)
    return _Spike.apply(v, params.threshold, params.surrogate, params.surrogate_width)


def cuba_subthreshold(i: torch.Tensor, state: CubaState, params: CubaParams) -> tuple[torch.Tensor, torch.Tensor]:
    """Current and voltage update of one step (no spike): returns ``(u[t], v[t])``."""
    u_prev, v_prev, s_prev = state
    if params.detach_reset:
        s_prev = s_prev.detach()
    u = i if params.current_decay == 1.0 else (1.0 - params.current_decay) * u_prev + i
    if params.voltage_decay == 1.0:
        v = u
    elif params.reset == "subtract" and params.spiking:  # a readout never spikes (and inf * 0 is nan)
        v = (1.0 - params.voltage_decay) * (v_prev - params.threshold * s_prev) + u
    else:
        v = (1.0 - params.voltage_decay) * v_prev * (1.0 - s_prev) + u
    return u, v


def cuba_step(i: torch.Tensor, state: CubaState, params: CubaParams) -> tuple[torch.Tensor, CubaState]:
    """One step of the CUBA LIF neuron; returns ``(s[t], new_state)``, shapes of ``i``.

    >>> p = CubaParams(voltage_decay=0.5, threshold=1.0)
    >>> st = zero_state((1,))
    >>> out = []
    >>> for x in (0.6, 0.6, 0.6, 0.0):
    ...     s, st = cuba_step(torch.tensor([x]), st, p)
    ...     out.append((round(float(st.voltage), 3), int(s)))
    >>> out  # v = 0.6, 0.9, 1.05 -> spike, then reset: 0.0
    [(0.6, 0), (0.9, 0), (1.05, 1), (0.0, 0)]
    """
    u, v = cuba_subthreshold(i, state, params)
    if params.spiking:
        s = spike_fn(v, params)
    else:
        s = torch.zeros_like(v)
    return s, CubaState(u, v, s)
