"""The run folder and what every trained model and export carries.

:class:`RunFolder` is the one place that knows the layout of a run folder (written by
``stdl-edge train``, read by the exporters, the devices, ``verify`` and ``run``)::

    runs/NAME/model.json          record: format_version, model config, stream, sha256 (of each
                                  weights file); an STDL run adds a "stdl" key (method, K,
                                  boundaries, aux head specs, training)
    runs/NAME/model.safetensors   primary model weights
    runs/NAME/aux.safetensors     auxiliary heads: key "<k>.<param name>" for the head after subnet k
    runs/NAME/checkpoint/         last epoch's full training state (--resume)
    runs/NAME/metrics.jsonl       per-epoch metrics
    runs/NAME/export/<format>/    exports: export/onnx (manifest.json + *.onnx), export/netx (model.net, ...)

:meth:`RunFolder.load` is the only loader (nothing is unpickled). ``model.json`` is written last
and lists the sha256 of the weights files written with it, so a folder torn by a kill (or
mixed from two runs) is refused instead of loaded; a field of the wrong type gives one line
naming the file and the field. Exporters copy
:class:`StreamInfo` into their artifacts (ONNX ``metadata_props``, netx HDF5 attributes) so
a device can bin a raw event stream exactly as training did.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch

from .binning import BinSpec
from .events import SensorSize
from .checks import fields_of, table, text, whole, wholes
from .io import FORMAT_VERSION, DigestMismatch, load_tensors, read_json, save_tensors, write_json
from .layerspec import net_from_spec, net_spec
from .models import ModelConfig, SpikingNet, build_model

MODEL_WEIGHTS = "model.safetensors"
MODEL_RECORD = "model.json"
AUX_WEIGHTS = "aux.safetensors"
CHECKPOINT_DIR = "checkpoint"
METRICS_FILE = "metrics.jsonl"
EXPORT_DIR = "export"
#: the format of a run folder itself (what the torch device reads); exports are named by their exporter
RUN_FORMAT = "run"
#: ``export(run, fmt, out_dir)`` writes the ``fmt`` export of a run folder into ``out_dir``
ExportFn = Callable[[Path, str, Path], Any]


@dataclass(frozen=True)
class StreamInfo:
    """How the model sees events.

    sensor_size: (width, height, polarities) of the event sensor the model was trained on.
    dt_us: time step in microseconds; None where the artifact does not record one (a netx
        file written by lava-dl or by hand): binning events then needs it supplied.
    num_steps: steps per sample in training (a device may run any number).
    bin_mode: 'binary' or 'count' (see stdl_edge.events).
    class_names: label of each readout unit.

    Two encodings, each converted here only: :meth:`to_dict` (JSON: ``model.json``, the ONNX
    manifest) and :meth:`to_attrs` (a flat map of int / str values: netx HDF5 root attributes
    and ONNX ``metadata_props``).

    >>> s = StreamInfo((16, 16, 2), 1000, 8, class_names=("a", "b"))
    >>> s.to_attrs()
    {'sensor_size': '[16, 16, 2]', 'dt_us': 1000, 'num_steps': 8, 'bin_mode': 'binary', 'class_names': '["a", "b"]'}
    >>> StreamInfo.from_attrs({k: str(v) for k, v in s.to_attrs().items()}) == s   # ONNX: all strings
    True
    """

    sensor_size: tuple[int, int, int]
    dt_us: int | None
    num_steps: int
    bin_mode: str = "binary"
    class_names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "sensor_size", tuple(int(v) for v in self.sensor_size))
        object.__setattr__(self, "class_names", tuple(str(c) for c in self.class_names))
        BinSpec(1 if self.dt_us is None else self.dt_us, self.bin_mode)  # validates dt and mode
        object.__setattr__(self, "num_steps", int(self.num_steps))
        if self.dt_us is not None:
            object.__setattr__(self, "dt_us", int(self.dt_us))

    @property
    def sensor(self) -> SensorSize:
        return SensorSize(*self.sensor_size)

    @property
    def bin_spec(self) -> BinSpec:
        """Events -> frames at ``dt_us``; a ``ValueError`` when no time step is recorded."""
        if self.dt_us is None:
            raise ValueError("the artifact records no time step (dt_us), so events cannot be binned; "
                             "supply one (dt_us=... when opening the device)")
        return BinSpec(dt_us=self.dt_us, mode=self.bin_mode)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["sensor_size"] = list(self.sensor_size)
        d["class_names"] = list(self.class_names)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "stream") -> StreamInfo:
        """:meth:`to_dict` read back; one ``ValueError`` naming ``where.<field>`` for a missing,
        unknown or mistyped field."""
        d = fields_of(cls, d, where, required=("sensor_size", "dt_us", "num_steps"))
        d["sensor_size"] = wholes(d["sensor_size"], f"{where}.sensor_size", length=3, minimum=1)
        d["dt_us"] = None if d["dt_us"] is None else whole(d["dt_us"], f"{where}.dt_us", minimum=1)
        d["num_steps"] = whole(d["num_steps"], f"{where}.num_steps", minimum=1)
        d["bin_mode"] = text(d.get("bin_mode", "binary"), f"{where}.bin_mode")
        names = d.get("class_names", [])
        if not isinstance(names, list) or not all(isinstance(c, str) for c in names):
            raise ValueError(f"{where}.class_names {names!r} must be a list of text")
        return cls(**d)

    def to_attrs(self) -> dict[str, int | str]:
        """A flat ``key -> int | str`` map (lists as JSON strings); ``dt_us`` left out when None."""
        attrs: dict[str, int | str] = {"sensor_size": json.dumps(list(self.sensor_size))}
        if self.dt_us is not None:
            attrs["dt_us"] = self.dt_us
        attrs.update(num_steps=self.num_steps, bin_mode=self.bin_mode, class_names=json.dumps(list(self.class_names)))
        return attrs

    @classmethod
    def from_attrs(cls, attrs: Mapping[str, Any], sensor_size: tuple[int, int, int] | None = None) -> StreamInfo:
        """Parse :meth:`to_attrs` output as HDF5 (numpy scalars) or ONNX (strings) gives it back.

        Also reads the legacy encodings of files written before :meth:`to_attrs`: netx HDF5
        with ``sensor_size`` an int array and ``class_names`` an array of bytes (empty: dtype
        ``S1``); ONNX's were the same strings as now. ``sensor_size``: used when ``attrs``
        has none (a foreign file); without either, a ``ValueError``. Missing ``dt_us`` is None.
        """
        sensor = attrs.get("sensor_size", sensor_size)
        if sensor is None:
            raise ValueError(f"no stream recorded (no 'sensor_size' among {sorted(attrs)})")
        dt = attrs.get("dt_us")
        return cls(sensor_size=tuple(int(v) for v in _listed(sensor)), dt_us=None if dt is None else int(dt),
                   num_steps=int(attrs.get("num_steps", 1)), bin_mode=_text(attrs.get("bin_mode", "binary")),
                   class_names=tuple(_text(c) for c in _listed(attrs.get("class_names", ()))))


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _listed(value: Any) -> list[Any]:
    """A list attribute: a JSON string (current) or an array / sequence (legacy HDF5)."""
    if isinstance(value, (str, bytes)):
        return list(json.loads(value))
    return list(np.asarray(value).reshape(-1))


@dataclass
class TrainedRun:
    """What :meth:`RunFolder.load` returns.

    model: the primary network (eval mode).
    stream: how events become frames (sensor, dt, T, bin mode, class names).
    boundaries: layer ranges ``(start, stop)`` of the K subnetworks, in order.
    aux_heads: K - 1 heads; ``aux_heads[k]`` reads subnetwork k's output (early exit k).
    record: the whole ``model.json`` (``record["stdl"]`` has the training details).
    """

    model: SpikingNet
    stream: StreamInfo
    boundaries: list[tuple[int, int]]
    aux_heads: list[SpikingNet] = field(default_factory=list)
    record: dict[str, Any] = field(default_factory=dict)

    @property
    def method(self) -> str:
        return str(self.record.get("stdl", {}).get("method", "unknown"))

    @property
    def num_subnets(self) -> int:
        return len(self.boundaries)

    @property
    def dataset(self) -> str | None:
        """The data set the run was trained on (``stdl.train.dataset`` in the record), if recorded."""
        return dataset_of_record(self.record)


def dataset_of_record(record: dict[str, Any]) -> str | None:
    """The data set named in a run record (``stdl.train.dataset``; also ``stdl.dataset``,
    ``train.dataset`` or ``dataset``, which other writers of a record use)."""
    stdl = record.get("stdl") if isinstance(record.get("stdl"), dict) else {}
    train = stdl.get("train") if isinstance(stdl.get("train"), dict) else {}
    top_train = record.get("train") if isinstance(record.get("train"), dict) else {}
    for cand in (train.get("dataset"), stdl.get("dataset"), top_train.get("dataset"), record.get("dataset")):
        if isinstance(cand, str) and cand:
            return cand
    return None


def data_options_of_record(record: dict[str, Any]) -> dict[str, Any]:
    """The ``load_dataset`` options that rebuild a run's data set, from ``stdl.train`` in its record
    (:func:`stdl_edge.datasets.load_options`); ``{}`` for runs without them."""
    from .datasets import load_options

    stdl = record.get("stdl") if isinstance(record.get("stdl"), dict) else {}
    return load_options(stdl.get("train") if isinstance(stdl.get("train"), dict) else {})


@dataclass(frozen=True)
class RunFolder:
    """A run folder on disk (layout in the module docstring); ``path`` need not exist yet."""

    path: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    @property
    def record_file(self) -> Path:
        return self.path / MODEL_RECORD

    @property
    def weights_file(self) -> Path:
        return self.path / MODEL_WEIGHTS

    @property
    def aux_file(self) -> Path:
        return self.path / AUX_WEIGHTS

    @property
    def checkpoint_dir(self) -> Path:
        return self.path / CHECKPOINT_DIR

    @property
    def metrics_file(self) -> Path:
        return self.path / METRICS_FILE

    def export_dir(self, fmt: str) -> Path:
        """``export/<fmt>/``: where ``stdl-edge export RUN --to <fmt>`` writes by default."""
        return self.path / EXPORT_DIR / fmt

    def is_run(self) -> bool:
        """True when ``path`` is a run folder (it holds ``model.json``)."""
        return self.record_file.is_file()

    def record(self) -> dict[str, Any]:
        """``model.json``, checked: a run folder of this format version, with its model and stream."""
        if not self.path.exists():
            raise FileNotFoundError(f"run folder {self.path} does not exist "
                                    f"(train one with `stdl-edge train --out {self.path}`)")
        if not self.is_run():
            raise FileNotFoundError(f"{self.path} has no {MODEL_RECORD}: it is not a stdl-edge run folder "
                                    "(train one with `stdl-edge train`)")
        record = read_json(self.record_file)
        if not isinstance(record, dict):
            raise self._corrupt(f"it holds {type(record).__name__}, not a table of fields")
        version = record.get("format_version")
        if version != FORMAT_VERSION:
            raise ValueError(f"{self.record_file} has format_version {version}; this stdl-edge reads "
                             f"{FORMAT_VERSION}")
        for key in ("model", "stream"):
            if key not in record:
                raise self._corrupt(f"it has no {key!r} entry")
        return record

    def _corrupt(self, why: str) -> ValueError:
        """The error for a ``model.json`` that cannot be used, with the fix."""
        return ValueError(f"{self.record_file}: {why}; {self._fix()}")

    def _fix(self) -> str:
        return (f"`stdl-edge train --resume --out {self.path}` rewrites the run from its checkpoint"
                if self.checkpoint_dir.is_dir() else "train the run again or restore its files")

    def dataset(self) -> str | None:
        """The data set the run was trained on, if its record names one."""
        return dataset_of_record(self.record())

    def data_options(self) -> dict[str, Any]:
        """The ``load_dataset`` options that rebuild the run's data set (:func:`data_options_of_record`)."""
        return data_options_of_record(self.record())

    def save(self, model: SpikingNet, stream: StreamInfo, boundaries: list[tuple[int, int]] | None = None,
             heads: list[SpikingNet] = (), stdl: dict[str, Any] | None = None,
             extra: dict[str, Any] | None = None) -> Path:
        """Write ``model.safetensors`` and ``model.json`` (atomic writes); with ``stdl`` (the
        training details), also ``aux.safetensors`` and the record's "stdl" key, with the
        method-independent entries (subnets, boundaries, aux head specs, class names) filled in.
        """
        extra = dict(extra or {})
        digests: dict[str, str] = {}
        if stdl is not None:
            boundaries = list(boundaries) if boundaries is not None else [(0, len(model.layers))]
            heads = list(heads)
            if len(heads) != len(boundaries) - 1:
                raise ValueError(f"{len(boundaries)} subnetworks need {len(boundaries) - 1} auxiliary heads, "
                                 f"got {len(heads)}")
            tensors = {f"{k}.{name}": t for k, head in enumerate(heads) for name, t in head.state_dict().items()}
            digests[AUX_WEIGHTS] = save_tensors(self.aux_file, tensors, metadata={"heads": str(len(heads))})
            extra["stdl"] = {**stdl, "subnets": len(boundaries), "boundaries": [list(b) for b in boundaries],
                             "aux_heads": [net_spec(h) for h in heads], "class_names": list(stream.class_names)}
        digests[MODEL_WEIGHTS] = save_tensors(self.weights_file, model.state_dict())
        write_json(self.record_file, {"format_version": FORMAT_VERSION, "model": model.config.to_dict(),
                                      "stream": stream.to_dict(), **extra, "sha256": digests})
        return self.path

    def load(self, map_location: str | torch.device = "cpu") -> TrainedRun:
        """The trained run (model, stream, boundaries, aux heads), in eval mode on ``map_location``.

        A bare artifact (saved without training details) is one subnetwork with no heads.
        """
        record = self.record()
        try:
            model = build_model(ModelConfig.from_dict(record["model"]))
            stream = StreamInfo.from_dict(record["stream"])
            digests = {k: text(v, f"sha256.{k}") for k, v in table(record.get("sha256", {}), "sha256").items()}
            stdl = record.get("stdl")
            boundaries, heads = [(0, len(model.layers))], []
            if stdl is not None:
                stdl = table(stdl, "stdl")
                boundaries = [wholes(b, f"stdl.boundaries[{i}]", length=2, minimum=0)
                              for i, b in enumerate(stdl["boundaries"])]
                heads = [net_from_spec(spec, model) for spec in stdl.get("aux_heads", [])]
        except KeyError as e:
            raise self._corrupt(f"it has no {e.args[0]!r} entry") from None
        except (TypeError, ValueError) as e:  # TypeError: a head spec of the wrong shape
            raise self._corrupt(str(e)) from None
        if len(heads) != len(boundaries) - 1:
            raise self._corrupt(f"it lists {len(boundaries)} subnetworks but {len(heads)} auxiliary heads")
        try:
            _load_weights(model, self.weights_file, "", load_tensors(self.weights_file, digests.get(MODEL_WEIGHTS)))
            if heads:
                weights = load_tensors(self.aux_file, digests.get(AUX_WEIGHTS))
                for k, head in enumerate(heads):
                    _load_weights(head, self.aux_file, f"{k}.", weights, what=f"auxiliary head {k}")
        except DigestMismatch as e:
            raise ValueError(f"{e} ({MODEL_RECORD}): the folder was torn by a kill while training wrote it, or "
                             f"files were copied in from another run; {self._fix()}") from None
        model.to(map_location).eval()
        for head in heads:
            head.to(map_location).eval()
        return TrainedRun(model, stream, boundaries, heads, record)


