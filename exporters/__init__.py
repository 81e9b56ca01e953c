"""Exporters of trained runs; each registers itself in ``stdl_edge.registry.EXPORTERS``."""

from __future__ import annotations

from . import onnx  # noqa: F401,E402  (registers "onnx")

from . import netx  # noqa: F401,E402  (registers "netx")

from . import nir  # noqa: F401,E402  (registers "nir")
