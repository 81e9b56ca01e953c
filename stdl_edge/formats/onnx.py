"""The ONNX export format: step-graph names, ``metadata_props`` and ``manifest.json``.

Every file is a step graph ``x, state_in.<state> -> y, state_out.<state>`` (or a fixed-``T``
sequence graph ``x -> y, y_seq``); a state is ``<layer>.<u|v|s>``, or ``<layer>.inner.<u|v|s>``
for a residual block's first convolution (:class:`StateSpec`). Each file's ``metadata_props``
(:class:`GraphMetadata`) and the folder's ``manifest.json`` (:class:`Manifest`) say what the
file is; the exporter writes them through this module and the onnxruntime device reads them
through it, so nothing else knows a key name. Metadata values are strings: ``str`` fields as
they are, everything else as JSON (``"1000"``, ``"[16, 16, 2]"``), the stream as
``StreamInfo.to_attrs``. Nothing here imports onnx or onnxruntime.

Long file: about 400 lines, one artifact format in one module: the graph names, the metadata,
the manifest with its export record, and the field checks that refuse a mistyped manifest.

>>> spec = StateSpec.of("5.readout", "v", (4,), "readout")
>>> spec.name, spec.input_name, spec.readout
('5.readout.v', 'state_in.5.readout.v', True)
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from stdl_edge import __version__
from stdl_edge.artifact import StreamInfo
from stdl_edge.formats.export_record import EXPORT_ID, FILES, check_files, member, read_record
from stdl_edge.io import write_json

#: ONNX opset of every graph stdl-edge writes
OPSET = 18
#: format_version of the metadata and the manifest (1: since the first ONNX export)
VERSION = 1
MANIFEST = "manifest.json"
MANIFEST_KIND = "stdl-edge-onnx"
#: the fields of a CUBA layer's state: current, voltage, last spike
STATE_FIELDS = ("u", "v", "s")
INPUT, OUTPUT, SEQUENCE_OUTPUT = "x", "y", "y_seq"
STATE_IN, STATE_OUT = "state_in.", "state_out."
#: ``Layer.kind`` of the readout (``stdl_edge.layers.Readout``): its output is its voltage
READOUT_KIND = "readout"
STEP, SEQUENCE = "step", "sequence"
ROLES = ("model", "subnet", "aux")


@dataclass(frozen=True)
class StateSpec:
    """One state tensor of a step graph, fed as ``state_in.<name>`` and returned as ``state_out.<name>``.

    name: ``<layer>.<field>`` or ``<layer>.inner.<field>``; layer: the layer's name
    (``<index>.<kind>``); shape: per sample (no batch); kind: the layer's ``Layer.kind``
    (``''`` when unknown: a graph without our metadata).
    """

    name: str
    layer: str
    shape: tuple[int, ...]
    kind: str = ""

    @classmethod
    def of(cls, layer: str, state_field: str, shape: tuple[int, ...], kind: str, inner: bool = False) -> StateSpec:
        if state_field not in STATE_FIELDS:
            raise ValueError(f"state field {state_field!r} is not one of {STATE_FIELDS}")
        return cls(f"{layer}.inner.{state_field}" if inner else f"{layer}.{state_field}", layer,
                   tuple(int(v) for v in shape), kind)

    @classmethod
    def parse(cls, name: str, shape: tuple[int, ...], kind: str = "") -> StateSpec:
        """The spec of a state named ``name`` in a graph without our metadata."""
        layer = name.rpartition(".")[0]
        return cls(name, layer[: -len(".inner")] if layer.endswith(".inner") else layer, tuple(shape), kind)

    @property
    def field_name(self) -> str:
        """'u' (current), 'v' (voltage) or 's' (last spike)."""
        return self.name.rpartition(".")[2]

    @property
    def inner(self) -> bool:
        return self.name != f"{self.layer}.{self.field_name}"

    @property
    def readout(self) -> bool:
        return self.kind == READOUT_KIND

    @property
    def input_name(self) -> str:
        return STATE_IN + self.name

    @property
    def output_name(self) -> str:
        return STATE_OUT + self.name

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "layer": self.layer, "shape": list(self.shape), "kind": self.kind}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> StateSpec:
        """Also reads exports from before ``kind`` was recorded: the kind ends the layer name."""
        kind = d.get("kind", str(d["layer"]).rpartition(".")[2])
        return cls(str(d["name"]), str(d["layer"]), tuple(int(v) for v in d["shape"]), str(kind))


@dataclass(frozen=True)
class StepEntry:
    """The step graph of layers ``layers = (start, stop)``: its file and tensors (a manifest entry).

    index: position in the subnetwork chain, or the auxiliary head's number; follows: the
    subnetwork whose output an auxiliary head takes. Shapes are per sample.
    """

    file: str
    layers: tuple[int, int]
    layer_names: tuple[str, ...]
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    states: tuple[StateSpec, ...]
    index: int | None = None
    follows: int | None = None

    @property
    def inputs(self) -> list[str]:
        return [INPUT] + [s.input_name for s in self.states]

    @property
    def outputs(self) -> list[str]:
        return [OUTPUT] + [s.output_name for s in self.states]

    def to_dict(self) -> dict[str, Any]:
        place = {k: v for k, v in (("index", self.index), ("follows", self.follows)) if v is not None}
        return {**place, "file": self.file, "graph": STEP, "layers": list(self.layers),
                "layer_names": list(self.layer_names), "input": INPUT, "output": OUTPUT,
                "input_shape": list(self.input_shape), "output_shape": list(self.output_shape),
                "inputs": self.inputs, "outputs": self.outputs, "states": [s.to_dict() for s in self.states]}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> StepEntry:
        return cls(str(d["file"]), tuple(int(v) for v in d["layers"]), tuple(d["layer_names"]),
                   tuple(int(v) for v in d["input_shape"]), tuple(int(v) for v in d["output_shape"]),
                   tuple(StateSpec.from_dict(s) for s in d["states"]), d.get("index"), d.get("follows"))


@dataclass(frozen=True)
class SequenceEntry:
    """The fixed-``steps`` sequence graph ``x (steps, batch, C, H, W) -> y (batch, classes), y_seq``."""

    file: str
    steps: int
    input_shape: tuple[int, ...]  # (C, H, W)
    num_classes: int

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "graph": SEQUENCE, "steps": self.steps, "input": INPUT, "output": OUTPUT,
                "inputs": [INPUT], "outputs": [OUTPUT, SEQUENCE_OUTPUT],
                "input_shape": [self.steps, "batch", *self.input_shape], "output_shape": [self.num_classes]}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SequenceEntry:
        return cls(str(d["file"]), int(d["steps"]), tuple(int(v) for v in d["input_shape"][2:]),
                   int(d["output_shape"][0]))


@dataclass(frozen=True)
class GraphMetadata:
    """What an ONNX file's ``metadata_props`` record (:meth:`to_props` / :meth:`from_props`).

    role: 'model', 'subnet' or 'aux'; subnet_index: -1 for the whole model, ``k`` for
    subnetwork ``k`` or the auxiliary head after it; follows: an aux head's subnetwork.
    graph: 'step' (layers, shapes, states set) or 'sequence' (steps set). neuron, model: the
    neuron and model configs (``to_dict``) of the network in the file.
    """

    stream: StreamInfo
    role: str
    subnet_index: int
    graph: str = STEP
    num_subnets: int | None = None
    follows: int | None = None
    steps: int | None = None
    layers: tuple[int, int] | None = None
    layer_names: tuple[str, ...] = ()
    input_shape: tuple[int, ...] | None = None
    output_shape: tuple[int, ...] | None = None
    states: tuple[StateSpec, ...] = ()
    input_names: tuple[str, ...] = ()
    output_names: tuple[str, ...] = ()
    neuron: Mapping[str, Any] | None = None
    model: Mapping[str, Any] | None = None
    format_version: int = VERSION
    stdl_edge_version: str = __version__

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"ONNX metadata role {self.role!r} is not one of {ROLES}")

    @classmethod
    def of_step(cls, entry: StepEntry, stream: StreamInfo, role: str, subnet_index: int, **fields: Any
                ) -> GraphMetadata:
        """The metadata of the step graph ``entry`` (``fields``: num_subnets, follows, neuron, model)."""
        return cls(stream, role, subnet_index, STEP, layers=entry.layers, layer_names=entry.layer_names,
                   input_shape=entry.input_shape, output_shape=entry.output_shape, states=entry.states,
                   input_names=tuple(entry.inputs), output_names=tuple(entry.outputs), **fields)

    def to_props(self) -> dict[str, str]:
        """``key -> string`` for ``metadata_props``; unset (None) fields are left out."""
        values: dict[str, Any] = {"format_version": self.format_version, "stdl_edge_version": self.stdl_edge_version,
                                  **self.stream.to_attrs(), "neuron": self.neuron, "model": self.model,
                                  "role": self.role, "subnet_index": self.subnet_index,
                                  "num_subnets": self.num_subnets, "follows": self.follows, "graph": self.graph,
                                  "steps": self.steps, "layers": self.layers, "layer_names": self.layer_names,
                                  "input_shape": self.input_shape, "output_shape": self.output_shape,
                                  "states": [s.to_dict() for s in self.states] if self.graph == STEP else None,
                                  "input_names": self.input_names, "output_names": self.output_names}
        return {k: v if isinstance(v, str) else json.dumps(v) for k, v in values.items() if v is not None}

    @classmethod
    def from_props(cls, props: Mapping[str, str]) -> GraphMetadata | None:
        """Parse ``metadata_props``; None for a file without our metadata (no ``dt_us``/``sensor_size``)."""
        if "dt_us" not in props or "sensor_size" not in props:
            return None
        get = {k: _unjson(v) for k, v in props.items()}

        def opt_tuple(key: str) -> tuple[int, ...] | None:
            return tuple(int(v) for v in get[key]) if key in get else None

        def opt_int(key: str) -> int | None:
            return int(get[key]) if key in get else None

        return cls(stream=StreamInfo.from_attrs(props), role=str(get.get("role", "model")),
                   subnet_index=int(get.get("subnet_index", -1)), graph=str(get.get("graph", STEP)),
                   num_subnets=opt_int("num_subnets"), follows=opt_int("follows"), steps=opt_int("steps"),
                   layers=opt_tuple("layers"), layer_names=tuple(get.get("layer_names", ())),
                   input_shape=opt_tuple("input_shape"), output_shape=opt_tuple("output_shape"),
                   states=tuple(StateSpec.from_dict(s) for s in get.get("states", ())),
                   input_names=tuple(get.get("input_names", ())), output_names=tuple(get.get("output_names", ())),
                   neuron=get.get("neuron"), model=get.get("model"),
                   format_version=int(get.get("format_version", VERSION)),
                   stdl_edge_version=str(get.get("stdl_edge_version", "")))


def _unjson(value: str) -> Any:
    """A metadata string: JSON where it parses, else the string itself (``str`` fields are stored raw)."""
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value


def write_metadata(proto: Any, metadata: GraphMetadata) -> None:
    """Replace the ``metadata_props`` of an ``onnx.ModelProto`` with ``metadata``."""
    del proto.metadata_props[:]
    for key, value in metadata.to_props().items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value


@dataclass(frozen=True)
class Manifest:
    """``manifest.json``: what an ONNX export folder holds.

    whole: the whole model's step graph; chain: the subnetwork step graphs in order (the whole
    model's entry when K = 1); aux_heads: auxiliary head ``k`` follows subnetwork ``k``;
    sequence: the optional fixed-T graph; model: the model config; input_shape ``(C, H, W)``.
    export_id, files: which export this is and ``name -> sha256`` of each of its files
    (:mod:`stdl_edge.formats.export_record`; empty in exports written before them).
    """

    stream: StreamInfo
    whole: StepEntry
    chain: tuple[StepEntry, ...]
    layer_names: tuple[str, ...]
    num_classes: int
    input_shape: tuple[int, ...]
    model: Mapping[str, Any] = field(default_factory=dict)
    aux_heads: tuple[StepEntry, ...] = ()
    sequence: SequenceEntry | None = None
    exporter: str = ""
    opset: int = OPSET
    format_version: int = VERSION
    stdl_edge_version: str = __version__
    export_id: str = ""
    files: Mapping[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": MANIFEST_KIND, "format_version": self.format_version,
                "stdl_edge_version": self.stdl_edge_version, "opset": self.opset, "exporter": self.exporter,
                EXPORT_ID: self.export_id, FILES: dict(self.files),
                "stream": self.stream.to_dict(), "model": dict(self.model), "layer_names": list(self.layer_names),
                "num_classes": self.num_classes, "input_shape": list(self.input_shape),
                "whole": self.whole.to_dict(), "chain": [e.to_dict() for e in self.chain],
                "aux_heads": [e.to_dict() for e in self.aux_heads],
                "sequence": self.sequence.to_dict() if self.sequence is not None else None}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Manifest:
        seq = d.get("sequence")
        return cls(StreamInfo.from_dict(d["stream"]), StepEntry.from_dict(d["whole"]),
                   tuple(StepEntry.from_dict(e) for e in d["chain"]), tuple(d.get("layer_names", ())),
                   int(d["num_classes"]), tuple(int(v) for v in d["input_shape"]), dict(d.get("model", {})),
                   tuple(StepEntry.from_dict(e) for e in d.get("aux_heads", ())),
                   SequenceEntry.from_dict(seq) if seq else None, str(d.get("exporter", "")),
                   int(d.get("opset", OPSET)), int(d.get("format_version", VERSION)),
                   str(d.get("stdl_edge_version", "")), str(d.get(EXPORT_ID, "")), dict(d.get(FILES, {})))

    def write(self, folder: str | Path) -> Path:
        """Write ``folder/manifest.json`` (atomic); returns its path."""
        path = Path(folder) / MANIFEST
        write_json(path, self.to_dict())
        return path


def read_manifest(path: str | Path, check: bool = True) -> Manifest:
    """Read ``manifest.json`` (or the one in the folder ``path``), checking it is ours and whole.

    Every field has its type checked (a one-line ``ValueError`` names the field); every file it
    names must lie inside its folder; with ``check`` every file it lists must be there with its
    recorded SHA-256 (:func:`~stdl_edge.formats.export_record.check_files`), so a folder mixing
    files of two exports is refused.
    """
    path = Path(path)
    if path.is_dir():
        path = path / MANIFEST
    if not path.exists():
        raise FileNotFoundError(f"{path.parent} has no {path.name}; export with `stdl-edge export RUN --to onnx` "
                                "or pass a .onnx file")
    data = read_record(path, "onnx")
    if not isinstance(data, dict) or data.get("kind") != MANIFEST_KIND:
        kind = data.get("kind") if isinstance(data, dict) else None
        raise ValueError(f"{path} is not an stdl-edge ONNX manifest (kind={kind!r})")
    _check_fields(path, data, "", {"format_version": ("int", False)})
    version = data.get("format_version", VERSION)
    if version > VERSION:
        raise ValueError(f"{path} is {MANIFEST_KIND} version {version}; this stdl-edge reads versions up to "
                         f"{VERSION} (upgrade stdl-edge)")
    _check_fields(path, data, "", _MANIFEST_FIELDS)
    entries = [("whole", data["whole"]), *((f"chain[{i}]", e) for i, e in enumerate(data["chain"])),
               *((f"aux_heads[{i}]", e) for i, e in enumerate(data.get("aux_heads", [])))]
    for where, entry in entries:
        _check_fields(path, entry, f"{where}.", _STEP_FIELDS)
        for j, state in enumerate(entry["states"]):
            _check_fields(path, state, f"{where}.states[{j}].", _STATE_FIELDS)
    if data.get("sequence"):
        _check_fields(path, data["sequence"], "sequence.", _SEQUENCE_FIELDS)
        entries.append(("sequence", data["sequence"]))
    if not data["chain"]:
        raise ValueError(f"{path}: field 'chain' is empty; re-export with `stdl-edge export RUN --to onnx`")
    for _, entry in entries:
        member(path.parent, entry["file"], path)
    try:
        manifest = Manifest.from_dict(data)
    except (KeyError, TypeError, ValueError, IndexError) as e:
        raise ValueError(f"{path}: field 'stream' is malformed ({str(e).splitlines()[0] if str(e) else type(e).__name__}); "
                         "re-export with `stdl-edge export RUN --to onnx`") from None
    if check:
        check_files(path.parent, path, data, "onnx")
    return manifest


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


#: what a manifest field must be: a test and the words for it
_KINDS: dict[str, tuple[Any, str]] = {
    "int": (_is_int, "a whole number"),
    "pos_int": (lambda v: _is_int(v) and v >= 1, "a whole number >= 1"),
    "int?": (lambda v: v is None or _is_int(v), "a whole number or null"),
    "shape": (lambda v: isinstance(v, list) and all(_is_int(x) and x >= 1 for x in v), "a list of whole numbers >= 1"),
    "range": (lambda v: isinstance(v, list) and len(v) == 2 and all(_is_int(x) and x >= 0 for x in v),
              "a [start, stop] pair of whole numbers"),
    "seq_shape": (lambda v: isinstance(v, list) and len(v) >= 3 and all(_is_int(x) and x >= 1 for x in v[2:]),
                  "[steps, 'batch', C, H, W]"),
    "str": (lambda v: isinstance(v, str), "a string"),
    "strs": (lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v), "a list of strings"),
    "dict": (lambda v: isinstance(v, dict), "an object"),
    "dicts": (lambda v: isinstance(v, list) and all(isinstance(x, dict) for x in v), "a list of objects"),
    "dict?": (lambda v: v is None or isinstance(v, dict), "an object or null"),
}
#: field -> (kind, required)
_MANIFEST_FIELDS = {"stream": ("dict", True), "whole": ("dict", True), "chain": ("dicts", True),
                    "num_classes": ("pos_int", True), "input_shape": ("shape", True), "layer_names": ("strs", False),
                    "model": ("dict", False), "aux_heads": ("dicts", False), "sequence": ("dict?", False),
                    "opset": ("int", False), "format_version": ("int", False), EXPORT_ID: ("str", False)}
_STEP_FIELDS = {"file": ("str", True), "layers": ("range", True), "layer_names": ("strs", True),
                "input_shape": ("shape", True), "output_shape": ("shape", True), "states": ("dicts", True),
                "index": ("int?", False), "follows": ("int?", False)}
_STATE_FIELDS = {"name": ("str", True), "layer": ("str", True), "shape": ("shape", True), "kind": ("str", False)}
_SEQUENCE_FIELDS = {"file": ("str", True), "steps": ("pos_int", True), "input_shape": ("seq_shape", True),
                    "output_shape": ("shape", True)}


def _check_fields(path: Path, data: Mapping[str, Any], where: str, fields: Mapping[str, tuple[str, bool]]) -> None:
    """One line naming the first field of ``data`` that is missing or of the wrong type."""
    fix = "re-export with `stdl-edge export RUN --to onnx`"
    for key, (kind, required) in fields.items():
        if key not in data:
            if required:
                raise ValueError(f"{path}: field '{where}{key}' is missing; {fix}")
            continue
        test, words = _KINDS[kind]
        if not test(data[key]):
            raise ValueError(f"{path}: field '{where}{key}' must be {words}, got {json.dumps(data[key])[:60]}; {fix}")
