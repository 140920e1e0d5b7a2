"""The planner's signals in the observation and the imitation (DAgger) that starts the learned agents from it."""
import json

import gymnasium as gym
import numpy as np
import pandas as pd
import pytest
import torch

from cryorl import CryoEMEnv, simulate_atlas
from cryorl.agents import PlannerPolicy, evaluate_policy, summarize
from cryorl.agents.imitation import collect, imitate
from cryorl.agents.learned import LearnedPolicy
from cryorl.agents.network import HoleScorer
from cryorl.agents.signals import PlannerSignals, SignalSource
from cryorl.agents.training import train, training_env_fns
from cryorl.quality import as_classifier

SMALL = {"n_holes": 200, "n_patches": 15, "n_squares": 4, "n_tiles": 2}
REWARDS = (0.0, 0.5, 0.61, 0.9, 1.0)


def test_signals_are_the_planners_decision():
    env = PlannerSignals(CryoEMEnv(simulate_atlas(3, **SMALL), budget=90))
    planner, source = PlannerPolicy(), SignalSource()
    obs, _ = env.reset(seed=1)
    planner.reset(env.unwrapped)
    source.reset(env.unwrapped)
    done, steps = False, 0
    while not done:
        pick = int(np.argmax(obs["planner_pick"]))
        assert obs["planner_pick"].sum() == 1 and pick == planner.act(obs, obs["action_mask"])
        assert obs["action_mask"][obs["planner_plan"] > 0].all()          # the plan takes unexposed holes only
        assert 0.0 < obs["planner_price"][0] <= 1.0
        again = source.observe({k: v for k, v in obs.items() if not k.startswith("planner_")})
        for key in ("planner_pick", "planner_plan", "planner_price"):  # what a LearnedPolicy computes when acting
            np.testing.assert_array_equal(again[key], obs[key])
        assert env.observation_space.contains(obs)
        obs, _, done, _, _ = env.step(pick)
        steps += 1
    assert steps > 20


class _Rewards(gym.Wrapper):
    def __init__(self, env):
        super().__init__(env)
        self.episodes = []

    def reset(self, **kwargs):
        self.episodes.append([])
        return self.env.reset(**kwargs)

    def step(self, action):
        out = self.env.step(action)
        self.episodes[-1].append(out[1])
        return out


def test_demonstrations_keep_interleaved_episodes_apart():
    envs = [PlannerSignals(_Rewards(CryoEMEnv(grid=SMALL, resample_grid=True, budget=b))) for b in (40, 70)]
    demonstrations = collect(envs, None, 300, gamma=1.0)
    episode = np.asarray(demonstrations.steps["episode"])
    returns = np.asarray(demonstrations.steps["return"])
    rewards = [r for env in envs for r in env.env.episodes if r]        # (episodes of env 0, then env 1)
    starts = {e: returns[episode == e][0] for e in np.unique(episode)}
    lengths = {e: int((episode == e).sum()) for e in np.unique(episode)}
    assert len(starts) >= 4 and len(demonstrations) >= 300
    # each episode's return at its first step is the sum of its own rewards, whatever ran beside it
    by_length = sorted((lengths[e], round(starts[e], 6)) for e in starts)
    assert by_length == sorted((len(r), round(sum(r), 6)) for r in rewards)
    for e in starts:
        steps = returns[episode == e]
        assert np.all(np.isin(np.round(np.append(steps[:-1] - steps[1:], steps[-1]), 6), REWARDS))


