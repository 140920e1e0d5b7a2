import pytest

from cryorl.costs import COST_PRESETS, CollectionCosts, calibrate_costs, get_costs


def test_presets():
    assert COST_PRESETS["cryorl-2023"].as_array().tolist() == [1, 2, 6, 8]
    assert COST_PRESETS["cryorl-2022"].as_array().tolist() == [2, 5, 10, 20]
    assert get_costs([1, 2, 3, 4]).tile == 4
    with pytest.raises(ValueError, match="positive minutes"):
        CollectionCosts(1, 0, 2, 3)
    with pytest.raises(ValueError, match="unknown cost keys"):
        get_costs({"hole": 1, "patch": 2, "square": 3, "grid": 4})


def test_calibration_from_real_timestamps(aldolase, aldolase_dir):
    costs = calibrate_costs(aldolase_dir / "timestamps.csv", aldolase, name="aldolase-timestamps")
    assert costs.hole == pytest.approx(1.5, abs=0.1)      # about 1.5 min per hole in a patch
    assert costs.patch == pytest.approx(3.1, abs=0.1)     # about 3.1 min per patch change
    assert costs == COST_PRESETS["aldolase-timestamps"]
