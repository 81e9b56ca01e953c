"""Import Lava (lava-nc 0.10, lava-dl 0.6) on Python 3.11 without editing site-packages.

Both wheels declare ``Python < 3.11`` and are installed with ``--no-deps
--ignore-requires-python`` (``make setup``). Two things break at import time on 3.11;
:func:`import_lava` fixes both, in our process only, before any Lava module loads:

1. ``lava.magma.compiler.var_model`` declares dataclass fields such as
   ``x: ByteEncoder = ByteEncoder()``. ``ByteEncoder`` is itself a ``@dataclass``
   (``eq=True``, so ``__hash__ = None``), and since Python 3.11 ``dataclasses`` rejects
   any unhashable default as mutable (``ValueError: mutable default ... use
   default_factory``), so the module cannot be imported.

   Fix: a meta-path finder hands that one module a loader that compiles it from an
   AST rewritten so that every class-level default which is a call of a dataclass
   defined in the same module, ``x: C = C()``, becomes ``x: C = field(default_factory=C)``
   (``C(args)`` becomes ``field(default_factory=lambda: C(args))``). That is exactly the change upstream Lava made
   for 3.11, and it is the only behaviour that changes: each instance gets its own
   ``ByteEncoder`` instead of one shared by all (the shared one was a latent bug).
   Why this and not the alternatives: editing site-packages is forbidden and lost on
   reinstall; relaxing ``dataclasses``' check would need a process-wide patch of a
   private function; a text substitution breaks on any reformatting, while the AST
   rule matches the construct itself. The loader never reads or writes ``.pyc`` files,
   so the rewritten bytecode cannot leak into, or be shadowed by, ``__pycache__``.

2. ``lava.lib.dl.slayer`` imports its ``object_detection`` subpackage eagerly, which
   needs torchvision and opencv (not dependencies of stdl-edge). When they are not
   importable, a stub module stands in for the subpackage; touching any of its
   attributes raises an ImportError that says what is missing.

:func:`import_lava` is idempotent and returns the Lava modules the devices and tests
use as one :class:`LavaModules`. :func:`lava_available` says whether that works here.
"""

from __future__ import annotations

import ast
import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import types
from dataclasses import dataclass
from typing import Any

VAR_MODEL = "lava.magma.compiler.var_model"
OBJECT_DETECTION = "lava.lib.dl.slayer.object_detection"
INSTALL_HINT = ("run `make setup`, or `pip install -c constraints.txt -e '.[lava]'` and then "
                "`pip install --no-deps --ignore-requires-python lava-nc==0.10.0 lava-dl==0.6.0`")
_FIELD_ALIAS = "_stdl_edge_dataclass_field"


# ----------------------------------------------------------------------------- fix 1: var_model
def _is_dataclass_decorator(node: ast.expr) -> bool:
    target = node.func if isinstance(node, ast.Call) else node
    return ((isinstance(target, ast.Name) and target.id == "dataclass")
            or (isinstance(target, ast.Attribute) and target.attr == "dataclass"))


class _DataclassDefaultsToFactories(ast.NodeTransformer):
    """``x: C = C()`` -> ``x: C = field(default_factory=C)`` for dataclasses ``C`` of the module.

    With arguments, ``C(args)`` -> ``field(default_factory=lambda: C(args))``.
    """

    def __init__(self, dataclass_names: set[str]) -> None:
        self.dataclass_names = dataclass_names
        self.rewritten = 0

    def visit_ClassDef(self, node: ast.ClassDef) -> ast.ClassDef:
        for i, stmt in enumerate(node.body):
            value = stmt.value if isinstance(stmt, ast.AnnAssign) else None
            if (isinstance(value, ast.Call) and isinstance(value.func, ast.Name)
                    and value.func.id in self.dataclass_names):
                if value.args or value.keywords:  # C(...) -> default_factory=lambda: C(...)
                    make: ast.expr = ast.Lambda(args=ast.arguments(posonlyargs=[], args=[], kwonlyargs=[],
                                                                   kw_defaults=[], defaults=[]), body=value)
                else:  # C() -> default_factory=C
                    make = ast.Name(value.func.id, ast.Load())
                factory = ast.Call(func=ast.Name(_FIELD_ALIAS, ast.Load()), args=[],
                                   keywords=[ast.keyword("default_factory", make)])
                node.body[i] = ast.copy_location(
                    ast.AnnAssign(target=stmt.target, annotation=stmt.annotation,
                                  value=ast.copy_location(factory, value), simple=stmt.simple), stmt)
                self.rewritten += 1
        self.generic_visit(node)
        return node


def rewrite_mutable_dataclass_defaults(source: str | bytes, filename: str = "<lava>") -> tuple[ast.Module, int]:
    """Parse ``source`` and apply the rewrite; returns ``(module AST, number of fields rewritten)``."""
    tree = ast.parse(source, filename)
    names = {n.name for n in ast.walk(tree)
             if isinstance(n, ast.ClassDef) and any(_is_dataclass_decorator(d) for d in n.decorator_list)}
    transformer = _DataclassDefaultsToFactories(names)
    tree = transformer.visit(tree)
    # the import goes after the docstring and any `from __future__` imports (they must come first)
    at = 0
    for at, stmt in enumerate(tree.body):  # noqa: B007
        is_doc = at == 0 and isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant)
        if not (is_doc or (isinstance(stmt, ast.ImportFrom) and stmt.module == "__future__")):
            break
    else:
        at = len(tree.body)
    tree.body.insert(at, ast.ImportFrom("dataclasses", [ast.alias("field", _FIELD_ALIAS)], 0))
    return ast.fix_missing_locations(tree), transformer.rewritten


