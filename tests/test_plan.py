"""Collection plans: plan.csv, the SerialEM navigator file, online re-planning, and a replayed session."""
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cryorl import CryoEMEnv, load_cryorl_dataset, simulate_atlas
from cryorl.agents import evaluate_policy, make_policy
from cryorl.cli import main
from cryorl.costs import get_costs
from cryorl.loaders import DataFileError
from cryorl.planning import PLAN_COLUMNS, PlanError, make_plan, read_measured
from cryorl.stage import read_stage_positions

SESSION = Path(__file__).resolve().parents[1] / "data_samples" / "session"


def parse_autodoc(text: str) -> tuple[dict, list[tuple[str, str, dict]]]:
    """IMOD/SerialEM autodoc text: global ``key = value`` lines, then ``[type = name]`` sections of them."""
    globals_, sections = {}, []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            assert line.endswith("]") and " = " in line, f"line {number}: bad section header {line!r}"
            kind, name = (part.strip() for part in line[1:-1].split("=", 1))
            sections.append((kind, name, {}))
            continue
        assert " = " in line, f"line {number}: not 'key = value': {line!r}"
        key, value = (part.strip() for part in line.split("=", 1))
        target = sections[-1][2] if sections else globals_
        assert key not in target, f"line {number}: {key} given twice"
        target[key] = value
    return globals_, sections


def test_plan_files_from_the_sample_session(tmp_path):
    out = tmp_path / "plan"
    assert main(["plan", "--data", str(SESSION), "--split", "sample", "--budget", "20", "--out", str(out)]) == 0
    plan = pd.read_csv(out / "plan.csv")
    assert list(plan.columns) == PLAN_COLUMNS and plan["hole"].is_unique
    assert plan["order"].tolist() == list(range(1, len(plan) + 1)) and plan["switch"].iloc[0] == "start"
    costs = dict(zip(["hole", "patch", "square", "tile"], get_costs("cryorl-2023").as_array()))
    moves = plan["switch"].iloc[1:].map(costs).to_numpy()
    np.testing.assert_allclose(plan["minutes"].iloc[1:], moves)
    np.testing.assert_allclose(plan["cumulative_minutes"], np.cumsum(plan["minutes"]))
    assert plan["cumulative_minutes"].iloc[-2] <= 20 < plan["cumulative_minutes"].iloc[-1] + 1e-9 or \
        len(plan) == 30
    # the navigator file: one acquire point per target, in plan order, at the hole's stage position
    holes = pd.read_csv(SESSION / "holes.csv").set_index("hole")
    header, items = parse_autodoc((out / "plan.nav").read_text())
    assert header == {"AdocVersion": "2.00"} and [kind for kind, _, _ in items] == ["Item"] * len(plan)
    assert [int(name) for _, name, _ in items] == plan["order"].tolist()
    for (_, _, item), row in zip(items, plan.itertuples()):
        x, y, z = map(float, item["StageXYZ"].split())
        assert (item["Type"], item["NumPts"], item["Acquire"]) == ("0", "1", "1")
        assert (float(item["PtsX"]), float(item["PtsY"])) == (x, y) and z == 0.0
        assert (x, y) == pytest.approx((holes.loc[row.hole, "stage_x_um"], holes.loc[row.hole, "stage_y_um"]))
        assert item["Note"].startswith(row.hole)
    # holes of one patch sit within a patch image of each other on the stage; squares are a mesh cell apart
    stage = holes[["stage_x_um", "stage_y_um"]].to_numpy()
    same_patch = holes["patch"].to_numpy()[:, None] == holes["patch"].to_numpy()[None]
    distance = np.linalg.norm(stage[:, None] - stage[None], axis=-1)
    assert distance[same_patch].max() < 12 and distance[~same_patch].min() > 3


def test_without_stage_positions_the_plan_lists_leginon_names(aldolase_dir, tmp_path):
    out = tmp_path / "plan"
    assert main(["plan", "--data", str(aldolase_dir), "--budget", "60", "--agent", "greedy-local",
                 "--out", str(out)]) == 0
    names = (out / "targets.txt").read_text().splitlines()
    assert not (out / "plan.nav").exists()
    assert names == pd.read_csv(out / "plan.csv")["hole"].tolist() and len(names) > 30


@pytest.mark.parametrize("agent", ["planner", "dqn"])
def test_a_replayed_session_collects_what_evaluate_collects(agent):
    """Collect by always taking the plan's first target, measuring it, and re-planning."""
    atlas = simulate_atlas(5, n_holes=400, n_patches=20, n_squares=5, n_tiles=3)
    budget = 75.0
    evaluated = evaluate_policy(make_policy(agent), atlas, episodes=1, seed=3, budgets=[budget])
    start = evaluated["hole"].iloc[0]
    policy, measured, collected = make_policy(agent), [], []
    while True:
        try:
            plan = make_plan(atlas, policy, budget=budget, start=start, measured=measured)
        except PlanError as error:
            assert "already spent" in str(error)
            break
        target = plan.targets["hole"].iloc[0]
        collected.append(target)
        measured.append((atlas.index(target), float(atlas.true_ctf[atlas.index(target)])))
    assert collected == evaluated["hole"].iloc[1:].tolist() and len(collected) > 40


