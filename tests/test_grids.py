"""Grid sources: what the environment draws at each reset."""
import numpy as np
import pytest

from cryorl import CryoEMEnv, simulate_atlas
from cryorl.grids import FixedGrid, SimulatedGrid
from cryorl.quality import as_classifier
from cryorl.synth import GridSpec

SPEC = GridSpec.with_holes(200)


def names(env):
    return tuple(env.atlas.names[:5]), float(np.nansum(env.atlas.true_ctf))


def test_simulated_grids_are_drawn_as_documented():
    fixed = CryoEMEnv(grid=SPEC, grid_seed=7)
    first = names(fixed)
    fixed.reset(seed=1)
    fixed.reset()
    assert names(fixed) == first == names(CryoEMEnv(grid=SimulatedGrid(SPEC, seed=7)))
    drawn = CryoEMEnv(grid=SPEC)
    drawn.reset(seed=1)
    once = names(drawn)
    drawn.reset()
    assert names(drawn) == once                       # unseeded resets keep the grid
    drawn.reset(seed=1)
    assert names(drawn) == once                       # and a seed draws it again, reproducibly
    drawn.reset(seed=2)
    assert names(drawn) != once
    resampled = CryoEMEnv(grid=SPEC, resample_grid=True)
    resampled.reset(seed=1)
    totals = {names(resampled)[1] for _ in range(3) if resampled.reset() is not None}
    assert len(totals) == 3                           # a new grid every reset


def test_a_transform_gives_classifier_grids():
    env = CryoEMEnv(grid=SimulatedGrid(SPEC, resample=True, transform=as_classifier))
    env.reset(seed=0)
    assert not env.atlas.has_ctf_predictions and env.atlas.predicted_good.max() <= 1.0


def test_fixed_grid_and_refused_combinations():
    atlas = simulate_atlas(3, SPEC)
    env = CryoEMEnv(grid=FixedGrid(atlas))
    env.reset(seed=5)
    assert env.atlas is atlas
    with pytest.raises(ValueError, match="either atlas= .* or grid=/grid_seed="):
        CryoEMEnv(atlas, grid_seed=3)
    with pytest.raises(ValueError, match="resample_grid needs a simulated grid without grid_seed"):
        CryoEMEnv(grid=SPEC, grid_seed=3, resample_grid=True)
    with pytest.raises(ValueError, match="carries its own seed"):
        CryoEMEnv(grid=SimulatedGrid(SPEC), grid_seed=3)
    with pytest.raises(ValueError, match="needs crops=, one image per hole"):
        FixedGrid(atlas, perception=object(), crops=np.zeros((3, 8, 8)))
