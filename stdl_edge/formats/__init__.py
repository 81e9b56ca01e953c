"""Artifact formats: one module per format, holding its constants, writer and parser.

Exporters write through these modules and devices read through them, so nothing else knows
a key name: :mod:`stdl_edge.formats.netx` (Lava netx HDF5) and :mod:`stdl_edge.formats.onnx`
(ONNX ``metadata_props`` and ``manifest.json``). Neither imports h5py, onnx or onnxruntime at
import time.
"""
