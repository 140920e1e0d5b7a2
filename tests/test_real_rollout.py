"""A random policy on the real training split; the totals are recomputed independently from the path."""
import numpy as np
import pytest

from cryorl import CryoEMEnv


@pytest.mark.parametrize("budget", [120.0, 480.0])
def test_random_rollout_totals(aldolase, budget):
    env = CryoEMEnv(aldolase, budget=budget)
    rng = np.random.default_rng(1)
    obs, info = env.reset(seed=11)
    path, total_reward, done = [info["hole_index"]], 0.0, False
    while not done:
        action = int(rng.choice(np.flatnonzero(env.action_masks())))
        obs, reward, done, _, info = env.step(action)
        path.append(action)
        total_reward += reward

    # independent recomputation from the names, costs and CTF table
    tiles = [n.split("_")[2] for n in aldolase.names]
    squares = [n.split("_")[3] for n in aldolase.names]
    patches = [n.split("_")[5] for n in aldolase.names]
    elapsed, reward_sum, good = 0.0, 0.0, 0
    for a, b in zip(path[:-1], path[1:]):
        if (tiles[a], squares[a], patches[a]) == (tiles[b], squares[b], patches[b]):
            cost, r = 1, 1.0
        elif (tiles[a], squares[a]) == (tiles[b], squares[b]):
            cost, r = 2, 0.9
        elif tiles[a] == tiles[b]:
            cost, r = 6, 0.61
        else:
            cost, r = 8, 0.5
        elapsed += cost
        if aldolase.true_ctf[b] <= 6.0:
            reward_sum += r
            good += 1
    assert elapsed > budget and elapsed - budget <= 8
    assert info["elapsed"] == elapsed and info["good_exposures"] == good
    assert total_reward == pytest.approx(reward_sum)
    assert len(set(path)) == len(path)
