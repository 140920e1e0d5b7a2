import numpy as np
import pandas as pd
import pytest

from cryorl.gridstats import grid_statistics
from cryorl.synth import GridSpec, simulate_atlas, simulate_hole_table


def test_same_seed_same_grid():
    a, b = simulate_hole_table(4), simulate_hole_table(4)
    pd.testing.assert_frame_equal(a, b)
    assert not simulate_hole_table(5).true_ctf.equals(a.true_ctf)


def test_default_grid_has_the_real_session_shape():
    atlas = simulate_atlas(0)
    assert (len(atlas), atlas.n_patches, atlas.n_squares, atlas.n_tiles) == (2341, 172, 25, 16)
    per_patch = atlas.holes_per_patch()
    assert per_patch.min() >= 5 and per_patch.max() <= 25
    assert atlas.position_unit == "um"


def test_statistics_are_realistic_on_average():
    stats = pd.DataFrame([grid_statistics(simulate_atlas(seed)) for seed in range(8)]).mean()
    assert 0.30 < stats["fraction good (<= 6 A)"] < 0.50            # real session: ~38 % (train split 45 %)
    assert 0.005 < stats["fraction CTF fit failed"] < 0.04          # real: 1.3 %
    assert 0.3 < stats["good eta2 within patch"] < 0.6              # real: 0.49, strong clustering
    assert 0.15 < stats["good eta2 within square"] < 0.5            # real: 0.40
    assert 2.0 < stats["prediction MAE (A)"] < 3.2                  # published ResNet-50: 2.55 Å
    assert 0.55 < stats["prediction Pearson r"] < 0.8               # published: 0.63


@pytest.mark.parametrize("n_holes", [40, 1000, 10000])
def test_scaled_specs(n_holes):
    atlas = simulate_atlas(1, GridSpec.with_holes(n_holes))
    assert len(atlas) == n_holes


def test_impossible_specs_are_refused():
    with pytest.raises(ValueError, match="cannot fill 10 patches"):
        GridSpec(n_holes=1000, n_patches=10, n_squares=5, n_tiles=2)
    with pytest.raises(ValueError, match="need 1 ≤ tiles"):
        GridSpec(n_tiles=30)


def test_simulated_names_parse_like_leginon():
    from cryorl.leginon import parse_exposure_names

    frame = simulate_hole_table(2, GridSpec.with_holes(200))
    parts, ok = parse_exposure_names(frame["hole"])
    assert ok.all()
    for level in ("tile", "square", "patch"):               # the same grouping as the simulator's hierarchy
        assert (pd.factorize(parts[level])[0] == pd.factorize(frame[level])[0]).all()
