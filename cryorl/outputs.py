"""Outputs of the command line: nothing a user made is overwritten or deleted by surprise, and a kill at any
moment leaves either the complete old output or the complete new one.

**Folders** (:func:`output_folder`). A command writes its whole output into a fresh temporary folder beside the
target, ``.NAME.partial-PID-XXXXXXXX``, which holds a small journal, ``.cryorl-output.json`` (role ``new``, the
writer's process id and host). When the output is complete it takes the target's place:

- no target yet: one rename (refusing, not replacing, a folder that appeared meanwhile);
- a target to replace (``overwrite``): on Linux one ``renameat2(RENAME_EXCHANGE)`` swaps the two folders
  atomically; the old output, now under the temporary name, is journalled ``old`` (superseded) and removed.
  Elsewhere the old output is first journalled ``old`` (not superseded) and moved aside (``….old``), then the new
  one is renamed into place and the old one journalled superseded and removed.

The next run into the same place (under the lock below) finishes what a dead run left: a dead run's ``new``
folder that never reached the target is removed; an ``old`` folder is removed only when journalled superseded
(or the target's own journal shows that its swap completed), and otherwise — a swap cut between its two
renames — put back at the target if the target is missing, else left alone. A folder without a journal (a
user's, or an earlier version's temporary) is never removed. The journal left inside a target by a kill right
after its swap is removed too.

**Files** (:func:`output_file`): written inside such a temporary folder under their own name, then renamed onto
the target (one atomic rename; without ``overwrite`` it refuses a file that appeared meanwhile).

**Locks.** Each target has a lock file beside it (``.NAME.lock``, holding the owner's pid, host and start time;
:func:`reserve_output`); a run folder has one inside (:func:`lock_folder`). A second run is refused in one line
while the first holds it; a lock whose owner died is free (``flock``: the kernel releases it with the process).

**Inputs.** Paths are compared after resolving symbolic links and ``..`` (and by inode, for bind mounts and hard
links): a target that is an input, holds one, or — when it would be replaced — lies inside an input folder is
refused, however either path is spelt. A symbolic link given as the target is followed: the folder or file it
points to is replaced, and the link stays a link.

**Errors** are raised before any work where they can be known (a file where a folder is needed, an occupied or
busy target, a mount point, an unwritable place: a probe file is created and removed), and :func:`one_line`
turns any error into the one line the command line prints, naming the path and what to do, with long values
cut (:func:`clip`).
"""
from __future__ import annotations

import errno
import json
import os
import re
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from cryorl.fileio import exchange, kill_point, pid_alive, remove_orphaned_parts, rename_noreplace, umask

__all__ = ["OutputExistsError", "OutputNotWritableError", "OutputBusyError", "check_output_folder", "output_folder",
           "check_output_file", "output_file", "reserve_output", "lock_folder", "OutputLock", "resolve", "clip",
           "one_line", "recover", "JOURNAL"]

JOURNAL = ".cryorl-output.json"
_PARTIAL = ".partial-"


class OutputExistsError(FileExistsError):
    """The output folder or file exists and the command was not told to replace it (or must never replace it)."""


class OutputNotWritableError(PermissionError):
    """The output folder or file cannot be written (no permission, no such parent, a read-only file system)."""


class OutputBusyError(RuntimeError):
    """Another run holds the lock of this output or run folder."""


# ---------------------------------------------------------------------------------------------- messages


def clip(text: object, limit: int = 200) -> str:
    """``text`` as a string of at most ``limit`` characters: a longer one is cut, saying how long it was."""
    text = str(text)
    if len(text) <= limit:
        return text
    note = f"… ({len(text):,} characters)"
    return text[: max(limit - len(note), 1)] + note


