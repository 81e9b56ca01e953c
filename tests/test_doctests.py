"""The examples in docstrings run (and stay true)."""

from __future__ import annotations

import doctest

import pytest

import stdl_edge.binning
import stdl_edge.devices.loihi_sim_neurons
import stdl_edge.devices.loihi_sim_synapses
import stdl_edge.events
import stdl_edge.neuron

MODULES = [stdl_edge.neuron, stdl_edge.events, stdl_edge.binning, stdl_edge.devices.loihi_sim_neurons,
           stdl_edge.devices.loihi_sim_synapses]


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.__name__)
def test_docstring_examples(module):
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0
