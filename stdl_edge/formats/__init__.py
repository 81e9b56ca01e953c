"""Artifact formats: one module per format, holding its constants, writer and parser.

Exporters write through these modules and devices read through them, so nothing else knows
a key name: :mod:`stdl_edge.formats.netx` (Lava netx HDF5), :mod:`stdl_edge.formats.onnx`
(ONNX ``metadata_props`` and ``manifest.json``) and :mod:`stdl_edge.formats.nir` (NIR graphs,
HDF5 through the ``nir`` package); :mod:`stdl_edge.formats.export_record` is what makes an export
folder one export (written whole, an id and each file's hash, names inside the folder). None of them imports an optional package (onnx,
onnxruntime, nir) at import time.
"""
