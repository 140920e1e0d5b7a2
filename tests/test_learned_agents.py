"""Masked DQN and MaskablePPO with per-hole scoring: masks everywhere, size independence, training and resuming."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from sb3_contrib import MaskablePPO
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv

from cryorl import CryoEMEnv, simulate_atlas
from cryorl.agents import evaluate_policy, make_policy, summarize
from cryorl.agents.learned import LearnedPolicy
from cryorl.agents.network import HoleScorer, observation_to_tensors
from cryorl.agents.sb3 import HoleDQNPolicy, HoleMaskablePolicy, MaskedDQN
from cryorl.agents.signals import PlannerSignals
from cryorl.agents.training import train

SMALL = {"n_holes": 200, "n_patches": 15, "n_squares": 4, "n_tiles": 2}


def small_venv(seed=0, budget=120):
    venv = DummyVecEnv([lambda: Monitor(PlannerSignals(CryoEMEnv(grid=SMALL, resample_grid=True, budget=budget)))])
    venv.seed(seed)
    return venv


def unmasked_scores(network, obs):
    """What ``network``'s scorer gives every hole, invalid ones included (a copy that does not mask)."""
    raw = HoleScorer(hidden=network.scorer.hidden, mask_invalid=False)
    raw.load_state_dict(network.scorer.state_dict())
    with torch.no_grad():
        return raw(observation_to_tensors(obs))[0]


def bootstrap_targets(model, obs, next_obs, action, reward, monkeypatch):
    """The TD targets SB3's ``DQN.train`` computes for one stored transition (caught at its Huber loss)."""
    from stable_baselines3.common.logger import configure
    from stable_baselines3.dqn import dqn

    model.replay_buffer.add(obs, next_obs, np.array([[action]]), np.array([reward]), np.array([False]), [{}])
    model.set_logger(configure(None, []))
    caught, huber = [], dqn.F.smooth_l1_loss
    monkeypatch.setattr(dqn.F, "smooth_l1_loss", lambda q, target: caught.append(target) or huber(q, target))
    model.train(gradient_steps=1, batch_size=1)
    return caught[0].flatten()


def test_q_network_masks_invalid_holes_and_exploration_is_valid(monkeypatch):
    torch.manual_seed(0)
    model = MaskedDQN(HoleDQNPolicy, small_venv(), learning_starts=50, buffer_size=500, seed=0)
    obs = model.env.reset()
    before = {k: v.copy() for k, v in obs.items()}          # every hole valid but the start hole
    # pretend most holes were visited, among them those the target network scores highest
    visited = np.argsort(unmasked_scores(model.q_net_target, before).numpy())[-150:]
    obs["action_mask"][0, visited] = 0
    valid = obs["action_mask"][0].astype(bool)            # 50 holes, or 49 if the start hole is among them
    assert valid.sum() in (49, 50)
    q = model.q_net(observation_to_tensors(obs))
    assert (q[0, ~valid] == -1e8).all() and (q[0, valid] > -1e7).all()
    # the bootstrap target (max over next Q-values of the target network) is the max over valid holes only:
    # here an invalid hole scores highest unmasked, so an unmasked target would be larger
    raw = unmasked_scores(model.q_net_target, obs)
    assert raw[~valid].max() > raw[valid].max()
    target = bootstrap_targets(model, before, obs, int(np.flatnonzero(valid)[0]), 0.5, monkeypatch)
    assert target.item() == pytest.approx(0.5 + model.gamma * raw[valid].max().item(), abs=1e-6)
    model.exploration_rate = 1.0
    explored = {int(model.predict(obs, deterministic=False)[0][0]) for _ in range(300)}
    assert valid[sorted(explored)].all() and len(explored) > 20    # ε-greedy samples only valid holes
    assert valid[int(model.predict(obs, deterministic=True)[0][0])]
    model._last_obs = obs
    warmup = {int(model._sample_action(learning_starts=10**6)[0][0]) for _ in range(300)}
    assert valid[sorted(warmup)].all()                    # and so does the warm-up


@pytest.mark.parametrize("algo", ["dqn", "ppo"])
def test_trained_policy_runs_on_grids_of_any_size(algo, tmp_path, aldolase):
    if algo == "dqn":
        model = MaskedDQN(HoleDQNPolicy, small_venv(), learning_starts=100, buffer_size=1000, batch_size=32,
                          train_freq=4, seed=0)
        model.learn(400)
    else:
        model = MaskablePPO(HoleMaskablePolicy, small_venv(), n_steps=128, batch_size=64, n_epochs=2, seed=0)
        model.learn(256)
    LearnedPolicy.from_model(model, algo).save(tmp_path / algo)
    policy = make_policy(tmp_path / algo)
    # the same weights whatever the grid: nothing sized by the number of holes
    assert sum(p.numel() for p in policy.scorer.parameters()) == sum(p.numel() for p in HoleScorer().parameters())
    for atlas in (simulate_atlas(3), aldolase, simulate_atlas(4, n_holes=60, n_patches=5, n_squares=2, n_tiles=1)):
        frame = evaluate_policy(policy, atlas, episodes=2, budgets=[60])
        steps = frame[frame.step > 0]
        assert steps.groupby("episode").hole.apply(lambda h: h.is_unique).all()
        assert len(steps) > 10