def resolve_artifact(path: str | Path, fmt: str, export: ExportFn | None = None,
                     notify: Callable[[str], None] | None = None) -> Path:
    """What a reader of artifact format ``fmt`` opens for ``path``.

    ``path`` itself unless it is a run folder (or a folder holding ``export/<fmt>/``). For a
    run folder: the folder for ``fmt = "run"``, else its export folder ``export/<fmt>/`` (the format's reader finds its entry inside:
    ``manifest.json``, ``model.net``). A missing export is written first by
    ``export(run, fmt, out_dir)`` when given (``notify(message)`` is told), else a
    ``FileNotFoundError`` names the ``stdl-edge export`` command to run.
    """
    folder = RunFolder(path)
    if not folder.path.exists():
        raise FileNotFoundError(f"artifact {folder.path} does not exist")
    out = folder.export_dir(fmt)
    if fmt == RUN_FORMAT or not (folder.is_run() or out.is_dir()):
        return folder.path
    if not out.exists():
        if export is None:
            raise FileNotFoundError(f"{out} does not exist; run `stdl-edge export {folder.path} --to {fmt}`")
        if notify is not None:
            notify(f"{out} is missing: exporting {folder.path} to {fmt} first")
        export(folder.path, fmt, out)
        if not out.exists():
            raise FileNotFoundError(f"{out} does not exist after export; the {fmt} exporter wrote elsewhere")
    return out


