"""The layering in docs/architecture.md, checked on the source: imports go one way.

* the core (``stdl_edge``, outside ``stdl_edge.cli`` and ``stdl_edge.api``) never imports
  ``stdl_edge.devices`` or ``stdl_edge.exporters``, not even inside a function, and
  ``stdl_edge.api`` only inside its functions (``import stdl_edge`` stays light);
* an exporter never imports a device, a device never imports an exporter, and nothing but
  the CLI imports the CLI (``examples/`` and ``benchmarks/`` included);
* no module imports another module's private (``_``-prefixed) name, except from its own
  package's ``base`` module (the helpers a package's modules share);
* a file over MAX_LINES says why at its top (a ``Long file:`` line in its docstring);
* every package folder is listed in pyproject's ``packages`` (a wheel would miss it otherwise).
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[1]
#: source folder -> the package it is installed as (pyproject's package-dir)
PACKAGES = {"stdl_edge": "stdl_edge", "devices": "stdl_edge.devices", "exporters": "stdl_edge.exporters"}
WIRING = ("stdl_edge.cli", "stdl_edge.api")  # the core modules allowed to wire devices and exporters in
MAX_LINES = 400
LONG_FILE_MARK = "Long file:"


@dataclass(frozen=True)
class Import:
    module: str  # absolute module imported from
    name: str | None  # the name taken from it (``from m import name``), None for ``import m``
    line: int


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT)
    parts = [PACKAGES[rel.parts[0]], *rel.parts[1:]]
    parts[-1] = parts[-1][:-3]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(p for part in parts for p in part.split("."))


def _source_files(folders: tuple[str, ...] = tuple(PACKAGES)) -> list[Path]:
    return sorted(p for folder in folders for p in (ROOT / folder).rglob("*.py") if "__pycache__" not in p.parts)


def _imports(path: Path, module: str) -> list[Import]:
    """Every import in ``path`` (module level and inside functions), relative ones resolved."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: list[Import] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [Import(alias.name, None, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                # ``from pkg import submodule`` imports the submodule
                found.append(Import(sub if _is_module(sub) else base, alias.name, node.lineno))
    return found


def _import_nodes(tree: ast.AST) -> list[ast.AST]:
    """The import node behind each entry :func:`_imports` returns, in the same order."""
    return [node for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom)) for _ in node.names]


def _is_module(name: str) -> bool:
    for folder, package in PACKAGES.items():
        if name == package or name.startswith(package + "."):
            rest = name[len(package):].lstrip(".").split(".") if name != package else []
            base = ROOT / folder / Path(*rest) if rest else ROOT / folder
            if base.with_suffix(".py").is_file() or (base / "__init__.py").is_file():
                return True
    return False


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def _all_imports() -> list[tuple[Path, str, Import]]:
    return [(path, mod, imp) for path in _source_files() for mod in [_module_name(path)] for imp in _imports(path, mod)]


def _where(path: Path, imp: Import) -> str:
    return f"{path.relative_to(ROOT)}:{imp.line} imports {imp.module}" + (f".{imp.name}" if imp.name else "")


def test_the_walker_sees_the_imports_it_must_judge():
    """Guards the guard: relative imports resolve, and known edges of the tree are found."""
    found = {(mod, imp.module) for _, mod, imp in _all_imports()}
    assert ("stdl_edge.devices.torch_device", "stdl_edge.devices.base") in found  # from .base import ...
    assert ("stdl_edge.stdl.trainer", "stdl_edge.artifact") in found  # from ..artifact import ...
    assert any(_within(m, "stdl_edge.devices") for mod, m in found if _within(mod, "stdl_edge.cli"))


def test_the_core_never_imports_devices_or_exporters():
    bad = [_where(path, imp) for path, mod, imp in _all_imports()
           if not _within(mod, "stdl_edge.devices") and not _within(mod, "stdl_edge.exporters")
           and not any(_within(mod, w) for w in WIRING)
           and (_within(imp.module, "stdl_edge.devices") or _within(imp.module, "stdl_edge.exporters"))]
    assert not bad, "the core imports devices/exporters (only stdl_edge.cli and stdl_edge.api may):\n" + "\n".join(bad)


def test_the_api_wires_devices_and_exporters_in_only_inside_its_functions():
    path = ROOT / "stdl_edge" / "api.py"
    tree = ast.parse(path.read_text(encoding="utf-8"))
    functions = [node for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))]
    inside = {id(n) for f in functions for n in ast.walk(f)}
    type_checking = {id(n) for node in tree.body if isinstance(node, ast.If) for n in ast.walk(node)}
    bad = [_where(path, imp) for imp, node in zip(_imports(path, "stdl_edge.api"), _import_nodes(tree))
           if id(node) not in inside | type_checking
           and (_within(imp.module, "stdl_edge.devices") or _within(imp.module, "stdl_edge.exporters"))]
    assert not bad, "stdl_edge.api imports devices/exporters at module level:\n" + "\n".join(bad)


@pytest.mark.parametrize("side, other", [("stdl_edge.exporters", "stdl_edge.devices"),
                                         ("stdl_edge.devices", "stdl_edge.exporters")])
def test_exporters_and_devices_never_import_each_other(side, other):
    bad = [_where(path, imp) for path, mod, imp in _all_imports()
           if _within(mod, side) and (_within(imp.module, other) or _within(imp.module, "stdl_edge.cli"))]
    assert not bad, f"{side} imports {other} or the CLI:\n" + "\n".join(bad)


def _package_base(module: str, importer: str) -> bool:
    """``module`` is the ``base`` module of the importer's own package: where a package keeps
    the internal helpers its modules share (``stdl_edge.sources.base``, ``stdl_edge.devices.base``)."""
    package = importer.rpartition(".")[0]
    return module == f"{package}.base"


def test_no_module_imports_another_modules_private_names():
    bad = [_where(path, imp) for path, mod, imp in _all_imports()
           if imp.name is not None and imp.name.startswith("_") and not imp.name.startswith("__")
           and imp.module != mod and _is_module(imp.module) and not _package_base(imp.module, mod)]
    assert not bad, "private names imported across modules (make them public or move them):\n" + "\n".join(bad)


def test_examples_and_benchmarks_use_the_api_not_the_cli():
    bad = []
    for path in _source_files(("examples", "benchmarks")):
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in ast.walk(tree):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            bad += [f"{path.relative_to(ROOT)}:{node.lineno} imports {n}" for n in names if _within(n, "stdl_edge.cli")]
    assert not bad, "\n".join(bad)


def test_long_files_say_why_at_the_top():
    long = []
    for path in _source_files():
        lines = path.read_text(encoding="utf-8").splitlines()
        if len(lines) > MAX_LINES:
            doc = ast.get_docstring(ast.parse("\n".join(lines))) or ""
            if LONG_FILE_MARK not in doc:
                long.append(f"{path.relative_to(ROOT)}: {len(lines)} lines")
    assert not long, (f"files over {MAX_LINES} lines without a '{LONG_FILE_MARK}' reason in their docstring "
                      "(split them, or say why they are one file):\n" + "\n".join(long))


def test_every_package_folder_is_installed():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    listed = set(config["tool"]["setuptools"]["packages"])
    present = {_module_name(init) for init in _source_files() if init.name == "__init__.py"}
    assert present <= listed, f"package folders missing from pyproject's packages: {sorted(present - listed)}"
