"""The format registry: the one place that maps a spec to a reader and a path to a writer.

A format module defines its reader (an :class:`~stdl_edge.sources.base.EventSource`) and its
writer side by side and ends with one :func:`register_format` call; nothing else names the format.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Callable

import numpy as np

from .base import EventSource, ReadOptions, SourceError, _check_file

#: ``writer(fh, events, width, height)``: EVENT_DTYPE ``events`` (validated, non-empty) to a binary file
Writer = Callable[[IO[bytes], np.ndarray, int, int], None]



@dataclass(frozen=True)
class Format:
    """One event format: the only place that says how it is found, read and written.

    name: what ``format=`` (``--format``) takes, e.g. ``"evt3"``.
    suffixes: lower-case file suffixes that select it (``(".h5", ".hdf5")``).
    reader: ``reader(target, options) -> EventSource``; ``target`` is the file's ``Path``, or the
      spec text for a format that ``claims`` it. ``options`` is a :class:`ReadOptions`.
    writer: a :data:`Writer`, or None for formats that are only read (video, cameras, data sets).
    summary: one line for listings and docs.
    detect: for a suffix that several formats share (``.raw``: EVT2 and EVT3), ``detect(path)``
      reads the file and returns the name of the one it is; writing such a suffix without
      ``format=`` uses the first one registered.
    claims: ``claims(spec) -> bool`` for inputs that a suffix does not name (a folder,
      ``camera:``, ``NAME:SPLIT``); tried in registration order before any suffix lookup.
    """

    name: str
    suffixes: tuple[str, ...]
    reader: Callable[[Any, ReadOptions], EventSource]
    writer: Writer | None
    summary: str
    detect: Callable[[Path], str] | None = None
    claims: Callable[[str], bool] | None = None


#: every registered format by name, in registration order
FORMATS: dict[str, Format] = {}


def register_format(fmt: Format) -> Format:
    """Add ``fmt`` (a later one with the same name replaces it)."""
    FORMATS[fmt.name] = fmt
    return fmt


def _named(key: str) -> list[Format]:
    """The format called ``key``, else those with the suffix ``key`` (``"h5"`` or ``".h5"``)."""
    if key in FORMATS:
        return [FORMATS[key]]
    suffix = "." + key.lower().lstrip(".")
    return [f for f in FORMATS.values() if suffix in f.suffixes]


def reader_for(spec: str | os.PathLike, format: str | None = None) -> tuple[Format, str | Path]:
    """The format that reads ``spec`` and the target its reader takes (the ``Path``, or the spec text).

    ``format`` is a format name or a suffix (``"raw"``: EVT2 or EVT3, from the header); without
    it, a format that ``claims`` the spec wins, else the file's suffix decides.
    """
    text = str(spec)
    if Path(text).is_dir() and any(f.claims is None for f in _named(Path(text).suffix) if Path(text).suffix):
        raise SourceError(f"{text}: is a folder, not a {Path(text).suffix} file; pass the event file itself")
    if format is not None:
        found = _named(format)
        if found and found[0].claims is not None:  # a folder, camera, data set: the reader takes the text
            return found[0], text
    else:
        claimed = [f for f in FORMATS.values() if f.claims is not None and f.claims(text)]
        if claimed:
            return claimed[0], text
    path = Path(text)
    if not path.exists():
        raise FileNotFoundError(f"event source {path} does not exist")
    if format is None:
        found = _named(path.suffix) if path.suffix else []
    if not found:
        if format is not None:
            raise SourceError(f"format={format!r} is unknown; use one of {', '.join(FORMATS)}")
        known = sorted({s for f in FORMATS.values() for s in f.suffixes})
        raise SourceError(f"{path}: unknown event file type {path.suffix!r}; known: {', '.join(known)}, or a "
                          "folder of frames (or pass format=)")
    if len(found) > 1 and found[0].detect is not None:  # a shared suffix: the file says which
        _check_file(path)
        return FORMATS[found[0].detect(path)], path
    return found[0], path


def writer_for(path: Path, format: str | None = None) -> Writer:
    """The writer of ``format`` (a name or a suffix), else of ``path``'s suffix."""
    key = format or path.suffix
    found = [f for f in _named(key) if f.writer is not None] if key else []
    if not found:
        writable = ", ".join(n for n, f in FORMATS.items() if f.writer is not None)
        raise SourceError(f"cannot write {path}: format {format or path.suffix!r} is unknown or read-only; "
                          f"use one of {writable}")
    return found[0].writer
