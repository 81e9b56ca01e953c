"""NIR exporter: ``model.nir``, ``subnet<k>.nir``, ``aux<k>.nir`` and ``manifest.json``.

Each file is one NIR graph (HDF5 through ``nir.write``, :mod:`stdl_edge.formats.nir` holds
the mapping and the metadata keys): the whole model, each STDL subnetwork (K > 1) and each
auxiliary head, BatchNorm folded. The folder is written as a whole
(:func:`stdl_edge.formats.export_record.export_folder`): a failed export leaves the previous one in
place; ``manifest.json``, written last, records the ``export_id`` and each file's SHA-256. With ``target`` (a preset of
:mod:`stdl_edge.targets`, e.g. ``'if-chip'``) a network that breaks the target's
constraints is refused before anything is written, with every broken constraint named.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import stdl_edge
from stdl_edge.artifact import RunFolder
from stdl_edge.formats import nir as nirfmt
from stdl_edge.formats.export_record import EXPORT_ID, FILES, export_folder, file_digests, new_export_id
from stdl_edge.io import FORMAT_VERSION, write_json
from stdl_edge.registry import EXPORTERS
from stdl_edge.targets import get_target, require_target


def export(run_folder: str | Path, out_dir: str | Path | None = None, *, subnets: bool = True, aux: bool = True,
           target: str | None = None, **options: Any) -> list[Path]:
    """Export a run folder to NIR (default ``RUN/export/nir``); returns the written paths, manifest last."""
    if options:
        raise ValueError(f"unknown NIR export option(s) {', '.join(sorted(options))}; known: subnets, aux, target")
    run = RunFolder(run_folder).load()
    if target is not None:
        require_target(run.model, target)
    out = Path(out_dir) if out_dir is not None else RunFolder(run_folder).export_dir("nir")
    n = len(run.model.layers)
    files: list[tuple[str, Any]] = [("model.nir", nirfmt.to_nir(run.model, run.stream))]
    chain = [{"index": -1, "file": "model.nir", "layers": [0, n], "role": "model"}]
    if subnets and len(run.boundaries) > 1:
        for k, (a, b) in enumerate(run.boundaries):
            files.append((f"subnet{k}.nir", nirfmt.to_nir(run.model, run.stream, a, b, role="subnet", subnet=k)))
            chain.append({"index": k, "file": f"subnet{k}.nir", "layers": [a, b], "role": "subnet"})
    heads = []
    if aux:
        for k, head in enumerate(run.aux_heads):
            files.append((f"aux{k}.nir", nirfmt.to_nir(head, run.stream, role="aux", subnet=k)))
            heads.append({"index": k, "follows": k, "file": f"aux{k}.nir", "layer_names": head.layer_names()})
    manifest = {"kind": nirfmt.MANIFEST_KIND, "format_version": FORMAT_VERSION,
                "stdl_edge_version": stdl_edge.__version__, "nir_version": _nir_version(),
                "stream": run.stream.to_dict(), "model": run.model.config.to_dict(),
                "layer_names": run.model.layer_names(), "target": None if target is None else get_target(target).name,
                "whole": chain[0], "chain": chain[1:] or [{**chain[0], "index": 0}], "aux_heads": heads}
    with export_folder(out, (nirfmt.MANIFEST,)) as tmp:
        for name, graph in files:
            nirfmt.write(tmp / name, graph)
        manifest[EXPORT_ID] = new_export_id(RunFolder(run_folder).weights_file)
        manifest[FILES] = file_digests(tmp, [name for name, _ in files])
        write_json(tmp / nirfmt.MANIFEST, manifest)
    return [out / name for name, _ in files] + [out / nirfmt.MANIFEST]


def _nir_version() -> str:
    from importlib.metadata import version

    return version("nir")


EXPORTERS.register("nir", export, "NIR graphs (whole model, STDL subnetworks, aux heads) + manifest",
                   requires=("nir",), extra="nir")
