"""The CryoRL authors' published hole crops: 3,538 Aldolase holes as 150 × 150 px 8-bit PNG files
(``Aldolase/{train,val}/<hole name>_crop.png``, 215 MB), stored with Git LFS in the public repository
yilaili/cryoRL-pytorch-data (commit 9d0c6a7…, no licence file: fetched at run time, never redistributed).

The manifest shipped with cryorl (``resources/aldolase-crops-manifest.csv.gz``: ``path, sha256, size`` from the LFS
pointers at that commit) checks every file. :func:`download_crops` fetches in parallel with a progress bar into the
data folder, keeping the published layout, so that ``--data DIR --split train`` finds the crops beside the CTF table.
It is resumable (a file already there with the right digest is kept without a download, so a second run fetches only
what is missing), never replaces a good copy nor a differing file it did not write (unless ``overwrite``), and
refuses and names a corrupt file.
"""
from __future__ import annotations

import gzip
import io
import os
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from cryorl.download import DownloadError, default_dest, fetch, sha256
from cryorl.fileio import atomic_path
from cryorl.resources import RESOURCES

__all__ = ["CROPS_URL", "CropFile", "crop_manifest", "download_crops", "verify_crops", "CROP_SPLITS"]

CROPS_URL = ("https://media.githubusercontent.com/media/yilaili/cryoRL-pytorch-data/"
             "9d0c6a7ca72b78a51f58507163c41bfc67b76ac8")
"""Where GitHub serves the LFS objects of the repository at the manifest's commit (``CROPS_URL/<path>``)."""
MANIFEST = RESOURCES / "aldolase-crops-manifest.csv.gz"
CROP_SPLITS = ("train", "val")


@dataclass(frozen=True)
class CropFile:
    """One published crop: its path in the repository, SHA-256 and size in bytes."""
    path: str
    sha256: str
    size: int

    @property
    def split(self) -> str:
        return self.path.split("/")[1]


def crop_manifest(path: str | os.PathLike = MANIFEST) -> list[CropFile]:
    """The published crops with their digests (``path, sha256, size`` CSV, optionally gzipped)."""
    path = Path(path)
    raw = path.read_bytes()
    text = gzip.decompress(raw).decode() if raw[:2] == b"\x1f\x8b" else raw.decode()
    table = pd.read_csv(io.StringIO(text), dtype={"path": str, "sha256": str, "size": "int64"})
    return [CropFile(p, d, int(s)) for p, d, s in zip(table["path"], table["sha256"], table["size"])]


def _good(target: Path, remote: CropFile) -> bool:
    return target.is_file() and target.stat().st_size == remote.size and sha256(target) == remote.sha256


def _fetch_one(remote: CropFile, target: Path, base: str, timeout: float) -> None:
    url = f"{base}/{remote.path}"
    with atomic_path(target) as tmp:
        fetch(url, tmp, remote.size, timeout)
        got = tmp.stat().st_size
        digest = sha256(tmp)
        if got != remote.size or digest != remote.sha256:
            raise DownloadError(f"{url}: {got} bytes with SHA-256 {digest}, not the published {remote.size} bytes "
                                f"with {remote.sha256}; refusing the file")


def download_crops(dest: str | os.PathLike | None = None, *, split: str = "all", base_url: str | None = None,
                   workers: int = 8, timeout: float = 60.0, overwrite: bool = False, progress: bool = True,
                   manifest: list[CropFile] | None = None, log=print) -> Path:
    """Fetch the published crops of ``split`` ("train", "val" or "all") into ``dest`` (default: the Aldolase data
    folder in the cache), ``workers`` at a time, each checked against its size and SHA-256.

    A file already present with the right digest is kept; one that differs is not replaced unless ``overwrite``.
    Failures (network, size, digest) are collected while the other files are fetched, then raised as one
    single-line :class:`DownloadError` naming the first few. ``base_url`` (or ``$CRYORL_CROPS_URL``) replaces
    :data:`CROPS_URL`, e.g. for a mirror. Returns ``dest``.
    """
    from tqdm import tqdm

    if split not in (*CROP_SPLITS, "all"):
        raise ValueError(f"split must be 'train', 'val' or 'all', not {split!r}")
    if workers < 1:
        raise ValueError(f"workers must be at least 1, not {workers}")
    dest = Path(dest).expanduser() if dest is not None else default_dest("aldolase")
    base = (base_url or os.environ.get("CRYORL_CROPS_URL") or CROPS_URL).rstrip("/")
    wanted = [f for f in (manifest or crop_manifest()) if split == "all" or f.split == split]
    dest.mkdir(parents=True, exist_ok=True)
    failures: list[str] = []
    todo = []
    for remote in wanted:
        target = dest / remote.path
        if target.exists() and not overwrite and not _good(target, remote):
            failures.append(f"{target} exists and differs from the published file (move it away or pass "
                            "--overwrite)")
        elif not target.exists() or overwrite and not _good(target, remote):
            todo.append(remote)
    kept = len(wanted) - len(todo) - len(failures)
    log(f"{kept} of {len(wanted)} crops already here and verified; fetching {len(todo)} into {dest}")
    with ThreadPoolExecutor(max_workers=workers) as pool, \
            tqdm(total=sum(f.size for f in todo), unit="B", unit_scale=True, desc="hole crops",
                 disable=not progress) as bar:
        jobs = {pool.submit(_fetch_one, remote, dest / remote.path, base, timeout): remote for remote in todo}
        for job in as_completed(jobs):
            remote = jobs[job]
            try:
                job.result()
            except (DownloadError, OSError) as error:
                failures.append(str(error) if isinstance(error, DownloadError) else
                                f"cannot write {dest / remote.path}: {error}")
            bar.update(remote.size)
    if failures:
        shown = "; ".join(failures[:3]) + (f"; and {len(failures) - 3} more" if len(failures) > 3 else "")
        raise DownloadError(f"{len(failures)} of {len(wanted)} crops failed ({len(wanted) - len(failures)} verified "
                            f"in {dest}; run again to resume): {shown}")
    return dest


def verify_crops(folder: str | os.PathLike, manifest: list[CropFile] | None = None) -> list[tuple[str, str]]:
    """``(path, status)`` of every published crop under ``folder``: "ok", "differs" or "absent" (absent ones are
    summed into one row per split, so that a partial folder reads in a few lines)."""
    folder = Path(folder).expanduser()
    rows, absent = [], {}
    for remote in manifest or crop_manifest():
        target = folder / remote.path
        if not target.exists():
            absent[remote.split] = absent.get(remote.split, 0) + 1
        else:
            rows.append((remote.path, "ok" if _good(target, remote) else "differs"))
    return rows + [(f"{n} crops of the {split} split", "absent") for split, n in absent.items()]
