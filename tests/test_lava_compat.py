"""Lava on Python 3.11: the import-time fixes of devices/lava_compat.py and the missing-Lava message."""

from __future__ import annotations

import ast
import importlib.abc
import subprocess
import sys
import textwrap

import pytest

from stdl_edge.devices import lava_compat
from stdl_edge.devices.lava_compat import import_lava, lava_available, rewrite_mutable_dataclass_defaults

pytestmark = pytest.mark.lava

OK, WHY = lava_available()
needs_lava = pytest.mark.skipif(not OK, reason=f"Lava cannot be imported here: {WHY}")


def test_rewrite_turns_dataclass_instance_defaults_into_factories():
    source = textwrap.dedent('''
        """doc"""
        from __future__ import annotations
        from dataclasses import dataclass

        @dataclass
        class Enc:
            n: int = 0

        class Plain:
            pass

        @dataclass
        class Uses:
            a: Enc = Enc()
            b: Plain = Plain()
            c: Enc = Enc(3)
            d: int = 1
    ''')
    tree, rewritten = rewrite_mutable_dataclass_defaults(source)
    assert rewritten == 2  # `a` and `c`: calls of a dataclass of the module
    ns: dict = {}
    exec(compile(tree, "<test>", "exec"), ns)  # noqa: S102  (our own source string)
    u1, u2 = ns["Uses"](), ns["Uses"]()
    assert u1.a == ns["Enc"]() and u1.a is not u2.a  # a fresh default per instance
    assert u1.c.n == 3 and u1.c is not u2.c  # arguments kept, through a lambda
    assert u1.b is u2.b and u1.d == 1  # a plain class (hashable) keeps its shared default
    body = tree.body
    assert isinstance(body[1], ast.ImportFrom) and body[1].module == "__future__"
    assert isinstance(body[2], ast.ImportFrom) and body[2].module == "dataclasses"  # after __future__


def test_unpatched_source_is_what_python_311_rejects():
    # guards the premise: the construct the hook rewrites really fails on this Python
    source = "from dataclasses import dataclass\n@dataclass\nclass E:\n    n: int = 0\n@dataclass\nclass U:\n    a: E = E()\n"
    if sys.version_info < (3, 11):
        pytest.skip("Python < 3.11 accepts unhashable dataclass defaults")
    with pytest.raises(ValueError, match="mutable default"):
        exec(compile(source, "<test>", "exec"), {})  # noqa: S102


@needs_lava
def test_import_lava_in_a_fresh_interpreter():
    """A clean process: var_model imports with per-instance encoders; nothing imports `tests`."""
    code = textwrap.dedent('''
        import dataclasses, sys
        from stdl_edge.devices.lava_compat import import_lava, VAR_MODEL
        first = import_lava()
        second = import_lava()
        assert first == second
        from stdl_edge.devices import lava_compat
        assert sum(isinstance(f, lava_compat._LavaCompatFinder) for f in sys.meta_path) == 1
        vm = sys.modules[VAR_MODEL]
        encoders = [c for c in vars(vm).values() if dataclasses.is_dataclass(c) and any(
            f.default_factory is vm.ByteEncoder for f in dataclasses.fields(c))]
        assert len(encoders) >= 3, encoders
        a, b = encoders[0](), encoders[0]()
        name = next(f.name for f in dataclasses.fields(encoders[0]) if f.default_factory is vm.ByteEncoder)
        assert getattr(a, name) is not getattr(b, name)
        assert first.Loihi2SimCfg.__name__ == "Loihi2SimCfg" and hasattr(first.netx.hdf5, "Network")
        assert "tests" not in sys.modules, "something imported lava-dl's top-level `tests` package"
        print("OK")
    ''')
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().endswith("OK")


@needs_lava
def test_object_detection_stub_explains_what_is_missing():
    import_lava()
    obd = sys.modules[lava_compat.OBJECT_DETECTION]
    if not isinstance(obd, lava_compat._MissingSubpackage):
        pytest.skip("torchvision and opencv are installed: the real subpackage is used")
    with pytest.raises(ImportError, match="torchvision|cv2"):
        obd.models  # noqa: B018
    assert not hasattr(obd, "__path__")  # dunder probes stay AttributeError (import machinery relies on it)


class _BlockLava(importlib.abc.MetaPathFinder):
    """Pretends lava-nc / lava-dl are not installed."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname == "lava" or fullname.startswith("lava."):
            raise ModuleNotFoundError(f"No module named {fullname!r}", name=fullname)
        return None


def test_missing_lava_gives_the_install_command(monkeypatch):
    for name in [m for m in sys.modules if m == "lava" or m.startswith("lava.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(sys, "meta_path", [_BlockLava(), *sys.meta_path])
    with pytest.raises(RuntimeError) as err:
        import_lava()
    message = str(err.value)
    assert "make setup" in message
    assert "--no-deps --ignore-requires-python lava-nc==0.10.0 lava-dl==0.6.0" in message
    assert "[lava]" in message and "\n" not in message
    ok, reason = lava_available()
    assert not ok and reason == message
