"""Exporters of trained runs; each registers itself in ``stdl_edge.registry.EXPORTERS``."""

from __future__ import annotations