@pytest.mark.parametrize("loss", ["policy", "q"])
def test_imitation_reproduces_the_planner_on_a_new_grid(loss):
    torch.manual_seed(0)
    envs = [PlannerSignals(CryoEMEnv(grid=SMALL, resample_grid=True, budget=b)) for b in (60, 180)]
    scorer = HoleScorer(hidden=32)
    held_out = simulate_atlas(123, **SMALL)
    untrained = summarize(evaluate_policy(LearnedPolicy(HoleScorer(hidden=32)), held_out, episodes=4,
                                          budgets=[120]))
    history = imitate(scorer, envs, loss=loss, rounds=2, steps_per_round=1200, epochs=6, log=lambda _: None)
    assert history[-1]["agreement"] > 0.97 and history[-1]["steps"] >= 2400
    learned = summarize(evaluate_policy(LearnedPolicy(scorer), held_out, episodes=4, budgets=[120]))
    planner = summarize(evaluate_policy(PlannerPolicy(), held_out, episodes=4, budgets=[120]))
    assert learned.good_mean.iloc[0] >= 0.98 * planner.good_mean.iloc[0]
    assert untrained.good_mean.iloc[0] < 0.8 * planner.good_mean.iloc[0]    # it was learned, not given


def test_smoothed_imitation_keeps_the_planners_alternatives_for_rl():
    """Without smoothing the policy PPO starts from is deterministic (its gradient is zero, as the 30,000 PPO steps
    after imitation showed: approx_kl 0); with 0.1 of the target on the plan's other holes it still picks the
    planner's hole but gives the rest of the plan about a tenth of its probability, and nothing outside the plan."""
    from cryorl.agents.imitation import Demonstrations

    def fitted(smoothing: float) -> tuple[float, float, float]:
        torch.manual_seed(0)
        envs = [PlannerSignals(CryoEMEnv(grid=SMALL, resample_grid=True, budget=b)) for b in (60, 180)]
        scorer = HoleScorer(hidden=32)
        history = imitate(scorer, envs, loss="policy", rounds=2, steps_per_round=1200, epochs=6,
                          smoothing=smoothing, log=lambda _: None)
        demonstrations = collect(envs, None, 300, seed=99, demonstrations=Demonstrations(0.97))
        obs, targets = demonstrations.batch(np.arange(len(demonstrations)))
        with torch.no_grad():
            p = torch.softmax(scorer(obs), dim=1)
        pick = torch.nn.functional.one_hot(targets["pick"], p.shape[1]).bool()
        plan = obs["planner_plan"] > 0
        alternatives = plan.sum(1) > 1                         # states whose plan has another hole to try
        on_pick = float(p[pick][alternatives].mean())
        off_plan = float((p * ~(plan | pick)).sum(1)[alternatives].mean())
        return history[-1]["agreement"], on_pick, off_plan

    agreement, sharp, _ = fitted(0.0)
    assert agreement > 0.97 and sharp > 0.95
    agreement, on_pick, off_plan = fitted(0.1)
    assert agreement > 0.97                                    # the argmax is still the planner's hole
    assert 0.8 < on_pick < sharp - 0.04 and off_plan < 0.02, (sharp, on_pick, off_plan)


def test_training_starts_from_the_planner_in_both_settings(tmp_path):
    config = {"algo": "ppo", "n_timesteps": 128, "checkpoint_freq": 10_000,
              "env": {"budgets": [60, 120], "opportunity_cost": 0.7,
                      "sources": [{"grid": SMALL}, {"grid": SMALL, "predictions": "classifier",
                                                    "costs": "cryorl-2022"}]},
              "imitation": {"rounds": 2, "steps_per_round": 800, "epochs": 6},
              "eval": {"freq": 10_000, "episodes": 2, "budget": 120, "grid": SMALL, "grid_seeds": [77]},
              "policy_kwargs": {"net_arch": [32]}, "n_steps": 64, "batch_size": 64, "n_epochs": 1,
              "learning_rate": 1e-5}
    envs = [fn() for fn in training_env_fns(config["env"])]
    second = envs[1].unwrapped
    second.reset(seed=0)
    assert not second.atlas.has_ctf_predictions and second.costs.as_array().tolist() == [2, 5, 10, 20]
    train(config, tmp_path / "run", seed=0, progress_bar=False, log=lambda _: None)
    imitation = pd.read_csv(tmp_path / "run" / "imitation.csv")
    assert imitation["agreement"].iloc[-1] > 0.95
    first = pd.read_csv(tmp_path / "run" / "eval.csv").iloc[0]       # evaluated before RL: the imitation's policy
    assert first["timesteps"] == 0 and first["good_mean"] >= 0.97 * first["planner_good_mean"]
    # and on classifier probabilities with the 2022 costs, where it never saw a real grid
    classifier = as_classifier(simulate_atlas(78, **SMALL))
    policy = LearnedPolicy.load(tmp_path / "run" / "best")
    scores = [summarize(evaluate_policy(agent, classifier, episodes=3, budgets=[120], costs="cryorl-2022"))
              .good_mean.iloc[0] for agent in (policy, PlannerPolicy())]
    assert scores[0] >= 0.97 * scores[1]


