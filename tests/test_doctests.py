"""The examples in docstrings run (and stay true)."""

from __future__ import annotations

import doctest

import pytest

import stdl_edge.binning
import stdl_edge.events
import stdl_edge.neuron


@pytest.mark.parametrize("module", [stdl_edge.neuron, stdl_edge.events, stdl_edge.binning])
def test_docstring_examples(module):
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0