_HINTS = {
    errno.EACCES: "check its permissions, or choose another place",
    errno.EPERM: "check its permissions, or choose another place",
    errno.EROFS: "that file system is read-only: choose a writable place",
    errno.ENOSPC: "free some space, or choose another place",
    errno.EDQUOT: "free some space (disk quota), or choose another place",
    errno.EBUSY: "it is busy (a mount point, or in use): choose another place",
    errno.ENOTEMPTY: "it already holds files: choose another place",
    errno.EEXIST: "it already exists: choose another name",
    errno.ENOENT: "check the path",
    errno.ENOTDIR: "a part of the path is a file, not a folder: check the path",
    errno.EISDIR: "it is a folder: give a file",
    errno.ENAMETOOLONG: "choose a shorter name",
    errno.ELOOP: "symbolic links go round in a loop: check the path",
    errno.EMFILE: "too many open files: raise the limit (ulimit -n)",
    errno.ENFILE: "too many open files on this system: close some programs",
    errno.EIO: "an input/output error: check the disk",
    errno.EXDEV: "the two paths are on different file systems: choose places on one",
}


def _describe_os_error(error: OSError) -> str:
    paths = [str(p) for p in (error.filename, error.filename2) if p is not None]
    reason = error.strerror or os.strerror(error.errno)
    text = f"{' -> '.join(paths)}: {reason}" if paths else f"{type(error).__name__}: {reason}"
    hint = _HINTS.get(error.errno)
    return f"{text}; {hint}" if hint else text


def one_line(error: BaseException) -> str:
    """The one line the command line prints for ``error``: its message without line breaks, an operating-system
    error as ``PATH: reason; what to do``, every run of more than 200 non-blank characters (a pasted name, a
    file's content) cut to 200 and the whole line to 1,000."""
    if isinstance(error, OSError) and error.errno is not None and not type(error).__module__.startswith("cryorl"):
        text = _describe_os_error(error)
    else:
        text = " ".join(part.strip() for part in str(error).splitlines() if part.strip())
        if isinstance(error, KeyError) and len(text) > 1 and text[0] == text[-1] and text[0] in "'\"":
            text = text[1:-1]                      # KeyError quotes its message
        plain = isinstance(error, (ValueError, LookupError, FileExistsError, FileNotFoundError, RuntimeError,
                                   PermissionError)) or type(error).__module__.startswith("cryorl")
        text = text if plain and text else f"{type(error).__name__}: {text}".rstrip(": ")
    text = re.sub(r"(\S{201,}?)([:;,.]?)(?=\s|$)", lambda match: clip(match[1]) + match[2], text)
    return text if len(text) <= 1000 else f"{text[:700]} … {text[-290:]}"


# ---------------------------------------------------------------------------------------------- paths


def resolve(path: str | os.PathLike) -> Path:
    """``path`` made absolute with ``~``, symbolic links and ``..`` resolved the way the system would."""
    return Path(os.path.realpath(os.path.expanduser(os.fspath(path))))


def _same(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _within(inner: Path, outer: Path) -> bool:
    """``inner`` is ``outer`` or lies inside it (resolved paths; by inode too, for bind mounts and hard links)."""
    if inner == outer or outer in inner.parents:
        return True
    if not outer.exists():
        return False
    return any(_same(p, outer) for p in (inner, *inner.parents) if p.exists())


def _check_inputs(target: Path, inputs: Iterable[str | os.PathLike | None], *, replacing: bool,
                  folder: bool) -> None:
    for source in inputs:
        if source is None:
            continue
        given, source = source, resolve(source)
        spelt = f" (given as {clip(given)})" if os.fspath(given) != str(source) else ""
        if _within(source, target):
            what = "is or holds" if folder else "is"
            raise OutputExistsError(f"--out {target} {what} the input {source}{spelt}; choose another --out")
        if folder and replacing and source.is_dir() and _within(target, source):
            raise OutputExistsError(f"--out {target} lies inside the input {source}{spelt}; replacing it would "
                                    "delete part of that input: choose an --out outside it")


def _occupied(target: Path) -> bool:
    return target.is_dir() and any(p.name != JOURNAL for p in target.iterdir())


def _existing_ancestor(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _probe(target: Path, what: str) -> None:
    """Create and remove a file where ``target`` will be written (its folder, or the nearest existing folder
    above it): an unwritable place is refused before any work."""
    place = _existing_ancestor(target.parent)
    if not place.is_dir():
        raise OutputNotWritableError(f"cannot write the {what} to {target}: {place} is a file, not a folder")
    try:
        fd, probe = tempfile.mkstemp(prefix=f".{target.name}.probe-", dir=place)
        os.close(fd)
        os.unlink(probe)
    except OSError as error:
        raise OutputNotWritableError(f"cannot write the {what} to {target}: {place}: "
                                     f"{error.strerror or error}; choose a writable place for --out") from None


# ---------------------------------------------------------------------------------------------- locks

try:
    import fcntl
except ImportError:                                  # not POSIX: exclusive creation, stale when the pid is gone
    fcntl = None

_held: dict[str, OutputLock] = {}


class OutputLock:
    """A lock file held by this process (``with`` it, or :meth:`release`); taken again by the same process it
    only counts up. The file names its owner (pid, host, start time) and is removed on release."""

    def __init__(self, path: Path, describe: str, fd: int) -> None:
        self.path, self.describe, self.fd, self.count = path, describe, fd, 1

    def release(self) -> None:
        self.count -= 1
        if self.count > 0:
            return
        _held.pop(str(self.path), None)
        try:
            self.path.unlink()                       # while still holding it: nobody can take a removed file
        except OSError:
            pass
        os.close(self.fd)

    def __enter__(self) -> OutputLock:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _owner_text(raw: str) -> str:
    try:
        owner = json.loads(raw)
        return f"pid {owner['pid']} on {owner['host']}, since {owner['since']}"
    except (ValueError, KeyError, TypeError):
        return "owner unknown"


def _owner_record() -> str:
    return json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                       "since": time.strftime("%Y-%m-%d %H:%M:%S")}) + "\n"