def _load_weights(net: SpikingNet, path: Path, prefix: str, tensors: dict[str, Any],
                  what: str = "the model") -> SpikingNet:
    """Load ``tensors`` (read from ``path``) whose names start with ``prefix`` into ``net``, strictly."""
    state = {name[len(prefix):]: t for name, t in tensors.items() if name.startswith(prefix)}
    try:
        missing, unexpected = net.load_state_dict(state, strict=False)
    except RuntimeError as e:  # a tensor of the wrong shape
        raise ValueError(f"{path} does not fit {what} in {MODEL_RECORD}: {str(e).splitlines()[-1].strip()}") from None
    if missing or unexpected:
        raise ValueError(f"{path} does not fit {what} in {MODEL_RECORD}: "
                         f"missing {missing[:3]}, unexpected {unexpected[:3]}")
    return net


def save_model(folder: str | Path, model: SpikingNet, stream: StreamInfo,
               extra: dict[str, Any] | None = None) -> Path:
    """Write a bare run folder: ``model.safetensors`` and ``model.json`` (atomic writes)."""
    return RunFolder(folder).save(model, stream, extra=extra)


def save_run(folder: str | Path, model: SpikingNet, stream: StreamInfo, boundaries: list[tuple[int, int]],
             heads: list[SpikingNet], stdl: dict[str, Any]) -> Path:
    """Write an STDL run folder (see :meth:`RunFolder.save`)."""
    return RunFolder(folder).save(model, stream, boundaries, heads, stdl)


def load_run(folder: str | Path, map_location: str | torch.device = "cpu") -> TrainedRun:
    """``RunFolder(folder).load(map_location)``."""
    return RunFolder(folder).load(map_location)
