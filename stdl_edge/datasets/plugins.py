"""Data sets from other packages, registered through the ``stdl_edge.datasets`` entry-point group.

A package adds, in its ``pyproject.toml``::

    [project.entry-points."stdl_edge.datasets"]
    mypkg-set = "mypkg.data:builder"

where ``mypkg.data.builder`` is a :class:`stdl_edge.data.DatasetBuilder` whose ``info.name`` is
``mypkg-set`` (or a function taking no arguments that returns one). Once ``mypkg`` is installed,
``--dataset mypkg-set`` works everywhere: the entry point is loaded the first time the name is
asked for (or listed by ``stdl-edge data --list``) and registered like the bundled sets.
"""

from __future__ import annotations

from importlib.metadata import EntryPoint, entry_points

GROUP = "stdl_edge.datasets"


def plugin_entry_points() -> list[EntryPoint]:
    """The installed ``stdl_edge.datasets`` entry points, by name."""
    return sorted(entry_points(group=GROUP), key=lambda e: e.name)


def _register(ep: EntryPoint) -> None:
    from ..data import DatasetBuilder, register_dataset

    try:
        target = ep.load()
    except Exception as e:  # noqa: BLE001 - a broken plug-in is named, whatever it raised
        raise ValueError(f"data set plug-in {ep.name!r} ({ep.value}) cannot be loaded: {type(e).__name__}: {e}") from None
    builder = target if isinstance(target, DatasetBuilder) else target() if callable(target) else target
    if not isinstance(builder, DatasetBuilder):
        raise ValueError(f"data set plug-in {ep.name!r} ({ep.value}) gives {type(builder).__name__}, not a "
                         "stdl_edge.data.DatasetBuilder (or a function returning one)")
    register_dataset(ep.name, builder)


def load_plugin(name: str) -> bool:
    """Register the plug-in data set ``name`` if an entry point provides it; whether one did."""
    for ep in plugin_entry_points():
        if ep.name == name:
            _register(ep)
            return True
    return False


def load_plugins() -> list[str]:
    """Register every installed plug-in data set (for listings); returns their names."""
    names = []
    for ep in plugin_entry_points():
        _register(ep)
        names.append(ep.name)
    return names
