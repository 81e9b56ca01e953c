"""Parsers of command-line option values that several commands share."""

from __future__ import annotations


def int_tuple(text: str | None, option: str, n: int, form: str | None = None) -> tuple[int, ...] | None:
    """``text`` such as ``"34,34"`` (or ``"34x34"``; spaces allowed) as ``n`` integers; None stays None.

    option: the option's name for the error (``"--crop"``); form: how the error spells the
    expected value (default ``"<n> integers separated by commas"``).
    """
    if text is None:
        return None
    try:
        values = tuple(int(v) for v in text.replace("x", ",").split(","))
    except ValueError:
        values = ()
    if len(values) != n:
        raise ValueError(f"{option}={text!r} must be {form or f'{n} integers separated by commas'}")
    return values
