"""Name -> implementation registries for exporters and devices.

``stdl_edge.exporters`` and ``stdl_edge.devices`` register their entries on import;
the core never imports them. Each entry says whether it can run here and, if not,
why (a missing optional package, say), so ``stdl-edge info`` can tell the user.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Callable, Generic, TypeVar

T = TypeVar("T")


class UnknownNameError(ValueError):
    """No entry is registered under the name asked for (a user error; the message lists the names)."""


class UnavailableError(ValueError):
    """The entry asked for cannot run here, e.g. an optional package is missing (a user error;
    the message says what to install)."""


@dataclass(frozen=True)
class Entry(Generic[T]):
    name: str
    target: T
    summary: str
    requires: tuple[str, ...] = ()  # importable module names
    extra: str = ""  # pip extra that installs them
    format: str = ""  # the artifact format it reads (a device) or writes (an exporter): run, onnx, netx, ...

    def missing(self) -> list[str]:
        return [m for m in self.requires if importlib.util.find_spec(m.split(".")[0]) is None]

    def why_unavailable(self) -> str | None:
        missing = self.missing()
        if not missing:
            return None
        hint = f"pip install 'stdl-edge[{self.extra}]'" if self.extra else "install it"
        return f"needs {', '.join(missing)} ({hint})"


class Registry(Generic[T]):
    """A small ordered map of named entries; later registrations override earlier ones."""

    def __init__(self, what: str) -> None:
        self.what = what
        self._entries: dict[str, Entry[T]] = {}

    def register(self, name: str, target: T, summary: str, requires: tuple[str, ...] = (),
                 extra: str = "", format: str = "") -> T:
        self._entries[name] = Entry(name, target, summary, tuple(requires), extra, format)
        return target

    def names(self) -> list[str]:
        return list(self._entries)

    def entries(self) -> list[Entry[T]]:
        return list(self._entries.values())

    def entry(self, name: str) -> Entry[T]:
        """The entry registered as ``name``; :class:`UnknownNameError` for an unknown name,
        :class:`UnavailableError` for an entry that cannot run here."""
        entry = self._entries.get(name)
        if entry is None:
            raise UnknownNameError(f"unknown {self.what} {name!r}; available: {', '.join(self._entries) or 'none'}")
        why = entry.why_unavailable()
        if why:
            raise UnavailableError(f"{self.what} {name!r} is not available: {why}")
        return entry

    def get(self, name: str) -> T:
        """The target registered as ``name`` (checked as :meth:`entry`)."""
        return self.entry(name).target

    def first_for(self, format: str) -> str | None:
        """The first entry registered for artifact ``format`` (the default device for it), if any."""
        return next((e.name for e in self._entries.values() if e.format == format), None)


EXPORTERS: Registry[Callable] = Registry("exporter")
DEVICES: Registry[Callable] = Registry("device")
