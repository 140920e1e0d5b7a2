"""Shared fixtures: the real Aldolase training split (read from ../shared, never copied) and tiny hand-built grids."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from cryorl.atlas import Atlas

REPO = Path(__file__).resolve().parents[1]
ALDOLASE_TRAIN = Path(os.environ.get("CRYORL_ALDOLASE_TRAIN", REPO.parent / "shared" / "data" / "aldolase-train"))


@pytest.fixture(scope="session")
def aldolase_dir() -> Path:
    if not (ALDOLASE_TRAIN / "target_CTF_Y1_train.csv").exists():
        pytest.skip(f"the real Aldolase training split is not at {ALDOLASE_TRAIN}")
    return ALDOLASE_TRAIN


@pytest.fixture(scope="session")
def aldolase(aldolase_dir):
    from cryorl import load_cryorl_dataset

    return load_cryorl_dataset(aldolase_dir, "train")


@pytest.fixture()
def data_cache(tmp_path, monkeypatch, aldolase_dir) -> Path:
    """A data cache whose `aldolase` folder is the shared training split, as `cryorl data download` lays it out."""
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "aldolase").symlink_to(aldolase_dir, target_is_directory=True)
    monkeypatch.setenv("CRYORL_CACHE", str(cache))
    return cache


def make_tiny_atlas() -> Atlas:
    """Two tiles; tile A has squares A1 (patches p1, p2) and A2 (p3); tile B has square B1 (p4).

    hole  patch  true CTF  predicted
    0     p1     4.0       5.0      good
    1     p1     5.0       4.0      good
    2     p1     9.0       7.0      bad
    3     p2     6.0       6.5      good (6.0 is inclusive)
    4     p2     100000    15.0     CTF fit failed: bad
    5     p3     3.0       3.5      good
    6     p4     12.0      3.0      bad
    7     p4     2.5       9.0      good
    """
    patch = np.array([0, 0, 0, 1, 1, 2, 3, 3])
    square = np.array([0, 0, 0, 0, 0, 1, 2, 2])
    tile = np.array([0, 0, 0, 0, 0, 0, 1, 1])
    return Atlas(
        names=np.array([f"h{i}" for i in range(8)]), tile=tile, square=square, patch=patch,
        x=np.arange(8.0), y=np.zeros(8), true_ctf=np.array([4.0, 5.0, 9.0, 6.0, 100000.0, 3.0, 12.0, 2.5]),
        predicted_ctf=np.array([5.0, 4.0, 7.0, 6.5, 15.0, 3.5, 3.0, 9.0]),
        tile_names=("A", "B"), square_names=("A1", "A2", "B1"), patch_names=("p1", "p2", "p3", "p4"),
        source="tiny")


@pytest.fixture()
def tiny_atlas() -> Atlas:
    return make_tiny_atlas()


@pytest.fixture
def one_torch_thread():
    """Torch on one thread for the test (the suite runs on 2 cores), restored after."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
