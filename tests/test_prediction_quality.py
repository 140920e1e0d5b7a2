"""Predictions of a chosen quality: the degradation hits its targets on real and simulated grids, seeded, and the
real-grid proxy reads back through the loaders."""
from __future__ import annotations

import numpy as np
import pytest

from cryorl import load_cryorl_dataset, simulate_atlas
from cryorl.gridstats import eta_squared
from cryorl.prediction_quality import (
    PREDICTION_QUALITIES,
    degrade_predictions,
    prediction_metrics,
    resolve_quality,
    with_prediction_quality,
    write_degraded_split,
)
from cryorl.quality import as_classifier


def metrics(atlas):
    return prediction_metrics(atlas.predicted_ctf, atlas.true_ctf)


def test_unseen_quality_of_the_real_split_hits_mae_and_r(aldolase):
    own = metrics(aldolase)
    assert own["mae"] == pytest.approx(1.966, abs=1e-3) and own["pearson_r"] == pytest.approx(0.711, abs=1e-3)
    proxy = with_prediction_quality(aldolase, "unseen", seed=0)
    got = metrics(proxy)
    assert got["mae"] == pytest.approx(2.55, abs=0.01) and got["pearson_r"] == pytest.approx(0.63, abs=0.005)
    assert got["accuracy"] < own["accuracy"]
    np.testing.assert_array_equal(proxy.true_ctf, aldolase.true_ctf)
    # the added error is shared in part by the holes of a patch: its residual clusters more than the original's
    residual = lambda a: np.minimum(a.predicted_ctf, 20) - np.minimum(a.true_ctf, 20)  # noqa: E731
    assert eta_squared(residual(proxy), proxy.patch) > eta_squared(residual(aldolase), aldolase.patch) + 0.03
    again, other = with_prediction_quality(aldolase, "unseen", seed=0), with_prediction_quality(aldolase, "unseen", 1)
    np.testing.assert_array_equal(again.predicted_ctf, proxy.predicted_ctf)
    assert not np.array_equal(other.predicted_ctf, proxy.predicted_ctf)


@pytest.mark.parametrize("mae", [1.9, 2.2, 2.55, 2.9, 3.2])
def test_degradation_hits_the_requested_mae(aldolase, mae):
    """Across the robustness range, on the real split and on simulated grids; r falls as the MAE rises."""
    for atlas in (aldolase, simulate_atlas(11, prediction_quality="in-sample")):
        got = metrics(with_prediction_quality(atlas, mae, seed=3))
        assert got["mae"] == pytest.approx(mae, abs=0.01), atlas.source
        if mae > metrics(atlas)["mae"]:
            assert got["pearson_r"] < metrics(atlas)["pearson_r"]
    r = [metrics(with_prediction_quality(aldolase, m, seed=3))["pearson_r"] for m in (2.2, 2.55, 3.2)]
    assert r[0] > r[1] > r[2] and r[1] == pytest.approx(0.63, abs=0.005)    # 2.55 alone is the unseen point
    plain = metrics(degrade_predictions(aldolase, 2.9, seed=3))            # MAE alone, explicit
    assert plain["mae"] == pytest.approx(2.9, abs=0.01)


def test_quality_names_and_errors(tiny_atlas):
    assert resolve_quality("in-sample") is None and resolve_quality("unseen") == PREDICTION_QUALITIES["unseen"]
    assert resolve_quality("2.8").mae == 2.8 and resolve_quality(3).mae == 3.0
    for bad, match in (("great", "unknown prediction quality 'great'"), (-1.0, "between 0 and 20"),
                       (True, "not True")):
        with pytest.raises(ValueError, match=match):
            resolve_quality(bad)
    with pytest.raises(ValueError, match="classifier probabilities"):
        degrade_predictions(as_classifier(simulate_atlas(1)), 2.5)
    with pytest.raises(ValueError, match="8 measured holes: too few"):
        degrade_predictions(tiny_atlas, 3.0)
    with pytest.raises(ValueError, match="added error cannot raise it to 0.9"):
        degrade_predictions(simulate_atlas(1, prediction_quality="in-sample"), 3.0, 0.9)


def test_the_proxy_split_reads_back_through_the_loader(aldolase_dir, aldolase, tmp_path):
    folder = write_degraded_split(aldolase_dir, tmp_path / "proxy", "train", "unseen", seed=0)
    proxy = load_cryorl_dataset(folder, "train")
    np.testing.assert_array_equal(proxy.names, aldolase.names)
    np.testing.assert_allclose(proxy.predicted_ctf, with_prediction_quality(aldolase, "unseen").predicted_ctf,
                               atol=5e-4)
    assert metrics(proxy)["mae"] == pytest.approx(2.55, abs=0.01)
    assert (folder / "timestamps.csv").read_text() == (aldolase_dir / "timestamps.csv").read_text()