def _acquire(path: Path, describe: str, wait: float = 0.5) -> OutputLock:
    """Take the lock file ``path`` or raise :class:`OutputBusyError` naming its owner (after ``wait`` seconds of
    retries, so a probe that holds it for a moment is no conflict)."""
    held = _held.get(str(path))
    if held is not None:
        held.count += 1
        return held
    deadline = time.monotonic() + wait
    while True:
        try:
            fd = _open_lock(path)
        except OSError as error:
            where = "" if describe.endswith(str(path.parent)) else f"{path.parent}: "
            raise OutputNotWritableError(f"cannot write {describe}: {where}{error.strerror or error}; choose a "
                                         "writable place") from None
        if fd is None:                               # held by a live process
            owner = path.read_text() if path.exists() else ""
            if time.monotonic() < deadline:
                time.sleep(0.02)
                continue
            raise OutputBusyError(f"{describe} is in use by another cryorl run ({_owner_text(owner)}; lock "
                                  f"{path}); wait for it to finish, or choose another place")
        os.ftruncate(fd, 0)
        os.write(fd, _owner_record().encode())
        lock = _held[str(path)] = OutputLock(path, describe, fd)
        return lock


def _open_lock(path: Path) -> int | None:
    """A descriptor holding the lock, or None while a live process holds it."""
    if fcntl is not None:
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o666 & ~umask())
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return None
            try:
                current = os.stat(path)
            except FileNotFoundError:
                current = None
            opened = os.fstat(fd)
            if current is not None and (current.st_ino, current.st_dev) == (opened.st_ino, opened.st_dev):
                return fd
            os.close(fd)                             # its owner removed it as we opened it: take the new one
    while True:
        try:
            return os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666 & ~umask())
        except FileExistsError:
            try:
                owner = json.loads(path.read_text())
                stale = owner["host"] == socket.gethostname() and not pid_alive(int(owner["pid"]))
            except (OSError, ValueError, KeyError, TypeError):
                stale = False
            if not stale:
                return None
            path.unlink(missing_ok=True)


def _lock_file(target: Path) -> Path:
    return target.with_name(f".{target.name}.lock")