class _RewritingLoader(importlib.machinery.SourceFileLoader):
    """Compiles the module from its rewritten AST; never touches ``__pycache__``."""

    def get_code(self, fullname: str) -> types.CodeType:
        path = self.get_filename(fullname)
        tree, _ = rewrite_mutable_dataclass_defaults(self.get_data(path), path)
        return compile(tree, path, "exec", dont_inherit=True)


class _LavaCompatFinder(importlib.abc.MetaPathFinder):
    """Gives :data:`VAR_MODEL` the rewriting loader; declines every other module."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if fullname != VAR_MODEL:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or not isinstance(spec.loader, importlib.machinery.SourceFileLoader):
            return spec  # a layout we do not know (zip, bytecode-only): let Python report it
        spec.loader = _RewritingLoader(fullname, spec.origin)
        return spec


_FINDER = _LavaCompatFinder()


def _install_finder() -> None:
    if sys.version_info >= (3, 11) and not any(isinstance(f, _LavaCompatFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _FINDER)


# ----------------------------------------------------------------------------- fix 2: slayer obd
class _MissingSubpackage(types.ModuleType):
    """Stands in for a subpackage whose own dependencies are not installed."""

    def __init__(self, name: str, why: str) -> None:
        super().__init__(name, f"stub installed by stdl_edge.devices.lava_compat: {why}")
        self.__spec__ = importlib.machinery.ModuleSpec(name, None)
        self._why = why

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__"):
            raise AttributeError(attr)
        raise ImportError(f"{self.__name__}.{attr} is unavailable: {self._why}")


def _stub_object_detection() -> None:
    if OBJECT_DETECTION in sys.modules:
        return
    missing = [m for m in ("torchvision", "cv2") if importlib.util.find_spec(m) is None]
    if missing:
        sys.modules[OBJECT_DETECTION] = _MissingSubpackage(
            OBJECT_DETECTION, f"it needs {' and '.join(missing)} (pip install torchvision opencv-python); "
            "stdl-edge does not use it")


# ----------------------------------------------------------------------------- public API
@dataclass(frozen=True)
class LavaModules:
    """The Lava modules stdl-edge uses (all imported and ready)."""

    netx: types.ModuleType  # lava.lib.dl.netx (netx.hdf5.Network)
    slayer: types.ModuleType  # lava.lib.dl.slayer (blocks, export_hdf5)
    RunSteps: type  # lava.magma.core.run_conditions.RunSteps
    Loihi2SimCfg: type  # lava.magma.core.run_configs.Loihi2SimCfg
    Loihi2HwCfg: type | None  # lava.magma.core.run_configs.Loihi2HwCfg, None if missing
    Monitor: type  # lava.proc.monitor.process.Monitor
    RingBuffer: type  # lava.proc.io.source.RingBuffer (spike source fed from an array)
    hardware: bool  # lava-loihi (Loihi 2 hardware backend) importable


def import_lava() -> LavaModules:
    """Apply both compatibility fixes and import Lava; idempotent (cheap after the first call).

    Raises RuntimeError with the install command when lava-nc / lava-dl (or one of their
    runtime dependencies) is not importable.
    """
    for top in ("lava", "lava.magma", "lava.lib.dl"):
        try:
            found = importlib.util.find_spec(top) is not None
        except ModuleNotFoundError:
            found = False
        if not found:
            raise RuntimeError(f"Lava is not installed ({top} not found): {INSTALL_HINT}")
    _install_finder()
    _stub_object_detection()
    try:
        netx = importlib.import_module("lava.lib.dl.netx")
        slayer = importlib.import_module("lava.lib.dl.slayer")
        run_conditions = importlib.import_module("lava.magma.core.run_conditions")
        run_configs = importlib.import_module("lava.magma.core.run_configs")
        monitor = importlib.import_module("lava.proc.monitor.process")
        source = importlib.import_module("lava.proc.io.source")
    except ImportError as e:
        raise RuntimeError(f"Lava could not be imported ({type(e).__name__}: {e}): {INSTALL_HINT}") from e
    hardware = _has_lava_loihi()
    return LavaModules(netx=netx, slayer=slayer, RunSteps=run_conditions.RunSteps,
                       Loihi2SimCfg=run_configs.Loihi2SimCfg,
                       Loihi2HwCfg=getattr(run_configs, "Loihi2HwCfg", None),
                       Monitor=monitor.Monitor, RingBuffer=source.RingBuffer, hardware=hardware)


def _has_lava_loihi() -> bool:
    """lava-loihi (Intel's Loihi 2 backend, not on PyPI) provides ``lava.magma.core.model.nc``."""
    try:
        return importlib.util.find_spec("lava.magma.core.model.nc") is not None
    except ModuleNotFoundError:
        return False


def lava_available() -> tuple[bool, str]:
    """``(True, 'lava-nc X, lava-dl Y')`` if :func:`import_lava` works here, else ``(False, reason)``."""
    try:
        import_lava()
    except RuntimeError as e:
        return False, str(e)
    from importlib.metadata import PackageNotFoundError, version

    def v(dist: str) -> str:
        try:
            return version(dist)
        except PackageNotFoundError:
            return "?"

    return True, f"lava-nc {v('lava-nc')}, lava-dl {v('lava-dl')}"
