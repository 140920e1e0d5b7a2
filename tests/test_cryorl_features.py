"""The `cryorl` feature set against a direct, loop-by-loop transcription of the papers' definition."""
import numpy as np
import pytest

from cryorl import CryoEMEnv
from cryorl.atlas import Atlas
from cryorl.calibration import default_calibration

EDGES = [0, 4, 6, 8, 10, 999999]
CAPS = {"patch": 25.0, "square": 150.0, "tile": 500.0}


def reference_frame(atlas: Atlas, visited: np.ndarray, current: int, threshold: float = 6.0) -> np.ndarray:
    """Per-hole features written the slow way: for every hole, loop over the holes of its patch/square/tile."""
    category = not atlas.has_ctf_predictions
    rows = []
    for k in range(len(atlas)):
        if category:
            row = [atlas.predicted_good[k], float(visited[k])]
        else:
            row = [min(atlas.predicted_ctf[k], 20.0) / 20.0, float(visited[k])]
        for level, ids in (("patch", atlas.patch), ("square", atlas.square), ("tile", atlas.tile)):
            members = [j for j in range(len(atlas)) if ids[j] == ids[k]]
            if category:
                unvisited = [j for j in members if not visited[j]]
                u, ul = len(unvisited), sum(atlas.predicted_good[j] for j in unvisited)
                v = len(members) - u
                vl = sum(1 for j in members if visited[j] and min(atlas.true_ctf[j], 20) <= threshold)
            else:
                unvisited = [atlas.predicted_ctf[j] for j in members if not visited[j] and atlas.predicted_ctf[j] <= 20]
                hist = np.histogram(unvisited, EDGES)[0].astype(float)
                row += list(hist / (hist.sum() + 0.0001))
                u = len(unvisited)
                ul = sum(1 for c in unvisited if c <= threshold)
                v = len(members) - u
                vl = sum(1 for j in members if visited[j] and atlas.predicted_ctf[j] <= threshold)
            cap = CAPS[level]
            row += [min(u, cap) / cap, min(ul, cap) / cap, min(v, cap) / cap, min(vl, cap) / cap]
        row += [atlas.tile[k] == atlas.tile[current], atlas.square[k] == atlas.square[current],
                atlas.patch[k] == atlas.patch[current]]
        rows.append(row)
    return np.array(rows, dtype=np.float64)


def check_rollout(atlas: Atlas, steps: int, seed: int = 0, max_holes=None) -> None:
    env = CryoEMEnv(atlas, feature_set="cryorl", max_holes=max_holes)
    obs, info = env.reset(seed=seed)
    dim = 17 if not atlas.has_ctf_predictions else 32
    assert obs["features"].shape == (env.max_holes, 4 * dim)
    rng = np.random.default_rng(seed)
    frames = [reference_frame(atlas, env.unwrapped._visited.copy(), info["hole_index"])] * 4
    for _ in range(steps):
        expected = np.concatenate(frames[-4:], axis=1)
        np.testing.assert_allclose(obs["features"][: len(atlas)], expected, atol=1e-6)
        assert not obs["features"][len(atlas):].any()
        action = rng.choice(np.flatnonzero(obs["action_mask"]))
        obs, _, done, _, info = env.step(action)
        frames.append(reference_frame(atlas, env.unwrapped._visited.copy(), action))
        if done:
            break


def test_cryorl_features_match_reference_on_tiny_grid(tiny_atlas):
    check_rollout(tiny_atlas, steps=7, max_holes=10)


def test_cryorl_features_match_reference_on_real_patches(aldolase):
    # a part of the real split: 2 tiles, every patch and square of them (the reference is O(holes^2) per step)
    part = aldolase.subset(np.isin(aldolase.tile, [0, 3]))
    assert len(part) > 250
    check_rollout(part, steps=12, seed=4)


def test_category_variant_matches_reference(tiny_atlas):
    probs = np.array([0.9, 0.8, 0.2, 0.55, 0.1, 0.95, 0.7, 0.3])
    atlas = tiny_atlas.with_predictions(predicted_good=probs)
    check_rollout(atlas, steps=7)
    obs, _ = CryoEMEnv(atlas).reset(options={"start": 0})          # the compact observation reads them too,
    calibrated = default_calibration().probability_good(atlas)      # recalibrated by the shipped calibration
    assert obs["predicted_good"] == pytest.approx(calibrated, abs=1e-6)
    assert np.corrcoef(obs["predicted_good"], probs)[0, 1] > 0.8
    equivalent = obs["predicted_ctf"]                               # 6 Å - 2 Å · logit(p): p = 0.5 sits on 6 Å
    assert equivalent[3] == pytest.approx(6.0 - 2.0 * np.log(0.55 / 0.45), abs=1e-5)
    assert ((equivalent <= 6.0) == (probs >= 0.5)).all()
