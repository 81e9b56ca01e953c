"""What makes an export folder one export: an id, its files' SHA-256, names that stay inside it.

Every exporter (ONNX, netx, NIR) writes its folder through :func:`export_folder`: a temporary
folder beside the target, renamed into place whole (:func:`stdl_edge.io.atomic_dir`), with its
record (the ONNX/NIR ``manifest.json``, netx ``export.json``) written last. The record holds
``export_id`` (:func:`new_export_id`: the source weights' hash and a random part) and ``files``
(``name -> sha256`` of every other file, :func:`file_digests`). A reader calls
:func:`check_files`: a listed file that is missing or whose hash differs (a file from another
export) is refused in one line naming the file; a file the record does not list is ignored
(nothing reads it). :func:`member` refuses a name that leaves the folder (``..``, an absolute
path, a symlink out): an export only reads files inside its own folder.
"""

from __future__ import annotations

import hashlib
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping

from stdl_edge.io import atomic_dir, read_json

EXPORT_ID, FILES = "export_id", "files"
_CHUNK = 1 << 20


class ExportError(ValueError):
    """An export folder whose files do not belong to one complete export; the message names the file."""


def digest(path: str | Path) -> str:
    """The SHA-256 of a file's bytes, as hex."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def new_export_id(weights: str | Path) -> str:
    """``<first 16 hex of the weights' SHA-256>-<12 random hex>``: which model, and which export of it."""
    return f"{digest(weights)[:16]}-{uuid.uuid4().hex[:12]}"


def file_digests(folder: Path, names: list[str]) -> dict[str, str]:
    """``name -> sha256`` of the files ``folder/name``."""
    return {name: digest(folder / name) for name in names}


def read_record(path: Path, fmt: str) -> Any:
    """The JSON of an export's record (``manifest.json``, ``export.json``); one line if it is no JSON file."""
    if path.is_dir():
        raise ExportError(f"{path} is a folder, not a file; re-export with `stdl-edge export RUN --to {fmt}`")
    try:
        return read_json(path)
    except UnicodeDecodeError as e:
        raise ExportError(f"{path} is not text (byte {e.start} is not UTF-8): the file is corrupt; re-export with "
                          f"`stdl-edge export RUN --to {fmt}`") from None


def member(folder: Path, name: Any, record: Path) -> Path:
    """``folder/name``, refused (:class:`ExportError`) unless ``name`` is a relative path inside ``folder``."""
    if not isinstance(name, str) or not name:
        raise ExportError(f"{record}: file {name!r} is not a file name; re-export the folder")
    if Path(name).is_absolute() or ".." in Path(name).parts:
        raise ExportError(f"{record}: file {name!r} points outside {folder}; an export only reads files inside its "
                          "own folder (re-export)")
    path = folder / name
    if not path.resolve().is_relative_to(folder.resolve()):
        raise ExportError(f"{record}: file {name!r} is a link out of {folder}; an export only reads files inside "
                          "its own folder (re-export)")
    return path


def check_files(folder: Path, record: Path, data: Mapping[str, Any], fmt: str) -> None:
    """Refuse ``folder`` unless every file its record ``data`` lists is there with the listed hash.

    A record without ``files`` (written before export ids) is not checked.
    """
    files = data.get(FILES)
    if files is None:
        return
    fix = f"re-export with `stdl-edge export RUN --to {fmt}`"
    if not isinstance(files, dict) or not all(isinstance(v, str) for v in files.values()):
        raise ExportError(f"{record}: field 'files' must map file names to SHA-256 hex strings; {fix}")
    for name, want in files.items():
        path = member(folder, name, record)
        if not path.is_file():
            raise ExportError(f"{path} is missing but {record.name} lists it: the export is incomplete; {fix}")
        if digest(path) != want:
            raise ExportError(f"{path} does not belong to export {data.get(EXPORT_ID)!r} of {record.name} (its "
                              f"SHA-256 differs): the folder mixes files of several exports; {fix}")


@contextmanager
def export_folder(out: Path, records: tuple[str, ...]) -> Iterator[Path]:
    """:func:`~stdl_edge.io.atomic_dir` for an export folder: yield a temporary folder that replaces
    ``out`` whole. A non-empty ``out`` holding none of ``records`` (no export) is refused, not replaced."""
    if out.exists() and not out.is_dir():
        raise ExportError(f"export folder {out} is a file; choose a folder for --out")
    if out.is_dir() and any(out.iterdir()) and not any((out / r).exists() for r in records):
        raise ExportError(f"{out} is a non-empty folder holding no export ({' or '.join(records)}); an export "
                          "replaces its folder whole: choose a new or empty --out")
    with atomic_dir(out) as tmp:
        yield tmp
