"""Atomic file writes and safe tensor files (safetensors + JSON; never pickle).

Every file stdl-edge writes goes through :func:`atomic_path`: the content goes to a temporary
file ``.NAME.XXXXXXXX.tmp`` beside the target, which is flushed to disk (``fsync``) and renamed
over the target, so a kill at any moment leaves the old file or the new one, never half a file.

- **Permissions**: the temporary file is created with mode ``0o666`` and the kernel applies
  the process umask, exactly as ``open(path, "w")`` does (``tempfile.mkstemp`` would give
  ``0o600`` whatever the umask). No umask is read, so nothing races with other threads.
- **A full disk** (``ENOSPC``, ``EDQUOT``) raises :class:`DiskFullError`, one line naming the
  file, and the temporary file is removed (as on any other error or interrupt).
- A process killed with ``SIGKILL`` cannot remove its temporary file: :func:`remove_temp_files`
  clears such leftovers from a folder that one writer owns (the trainer does before it writes).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import secrets
import shutil
import socket
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

FORMAT_VERSION = 1
#: the temporary files of :func:`atomic_path` (and of ``tempfile.mkstemp``, used before)
TEMP_FILE = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp$")
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


class DiskFullError(OSError):
    """No space left (or the disk quota reached) while writing the file ``path``; ``errno`` is kept."""

    def __init__(self, path: Path, code: int = errno.ENOSPC,
                 fix: str = "free space on that disk (or write to another folder) and run again") -> None:
        super().__init__(f"no space left on device while writing {path}: {fix}")
        self.errno = code
        self.path = Path(path)  # not ``filename``: OSError's str() would become "[Errno 28] ..."


class DigestMismatch(ValueError):
    """A file is not the one its record lists (another sha256): rewritten after the record, or
    copied in from another write."""


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success flush it and rename it over ``path``.

    A crash or an exception leaves the old file (or nothing) in place, never half a file; the
    new file gets the permissions the umask gives (see the module docstring).
    """
    path = Path(path)
    folder = ensure_folder(path.parent)
    tmp = _create_temp(folder, path.name)
    try:
        yield tmp
        _fsync(tmp)
        os.replace(tmp, path)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if isinstance(e, OSError) and e.errno in _DISK_FULL and not isinstance(e, DiskFullError):
            raise DiskFullError(path, e.errno) from None
        raise


@contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a fresh temporary folder beside ``path``; on success it replaces ``path`` as a whole.

    A crash or an exception leaves the old folder (or nothing) in place, never a mix of old
    and new files. The old folder is moved aside before the new one is renamed in, so for
    that instant ``path`` does not exist; an exception then puts the old folder back.

    A ``SIGKILL`` leaves the temporary folder (and, between the two renames, the old folder
    moved aside): the next write of ``path`` removes the ones whose writer (named in
    :data:`WRITER_FILE` inside them) is no longer running on this host, and puts an old folder
    back where ``path`` is missing, so a killed export leaves nothing behind for long.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    recover_dir(path)
    tmp = _create_temp(path.parent, path.name, folder_kind=True)
    old = path.parent / f"{tmp.name[:-4]}.old"
    _mark_writer(tmp)
    try:
        yield tmp
        if path.exists():
            _mark_writer(path)  # moved aside next: a kill then leaves it for recover_dir to put back
            os.replace(path, old)
        os.replace(tmp, path)
        (path / WRITER_FILE).unlink(missing_ok=True)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        if old.exists() and not path.exists():  # stopped between the two renames: put the old folder back
            os.replace(old, path)
        if path.is_dir():
            (path / WRITER_FILE).unlink(missing_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        raise


#: inside a temporary folder of :func:`atomic_dir`: "PID HOST" of the process writing it
WRITER_FILE = ".stdl-edge-writer"


def _mark_writer(folder: Path) -> None:
    """Name this process as the writer of ``folder`` (:data:`WRITER_FILE`)."""
    (folder / WRITER_FILE).write_text(f"{os.getpid()} {socket.gethostname()}\n")


def _writer_gone(folder: Path) -> bool:
    """True when ``folder``'s :data:`WRITER_FILE` names a process of this host that is not running
    (a missing or unreadable marker, or another host's, counts as alive: never remove those)."""
    try:
        pid_text, host = (folder / WRITER_FILE).read_text().split()
        pid = int(pid_text)
    except (OSError, ValueError):
        return False
    if host != socket.gethostname() or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # exists, owned by someone else
        return False
    return False


def recover_dir(path: str | os.PathLike) -> list[Path]:
    """Clean up after :func:`atomic_dir` writes of ``path`` that were killed: put an old folder
    moved aside back if ``path`` is missing, and remove temporary folders whose writer is gone.
    Returns the folders removed."""
    path = Path(path)
    if not path.parent.is_dir():
        return []
    prefix = f".{path.name}."
    removed = []
    if path.is_dir() and _writer_gone(path):  # killed just before moving it aside: the export is whole
        (path / WRITER_FILE).unlink(missing_ok=True)
    for p in sorted(path.parent.iterdir()):
        if not (p.name.startswith(prefix) and p.name.endswith((".tmp", ".old")) and p.is_dir()):
            continue
        if not _writer_gone(p):
            continue
        if p.name.endswith(".old") and not path.exists():
            os.replace(p, path)  # killed between the two renames: the old export is still whole
            (path / WRITER_FILE).unlink(missing_ok=True)
            continue
        shutil.rmtree(p, ignore_errors=True)
        removed.append(p)
    return removed


def ensure_folder(folder: str | os.PathLike) -> Path:
    """Create ``folder`` (and its parents); one line when a file is in the way."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        blocker = next((p for p in (folder, *folder.parents) if p.exists() and not p.is_dir()), folder)
        raise NotADirectoryError(f"{folder} cannot be a folder: {blocker} is a file; choose another path") from None
    except OSError as e:
        raise _folder_error(e, folder, f"cannot create the folder {folder} ({e.strerror}); choose another path") from None
    return folder


def check_writable(folder: str | os.PathLike) -> Path:
    """Create ``folder`` if needed and check that files can be written into it (a file is
    created and removed); one line naming the folder otherwise. Returns the folder."""
    folder = ensure_folder(folder)
    try:
        _create_temp(folder, "write-check").unlink()
    except OSError as e:
        raise _folder_error(e, folder, f"cannot write into {folder} ({e.strerror}); choose another folder "
                                       "or make it writable") from None
    return folder


def remove_temp_files(folder: str | os.PathLike) -> list[Path]:
    """Remove the temporary files that killed writes left in ``folder`` (not recursive).

    Only for a folder that no other process is writing into. Returns what was removed.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    stale = [p for p in folder.iterdir() if TEMP_FILE.match(p.name) and p.is_file()]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def _folder_error(error: OSError, folder: Path, message: str) -> OSError:
    """:class:`DiskFullError` for a full disk, else ``PermissionError(message)`` with the errno of
    ``error`` (one line: no ``[Errno N]`` prefix)."""
    if error.errno in _DISK_FULL:
        return DiskFullError(folder, error.errno)
    refused = PermissionError(message)
    refused.errno = error.errno
    return refused


def _create_temp(folder: Path, name: str, folder_kind: bool = False) -> Path:
    """A new empty file ``.NAME.XXXXXXXX.tmp`` in ``folder``, mode ``0o666`` less the umask (or,
    with ``folder_kind``, a new empty folder of that name, mode ``0o777`` less the umask)."""
    while True:
        tmp = folder / f".{name}.{secrets.token_hex(4)}.tmp"
        try:
            if folder_kind:
                os.mkdir(tmp, 0o777)
            else:
                os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return tmp
        except FileExistsError:
            continue


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_json(path: str | os.PathLike, data: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path} does not exist") from None
    except IsADirectoryError:
        raise IsADirectoryError(f"{path} is a folder, not a JSON file") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path} is not valid JSON (not UTF-8 text); the file is corrupt") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON ({e.msg} at line {e.lineno}); the file is corrupt") from None


def save_tensors(path: str | os.PathLike, tensors: dict[str, Any], metadata: dict[str, str] | None = None) -> str:
    """Write a dict of torch tensors as safetensors, atomically; returns the file's sha256 (hex)."""
    from safetensors.torch import save

    data = save({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, metadata=metadata)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def load_tensors(path: str | os.PathLike, sha256: str | None = None) -> dict[str, Any]:
    """Read a safetensors file; a clear error if it is missing or corrupt.

    ``sha256``: the digest :func:`save_tensors` returned; another one raises :class:`DigestMismatch`.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load

    path = _existing_file(path)
    data = path.read_bytes()
    try:
        tensors = load(data)
    except (SafetensorError, ValueError) as e:
        raise ValueError(f"{path} is not a readable safetensors file ({e}); it is corrupt or truncated") from None
    if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
        raise DigestMismatch(f"{path} is not the file its record lists (another sha256)")
    return tensors


def tensor_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The string metadata of a safetensors file (its header only); errors as :func:`load_tensors`."""
    from safetensors import SafetensorError, safe_open

    path = _existing_file(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except (SafetensorError, OSError, ValueError) as e:
        raise ValueError(f"{path} is not a readable safetensors file ({e}); it is corrupt or truncated") from None


def _existing_file(path: str | os.PathLike) -> Path:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    if not path.is_file():
        raise IsADirectoryError(f"{path} is a folder, not a safetensors file")
    return path