def test_replanning_from_a_measured_file(tmp_path):
    atlas = load_cryorl_dataset(SESSION, "sample")
    first = make_plan(atlas, budget=20)
    exposed = first.targets["hole"].iloc[:4].tolist()
    measured = tmp_path / "measured.csv"
    measured.write_text("hole,ctf\n" + "".join(f"{h},{atlas.true_ctf[atlas.index(h)]}\n" for h in exposed))
    out = tmp_path / "next"
    assert main(["plan", "--data", str(SESSION), "--split", "sample", "--budget", "20", "--measured",
                 str(measured), "--out", str(out)]) == 0
    plan = pd.read_csv(out / "plan.csv")
    assert not set(exposed) & set(plan["hole"])                      # exposed holes are not planned again
    # the clock goes on from the measured exposures: the first of them is the start, the others took their moves
    env = CryoEMEnv(atlas, budget=20)
    env.reset(options={"start": exposed[0]})
    for hole in exposed[1:]:
        env.step(atlas.index(hole))
    assert plan["cumulative_minutes"].iloc[0] == pytest.approx(env.elapsed + plan["minutes"].iloc[0])
    # the CryoRL CTF layout reads the same
    ctf_rows = pd.read_csv(SESSION / "target_CTF_Y1_sample.csv", header=None).set_index(0).loc[exposed]
    layout = tmp_path / "measured_layout.csv"
    ctf_rows.to_csv(layout, header=False)
    assert read_measured(layout, atlas) == read_measured(measured, atlas)


def test_bad_stage_tables_are_refused(tmp_path):
    atlas = load_cryorl_dataset(SESSION, "sample")
    holes = pd.read_csv(SESSION / "holes.csv")
    table = tmp_path / "holes.csv"
    pd.concat([holes, holes.iloc[[3]]]).to_csv(table, index=False)
    with pytest.raises(DataFileError, match=r"holes.csv:32: hole '.*' is listed twice"):
        read_stage_positions(table, atlas)
    broken = holes.astype({"stage_x_um": object})
    broken.loc[4, "stage_x_um"] = "n/a"
    broken.to_csv(table, index=False)
    with pytest.raises(DataFileError, match=r"holes.csv:6: stage_x_um 'n/a' is not a finite number"):
        read_stage_positions(table, atlas)
    x, y = read_stage_positions(SESSION / "holes.csv", atlas)
    by_name = holes.set_index("hole")
    assert x[7] == by_name.loc[atlas.names[7], "stage_x_um"] and y[7] == by_name.loc[atlas.names[7], "stage_y_um"]


def test_bad_measured_files_and_requests_are_refused(tmp_path, capsys):
    atlas = load_cryorl_dataset(SESSION, "sample")
    names = list(atlas.names)
    bad = tmp_path / "bad.csv"
    for text, message in [
        (f"hole,ctf\n{names[0]},4.2\nnot_a_hole,5.0\n", r"bad.csv:3: unknown hole 'not_a_hole'"),
        (f"{names[0]},4.2\n{names[1]},5\n{names[0]},4.2\n", r"bad.csv:3: .* measured twice \(first on line 1\)"),
        (f"{names[0]},abc\n", r"bad.csv:1: CTFMaxRes 'abc' .* is not a number"),
        (f"{names[0]},4.2,1\n", r"bad.csv:1: expected 'hole,ctf' or the CryoRL CTF layout"),
    ]:
        bad.write_text(text)
        with pytest.raises(PlanError, match=message):
            read_measured(bad, atlas)
    spent = [(i, 4.0) for i in range(len(atlas))]
    spent_message = r"budget of 10 min is already spent: the first 1\d of the 30 measured exposures took 1\d min"
    with pytest.raises(PlanError, match=spent_message):
        make_plan(atlas, budget=10, measured=spent[:30])
    with pytest.raises(PlanError, match="is also in the measured holes"):
        make_plan(atlas, budget=30, start=names[2], measured=[(2, 4.0)])
    with pytest.raises(PlanError, match="unknown start hole 'nope'"):
        make_plan(atlas, budget=30, start="nope")
    for reference in ("oracle", "planner-outcomes"):                # they would read predictions as outcomes
        with pytest.raises(PlanError, match=f"agent '{reference}' reads the grid's outcomes"):
            make_plan(atlas, reference, budget=30)
    bad.write_text(f"{names[0]},4.2\nnot_a_hole,5\n")
    assert main(["plan", "--data", str(SESSION), "--split", "sample", "--budget", "20", "--measured", str(bad),
                 "--out", str(tmp_path / "p")]) != 0
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "bad.csv:2: unknown hole 'not_a_hole'" in error
    assert not (tmp_path / "p").exists()


