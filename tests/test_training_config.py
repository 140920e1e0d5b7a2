"""The typed training config: every shipped file loads; unknown keys and wrong types name the key."""
import gymnasium as gym
import pytest

from cryorl import CryoEMEnv
from cryorl.agents.config import ConfigError, TrainingConfig, load_config
from cryorl.agents.training import RandomBudget
from cryorl.resources import HYPERPARAMS_DIR
from cryorl.synth import TEST_GRID_SEEDS

SMALL = {"n_holes": 200, "n_patches": 15, "n_squares": 4, "n_tiles": 2}


@pytest.mark.parametrize("name", ["dqn", "ppo", "dqn-real"])
def test_shipped_configs_load(name):
    config = load_config(HYPERPARAMS_DIR / f"{name}.yml")
    assert config.algo in ("dqn", "ppo") and config.n_timesteps > 0 and config.env.sources
    assert TrainingConfig.from_mapping(config.to_mapping()) == config        # the mapping round-trips
    assert not set(config.eval.grid_seeds) & set(TEST_GRID_SEEDS)           # the benchmarks' grids stay unseen


BASE = {"algo": "dqn", "n_timesteps": 100, "env": {"sources": [{"grid": SMALL}]}, "learning_rate": 1e-3}


@pytest.mark.parametrize("change, message", [
    ({"algo": "a2c"}, r"algo: one of dqn, ppo, not 'a2c'"),
    ({"n_timesteps": "many"}, r"n_timesteps: expected a number, got 'many'"),
    ({"n_timesteps": 10.5}, r"n_timesteps: expected a whole number"),
    ({"env": {"budget": [480]}}, r"env.budget: unknown key \(known: costs, threshold, budgets"),
    ({"env": {"budgets": []}}, r"env.budgets: expected a non-empty list of numbers"),
    ({"env": {"sources": [{"grid": SMALL}, {"grid": SMALL, "predictions": "probability"}]}},
     r"env.sources\[1\]: predictions: 'regressor' or 'classifier', not 'probability'"),
    ({"env": {"sources": [{"grid": SMALL, "data": {"dir": "x"}}]}}, r"env.sources\[0\]: a source is either"),
    ({"env": {"vec_env": "ray"}}, r"env.vec_env: 'dummy' or 'subproc'"),
    ({"eval": {"grid_seeds": [1, "two"]}}, r"eval.grid_seeds\[1\]: expected a number, got 'two'"),
    ({"imitation": {"rounds": 2, "epoch": 3}}, r"imitation.epoch: unknown key"),
    ({"learning_rat": 1e-3}, r"learning_rat: not a MaskedDQN hyper-parameter"),
    ({"n_epochs": 4}, r"n_epochs: not a MaskedDQN hyper-parameter"),           # a PPO key in a DQN config
    ({"keep_checkpoints": 0}, r"keep_checkpoints: must be at least 1, not 0"),
    ({"checkpoint_freq": 0}, r"checkpoint_freq: must be at least 1"),
    ({"eval": {"freq": 0}}, r"eval.freq: must be at least 1"),
    ({"env": {"budgets": [480, float("nan")]}}, r"env.budgets\[1\]: must be more than 0, not nan"),
    ({"imitation": {"follow_planner": 3}}, r"imitation.follow_planner: a probability in \[0, 1\], not 3.0"),
    ({"imitation": {"batch_size": 0}}, r"imitation.batch_size: must be at least 1"),
    ({"env": {"sources": [{"grid": {"n_holes": 300, "bogus": 1}}]}}, r"env.sources\[0\]: grid: .*bogus"),
    ({"eval": {"grid": {"n_holes": -5}}}, r"eval.grid: "),
])
def test_bad_configs_name_the_key(change, message):
    with pytest.raises(ConfigError, match=r"^my.yml: " + message):
        TrainingConfig.from_mapping({**BASE, **change}, "my.yml")


def test_config_file_errors_name_the_file(tmp_path):
    path = tmp_path / "bad.yml"
    path.write_text("CryoEM-v0:\n  algo: ppo\n  n_timesteps: 10\n  n_step: 64\n")
    with pytest.raises(ConfigError, match=r"bad.yml: n_step: not a MaskablePPO hyper-parameter"):
        load_config(path)
    path.write_text("Other-v0:\n  algo: ppo\n")
    with pytest.raises(ConfigError, match=r"bad.yml: expected a mapping with a 'CryoEM-v0' section"):
        load_config(path)


class _CountResets(gym.Wrapper):
    def __init__(self, env):
        super().__init__(env)
        self.resets = 0

    def reset(self, **kwargs):
        self.resets += 1
        return self.env.reset(**kwargs)


def test_random_budget_resets_once_per_episode_and_reproduces_its_draws():
    def draws(seed):
        inner = _CountResets(CryoEMEnv(grid=SMALL, resample_grid=True))
        env = RandomBudget(inner, [60, 120, 240, 480])
        budgets = [env.reset(seed=seed)[1] and env.unwrapped.episode_budget]
        budgets += [env.reset()[1] and env.unwrapped.episode_budget for _ in range(11)]
        return budgets, inner.resets

    first, resets = draws(3)
    assert resets == 12 and len(set(first)) > 1
    assert draws(3)[0] == first and draws(4)[0] != first


def test_a_short_run_evaluates_on_a_scaled_down_held_out_set():
    """A run of --timesteps below the config's evaluates on the first validation grid with episodes scaled to the
    run (at least 2), and says so; a full run keeps the config's evaluation."""
    from dataclasses import replace

    from cryorl.agents.training import eval_for_run

    config = load_config(HYPERPARAMS_DIR / "ppo.yml")
    assert config.eval.grid_seeds == (80001, 80002) and config.eval.episodes == 10
    full, note = eval_for_run(config, config.n_timesteps)
    assert full.eval == config.eval and note == ""
    short, note = eval_for_run(config, 2000)
    assert short.eval.grid_seeds == (80001,) and short.eval.episodes == 2
    assert note == " (scaled to --timesteps 2,000 of the config's 30,000)"
    half, _ = eval_for_run(config, 15000)
    assert half.eval.episodes == 5
    tiny = replace(config, eval=replace(config.eval, grid_seeds=(80001,), episodes=2))
    assert eval_for_run(tiny, 100) == (tiny, "")
