"""Atomic file writes and the system calls under cryorl's output protocol (:mod:`cryorl.outputs`).

A file is written to a temporary name beside the target (``.NAME.PID-HOST-XXXXXXXX.part``: the writer's process
id and a tag of its host), then renamed onto the target, so an interrupted run leaves either the old file or the
new one, never half of one; the temporary files of dead writers are removed by :func:`remove_orphaned_parts`.
A path that is a symbolic link is written through: the link's target is replaced, the link stays.

:func:`exchange` swaps two folders in one step (Linux ``renameat2(RENAME_EXCHANGE)``), :func:`rename_noreplace`
renames without replacing anything. :func:`load_weights` reads a PyTorch state dict without running any code.
"""
from __future__ import annotations

import ctypes
import errno
import hashlib
import os
import signal
import socket
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["atomic_path", "atomic_write_text", "umask", "exchange", "rename_noreplace",
           "remove_orphaned_parts", "pid_alive", "host_tag", "load_weights", "NotWeightsError"]

KILL_AT_ENV = "CRYORL_TEST_KILL_AT"          # tests: SIGKILL this process at the k-th kill point (1-based)
KILL_TRACE_ENV = "CRYORL_TEST_KILL_TRACE"    # tests: print each kill point's number and name to stderr
_kill_points = 0


def kill_point(name: str) -> None:
    """A step of an output protocol where a kill must leave a consistent state; tests make the process SIGKILL
    itself here (``CRYORL_TEST_KILL_AT=k``: at the k-th point reached), otherwise a no-op."""
    global _kill_points
    if KILL_AT_ENV not in os.environ and KILL_TRACE_ENV not in os.environ:
        return
    _kill_points += 1
    if os.environ.get(KILL_TRACE_ENV):
        print(f"kill point {_kill_points}: {name}", file=sys.stderr, flush=True)
    if os.environ.get(KILL_AT_ENV) == str(_kill_points):
        os.kill(os.getpid(), signal.SIGKILL)


def host_tag() -> str:
    """Six hex digits naming this host in temporary file names (a hash of its host name)."""
    return hashlib.blake2s(socket.gethostname().encode(), digest_size=3).hexdigest()


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this host (ours counts as alive)."""
    if pid == os.getpid():
        return True
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:                  # someone else's process
        return True
    return True


def _part_prefix(name: str) -> str:
    return f".{name}.{os.getpid()}-{host_tag()}-"


@contextmanager
def atomic_path(path: str | os.PathLike, *, replace: bool = True) -> Iterator[Path]:
    """Yield a temporary path in ``path``'s folder; on success it is renamed onto ``path``, on error removed.

    A symbolic link at ``path`` is followed (its target is written). ``replace=False``: the final rename refuses,
    with :class:`FileExistsError`, a file that appeared at ``path`` meanwhile instead of replacing it."""
    path = Path(path)
    if path.is_symlink():
        path = Path(os.path.realpath(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=_part_prefix(path.name), suffix=".part", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    os.chmod(tmp, 0o666 & ~umask())       # mkstemp makes 0600 files; give the usual permissions
    try:
        yield tmp
        if replace:
            os.replace(tmp, path)
        else:
            rename_noreplace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def remove_orphaned_parts(folder: str | os.PathLike, *, prefix: str = ".", untagged: bool = False) -> list[Path]:
    """Remove the temporary ``.NAME.PID-HOST-….part`` files in ``folder`` (those whose names start with
    ``prefix``) whose writer, a process of this host, is gone; ``untagged`` also removes ``.part`` files without
    a writer's tag (earlier versions' temporaries), which only a caller holding the folder's lock may do.
    Returns the paths removed."""
    removed = []
    try:
        candidates = [p for p in Path(folder).iterdir() if p.name.startswith(prefix) and p.name.endswith(".part")]
    except OSError:
        return removed
    tag = host_tag()
    for part in candidates:
        owner = _part_owner(part.name)
        if owner is None and not untagged:
            continue
        if owner is not None and (owner[1] != tag or pid_alive(owner[0])):
            continue
        try:
            if part.is_file() and not part.is_symlink():
                part.unlink()
                removed.append(part)
        except OSError:
            continue
    return removed


def _part_owner(name: str) -> tuple[int, str] | None:
    """(pid, host tag) from ``.NAME.PID-HOST-XXXXXXXX.part``, None for a name without them."""
    stem = name[: -len(".part")]
    fields = stem.rsplit(".", 1)
    if len(fields) != 2:
        return None
    parts = fields[1].split("-")
    if len(parts) < 3 or not parts[0].isdigit() or len(parts[1]) != 6:
        return None
    return int(parts[0]), parts[1]


def umask() -> int:
    """The process's file-creation mask (read by setting and restoring it)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