def test_holes_are_named_or_indexed_everywhere_in_python(aldolase):
    names = list(aldolase.names)
    measured = [(names[5], 4.1), (names[40], 7.5), (names[41], 3.9)]
    by_index = make_plan(aldolase, "greedy-local", budget=60, start=3, measured=[(5, 4.1), (40, 7.5), (41, 3.9)])
    by_name = make_plan(aldolase, "greedy-local", budget=60, start=names[3], measured=measured)
    mixed = make_plan(aldolase, "greedy-local", budget=60, start="3", measured=[(names[5], 4.1), (40, 7.5),
                                                                              (np.int64(41), 3.9)])
    pd.testing.assert_frame_equal(by_name.targets, by_index.targets)
    pd.testing.assert_frame_equal(mixed.targets, by_index.targets)
    assert by_name.position == names[41] and by_name.measured == 3
    assert not set(by_name.targets["hole"]) & {names[i] for i in (3, 5, 40, 41)}
    long = "x" * 5000
    for kwargs, message in [
        ({"measured": [("not_a_hole", 4.0)]}, r"unknown measured hole \(exposure 1\) 'not_a_hole': no hole of that "
                                              r"name in .*aldolase"),
        ({"measured": [(names[0], 4.0), (len(names), 4.0)]}, rf"measured hole \(exposure 2\) index {len(names)} "
                                                             rf"is outside the grid's {len(names)} holes"),
        ({"measured": [(names[0], 4.0), (0, 5.0)]}, rf"exposure 2: {names[0]} was measured twice"),
        ({"measured": [(names[0], "abc")]}, rf"exposure 1: CTFMaxRes 'abc' of {names[0]} must be a positive"),
        ({"measured": [names[0]]}, r"exposure 1: expected a \(hole, CTFMaxRes\) pair"),
        ({"start": 2.5}, r"start hole must be a hole name or an index into the hole order, not 2.5"),
        ({"start": long}, r"unknown start hole 'x+… \(5,002 characters\): no hole"),
    ]:
        with pytest.raises(PlanError, match=message) as caught:
            make_plan(aldolase, budget=60, **kwargs)
        assert len(str(caught.value)) < 400
    # the environment's start takes the same names and refuses an unknown one the same way
    env = CryoEMEnv(aldolase, budget=60)
    assert env.reset(options={"start": names[7]})[1]["hole"] == names[7]
    assert env.reset(options={"start": 7})[1]["hole"] == names[7]
    with pytest.raises(ValueError, match=r"unknown start hole 'x+… \(5,002 characters\)"):
        env.reset(options={"start": long})


def test_watch_replans_as_the_measured_file_grows(tmp_path):
    atlas = load_cryorl_dataset(SESSION, "sample")
    measured, out = tmp_path / "measured.csv", tmp_path / "live"
    measured.write_text("")
    process = subprocess.Popen([sys.executable, "-m", "cryorl", "plan", "--data", str(SESSION), "--split", "sample",
                                "--budget", "12", "--measured", str(measured), "--watch", "--interval", "0.1",
                                "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        def plan_after(n_measured: int) -> pd.DataFrame | None:
            deadline = time.time() + 60
            while time.time() < deadline:
                if process.poll() is not None:
                    return None
                if (out / "plan.csv").exists():
                    plan = pd.read_csv(out / "plan.csv")
                    if len(plan) and not set(plan["hole"]) & set(exposed):
                        return plan
                time.sleep(0.1)
            raise AssertionError(f"no plan without the {n_measured} measured holes; stderr: {process.stderr}")

        exposed: list[str] = []
        while (plan := plan_after(len(exposed))) is not None:
            target = plan["hole"].iloc[0]
            exposed.append(target)
            with open(measured, "a") as handle:                        # the session appends, line by line
                handle.write(f"{target},{atlas.true_ctf[atlas.index(target)]}\n")
            time.sleep(0.3)
        stdout, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 0, stderr
    assert "session over: the budget of 12 min is already spent" in stdout and len(exposed) >= 8
    # the holes the watched plans led to are the ones a direct evaluation collects from the same first hole
    env = CryoEMEnv(atlas, budget=12)
    obs, _ = env.reset(options={"start": exposed[0]})
    policy = make_policy("planner")
    policy.reset(env)
    done, expected = False, []
    while not done:
        hole = policy.act(obs, obs["action_mask"])
        obs, _, done, _, _ = env.step(hole)
        expected.append(atlas.names[hole])
    assert exposed[1:] == expected
