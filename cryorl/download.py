"""Fetch the public CryoRL Aldolase data (Apache-2.0, repository IBM/CryoRL-pytorch) into a cache folder.

Every file is checked against its published SHA-256 before it replaces anything: a corrupt or truncated download
is refused and an existing good copy is kept. A download stops as soon as the server sends more than the file's
expected size, and a network failure on one file is reported while the other files are still fetched.
"""
from __future__ import annotations

import hashlib
import http.client
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from cryorl.fileio import atomic_path
from cryorl.loaders import TIMESTAMPS_FILE, dataset_file

__all__ = ["DATASETS", "MAX_BYTES", "RemoteFile", "cache_dir", "default_dest", "download_dataset", "sha256",
           "DownloadError", "fetch", "verify_dataset"]

_REPO = "https://raw.githubusercontent.com/IBM/CryoRL-pytorch"
MAX_BYTES = 8 << 20           # ceiling for a file of unrecorded size; every published file is well under 1 MB
_BLOCK = 1 << 16


@dataclass(frozen=True)
class RemoteFile:
    """A published file. ``size`` is its exact byte count where a copy with the published digest gave it; else
    None, and only the generous ceiling ``MAX_BYTES`` stops a runaway server: the SHA-256 check is what guarantees
    the content either way."""
    name: str
    sha256: str
    splits: tuple[str, ...]   # the splits that need this file
    size: int | None = None

    @property
    def max_bytes(self) -> int:
        """The most bytes a download of this file may receive."""
        return MAX_BYTES if self.size is None else self.size


@dataclass(frozen=True)
class RemoteDataset:
    base_url: str
    files: tuple[RemoteFile, ...]
    folder: str               # default folder name under the cache


DATASETS: dict[tuple[str, str], RemoteDataset] = {
    ("aldolase", "2023"): RemoteDataset(
        f"{_REPO}/87b97f3941b04cf3aa2cce85ab336c501f032bb4/cryoRL/CryoEM_data", (
            RemoteFile(dataset_file("2023", "ctf", "train"),
                       "1ce0e1a9d692144c269f7a9c796135adc05342c92790ac205a95a27336bfaee2", ("train",), 147131),
            RemoteFile(dataset_file("2023", "ctf", "val"),
                       "123483f013d8778ec233596d50e751610dd2e277f39deaa9df8c3dc2d19afd66", ("val",)),
            RemoteFile(dataset_file("2023", "predictions", "train"),
                       "f9820d5ff3e6429790d3153822fbe18cca6be47cad69b2a29be422f613725fd1", ("train",), 75731),
            RemoteFile(dataset_file("2023", "predictions", "val"),
                       "10403cd8328091a2d9b26f9cfe518e467552a8e351c45c6a5c575a0f07ddf7ed", ("val",)),
            RemoteFile(TIMESTAMPS_FILE,
                       "4a0f1828a9b80f2e84902935ee5fbf4b3d48015bbc068d4121433aba30758087", ("train", "val")),
        ), "aldolase"),
    ("aldolase", "2022"): RemoteDataset(
        f"{_REPO}/a0561e13de581e7f65f1cd10365df121f4cfd94d/CryoEM_data", (
            RemoteFile(dataset_file("2022", "ctf", "train"),
                       "a06ce7f8a33255140df80671b87b1619fc3c1b4ca10b35eaee4dd06dbfc9b680", ("train",)),
            RemoteFile(dataset_file("2022", "ctf", "val"),
                       "35b9d46e4fb9a05bc30f917a077658be625c0d6c6fa523b05603c887e05bb9cc", ("val",)),
            RemoteFile(dataset_file("2022", "predictions", "train"),
                       "924246336f94702782b69db30d10d9233824d6a487f9f211051b5c8453297011", ("train",)),
            RemoteFile(dataset_file("2022", "predictions", "val"),
                       "6ee2ed83cfa37ae286fd6632611b5f5572000ec9e3652eb319bbc7f13f5c1215", ("val",)),
            RemoteFile(TIMESTAMPS_FILE,
                       "3ff1a088027906f0ab17f1d49f27e37154f196c22a97385b2dceed65b0a774d3", ("train", "val")),
        ), "aldolase-2022"),
}


class DownloadError(RuntimeError):
    """A file could not be fetched, or its content did not match the published checksum; ``unreachable`` is the
    network's reason when the server could not be reached at all (the same for every file of a run)."""

    def __init__(self, message: str, unreachable: str | None = None) -> None:
        super().__init__(message)
        self.unreachable = unreachable


def cache_dir() -> Path:
    """The data cache folder: ``$CRYORL_CACHE``, else ``~/.cache/cryorl``."""
    return Path(os.environ.get("CRYORL_CACHE", "~/.cache/cryorl")).expanduser()


def default_dest(name: str = "aldolase", era: str = "2023") -> Path:
    return cache_dir() / _dataset(name, era).folder


def sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch(url: str, path: Path, limit: int, timeout: float) -> None:
    """Stream ``url`` into ``path``, refusing more than ``limit`` bytes; any failure is a one-line DownloadError."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            length = response.headers.get("Content-Length", "").strip()
            announced = int(length) if length.isdigit() else None
            if announced is not None and announced > limit:
                raise DownloadError(f"{url}: the server announces {announced} bytes, more than the expected {limit}; "
                                    f"refusing the file")
            received = 0
            with open(path, "wb") as out:
                while block := response.read(min(_BLOCK, limit + 1 - received)):   # at most limit + 1 in all
                    received += len(block)
                    if received > limit:
                        raise DownloadError(f"{url}: the server sent more than the expected {limit} bytes; "
                                            f"refusing the file")
                    out.write(block)
            if announced is not None and received < announced:   # read(n) returns a cut body as a plain EOF
                raise DownloadError(f"could not fetch {url}: the connection closed after {received} of the "
                                    f"announced {announced} bytes")
    except (OSError, http.client.HTTPException) as error:   # URLError, HTTPError, resets, timeouts, IncompleteRead
        if isinstance(error, http.client.IncompleteRead):
            reason = "the connection closed before the end of the response"
        else:
            reason = " ".join(str(error).split()) or type(error).__name__
        unreachable = reason if isinstance(error, urllib.error.URLError) and \
            not isinstance(error, urllib.error.HTTPError) else None    # refused, no route, no name: no server
        raise DownloadError(f"could not fetch {url}: {reason}", unreachable) from None


def _dataset(name: str, era: str) -> RemoteDataset:
    try:
        return DATASETS[(name, era)]
    except KeyError:
        known = ", ".join(f"{n} --era {e}" for n, e in DATASETS)
        raise ValueError(f"unknown dataset {name!r} (era {era}); known: {known}") from None


def download_dataset(name: str = "aldolase", dest: str | os.PathLike | None = None, *, era: str = "2023",
                     split: str = "all", base_url: str | None = None, timeout: float = 60.0,
                     overwrite: bool = False, log=print) -> Path:
    """Download a dataset's files into ``dest`` (default: the cache), verifying SHA-256.

    Files already present with the right checksum are kept without a download; a file of the same name whose
    content differs is not replaced unless ``overwrite`` (it may be a user's own). ``split`` ("train", "val" or
    "all") limits the files fetched. ``base_url`` (or ``$CRYORL_DOWNLOAD_URL``) replaces the public repository
    address, e.g. for a mirror. A file that fails (network error, more bytes than expected, wrong checksum) is
    reported and the others are still tried; then one single-line DownloadError lists the failures. Returns the
    destination folder.
    """
    dataset = _dataset(name, era)
    if split not in ("train", "val", "all"):
        raise ValueError(f"split must be 'train', 'val' or 'all', not {split!r}")
    dest = Path(dest).expanduser() if dest is not None else default_dest(name, era)
    base = (base_url or os.environ.get("CRYORL_DOWNLOAD_URL") or dataset.base_url).rstrip("/")
    dest.mkdir(parents=True, exist_ok=True)
    failures, unreachable = [], {}
    for remote in dataset.files:
        if split != "all" and split not in remote.splits:
            continue
        target = dest / remote.name
        if target.exists() and sha256(target) == remote.sha256:
            log(f"ok       {target} (checksum matches)")
            continue
        url = f"{base}/{remote.name}"
        if target.exists() and not overwrite:
            failures.append(f"{target} exists and differs from the published file; move it away or pass "
                            "--overwrite to replace it")
            log(f"FAILED   {remote.name}: {failures[-1]}")
            continue
        try:
            with atomic_path(target) as tmp:
                fetch(url, tmp, remote.max_bytes, timeout)
                digest = sha256(tmp)
                if digest != remote.sha256:
                    kept = " (the existing file is kept)" if target.exists() else ""
                    raise DownloadError(f"{url}: SHA-256 {digest} does not match the published "
                                        f"{remote.sha256}; refusing the file{kept}")
        except (DownloadError, OSError) as error:            # OSError: the file cannot be written here
            if getattr(error, "unreachable", None):
                unreachable.setdefault(error.unreachable, []).append(remote.name)
            else:
                failures.append(str(error) if isinstance(error, DownloadError) else f"cannot write {target}: "
                                                                                  f"{error}")
            log(f"FAILED   {remote.name}: {error}")
            continue
        log(f"fetched  {target}")
    failures += [f"could not reach {base} for {', '.join(names)}: {reason}" for reason, names in unreachable.items()]
    if failures:
        count = len(failures) - len(unreachable) + sum(map(len, unreachable.values()))
        offline = (f"; without network, copy the files from {dataset.base_url} into {dest} by hand and check them "
                   f"with `cryorl data verify {dest}`" if unreachable else "")
        raise DownloadError(f"{count} file(s) failed: " + "; ".join(failures) + offline)
    return dest


def verify_dataset(folder: str | os.PathLike, name: str = "aldolase", era: str | None = None
                   ) -> list[tuple[str, str]]:
    """Check the published files in ``folder`` (placed by hand or downloaded) against their SHA-256: one
    ``(file, status)`` per published file — "ok", "differs" or "absent" — of each era with a file there (``era``:
    that era only). A name two eras share (``timestamps.csv``) is "ok" when it matches either."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(f"no folder {folder}")
    digests: dict[str, set[str]] = {}
    for (dataset_name, dataset_era), dataset in DATASETS.items():
        if dataset_name != name or (era is not None and dataset_era != era):
            continue
        names = [remote.name for remote in dataset.files]
        if era is None and not any((folder / n).is_file() for n in names if n != TIMESTAMPS_FILE):
            continue
        for remote in dataset.files:
            digests.setdefault(remote.name, set()).add(remote.sha256)
    rows = []
    for file, wanted in digests.items():
        path = folder / file
        rows.append((file, "absent" if not path.is_file() else "ok" if sha256(path) in wanted else "differs"))
    return rows
