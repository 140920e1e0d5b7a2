"""Benchmark reports: every agent, the oracle and human traces through one loop, tables, plots, the CLI."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cryorl import simulate_atlas
from cryorl.cli import main
from cryorl.human import simulate_operator
from cryorl.reporting.benchmark import _compare, run_benchmark
from cryorl.reporting.report import FIGURES, write_report
from cryorl.synth import GridSpec

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def small_result():
    atlas = simulate_atlas(5, GridSpec.with_holes(400))
    traces = [simulate_operator(atlas, seed, name=f"op{seed}") for seed in range(3)]
    return run_benchmark(atlas, agents=["random", "greedy-local"], traces=traces, budgets=(40, 120), episodes=4,
                         seed=2, progress=False, published="cryorl-2022", grid="small simulated grid")


def test_tables(small_result):
    result = small_result
    assert result.agents == ["random", "greedy-local", "oracle"] and result.humans == ["op0", "op1", "op2"]
    summary = result.summary.set_index(["agent", "budget"])
    assert summary.loc[("random", 40.0), "episodes"] == 4 and summary.loc[("op1", 120.0), "episodes"] == 1
    rank = result.ranking.set_index(["agent", "budget"])
    assert rank.loc[("oracle", 120.0), "share_of_oracle"] == 1.0
    good = summary["good_mean"]
    humans = [good[(h, 120.0)] for h in result.humans]
    assert rank.loc[("greedy-local", 120.0), "human_percentile"] == pytest.approx(
        100 * (np.sum(np.array(humans) < good[("greedy-local", 120.0)])
               + 0.5 * np.sum(np.array(humans) == good[("greedy-local", 120.0)])) / 3)
    assert rank.loc[("random", 120.0), "human_percentile"] == 0.0       # random is below every operator
    assert len(result.overlap) == 3 * 2 * 3
    assert result.overlap.jaccard_mean.between(0, 1).all()
    # an operator's own holes, compared with itself through the same code, overlap fully; with another operator,
    # and for an agent, the overlap is the Jaccard index of the two sets of holes
    steps = result.steps
    holes = {key: set(frame.hole) for key, frame in steps[steps.budget == 120.0].groupby(["agent", "episode"])}
    _, own = _compare(result.summary, steps, ["op0"], result.humans, result.budgets)
    own = own[own.budget == 120.0].set_index("trace").jaccard_mean
    assert own["op0"] == 1.0
    for other in ("op1", "op2"):
        shared = holes[("op0", 0)] & holes[(other, 0)]
        union = holes[("op0", 0)] | holes[(other, 0)]
        assert own[other] == pytest.approx(len(shared) / len(union)) and own[other] < 1
    overlap = result.overlap.set_index(["agent", "budget", "trace"]).jaccard_mean
    human = holes[("op1", 0)]
    by_hand = np.mean([len(holes[("greedy-local", e)] & human) / len(holes[("greedy-local", e)] | human)
                       for e in range(4)])
    assert overlap[("greedy-local", 120.0, "op1")] == pytest.approx(by_hand) and by_hand > 0
    clock = result.real_clock
    assert set(clock.trace) == set(result.humans)
    assert (clock.groupby("trace").minutes.apply(lambda m: m.is_monotonic_increasing)).all()


def test_report_folder(small_result, tmp_path):
    report = write_report(small_result, tmp_path / "report")
    text = report.read_text()
    for heading in ("# cryorl benchmark: small simulated grid", "## Good exposures", "## Against the oracle",
                    "### Human traces", "### Overlap with the human's holes", "## How they move",
                    "## Published figures in this setting", "cryoRL DQN, ResNet-50 (published)"):
        assert heading in text
    assert "| greedy-local |" in text and "| op2 |" in text
    for name in FIGURES:
        assert f"]({name})" in text
        png = report.parent / name
        assert png.read_bytes()[:8] == PNG and png.stat().st_size > 20_000
    steps = pd.read_csv(report.parent / "steps.csv.gz")
    assert len(steps) == len(small_result.steps)
    assert not list(report.parent.glob(".*.part"))                  # atomic writes leave no temporaries
    summary = pd.read_csv(report.parent / "summary.csv")
    assert summary.agent.tolist()[:2] == ["random", "random"]


def test_cli_benchmark_on_the_real_split_with_its_human_trace(tmp_path, aldolase_dir, capsys):
    out = tmp_path / "bench"
    assert main(["benchmark", "--data", str(aldolase_dir), "--split", "train", "--agents", "greedy-local",
                 "--budgets", "60", "--episodes", "2", "--out", str(out), "--quiet", "--no-steps"]) == 0
    printed = capsys.readouterr().out
    assert "human operator" in printed and f"report: {out / 'report.md'}" in printed
    text = (out / "report.md").read_text()
    assert "aldolase-train (train split)" in text and "own clock" in text
    assert "--split train" in text                                    # the command that made it
    assert not (out / "steps.csv.gz").exists()
    ranking = pd.read_csv(out / "ranking.csv")
    assert set(ranking.agent) == {"greedy-local", "oracle"}
    assert ranking.human_percentile.isna().all()          # one human trace: no percentile (it could only be 0/100)
    assert "human percentile" not in text and "no percentile is given" in text


def test_cli_benchmark_default_grid_with_shipped_policy(tmp_path, capsys):
    """What `make demo` runs, in miniature: the built-in grid, a shipped learned policy, simulated operators."""
    assert main(["benchmark", "--agents", "dqn", "greedy-local", "--operators", "2", "--budgets", "30",
                 "--episodes", "2", "--out", str(tmp_path), "--quiet", "--costs", "cryorl-2022"]) == 0
    text = (tmp_path / "report.md").read_text()
    assert "built-in simulated grid (seed 0)" in text and "2 / 5 / 10 / 20 minutes" in text
    assert "| dqn |" in text and "simulated operator 1" in text and "*simulated* operators" in text
