"""The CLI shell: help explains each command, info reports the environment, errors are one line."""

from __future__ import annotations

import subprocess
import sys

from typer.testing import CliRunner

from stdl_edge.cli import app

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
