"""Checks of single values at the boundary: config files, records read from disk, API arguments.

Each function returns the value normalised (a whole float ``2.0`` becomes ``2``, numpy scalars
become Python numbers) or raises one ``ValueError`` line ``"<what> <value> must be ..."``, where
``what`` names the key as the user wrote it (``--epochs``, ``model.json: model.num_classes``).
A ``bool`` is never taken for a number (JSON ``true`` is not ``1`` epoch).

>>> whole(2.0, "--epochs", minimum=1)
2
>>> whole(1.5, "--epochs", minimum=1)
Traceback (most recent call last):
ValueError: --epochs 1.5 must be a whole number >= 1
>>> number("0.1", "--lr", above=0)
Traceback (most recent call last):
ValueError: --lr '0.1' must be a finite number > 0 (it is text)
"""

from __future__ import annotations

import dataclasses
import math
from numbers import Integral, Real
from typing import Any, Sequence


def whole(value: Any, what: str, minimum: int | None = None, maximum: int | None = None) -> int:
    """``value`` as an ``int``: an integer, or a float with no fraction, within the bounds."""
    ok = _is_number(value) and (isinstance(value, Integral) or (math.isfinite(value) and float(value).is_integer()))
    if ok:
        result = int(value)
        if (minimum is None or result >= minimum) and (maximum is None or result <= maximum):
            return result
    raise ValueError(f"{what} {value!r} must be a whole number{_bounds(minimum, None, maximum)}{_kind(value)}")


def number(value: Any, what: str, minimum: float | None = None, above: float | None = None,
           maximum: float | None = None) -> float:
    """``value`` as a finite ``float``, ``>= minimum``, ``> above`` and ``<= maximum`` where given."""
    if _is_number(value) and math.isfinite(value):
        result = float(value)
        if ((minimum is None or result >= minimum) and (above is None or result > above)
                and (maximum is None or result <= maximum)):
            return result
    raise ValueError(f"{what} {value!r} must be a finite number{_bounds(minimum, above, maximum)}{_kind(value)}")


def text(value: Any, what: str, choices: Sequence[str] | None = None) -> str:
    """``value`` as a ``str``; with ``choices``, one of them."""
    if isinstance(value, str) and (choices is None or value in choices):
        return value
    if not isinstance(value, str):
        raise ValueError(f"{what} {value!r} must be text" + (f": one of {', '.join(choices)}" if choices else ""))
    raise ValueError(f"{what} {value!r} is unknown; use one of {', '.join(choices)}")


def boolean(value: Any, what: str) -> bool:
    """``value`` when it is ``True`` or ``False`` (JSON ``true``/``false``)."""
    if isinstance(value, bool):
        return value
    raise ValueError(f"{what} {value!r} must be true or false")


def wholes(value: Any, what: str, length: int | None = None, minimum: int | None = None) -> tuple[int, ...]:
    """``value`` (a list, tuple or 1-d array) as a tuple of ``int`` (each as :func:`whole`), of
    ``length`` items where given."""
    items = list(value) if isinstance(value, (list, tuple)) or getattr(value, "ndim", None) == 1 else None
    if items is None or (length is not None and len(items) != length):
        count = f"{length} " if length is not None else ""
        raise ValueError(f"{what} {value!r} must be a list of {count}whole numbers{_bounds(minimum, None, None)}")
    return tuple(whole(v, f"{what}[{i}]", minimum) for i, v in enumerate(items))


def table(value: Any, what: str) -> dict[str, Any]:
    """``value`` when it is a JSON object (a ``dict``)."""
    if isinstance(value, dict):
        return value
    raise ValueError(f"{what} must be a table of fields ({{...}}), not {type(value).__name__} {value!r}")


def fields_of(cls: type, value: Any, what: str, required: Sequence[str] = ()) -> dict[str, Any]:
    """``value`` (a table read from a file) as a new dict of the dataclass ``cls``'s fields; one
    line for a field ``cls`` does not have or a ``required`` one that is missing."""
    d = dict(table(value, what))
    known = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(d) - set(known))
    if unknown:
        raise ValueError(f"{what} has unknown field(s) {', '.join(map(repr, unknown))}; known: {', '.join(known)}")
    missing = [k for k in required if k not in d]
    if missing:
        raise ValueError(f"{what} has no {missing[0]!r} entry")
    return d


def _is_number(value: Any) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool)  # numpy's bool_ is no Real


def _bounds(minimum: float | None, above: float | None, maximum: float | None) -> str:
    parts = [f"{op} {bound:g}" if isinstance(bound, float) else f"{op} {bound}"
             for op, bound in ((">=", minimum), (">", above), ("<=", maximum)) if bound is not None]
    return (" " + " and ".join(parts)) if parts else ""


def _kind(value: Any) -> str:
    return " (it is text)" if isinstance(value, str) else ""