AT_FDCWD = -100
RENAME_NOREPLACE = 1
RENAME_EXCHANGE = 2
_renameat2 = None


def _libc_renameat2():
    """libc's ``renameat2`` (Linux, glibc ≥ 2.28), or None."""
    global _renameat2
    if _renameat2 is None:
        function = False
        if sys.platform.startswith("linux"):
            try:
                function = ctypes.CDLL(None, use_errno=True).renameat2
                function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
                function.restype = ctypes.c_int
            except (AttributeError, OSError):
                function = False
        _renameat2 = function
    return _renameat2 or None


def _call_renameat2(source: Path, target: Path, flags: int) -> bool:
    """True when done, False when this system or file system has no such rename; raises other errors."""
    function = _libc_renameat2()
    if function is None or os.environ.get("CRYORL_NO_RENAMEAT2"):
        return False
    if function(AT_FDCWD, os.fsencode(source), AT_FDCWD, os.fsencode(target), flags) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(source), None, str(target))


def exchange(first: str | os.PathLike, second: str | os.PathLike) -> bool:
    """Swap two existing paths in one atomic step (``renameat2(RENAME_EXCHANGE)``): after it, each name holds
    what the other held, and no moment exists where either is missing. False where the system or file system
    cannot (not Linux, an old libc, some network file systems; ``CRYORL_NO_RENAMEAT2=1`` pretends so)."""
    return _call_renameat2(Path(first), Path(second), RENAME_EXCHANGE)


def rename_noreplace(source: str | os.PathLike, target: str | os.PathLike) -> None:
    """Rename ``source`` to ``target``, refusing (:class:`FileExistsError`) when ``target`` exists."""
    source, target = Path(source), Path(target)
    if _call_renameat2(source, target, RENAME_NOREPLACE):
        return
    if source.is_dir():                      # rename(2) replaces only an empty folder; refuse that one too
        if os.path.lexists(target):
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(target))
        os.rename(source, target)
        return
    os.link(source, target)                  # fails with EEXIST instead of replacing
    os.unlink(source)


class NotWeightsError(ValueError):
    """A file that is not a plain PyTorch state dict (a pickle of other Python objects, or no pickle at all)."""


def load_weights(path: str | os.PathLike):
    """A state dict (or a dict of tensors and plain values) saved with ``torch.save``, loaded with
    ``weights_only=True``: a file that holds other Python objects is refused as not a cryorl weights file,
    never unpickled."""
    import pickle
    import warnings

    import torch

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")          # torch's notes about pickle protocols
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        if not str(error).startswith("Weights only load failed"):
            raise
        with open(path, "rb") as handle:
            head = handle.read(4)
        if head[:1] == b"\x80" or head == b"PK\x03\x04":       # a pickle, or torch.save's zip holding one
            raise NotWeightsError(f"{path}: not a cryorl weights file (it holds Python objects other than "
                                  "tensors, which cryorl never unpickles)") from None
        raise pickle.UnpicklingError("not a file saved by PyTorch") from None   # not torch's weights_only advice
