"""Atomic writes: the umask's permissions, a full disk in one line, nothing left behind; tensor files."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest
import torch

from stdl_edge.io import (WRITER_FILE, DigestMismatch, DiskFullError, atomic_dir, atomic_path, check_writable,
                          load_tensors, read_json, recover_dir,
                          remove_temp_files, save_tensors, tensor_metadata, write_json)

ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


@pytest.fixture
def umask():
    """Set the process umask for a test (restored after)."""
    saved = os.umask(0o022)
    yield os.umask
    os.umask(saved)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002])
def test_written_files_keep_the_umask(tmp_path, umask, mask):
    umask(mask)
    write_json(tmp_path / "a.json", {"v": 1})
    save_tensors(tmp_path / "t.safetensors", {"w": torch.ones(2)})
    with atomic_path(tmp_path / "sub" / "b.bin") as tmp:
        tmp.write_bytes(b"x")
    for name in ("a.json", "t.safetensors", "sub/b.bin"):
        assert _mode(tmp_path / name) == 0o666 & ~mask, name
    assert _mode(tmp_path / "sub") == 0o777 & ~mask


def _disk_full_after(nbytes: int):
    """A ``Path.write_bytes`` / ``write_text`` that writes ``nbytes`` and then finds the disk full."""
    def write(self, data, *args, **kwargs):
        with open(self, "wb") as f:
            f.write((data.encode() if isinstance(data, str) else data)[:nbytes])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    return write


@pytest.mark.parametrize("writer", ["save_tensors", "write_json"])
def test_a_full_disk_names_the_file_and_leaves_the_old_one(tmp_path, monkeypatch, writer):
    target = tmp_path / ("t.safetensors" if writer == "save_tensors" else "a.json")
    write = {"save_tensors": lambda: save_tensors(target, {"w": torch.ones(3)}),
             "write_json": lambda: write_json(target, {"v": 1})}[writer]
    write()
    old = target.read_bytes()
    monkeypatch.setattr(Path, "write_bytes", _disk_full_after(10))
    monkeypatch.setattr(Path, "write_text", _disk_full_after(10))
    with pytest.raises(DiskFullError) as info:
        write()
    assert str(info.value) == (f"no space left on device while writing {target}: free space on that disk "
                               "(or write to another folder) and run again")
    assert isinstance(info.value, OSError) and info.value.errno == errno.ENOSPC
    assert [p.name for p in tmp_path.iterdir()] == [target.name] and target.read_bytes() == old


def test_a_full_disk_found_at_flush_or_on_quota(tmp_path, monkeypatch):
    def full(fd):
        raise OSError(errno.EDQUOT, os.strerror(errno.EDQUOT))

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(DiskFullError, match=f"while writing {tmp_path / 'a.json'}") as info:
        write_json(tmp_path / "a.json", [1])
    assert info.value.errno == errno.EDQUOT and list(tmp_path.iterdir()) == []


def test_an_interrupt_mid_write_leaves_nothing(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(tmp_path / "a.bin") as tmp:
            tmp.write_bytes(b"half")
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_check_writable_creates_the_folder_and_leaves_nothing(tmp_path):
    assert check_writable(tmp_path / "a" / "b") == tmp_path / "a" / "b"
    assert list((tmp_path / "a" / "b").iterdir()) == []


def test_check_writable_refuses_a_file_in_the_way(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(NotADirectoryError, match=f"^{tmp_path / 'f'} cannot be a folder: {tmp_path / 'f'} is a file"):
        check_writable(tmp_path / "f")
    with pytest.raises(NotADirectoryError, match=f"{tmp_path / 'f' / 'run'} cannot be a folder: {tmp_path / 'f'} is"):
        check_writable(tmp_path / "f" / "run")


@pytest.mark.skipif(ROOT, reason="root writes into read-only folders anyway")
def test_check_writable_refuses_a_read_only_folder(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o555)
    try:
        with pytest.raises(PermissionError, match=f"^cannot write into {ro} \\(Permission denied\\); choose"):
            check_writable(ro)
        with pytest.raises(PermissionError, match=f"^cannot create the folder {ro / 'run'}"):
            check_writable(ro / "run")
    finally:
        ro.chmod(0o755)


def test_check_writable_names_the_folder_it_cannot_write(tmp_path, monkeypatch):
    """The same path as the read-only folder, for a root user too: creating the probe file fails."""
    def refuse(path, flags, mode=0o777):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))

    monkeypatch.setattr(os, "open", refuse)
    with pytest.raises(PermissionError) as info:
        check_writable(tmp_path)
    assert str(info.value) == (f"cannot write into {tmp_path} (Permission denied); choose another folder "
                               "or make it writable")


def test_remove_temp_files_removes_only_the_writers_leftovers(tmp_path):
    for name in (".model.json.a1b2c3d4.tmp", ".state.safetensors.k_9zq0ab.tmp", "keep.tmp", ".x.tmp", "model.json"):
        (tmp_path / name).write_text("")
    removed = remove_temp_files(tmp_path)
    assert sorted(p.name for p in removed) == [".model.json.a1b2c3d4.tmp", ".state.safetensors.k_9zq0ab.tmp"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".x.tmp", "keep.tmp", "model.json"]
    assert remove_temp_files(tmp_path / "missing") == []


def test_tensor_files_check_their_digest_and_report_damage(tmp_path):
    path = tmp_path / "t.safetensors"
    digest = save_tensors(path, {"w": torch.arange(4.0)}, metadata={"epoch": "3"})
    assert torch.equal(load_tensors(path, digest)["w"], torch.arange(4.0))
    assert tensor_metadata(path) == {"epoch": "3"}
    save_tensors(path, {"w": torch.zeros(4)})
    with pytest.raises(DigestMismatch, match="is not the file its record lists"):
        load_tensors(path, digest)
    path.write_bytes(path.read_bytes()[:20])
    for read in (load_tensors, tensor_metadata):
        with pytest.raises(ValueError, match=f"^{path} is not a readable safetensors file .*corrupt or truncated$"):
            read(path)
    with pytest.raises(IsADirectoryError, match="is a folder, not a safetensors file"):
        load_tensors(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        tensor_metadata(tmp_path / "missing.safetensors")


def test_read_json_reports_a_folder_and_binary_bytes(tmp_path):
    with pytest.raises(IsADirectoryError, match="is a folder, not a JSON file"):
        read_json(tmp_path)
    (tmp_path / "b.json").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ValueError, match="not valid JSON \\(not UTF-8 text\\)"):
        read_json(tmp_path / "b.json")


def _sigkilled_writer(folder: Path) -> None:
    """A child process that exits at once: its pid names a writer that is gone."""
    import subprocess
    import sys
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                           check=True)
    import socket
    (folder / WRITER_FILE).write_text(f"{child.stdout.strip()} {socket.gethostname()}\n")


def test_a_sigkilled_export_folder_is_cleaned_up_by_the_next_write(tmp_path):
    """SIGKILL mid-export leaves ``.NAME.XXXXXXXX.tmp``; killed between the two renames it also
    leaves the old export moved aside with no export in place. The next write of the same folder
    puts the old export back and removes the dead writer's leftovers; a live writer's are kept."""
    target = tmp_path / "export"
    dead_tmp = tmp_path / ".export.0badc0de.tmp"
    old = tmp_path / ".export.0badc0de.old"
    live_tmp = tmp_path / ".export.1ivewrit.tmp"
    for d in (dead_tmp, old, live_tmp):
        d.mkdir()
    (dead_tmp / "half.onnx").write_bytes(b"partial")
    (old / "manifest.json").write_text("{}")
    _sigkilled_writer(dead_tmp)
    _sigkilled_writer(old)
    (live_tmp / WRITER_FILE).write_text(f"{os.getppid()} {__import__('socket').gethostname()}\n")
    assert recover_dir(target) == [dead_tmp]
    assert sorted(p.name for p in target.iterdir()) == ["manifest.json"]  # the old export, whole, no marker
    assert live_tmp.exists() and not old.exists()
    with atomic_dir(target) as tmp:
        (tmp / "manifest.json").write_text('{"new": 1}')
    assert sorted(p.name for p in target.iterdir()) == ["manifest.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".export.1ivewrit.tmp", "export"]