def test_policy_files_load_safely(tmp_path):
    with pytest.raises(FileNotFoundError, match="is not a saved cryorl policy"):
        LearnedPolicy.load(tmp_path)
    model = MaskablePPO(HoleMaskablePolicy, small_venv(), n_steps=64, batch_size=32, seed=0)
    LearnedPolicy.from_model(model, "ppo").save(tmp_path / "p")
    (tmp_path / "p" / "scorer.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=r"scorer.pt: cannot load the policy weights"):
        LearnedPolicy.load(tmp_path / "p")
    with pytest.raises(ValueError, match="needs feature_set='compact'"):
        LearnedPolicy.from_model(model, "ppo").reset(CryoEMEnv(simulate_atlas(0), feature_set="cryorl"))
    LearnedPolicy.from_model(model, "ppo").save(tmp_path / "old")
    config = json.loads((tmp_path / "old" / "config.json").read_text())
    (tmp_path / "old" / "config.json").write_text(json.dumps({**config, "format": "cryorl-hole-scorer/1"}))
    with pytest.raises(ValueError, match="cryorl < 0.2 .* retrain it"):
        LearnedPolicy.load(tmp_path / "old")
    with pytest.raises(KeyError, match="lacks planner_pick, planner_plan, planner_price"):
        model.policy.mlp_extractor.scorer(observation_to_tensors(CryoEMEnv(simulate_atlas(0)).reset(seed=0)[0]))


CONFIG = {
    "algo": "dqn", "n_timesteps": 400, "checkpoint_freq": 200,
    "env": {"budgets": [60, 120], "sources": [{"grid": SMALL}]},
    "eval": {"freq": 200, "episodes": 1, "budget": 60, "grid": SMALL, "grid_seeds": [77]},
    "policy_kwargs": {"net_arch": [16]}, "learning_starts": 100, "buffer_size": 1000, "batch_size": 16,
    "train_freq": 4, "target_update_interval": 100,
}


def test_training_writes_checkpoints_logs_and_resumes(tmp_path):
    run = tmp_path / "run"
    train(CONFIG, run, seed=1, progress_bar=False, log=lambda _: None)
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [
        "model_200_steps.zip", "model_400_steps.zip", "model_replay_buffer_200_steps.pkl",
        "model_replay_buffer_400_steps.pkl"]
    assert (run / "policy" / "scorer.pt").exists() and (run / "best" / "config.json").exists()
    assert any((run / "tb").rglob("events.out.tfevents*"))
    history = (run / "eval.csv").read_text().splitlines()
    assert history[0] == "timesteps,good_mean,planner_good_mean,wall_seconds" and len(history) == 4   # 0, 200, 400
    messages = []
    policy = train(CONFIG, run, seed=1, timesteps=600, progress_bar=False, log=messages.append)
    assert messages[0].startswith("resuming from") and "(400 steps)" in messages[0]
    assert policy.metadata["timesteps"] == 600
    assert json.loads((run / "run.json").read_text())["timesteps"] == 600


def test_same_seed_same_run(tmp_path):
    config = {**CONFIG, "eval": {}, "n_timesteps": 300}
    a = train(config, tmp_path / "a", seed=5, progress_bar=False, log=lambda _: None)
    b = train(config, tmp_path / "b", seed=5, progress_bar=False, log=lambda _: None)
    for (key, x), y in zip(a.scorer.state_dict().items(), b.scorer.state_dict().values()):
        assert torch.equal(x, y), key


def test_ppo_training_config(tmp_path):
    config = {"algo": "ppo", "n_timesteps": 256, "checkpoint_freq": 10_000, "env": {"sources": [{"grid": SMALL}]},
              "policy_kwargs": {"net_arch": [16]}, "n_steps": 128, "batch_size": 64, "n_epochs": 4,
              "learning_rate": 3e-3}
    policy = train(config, tmp_path / "ppo", seed=0, progress_bar=False, log=lambda _: None)
    untrained = train(config, tmp_path / "untrained", seed=0, timesteps=0, progress_bar=False, log=lambda _: None)
    # the config's algorithm and hyper-parameters are the ones that ran: 2 rollouts of 128 steps, 4 epochs each
    model = MaskablePPO.load(tmp_path / "ppo" / "final.zip")
    assert (model.n_steps, model.batch_size, model.n_epochs, model._n_updates) == (128, 64, 4, 8)
    assert model.num_timesteps == 256 and policy.metadata["algo"] == "ppo" and policy.scorer.hidden == 16
    # and they trained: the actor's scores moved, and the critic learned that a fresh grid is worth good exposures
    # (a value well above the same-seed untrained one's, which no training, or a critic that learns nothing, keeps)
    actor = [(a - b).abs().max().item() for a, b in zip(policy.scorer.head.parameters(),
                                                         untrained.scorer.head.parameters())]
    assert max(actor) > 1e-2, actor
    env = PlannerSignals(CryoEMEnv(grid=SMALL, grid_seed=9, budget=480))
    starts = [observation_to_tensors(env.reset(seed=s)[0]) for s in range(8)]
    with torch.no_grad():
        trained_value, untrained_value = (np.mean([p.scorer.value(o).item() for o in starts])
                                          for p in (policy, untrained))
    assert trained_value > untrained_value + 3, (trained_value, untrained_value)


def test_guided_exploration_follows_the_planner(aldolase):
    from cryorl.agents import PlannerPolicy

    env = PlannerSignals(CryoEMEnv(aldolase, budget=120))
    venv = DummyVecEnv([lambda: Monitor(PlannerSignals(CryoEMEnv(aldolase, budget=120)))])
    model = MaskedDQN(HoleDQNPolicy, venv, exploration_guide=1.0, buffer_size=100, seed=0)
    model.exploration_rate = 1.0
    planner = PlannerPolicy()
    obs, _ = env.reset(seed=2)
    planner.reset(env.unwrapped)
    for _ in range(30):
        batched = {k: v[None] for k, v in obs.items()}
        explored = int(model.predict(batched, deterministic=False)[0][0])
        assert explored == planner.act(obs, obs["action_mask"])
        obs, *_ = env.step(explored)
    with pytest.raises(ValueError, match="exploration_guide must be in"):
        MaskedDQN(HoleDQNPolicy, venv, exploration_guide=2.0)


def test_opportunity_cost_charges_minutes(tiny_atlas):
    from cryorl.agents.training import OpportunityCost

    env = OpportunityCost(CryoEMEnv(tiny_atlas, budget=100), per_minute=0.5)
    env.reset(options={"start": 0})
    assert env.step(1)[1] == pytest.approx(1.0 - 0.5)        # same patch, good, 1 minute
    assert env.step(3)[1] == pytest.approx(0.9 - 1.0)        # other patch, good, 2 minutes
    assert env.step(6)[1] == pytest.approx(0.0 - 4.0)        # other tile, bad, 8 minutes


@pytest.mark.parametrize("name", ["dqn", "ppo"])
def test_shipped_policies_load_and_collect(name, aldolase):
    from cryorl.resources import PRETRAINED_DIR

    card = (PRETRAINED_DIR / name / "MODEL_CARD.md").read_text()
    assert "Mean good exposures" in card and "greedy-local" in card
    policy = make_policy(name)
    summary = summarize(evaluate_policy(policy, aldolase, episodes=2, budgets=[120]))
    assert summary.good_mean.iloc[0] > 60          # far above random (~9) on the real split


def test_a_saved_policy_folder_is_labelled_by_its_path_or_its_name(tmp_path, monkeypatch, capsys):
    """`cryorl evaluate --agent ppo runs/ppo-tiny/best`: a policy you saved beside the shipped one it came from."""
    import pandas as pd

    from cryorl.cli import main
    from cryorl.resources import PRETRAINED_DIR

    shutil.copytree(PRETRAINED_DIR / "ppo", tmp_path / "runs" / "ppo-tiny" / "best")
    monkeypatch.chdir(tmp_path)
    quick = ["--budgets", "30", "--episodes", "1", "--quiet"]
    assert main(["evaluate", "--agent", "ppo", "runs/ppo-tiny/best", "mine=runs/ppo-tiny/best", "--out", "eval",
                 *quick]) == 0
    summary, steps = pd.read_csv("eval/summary.csv"), pd.read_csv("eval/trajectories.csv")
    assert summary.agent.tolist() == ["ppo", "runs/ppo-tiny/best", "mine"]
    assert steps.agent.unique().tolist() == ["ppo", "runs/ppo-tiny/best", "mine"]
    assert summary.good_mean.nunique() == 1                  # the same weights, three labels
    capsys.readouterr()
    for agents, message in [(["ppo", "ppo=runs/ppo-tiny/best"], "two agents are labelled ppo; label a saved policy "
                                                               "folder with NAME=PATH"),
                            (["mine=runs/none"], "agent 'mine=runs/none': no saved policy folder at runs/none"),
                            ([" =runs/ppo-tiny/best"], "NAME=PATH needs a name")]:
        assert main(["evaluate", "--agent", *agents, "--out", "refused", *quick]) == 2
        error = capsys.readouterr().err
        assert message in error and error.count("\n") == 1 and not Path("refused").exists()
    assert main(["benchmark", "--agents", "mine=runs/ppo-tiny/best", "ppo", "--operators", "0", "--no-steps",
                 "--out", "report", *quick]) == 0
    assert "| mine |" in Path("report/report.md").read_text()
    assert set(pd.read_csv("report/ranking.csv").agent) == {"mine", "ppo", "oracle"}
