"""One way to open a grid: cryorl.load_grid and every --data go through the format registry."""
from __future__ import annotations

import numpy as np
import pytest

from cryorl import load_grid
from cryorl.cli import main
from cryorl.formats import Grid, GridFormat, base, grid_formats, register_format
from cryorl.synth import simulate_atlas


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    """A small `cryorl simulate` session (one split, named 'all' in its file names)."""
    out = tmp_path_factory.mktemp("sim") / "s"
    assert main(["simulate", "--out", str(out), "--holes", "200", "--quiet"]) == 0
    return out


def test_plan_on_a_fresh_simulated_session_needs_no_split(session, tmp_path, capsys):
    assert main(["plan", "--data", str(session), "--agent", "greedy-local", "--budget", "60",
                 "--out", str(tmp_path / "p")]) == 0
    assert (tmp_path / "p" / "plan.csv").exists() and (tmp_path / "p" / "plan.nav").exists()   # stage positions
    grid = load_grid(session)
    assert grid.format == "cryorl simulated session" and grid.split == "all"
    assert grid.trace == session / "timestamps.csv" and grid.stage is not None and len(grid.stage[0]) == 200


def test_data_info_says_what_it_found(session, capsys):
    assert main(["data", "info", str(session)]) == 0
    out = capsys.readouterr().out
    assert f"{session}: cryorl simulated session" in out and "; splits: all" in out
    trace = load_grid(session).human_trace()
    assert len(trace) > 20 and f"human trace: {len(trace)} exposed holes from {session / 'timestamps.csv'}" in out
    assert "stage positions: yes" in out
    assert "hole crops: none" in out


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_a_hole_table_is_a_grid_every_command_reads(tmp_path, suffix, capsys):
    atlas = simulate_atlas(3).subset(np.arange(300))
    path = atlas.save(tmp_path / f"holes{suffix}")
    grid = load_grid(path)
    assert grid.format == "hole table" and grid.split is None and grid.stage is None
    assert np.array_equal(grid.atlas.names, atlas.names)
    assert np.array_equal(grid.atlas.predicted_ctf, atlas.predicted_ctf)
    assert main(["evaluate", "--agent", "greedy-local", "--data", str(path), "--budgets", "30", "--episodes", "2",
                 "--out", str(tmp_path / "ev"), "--quiet"]) == 0
    with pytest.raises(ValueError, match=r"is a hole table grid, which takes no era option"):
        load_grid(path, era="2023")
    with pytest.raises(ValueError, match=r"has no splits; drop --split val"):
        load_grid(path, "val")


def test_stage_positions_of_a_hole_table(session):
    grid = load_grid(session / "holes.csv")
    assert grid.stage is not None
    expected = load_grid(session)
    order = [expected.atlas.index(name) for name in grid.atlas.names]
    assert np.allclose(grid.stage[0], expected.stage[0][order])


def test_what_no_format_reads_is_named(tmp_path):
    (tmp_path / "notes.txt").write_text("hello\n")
    with pytest.raises(ValueError, match=r"notes.txt is not a grid cryorl can read \(expected cryorl: a folder"):
        load_grid(tmp_path / "notes.txt")


def test_a_new_format_is_one_registration(tmp_path, monkeypatch):
    """The walk-through for a new format: one module's register_format call, and load_grid dispatches to it."""
    monkeypatch.setattr(base, "_FORMATS", list(base._FORMATS))
    atlas = simulate_atlas(1).subset(np.arange(50))
    (tmp_path / "grid.tiny").write_text("tiny\n")
    register_format(GridFormat("tiny", "a .tiny file", lambda p: p.suffix == ".tiny", lambda p: ["a", "b"],
                               lambda p, split: Grid(atlas, p, "tiny", split)))
    assert grid_formats()[-1].name == "tiny"
    assert load_grid(tmp_path / "grid.tiny", "b").split == "b"
    with pytest.raises(ValueError, match="holds the splits a, b: name one"):
        load_grid(tmp_path / "grid.tiny")
    with pytest.raises(ValueError, match="already"):
        register_format(GridFormat("tiny", "", lambda p: False, lambda p: [], lambda p, s: None))
