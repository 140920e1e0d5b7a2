"""benchmarks/degradations.py: redrawn predictions of the real split, at unseen quality or at another MAE, one
prediction quality and one number of episodes per folder of reports."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "degradations.py"


def degradations(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), "--seeds", "10", "--episodes", "2", "--settings",
                           "cryorl-2023", "--agents", "greedy-local", "greedy-2t", *args],
                          capture_output=True, text=True, timeout=300)


def test_draws_at_another_mae_go_to_their_own_folder(aldolase_dir, tmp_path):
    """The draw at MAE 3.2 Å is another grid than the unseen-quality draw of the same seed; a folder of one quality
    refuses a run of another in one line naming its report, and its table compares with the references."""
    worse, unseen = tmp_path / "mae-3.2", tmp_path / "unseen"
    assert degradations("--data", str(aldolase_dir), "--quality", "3.2", "--out", str(worse)).returncode == 0
    assert degradations("--data", str(aldolase_dir), "--out", str(unseen)).returncode == 0
    report = pd.read_csv(worse / "cryorl-2023-10.csv")
    assert set(report.quality.astype(str)) == {"3.2"} and list(report.agent) == ["greedy-local"] * 3 + ["greedy-2t"] * 3
    assert not report.good_mean.equals(pd.read_csv(unseen / "cryorl-2023-10.csv").good_mean)

    refused = degradations("--data", str(aldolase_dir), "--out", str(worse))      # unseen quality into the 3.2 folder
    assert refused.returncode != 0 and refused.stdout == ""
    assert refused.stderr.strip() == f"{worse / 'cryorl-2023-10.csv'} holds predictions of another quality than " \
                                     "unseen: use another --out"
    table = subprocess.run([sys.executable, str(SCRIPT), "--table", "--out", str(worse)], capture_output=True,
                           text=True, timeout=120)
    assert "| cryorl-2023 | greedy-2t | 240 | 1/1 |" in table.stdout and "1.000 [1.000, 1.000], 0/1" in table.stdout


def test_an_mae_better_than_the_splits_own_is_refused_for_many_seeds(aldolase_dir, tmp_path):
    """Below the split's own MAE (1.97 Å) the truth is mixed in and every seed draws the same predictions."""
    refused = subprocess.run([sys.executable, str(SCRIPT), "--quality", "1.9", "--data", str(aldolase_dir), "--out",
                              str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert refused.returncode != 0 and refused.stderr.count("\n") == 1
    assert "--quality 1.9: better than the split's own predictions (MAE 1.97 Å)" in refused.stderr
    assert not list(tmp_path.iterdir())


def test_in_sample_predictions_are_refused_for_many_seeds(aldolase_dir, tmp_path):
    """``in-sample`` is the split's own predictions: every seed would run the same grid."""
    refused = subprocess.run([sys.executable, str(SCRIPT), "--quality", "in-sample", "--seeds", "10", "11", "--data",
                              str(aldolase_dir), "--out", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert refused.returncode != 0 and refused.stderr.count("\n") == 1
    assert "--quality in-sample: the split's own predictions, the same for every seed" in refused.stderr
    assert not list(tmp_path.iterdir())


def test_a_run_of_other_agents_keeps_the_earlier_rows_of_the_draw(aldolase_dir, tmp_path):
    """A second run into the folder with another agent adds its rows beside the first run's; a rerun of an agent
    replaces its own rows (benchmarks/unseen.py's save_keeping_other_agents, shared by the three benchmarks)."""
    base = [sys.executable, str(SCRIPT), "--data", str(aldolase_dir), "--seeds", "10", "--episodes", "2",
            "--settings", "cryorl-2023", "--out", str(tmp_path)]
    for agents in (["greedy-local"], ["greedy-2t"], ["greedy-local"]):
        assert subprocess.run([*base, "--agents", *agents], capture_output=True, timeout=300).returncode == 0
    report = pd.read_csv(tmp_path / "cryorl-2023-10.csv")
    assert sorted(report.agent) == ["greedy-2t"] * 3 + ["greedy-local"] * 3


def test_a_run_of_another_number_of_episodes_is_refused_and_loses_nothing(aldolase_dir, tmp_path):
    """A report holds one number of episodes: a run of another is refused in one line before it starts (the three
    benchmarks check with unseen.refuse_other_episodes), and the shared writer refuses it too rather than drop the
    other agents' rows (unseen.py and ceilings.py used to, silently)."""
    base = [sys.executable, str(SCRIPT), "--data", str(aldolase_dir), "--seeds", "10", "--settings", "cryorl-2023",
            "--agents", "greedy-local", "--out", str(tmp_path)]
    assert subprocess.run([*base, "--episodes", "2"], capture_output=True, timeout=300).returncode == 0
    path = tmp_path / "cryorl-2023-10.csv"
    before = path.read_bytes()
    refused = subprocess.run([*base, "--episodes", "3"], capture_output=True, text=True, timeout=300)
    assert refused.returncode != 0 and refused.stdout == ""
    assert refused.stderr.strip() == f"{path} holds runs of 2 episodes, not 3: rerun with that --episodes, or move " \
                                     "the file away first"
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        from unseen import save_keeping_other_agents
    finally:
        sys.path.remove(str(SCRIPT.parent))
    other = pd.read_csv(path).assign(agent="greedy-2t", episodes=3)
    with pytest.raises(SystemExit, match="holds runs of 2 episodes, not 3"):
        save_keeping_other_agents(other, path)
    assert path.read_bytes() == before