def reserve_output(path: str | os.PathLike, what: str = "output") -> OutputLock:
    """Hold the lock of the output ``path`` (a folder or file, made absolute and resolved) until released, so a
    long run is not joined by a second one; :func:`output_folder` and :func:`output_file` inside take it again.
    Creates the missing parent folders."""
    target = resolve(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OutputNotWritableError(f"cannot write the {what} to {target}: {error.strerror or error}") from None
    return _acquire(_lock_file(target), f"--out {target}")


def lock_folder(folder: str | os.PathLike, what: str = "run folder") -> OutputLock:
    """Hold the lock of a folder that runs write into in place (a training run folder): ``FOLDER/.cryorl.lock``.
    Creates the folder; an unwritable one is refused here, before any work."""
    folder = resolve(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OutputNotWritableError(f"cannot write the {what} {folder}: {error.strerror or error}; choose a "
                                     "writable place") from None
    return _acquire(folder / ".cryorl.lock", f"the {what} {folder}")


# ---------------------------------------------------------------------------------------------- the journal


def _write_journal(folder: Path, role: str, run: str, target: str, superseded: bool = False) -> None:
    """Write the journal: straight into a folder without one, by an atomic rename over an existing one (a kill
    meanwhile leaves the old journal or, in a folder that had none, a fragment that reads as none)."""
    record = {"role": role, "pid": os.getpid(), "host": socket.gethostname(), "run": run, "target": target,
              "superseded": superseded, "written": time.strftime("%Y-%m-%d %H:%M:%S")}
    text = json.dumps(record) + "\n"
    if not (folder / JOURNAL).exists():
        with open(folder / JOURNAL, "x") as handle:
            handle.write(text)
        return
    tmp = folder / f"{JOURNAL}.{os.getpid()}.tmp"
    tmp.write_text(text)
    os.replace(tmp, folder / JOURNAL)


def _read_journal(folder: Path) -> dict | None:
    try:
        record = json.loads((folder / JOURNAL).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("role") not in ("new", "old"):
        return None
    return record


def _owner_alive(record: dict) -> bool:
    """Whether the run that wrote ``record`` may still run: a process of another host counts as alive."""
    if record.get("host") != socket.gethostname():
        return True
    try:
        return pid_alive(int(record["pid"]))
    except (KeyError, TypeError, ValueError):
        return True


def _remove(folder: Path) -> None:
    """Remove a temporary folder, its journal last, so a kill meanwhile leaves it recognisable."""
    try:
        children = list(folder.iterdir())
    except OSError:
        return
    for child in children:
        if child.name == JOURNAL:
            continue                                 # (a journal's .tmp goes with the rest)
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)
    (folder / JOURNAL).unlink(missing_ok=True)
    try:
        folder.rmdir()
    except OSError:
        pass


def _say(message: str) -> None:
    print(f"cryorl: {message}", file=sys.stderr)


def recover(target: str | os.PathLike) -> None:
    """Finish what dead runs into ``target`` left (module docstring); call it holding the target's lock."""
    target = resolve(target)
    parent, prefix = target.parent, f".{target.name}{_PARTIAL}"
    if not parent.is_dir():
        return
    record = _read_journal(target) if target.is_dir() and not target.is_symlink() else None
    if record is not None and not _owner_alive(record):
        if record["role"] == "new":                  # its swap completed: the old output it superseded goes
            for partner in (parent / record["run"], parent / f"{record['run']}.old"):
                if partner.is_dir() and not partner.is_symlink() and \
                        (_read_journal(partner) or {}).get("role") != "new" and partner.name.startswith(prefix):
                    _remove(partner)
        (target / JOURNAL).unlink(missing_ok=True)
    for leftover in sorted(parent.glob(f"{_glob_escape(prefix)}*")):
        if not leftover.is_dir() or leftover.is_symlink():
            continue
        record = _read_journal(leftover)
        if record is None:
            rest = leftover.name[len(prefix):]
            pid = rest.split("-")[0]
            if not pid.isdigit() or pid_alive(int(pid)):
                continue
            if all(p.name.startswith(JOURNAL) for p in leftover.iterdir()):
                _remove(leftover)                    # killed as it began its journal: nothing in it to lose
                continue
            if "-old-" not in rest:
                continue                             # no journal: nothing proves what it is; left alone
            role, superseded = "old", False          # an earlier version's old output, moved aside
        elif _owner_alive(record):
            continue
        else:
            role, superseded = record["role"], bool(record.get("superseded"))
        if role == "new" or superseded:
            _remove(leftover)
        elif not os.path.lexists(target):            # a swap cut between its two renames: put the old one back
            kill_point("restore the old output")
            try:
                rename_noreplace(leftover, target)
            except FileExistsError:                  # something else took the place meanwhile: left alone
                continue
            (target / JOURNAL).unlink(missing_ok=True)
            _say(f"restored {target}, the previous output, which an interrupted run had moved aside")
    remove_orphaned_parts(parent, prefix=f".{target.name}.")


def _glob_escape(text: str) -> str:
    return re.sub(r"([\[\]*?])", r"[\1]", text)


def _recover_if_free(target: Path) -> None:
    """Take the target's lock for a moment and finish dead runs' swaps; refuse a target another run holds."""
    if not target.parent.is_dir():
        return
    with _acquire(_lock_file(target), f"--out {target}"):
        recover(target)


# ---------------------------------------------------------------------------------------------- folders


def check_output_folder(path: str | os.PathLike, *, overwrite: bool = False, what: str = "output",
                        inputs: Iterable[str | os.PathLike | None] = ()) -> Path:
    """Refuse, before any work, an output folder that is a file, a mount point, busy (another run holds it),
    unwritable, holds files (unless ``overwrite``), or is, holds or (when replaced) lies inside one of the
    command's ``inputs``; a dead run's interrupted swap is finished here. Returns the resolved target."""
    target = resolve(path)
    if target.exists() and not target.is_dir():
        raise OutputExistsError(f"{target} is a file; the {what} needs a folder: choose another --out")
    _check_inputs(target, list(inputs), replacing=_occupied(target), folder=True)
    if os.path.ismount(target):
        raise OutputNotWritableError(f"--out {target} is a mount point, which cannot be replaced as a whole; "
                                     f"give a folder inside it (e.g. {target / 'out'})")
    _probe(target, what)
    _recover_if_free(target)
    if _occupied(target) and not overwrite:
        raise OutputExistsError(f"{target} already holds files; choose another --out, or pass --overwrite to "
                                f"replace that folder as a whole with the new {what}")
    return target


def _new_folder(target: Path) -> Path:
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}{_PARTIAL}{os.getpid()}-", dir=target.parent))
    _write_journal(tmp, "new", tmp.name, target.name)
    return tmp


@contextmanager
def output_folder(path: str | os.PathLike, *, overwrite: bool = False, what: str = "output",
                  inputs: Iterable[str | os.PathLike | None] = (),
                  only: Iterable[str] | None = None) -> Iterator[Path]:
    """Yield an empty temporary folder to write ``path``'s contents into; on success it takes ``path``'s place
    (module docstring), holding ``path``'s lock throughout.

    Refuses before any work what :func:`check_output_folder` refuses. If files appeared at ``path`` meanwhile
    they are not replaced without ``overwrite``; with ``only`` (names), a ``path`` holding any other name is not
    replaced either (a watch that re-writes its own files). A failed swap leaves the previous output in place.
    """
    inputs = list(inputs)
    target = check_output_folder(path, overwrite=overwrite, what=what, inputs=inputs)
    with reserve_output(target, what):
        recover(target)
        _refuse_filled(target, overwrite, only)
        try:
            tmp = _new_folder(target)
        except OSError as error:
            raise OutputNotWritableError(f"cannot write the {what} to {target}: {error.strerror or error}") \
                from None
        try:
            yield tmp
            os.chmod(tmp, 0o777 & ~umask())
            _check_inputs(target, inputs, replacing=_occupied(target), folder=True)
            _install(tmp, target, overwrite, only)
        finally:
            record = _read_journal(tmp) if tmp.is_dir() else None
            if record is not None and record["role"] == "new" and record["pid"] == os.getpid():
                _remove(tmp)


def _refuse_filled(target: Path, overwrite: bool, only: Iterable[str] | None, during: bool = False) -> None:
    if target.exists() and (not target.is_dir() or target.is_symlink()):
        raise OutputExistsError(f"{target} became a file or link while this command ran; its own output was not "
                                "written (run it again with another --out)")
    names = {p.name for p in target.iterdir() if p.name != JOURNAL} if target.is_dir() else set()
    if names and not overwrite:
        when = "while this command ran" if during else "meanwhile"
        raise OutputExistsError(f"{target} filled with other files {when}; its own output was not written "
                                "(run it again with another --out)")
    if only is not None and names - set(only):
        others = ", ".join(sorted(names - set(only))[:3])
        raise OutputExistsError(f"{target} holds files this command did not write ({clip(others)}); they are not "
                                "replaced: move them elsewhere and run it again")


def _install(tmp: Path, target: Path, overwrite: bool, only: Iterable[str] | None) -> None:
    """Put the complete output ``tmp`` in ``target``'s place (module docstring)."""
    run = tmp.name
    if not os.path.lexists(target):
        kill_point("rename the new output into place")
        try:
            rename_noreplace(tmp, target)
        except FileExistsError:
            pass                                     # a folder appeared meanwhile: replace it below, if allowed
        else:
            kill_point("remove the journal of the new output")
            (target / JOURNAL).unlink(missing_ok=True)
            return
    _refuse_filled(target, overwrite, only, during=True)
    kill_point("exchange the new and the old output")
    if exchange(tmp, target):                        # target: the new output; tmp: the old one
        kill_point("journal the old output superseded")
        _write_journal(tmp, "old", run, target.name, superseded=True)
        kill_point("remove the journal of the new output")
        (target / JOURNAL).unlink(missing_ok=True)
        kill_point("remove the old output")
        _remove(tmp)
        return
    aside = tmp.with_name(f"{run}.old")              # no atomic exchange here: two renames, journalled
    kill_point("journal the old output")
    _write_journal(target, "old", run, target.name)
    kill_point("move the old output aside")
    os.rename(target, aside)
    try:
        kill_point("rename the new output into place")
        rename_noreplace(tmp, target)
    except OSError:
        os.rename(aside, target)                     # put the previous output back
        (target / JOURNAL).unlink(missing_ok=True)
        raise
    kill_point("journal the old output superseded")
    _write_journal(aside, "old", run, target.name, superseded=True)
    kill_point("remove the journal of the new output")
    (target / JOURNAL).unlink(missing_ok=True)
    kill_point("remove the old output")
    _remove(aside)


# ---------------------------------------------------------------------------------------------- files


def check_output_file(path: str | os.PathLike, *, overwrite: bool = False, what: str = "output",
                      inputs: Iterable[str | os.PathLike | None] = ()) -> Path:
    """Refuse, before any work, to write into a folder, to replace an existing file (unless ``overwrite``) or one
    of the command's ``inputs``, or an unwritable or busy place; creates nothing. Returns the resolved target
    (a symbolic link is followed)."""
    target = resolve(path)
    if target.is_dir():
        raise OutputExistsError(f"{target} is a folder; give a file name for --out")
    _check_inputs(target, list(inputs), replacing=target.exists(), folder=False)
    if target.exists() and not overwrite:
        raise OutputExistsError(f"{target} already exists; choose another --out, or pass --overwrite to replace it")
    _probe(target, what)
    _recover_if_free(target)
    return target


@contextmanager
def output_file(path: str | os.PathLike, *, overwrite: bool = False, what: str = "output",
                inputs: Iterable[str | os.PathLike | None] = ()) -> Iterator[Path]:
    """Yield a temporary path of the same name to write the file ``path`` to; on success it is renamed onto
    ``path`` in one step (without ``overwrite`` a file that appeared meanwhile is refused, not replaced)."""
    inputs = list(inputs)
    target = check_output_file(path, overwrite=overwrite, what=what, inputs=inputs)
    with reserve_output(target, what):
        recover(target)
        tmp = _new_folder(target)
        try:
            yield tmp / target.name
            os.chmod(tmp / target.name, 0o666 & ~umask())
            if target.is_dir():
                raise OutputExistsError(f"{target} became a folder while this command ran; the {what} was not "
                                        "written")
            kill_point("rename the new file into place")
            if overwrite:
                os.replace(tmp / target.name, target)
            else:
                try:
                    rename_noreplace(tmp / target.name, target)
                except FileExistsError:
                    raise OutputExistsError(f"{target} appeared while this command ran; the {what} was not "
                                            "written (run it again with another --out, or --overwrite)") from None
        finally:
            _remove(tmp)
