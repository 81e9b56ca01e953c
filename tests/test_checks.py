"""The value checks at the boundary: what each takes, normalises and refuses (in one line)."""

from __future__ import annotations

import doctest
from dataclasses import dataclass

import numpy as np
import pytest

import stdl_edge.checks
from stdl_edge.checks import boolean, fields_of, number, table, text, whole, wholes


def test_docstring_examples():
    result = doctest.testmod(stdl_edge.checks)
    assert result.attempted > 0 and result.failed == 0


def test_numbers_are_normalised_to_python_types():
    assert whole(np.int64(3), "n") == 3 and type(whole(np.int64(3), "n")) is int
    assert whole(4.0, "n", minimum=1, maximum=4) == 4
    assert number(np.float32(0.5), "x", minimum=0, maximum=1) == 0.5 and type(number(1, "x")) is float
    assert wholes(np.array([2, 34, 34]), "shape", length=3, minimum=1) == (2, 34, 34)
    assert wholes((1.0, 2), "s") == (1, 2)


@pytest.mark.parametrize("call, message", [
    (lambda: whole(float("nan"), "n"), "n nan must be a whole number"),
    (lambda: whole(np.True_, "n"), "n True must be a whole number"),
    (lambda: whole(5, "n", minimum=0, maximum=4), "n 5 must be a whole number >= 0 and <= 4"),
    (lambda: number(float("-inf"), "x"), "x -inf must be a finite number"),
    (lambda: number(0.0, "x", above=0), "x 0.0 must be a finite number > 0"),
    (lambda: number(None, "x", minimum=0.5), "x None must be a finite number >= 0.5"),
    (lambda: text(b"stdl", "m", ("stdl",)), "m b'stdl' must be text: one of stdl"),
    (lambda: text("sgd", "m", ("stdl", "bptt")), "m 'sgd' is unknown; use one of stdl, bptt"),
    (lambda: boolean("true", "b"), "b 'true' must be true or false"),
    (lambda: wholes({"a": 1}, "s"), "s {'a': 1} must be a list of whole numbers"),
    (lambda: wholes([1, 2], "s", length=3, minimum=1), "s [1, 2] must be a list of 3 whole numbers >= 1"),
    (lambda: table("x", "t"), "t must be a table of fields ({...}), not str 'x'"),
])
def test_each_refusal_is_one_line_naming_the_value(call, message):
    with pytest.raises(ValueError) as info:
        call()
    assert str(info.value) == message


def test_fields_of_names_unknown_and_missing_fields():
    @dataclass
    class Point:
        x: int
        y: int = 0

    assert fields_of(Point, {"x": 1}, "point", required=("x",)) == {"x": 1}
    with pytest.raises(ValueError, match=r"^point has unknown field\(s\) 'z'; known: x, y$"):
        fields_of(Point, {"x": 1, "z": 2}, "point")
    with pytest.raises(ValueError, match=r"^point has no 'x' entry$"):
        fields_of(Point, {"y": 1}, "point", required=("x",))
