"""Output folders and files of the command line: nothing a user made is overwritten or deleted by surprise.

A command writes its whole output into a fresh temporary folder beside the target and renames it into place
when it has finished, so a killed or concurrent run never leaves a folder that mixes two runs' files. A target
that already holds files is refused unless ``overwrite`` is given, and is then replaced as a whole — never when
it is, or holds, one of the command's inputs. Temporary folders of runs that died are removed by the next run
into the same place.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from cryorl.fileio import umask

__all__ = ["OutputExistsError", "OutputNotWritableError", "check_output_folder", "output_folder",
           "check_output_file"]

_PARTIAL = ".partial-"


class OutputExistsError(FileExistsError):
    """The output folder or file exists and the command was not told to replace it."""


class OutputNotWritableError(PermissionError):
    """The output folder or file cannot be written (no permission, no such parent, a read-only file system)."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_leftovers(target: Path) -> None:
    """Temporary folders (``.NAME.partial-PID-…``) of runs into ``target`` whose process is gone."""
    for leftover in target.parent.glob(f".{target.name}{_PARTIAL}*"):
        try:
            pid = int(leftover.name[len(f".{target.name}{_PARTIAL}"):].split("-")[0])
        except ValueError:
            continue
        if pid != os.getpid() and not _pid_alive(pid):
            shutil.rmtree(leftover, ignore_errors=True)


def _occupied(target: Path) -> bool:
    return target.is_dir() and any(target.iterdir())


def check_output_folder(path: str | os.PathLike, *, overwrite: bool = False, what: str = "output",
                        inputs: Iterable[str | os.PathLike | None] = ()) -> Path:
    """Refuse, before any work, an output folder that is a file, holds files (unless ``overwrite``), or is or
    holds one of the command's ``inputs``; create nothing."""
    target = Path(path).expanduser().absolute()
    if target.exists() and not target.is_dir():
        raise OutputExistsError(f"{target} is a file; the {what} needs a folder: choose another --out")
    for source in inputs:
        if source is None:
            continue
        source = Path(source).expanduser().absolute()
        if source == target or target in source.parents:
            raise OutputExistsError(f"--out {target} is or holds the input {source}; choose another --out")
    if _occupied(target) and not overwrite:
        raise OutputExistsError(f"{target} already holds files; choose another --out, or pass --overwrite to "
                                f"replace that folder as a whole with the new {what}")
    return target


@contextmanager
def output_folder(path: str | os.PathLike, *, overwrite: bool = False, what: str = "output",
                  inputs: Iterable[str | os.PathLike | None] = ()) -> Iterator[Path]:
    """Yield an empty temporary folder to write ``path``'s contents into; on success it becomes ``path``.

    Refuses before any work what :func:`check_output_folder` refuses, and raises
    :class:`OutputNotWritableError` when the folder cannot be written. If a folder with files appeared at
    ``path`` meanwhile it is not replaced without ``overwrite``; a replaced folder comes back if the final rename
    fails.
    """
    target = check_output_folder(path, overwrite=overwrite, what=what, inputs=inputs)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        _remove_leftovers(target)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}{_PARTIAL}{os.getpid()}-", dir=target.parent))
    except OSError as error:
        raise OutputNotWritableError(f"cannot write the {what} to {target}: {error.strerror or error}") from None
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~umask())
        if _occupied(target) and not overwrite:                     # someone wrote there while we worked
            raise OutputExistsError(f"{target} filled with other files while this command ran; its own output "
                                    "was not written (run it again with another --out)")
        old = None
        if target.exists():
            old = target.with_name(f".{target.name}{_PARTIAL}{os.getpid()}-old-{tmp.name[-8:]}")
            os.replace(target, old)
        try:
            os.replace(tmp, target)
        except OSError:
            if old is not None:
                os.replace(old, target)                              # put the previous output back
            raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def check_output_file(path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Refuse, before any work, to replace an existing file (unless ``overwrite``) or to write into a folder."""
    target = Path(path).expanduser()
    if target.is_dir():
        raise OutputExistsError(f"{target} is a folder; give a file name for --out")
    if target.exists() and not overwrite:
        raise OutputExistsError(f"{target} already exists; choose another --out, or pass --overwrite to replace it")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OutputNotWritableError(f"cannot write {target}: {error.strerror or error}") from None
    if not os.access(target.parent, os.W_OK):
        raise OutputNotWritableError(f"cannot write {target}: {target.parent} is not writable")
    return target
