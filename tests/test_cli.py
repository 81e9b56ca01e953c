"""The CLI shell: help explains each command (without importing torch), info reports the environment,
user errors are one line with exit 2, internal errors say so with exit 1 (--debug: the traceback)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from stdl_edge.cli import app, is_user_error

runner = CliRunner()


def test_help_lists_commands():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "info" in result.output


def test_info_reports_versions_and_devices():
    result = runner.invoke(app, ["info"])
    assert result.exit_code == 0, result.output
    for word in ("torch", "numpy", "devices", "exporters", "CUDA"):
        assert word in result.output


def test_user_error_is_one_line_and_nonzero(tmp_path):
    # the installed entry point turns user errors into one line on stderr and exit code 2
    code = ("import sys; from stdl_edge.cli import main; from stdl_edge.cli.app import app\n"
            "@app.command('boom')\n"
            "def boom():\n"
            "    raise ValueError('frames have shape (3,), expected (B, 2, H, W)')\n"
            "sys.argv = ['stdl-edge', 'boom']; main()\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: frames have shape")
    assert "Traceback" not in proc.stderr


def _main(tmp_path, body: str, *argv: str) -> subprocess.CompletedProcess:
    """Run ``main()`` in a fresh interpreter with a ``boom`` command whose body is ``body``."""
    code = ("import sys; from stdl_edge.cli import main; from stdl_edge.cli.app import app\n"
            "@app.command('boom')\n"
            "def boom():\n"
            f"    {body}\n"
            f"sys.argv = ['stdl-edge', *{list(argv)!r}]; main()\n")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=120)


def test_user_error_keeps_brackets_and_shows_the_traceback_with_debug(tmp_path):
    body = "raise ImportError(\"reading AEDAT4 needs aedat: pip install 'stdl-edge[datasets]'\")"
    plain = _main(tmp_path, body, "boom")
    assert plain.returncode == 2
    assert plain.stderr.strip() == "error: reading AEDAT4 needs aedat: pip install 'stdl-edge[datasets]'"
    debug = _main(tmp_path, body, "--debug", "boom")
    assert debug.returncode == 2
    assert "Traceback" in debug.stderr and debug.stderr.strip().endswith("'stdl-edge[datasets]'")


@pytest.mark.parametrize("body, line", [
    ("raise KeyError('stream')", "internal error: KeyError: 'stream'"),
    ("raise RuntimeError('loihi-sim: call reset(batch) before step()')",
     "internal error: RuntimeError: loihi-sim: call reset(batch) before step()"),
    ("import no_such_module_of_ours", "internal error: ModuleNotFoundError: No module named 'no_such_module_of_ours'"),
])
def test_internal_error_is_one_line_exit_1_and_debug_shows_the_traceback(tmp_path, body, line):
    plain = _main(tmp_path, body, "boom")
    assert plain.returncode == 1
    assert plain.stderr.strip().splitlines() == [line, "run with --debug for the traceback"]
    debug = _main(tmp_path, body, "--debug", "boom")
    assert debug.returncode == 1
    assert "Traceback (most recent call last)" in debug.stderr and debug.stderr.strip().endswith(line)
    assert "--debug for the traceback" not in debug.stderr


def test_which_errors_are_the_users():
    from stdl_edge.sources import SourceError
    from stdl_edge.events import EventError
    from stdl_edge.quant import QuantError
    from stdl_edge.registry import UnavailableError, UnknownNameError

    for error in (ValueError("x"), EventError("x"), SourceError("x"), QuantError("x"), UnknownNameError("x"),
                  UnavailableError("x"), FileNotFoundError("x"), NotADirectoryError("x"), IsADirectoryError("x"),
                  PermissionError("x"), ImportError("needs onnx: pip install 'stdl-edge[onnx]'")):
        assert is_user_error(error), error
    for error in (KeyError("x"), RuntimeError("x"), TypeError("x"), AttributeError("x"), OSError("x"),
                  ModuleNotFoundError("No module named 'h5py'", name="h5py")):
        assert not is_user_error(error), error


def test_registry_names_unknown_and_unavailable_entries_as_user_errors():
    from stdl_edge.registry import Registry, UnavailableError, UnknownNameError

    reg = Registry("device")
    reg.register("here", 1, "always there")
    reg.register("elsewhere", 2, "needs a package", requires=("no_such_package_xyz",), extra="onnx")
    assert reg.get("here") == 1
    with pytest.raises(UnknownNameError, match=r"unknown device 'nope'; available: here, elsewhere"):
        reg.get("nope")
    with pytest.raises(UnavailableError, match=r"needs no_such_package_xyz \(pip install 'stdl-edge\[onnx\]'\)"):
        reg.get("elsewhere")


def test_unknown_device_on_the_command_line_is_one_line_exit_2(tmp_path):
    from stdl_edge.artifact import StreamInfo, save_model
    from stdl_edge.models import ModelConfig, build_model

    run = save_model(tmp_path / "run", build_model(ModelConfig(input_shape=(2, 8, 8), num_classes=2, width=0.25)),
                     StreamInfo((8, 8, 2), 1000, 4))
    proc = subprocess.run([sys.executable, "-c", "from stdl_edge.cli import main; main()", "run", str(run),
                           "--events", "digits-dvs:test", "--device", "nope"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: unknown device 'nope'; available: torch, onnxruntime")


def test_a_torch_device_that_does_not_exist_is_a_user_error(tmp_path):
    import torch

    bad = runner.invoke(app, ["train", "--device", "gpu", "--out", str(tmp_path / "run")])
    assert isinstance(bad.exception, ValueError) and "--device 'gpu' is not a torch device" in str(bad.exception)
    if not torch.cuda.is_available():
        cuda = runner.invoke(app, ["train", "--device", "cuda", "--out", str(tmp_path / "run")])
        assert isinstance(cuda.exception, ValueError) and "CUDA is not available here" in str(cuda.exception)
    assert not (tmp_path / "run").exists()


def _command_names() -> list[str]:
    import typer

    return list(typer.main.get_command(app).commands)


def test_version():
    import stdl_edge

    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"stdl-edge {stdl_edge.__version__}"


def test_h_is_help_for_the_app_and_every_command():
    names = _command_names()
    assert {"info", "data", "train", "plan", "export", "verify", "run", "bench"} <= set(names)
    for argv in (["-h"], *([name, "-h"] for name in names)):
        result = runner.invoke(app, argv, terminal_width=200)
        assert result.exit_code == 0, (argv, result.output)
        assert "Usage: stdl-edge" in result.output and "--help" in result.output, argv


def test_help_does_not_import_torch(tmp_path):
    names = _command_names()
    code = ("import json, sys\n"
            "from stdl_edge.cli import main\n"
            "heavy = {}\n"
            f"for argv in [['--help'], *([n, '--help'] for n in {names!r})]:\n"
            "    sys.argv = ['stdl-edge', *argv]\n"
            "    try:\n"
            "        main()\n"
            "    except SystemExit as e:\n"
            "        assert not e.code, (argv, e.code)\n"
            "    heavy[' '.join(argv)] = sorted(m for m in ('torch', 'matplotlib', 'onnxruntime', 'h5py',\n"
            "                                               'stdl_edge.devices', 'stdl_edge.exporters')\n"
            "                                   if m in sys.modules)\n"
            "print(json.dumps(heavy))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    heavy = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(heavy) == len(names) + 1 and all(v == [] for v in heavy.values()), heavy



def test_export_with_a_target_names_the_layer_that_breaks_it_and_exits_2(tmp_path):
    from stdl_edge.artifact import StreamInfo, save_model
    from stdl_edge.models import ModelConfig, build_model

    run = save_model(tmp_path / "run", build_model(ModelConfig(input_shape=(2, 8, 8), num_classes=2, width=0.25)),
                     StreamInfo((8, 8, 2), 1000, 4))
    for to in ("nir", "onnx", "netx"):
        proc = subprocess.run([sys.executable, "-c", "from stdl_edge.cli import main; main()", "export", str(run),
                               "--to", to, "--target", "if-chip"], capture_output=True, text=True, cwd=tmp_path,
                              timeout=120)
        assert proc.returncode == 2, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: the network breaks "), proc.stderr
        assert "if-chip constraint(s): layer 0.conv: neuron has voltage_decay=0.5 (a leak)" in lines[0]
    assert not (run / "export").exists()


def test_int_tuple_parses_the_options_run_and_import_share():
    from stdl_edge.cli.options import int_tuple

    assert int_tuple(None, "--crop", 4) is None
    assert int_tuple("1,2, 3,4", "--crop", 4) == (1, 2, 3, 4) and int_tuple("34x34", "--sensor", 2) == (34, 34)
    with pytest.raises(ValueError, match=r"--sensor='34' must be 2 integers separated by commas"):
        int_tuple("34", "--sensor", 2)
    with pytest.raises(ValueError, match=r"--input-shape='2,a,34' must be C,H,W, e\.g\. 2,34,34"):
        int_tuple("2,a,34", "--input-shape", 3, "C,H,W, e.g. 2,34,34")