SHORT = {"algo": "ppo", "n_timesteps": 1280, "checkpoint_freq": 10_000,
         "env": {"budgets": [60], "sources": [{"grid": SMALL}]}, "eval": {},
         "imitation": {"rounds": 2, "steps_per_round": 800, "epochs": 1},
         "policy_kwargs": {"net_arch": [16]}, "n_steps": 64, "batch_size": 64, "n_epochs": 1}


def test_a_short_run_is_short_and_says_what_each_phase_does(tmp_path, capsys):
    from cryorl.agents.training import IMITATION_FLOOR

    messages = []
    policy = train(SHORT, tmp_path / "short", timesteps=100, log=messages.append)
    bars = "".join(capsys.readouterr())                        # tqdm on stderr, SB3's rich bar on stdout
    # the imitation follows the run's size: 800 a round for 1,280 steps, the floor of 300 for 100
    assert IMITATION_FLOOR == 300 and messages[0].startswith(
        "imitation: 2 rounds × 300 labelled steps, whole episodes, 1 fitting epochs each (scaled to --timesteps 100")
    steps = pd.read_csv(tmp_path / "short" / "imitation.csv")["steps"].tolist()
    assert 300 <= steps[0] < 400 and 600 <= steps[1] < 800, steps       # whole episodes of ~40 steps
    # RL in whole rollouts, and the run says so: 100 steps asked, 2 rollouts of 64 done
    assert "rl: 128 MaskablePPO steps (100 rounded up to whole rollouts of n_steps 64 × 1 environment(s))" in messages
    assert policy.metadata["timesteps"] == 128
    # every phase shows its progress
    for bar in ("imitation round 0: collecting", "imitation round 1: fitting 1 epochs on", "128/128"):
        assert bar in bars, bar
    run = json.loads((tmp_path / "short" / "run.json").read_text())
    assert run["config"]["imitation"]["steps_per_round"] == 300           # the imitation that was done

    messages.clear()
    train(SHORT, tmp_path / "asked", timesteps=64, imitation_steps=900, progress_bar=False, log=messages.append)
    assert messages[0].startswith("imitation: 2 rounds × 450 labelled steps") and "900 imitation steps asked" in \
        messages[0]
    assert 450 <= pd.read_csv(tmp_path / "asked" / "imitation.csv")["steps"].iloc[0] < 550


def test_imitation_steps_zero_skips_the_imitation(tmp_path, capsys):
    import yaml

    from cryorl.cli import main

    config = tmp_path / "ppo.yml"
    config.write_text(yaml.safe_dump({"CryoEM-v0": SHORT}))
    run = tmp_path / "run"
    assert main(["train", "--config", str(config), "--imitation-steps", "0", "--timesteps", "64", "--run-dir",
                 str(run), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "imitation: none (0 imitation steps asked)" in out and "rl: 64 MaskablePPO steps\n" in out
    assert not (run / "imitation.csv").exists() and (run / "policy" / "scorer.pt").exists()
    assert json.loads((run / "run.json").read_text())["config"]["imitation"] is None
    assert main(["train", "--config", str(config), "--imitation-steps", "-1", "--run-dir", str(tmp_path / "r2")]) == 2
    assert "--imitation-steps must be 0 or more, not -1" in capsys.readouterr().err
