"""Artifact formats: one module per format, holding its constants, writer and parser.

Exporters write through these modules and devices read through them, so nothing else knows
a key name: :mod:`stdl_edge.formats.netx` (Lava netx HDF5). No module here imports h5py at
import time.
"""
