"""Nothing lost, nothing silently wrong: output folders, one-line CLI errors, checkpoints, shipped names."""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from cryorl.cli import main
from cryorl.outputs import JOURNAL, OutputExistsError, clip, one_line, output_folder

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "data_samples" / "session"
QUICK = ["--budgets", "30", "--episodes", "1", "--quiet"]


def test_simulate_refuses_a_folder_with_files_it_did_not_create(tmp_path, capsys):
    session = tmp_path / "session"
    session.mkdir()
    (session / "timestamps.csv").write_text("a real session's trace\n")
    assert main(["simulate", "--out", str(session), "--holes", "60", "--quiet"]) == 2
    assert "already holds files" in capsys.readouterr().err
    assert (session / "timestamps.csv").read_text() == "a real session's trace\n"      # untouched
    assert main(["simulate", "--out", str(session), "--holes", "60", "--quiet", "--overwrite"]) == 0
    assert {"holes.csv", "timestamps.csv", "session.json"} <= {p.name for p in session.iterdir()}
    assert "real session" not in (session / "timestamps.csv").read_text()             # replaced as a whole
    assert not list(tmp_path.glob(".session.partial-*"))


def test_every_output_command_refuses_to_overwrite(tmp_path, capsys):
    occupied = tmp_path / "mine"
    occupied.mkdir()
    (occupied / "notes.txt").write_text("keep me")
    existing = tmp_path / "mine.csv"
    existing.write_text("keep me")
    commands = [
        ["evaluate", "--agent", "random", "--out", str(occupied), *QUICK],
        ["benchmark", "--agents", "random", "--out", str(occupied), *QUICK],
        ["look", str(SAMPLES), "--out", str(occupied)],
        ["holes", str(SAMPLES), "--out", str(existing), "--quiet"],
        ["perception", "train", "--backbone", "bl_resnet_test", "--epochs", "1", "--out", str(occupied)],
        ["perception", "predict", "--model", str(occupied), "--data", str(SAMPLES), "--out", str(existing)],
    ]
    for command in commands:
        assert main(command) == 2, command
        assert "--overwrite" in capsys.readouterr().err
    assert (occupied / "notes.txt").read_text() == "keep me" and existing.read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine", "mine.csv"]       # no leftovers


def test_overwrite_keeps_the_old_output_until_the_new_one_is_complete(tmp_path, capsys):
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("the user's trained predictor")
    # a training that fails (no CTF table in the session) must not have removed the predictor first
    empty = tmp_path / "session"
    (empty / "crops").mkdir(parents=True)
    shutil.copy(next((SAMPLES / "crops").glob("*.mrc")), empty / "crops")
    assert main(["perception", "train", "--data", str(empty), "--backbone", "bl_resnet_test", "--epochs", "1",
                 "--out", str(model), "--overwrite", "--quiet"]) == 2
    assert "no CTF table" in capsys.readouterr().err
    assert (model / "config.json").read_text() == "the user's trained predictor"
    # an --out that is, or holds, an input is never replaced, --overwrite or not
    assert main(["look", str(SAMPLES), "--out", str(SAMPLES), "--overwrite"]) == 2
    assert "is or holds the input" in capsys.readouterr().err and (SAMPLES / "patches").is_dir()
    assert main(["evaluate", "--agent", "random", "--data", str(empty), "--out", str(tmp_path), "--overwrite",
                 *QUICK]) == 2
    assert "is or holds the input" in capsys.readouterr().err and empty.is_dir()


def test_a_folder_filled_during_the_run_is_not_replaced(tmp_path):
    out = tmp_path / "report"
    with pytest.raises(OutputExistsError, match="filled with other files while this command ran"):
        with output_folder(out) as folder:
            (folder / "report.md").write_text("ours")
            out.mkdir()
            (out / "theirs.txt").write_text("someone else's")
    assert [p.name for p in out.iterdir()] == ["theirs.txt"] and len(list(tmp_path.iterdir())) == 1


def test_a_killed_run_leaves_the_previous_output_and_the_next_run_cleans_up(tmp_path):
    out = tmp_path / "report"
    with output_folder(out) as folder:
        (folder / "report.md").write_text("first")
    with pytest.raises(KeyboardInterrupt):
        with output_folder(out, overwrite=True) as folder:
            (folder / "report.md").write_text("half of the second")
            raise KeyboardInterrupt
    assert (out / "report.md").read_text() == "first"
    dead = tmp_path / f".report.partial-{2 ** 22 + 7}-abc"      # a run killed with -9 (no such process id)
    dead.mkdir()
    (dead / "report.md").write_text("half")
    (dead / JOURNAL).write_text(json.dumps({"role": "new", "pid": 2 ** 22 + 7, "host": socket.gethostname(),
                                            "run": dead.name, "target": "report"}))
    unknown = tmp_path / f".report.partial-{2 ** 22 + 7}-xyz"   # no journal: nothing proves it temporary
    unknown.mkdir()
    (unknown / "notes.txt").write_text("whose?")
    with output_folder(out, overwrite=True) as folder:
        (folder / "report.md").write_text("second")
    assert (out / "report.md").read_text() == "second" and not dead.exists() and unknown.exists()
    shutil.rmtree(unknown)
    assert [p.name for p in tmp_path.iterdir()] == ["report"]
    with pytest.raises(OutputExistsError, match="already holds files"):
        with output_folder(out):
            pass


def test_counts_are_never_doubled_and_bad_numbers_stop_before_any_work(tmp_path, capsys):
    out = tmp_path / "eval"
    cases = {
        ("--agent", "random", "random"): "--agent lists random twice",
        ("--agent", "random", "--budgets", "60", "60"): "budget 60 is listed twice",
        ("--agent", "random", "--episodes", "0"): "--episodes must be at least 1, not 0",
        ("--agent", "random", "--budgets", "-30"): "budget -30 is not a positive number of minutes",
        ("--agent", "random", "--budgets", "nan"): "budget nan is not a positive",
    }
    for arguments, message in cases.items():
        assert main(["evaluate", *arguments, "--out", str(out), "--quiet"]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
    assert main(["benchmark", "--agents", "greedy-local", "greedy-local", "--out", str(out), *QUICK]) == 2
    assert "--agents lists greedy-local twice" in capsys.readouterr().err
    assert not out.exists()
    from cryorl import evaluate

    with pytest.raises(ValueError, match="budget 60 is listed twice"):
        evaluate("random", budgets=(60, 60), episodes=1)


@pytest.mark.parametrize("setup, arguments, message", [
    (lambda d: d.mkdir(), ["evaluate", "--agent", "{d}", "--out", "{d}/out"], "is not a saved cryorl policy"),
    (lambda d: (d.mkdir(), (d / "config.json").write_text("{oops"), (d / "scorer.pt").write_bytes(b"x")),
     ["evaluate", "--agent", "{d}", "--out", "{d}/out"], "config.json: not valid JSON"),
    (lambda d: d.write_text("x"), ["evaluate", "--agent", "random", "--out", "{d}"], "is a file"),
    (lambda d: None, ["evaluate", "--agent", "random", "--out", "/proc/cryorl-test/out"], "cannot write"),
    (lambda d: None, ["evaluate", "--agent", "random", "--data", "{d}", "--out", "{d}/o"], "no data at"),
    (lambda d: d.mkdir(), ["benchmark", "--trace", "{d}/none.csv", "--out", "{d}/o"], "no trace file"),
])
def test_cli_errors_are_one_line(tmp_path, capsys, setup, arguments, message):
    target = tmp_path / "thing"
    setup(target)
    assert main([a.replace("{d}", str(target)) for a in arguments] + QUICK) == 2
    err = capsys.readouterr().err
    assert err.startswith("cryorl: ") and err.count("\n") == 1 and message in err, err
    assert "Traceback" not in err


def test_a_cli_error_is_one_line_from_the_shell(tmp_path):
    result = subprocess.run([sys.executable, "-m", "cryorl.cli", "evaluate", "--agent", "random", "--out",
                             str(tmp_path / "x"), "--episodes", "-3"], capture_output=True, text=True)
    assert result.returncode == 2 and result.stderr == "cryorl: --episodes must be at least 1, not -3\n"


def test_a_trace_of_another_session_is_refused(tmp_path, capsys):
    trace = tmp_path / "other.txt"
    trace.write_text("someone_else_00001gr_00001sq_v01_00001hl_v01_00001en\n" * 3)
    assert main(["benchmark", "--trace", str(trace), "--agents", "random", "--out", str(tmp_path / "r"),
                 *QUICK]) == 2
    assert "has 0 of its holes on this grid" in capsys.readouterr().err
    assert main(["evaluate", "--agent", f"human-trace:{trace}", "--out", str(tmp_path / "e"), *QUICK]) == 2
    assert "no human path to replay" in capsys.readouterr().err


def test_perception_training_skips_crops_without_a_ctf_row(tmp_path, capsys):
    session = tmp_path / "session"
    shutil.copytree(SAMPLES, session)
    table = session / "target_CTF_Y1_sample.csv"
    rows = table.read_text().splitlines()
    table.write_text("\n".join(rows[:20]) + "\n")                     # 10 of the 30 crops lose their CTF
    out = tmp_path / "model"
    assert main(["perception", "train", "--data", str(session), "--backbone", "bl_resnet_test", "--epochs", "1",
                 "--input-size", "64", "--out", str(out), "--quiet", "--threads", "1"]) == 0
    assert f"skipping 10 of 30 crops without a CTF row in {table}" in capsys.readouterr().err
    table.unlink()
    (session / "target_CTF_Y1_sample.csv").write_text(rows[0].replace("sim_", "other_") + "\n")
    assert main(["perception", "train", "--data", str(session), "--backbone", "bl_resnet_test", "--epochs", "1",
                 "--out", str(tmp_path / "m2"), "--quiet"]) == 2
    assert "none of the 30 crops" in capsys.readouterr().err
    from cryorl.perception.predictor import HoleQualityPredictor

    with pytest.raises(ValueError, match="2 of 3 crops have no CTFMaxRes"):
        HoleQualityPredictor("bl_resnet_test", input_size=32).fit(
            session_crops(session)[:3], [5.0, float("nan"), float("nan")], epochs=1, progress=False)


def session_crops(session):
    from cryorl.perception.crops import load_session_crops

    return load_session_crops(session)[1]


def test_ship_accepts_plain_names_only(tmp_path):
    result = subprocess.run([sys.executable, str(REPO / "agents" / "ship.py"), "--run", str(tmp_path), "--name",
                             "..", "--summary", str(tmp_path / "s.csv")], capture_output=True, text=True)
    assert result.returncode != 0 and "--name must be a plain policy name" in result.stderr


def test_checkpoints_are_atomic_pruned_and_resume_falls_back(tmp_path):
    from cryorl.agents.training import train

    config = {"algo": "dqn", "n_timesteps": 400, "checkpoint_freq": 100, "keep_checkpoints": 2,
              "env": {"budgets": [60], "sources": [{"grid": {"n_holes": 120}}]}, "eval": {},
              "policy_kwargs": {"net_arch": [16]}, "learning_starts": 50, "buffer_size": 500, "batch_size": 16}
    run = tmp_path / "run"
    train(config, run, seed=0, progress_bar=False, log=lambda _: None)
    names = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert names == ["model_300_steps.zip", "model_400_steps.zip", "model_replay_buffer_300_steps.pkl",
                     "model_replay_buffer_400_steps.pkl"]                       # 100 and 200 pruned, no temporaries
    newest = run / "checkpoints" / "model_400_steps.zip"
    newest.write_bytes(newest.read_bytes()[:1000])                              # a kill in the middle of a write
    messages = []
    policy = train(config, run, seed=0, timesteps=500, progress_bar=False, log=messages.append)
    assert "cannot resume from" in messages[0] and "(300 steps)" in messages[1]
    assert policy.metadata["timesteps"] == 500
    assert (run / "checkpoints" / "model_400_steps.zip.unreadable").exists()      # kept aside, not deleted
    for _, path in [(0, p) for p in (run / "checkpoints").glob("model_*_steps.zip")]:
        path.write_bytes(b"not a zip")                                            # no checkpoint loads
    with pytest.raises(RuntimeError, match="none of the 2 checkpoints .* loads as a MaskedDQN model"):
        train(config, run, seed=0, timesteps=600, progress_bar=False, log=lambda _: None)


def immutable_folder(path: Path):
    """A folder this process cannot write into, even as root (chattr +i), or None where that cannot be made."""
    path.mkdir()
    if os.geteuid() != 0:
        path.chmod(0o555)
        return path
    if shutil.which("chattr") and subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode == 0:
        return path
    return None


def release_immutable(path: Path) -> None:
    if os.geteuid() == 0:
        subprocess.run(["chattr", "-i", str(path)], capture_output=True)
    path.chmod(0o755)


def test_unwritable_places_are_refused_before_any_work_in_one_line(tmp_path, capsys):
    locked = immutable_folder(tmp_path / "locked")
    if locked is None:
        pytest.skip("cannot make an unwritable folder here")
    try:
        nothing = tmp_path / "nothing"                    # no data: the work would fail, so the check came first
        nothing.mkdir()
        cases = [["evaluate", "--agent", "random", "--data", str(nothing), "--out", str(locked / "ev"), *QUICK],
                 ["plan", "--data", str(nothing), "--budget", "20", "--out", str(locked / "p")],
                 ["holes", str(nothing), "--out", str(locked / "holes.csv"), "--quiet"],
                 ["train", "--run-dir", str(locked), "--timesteps", "10", "--no-progress"]]
        for command in cases:
            assert main(command) == 2, command
            err = capsys.readouterr().err
            assert err.startswith("cryorl: cannot write") and str(locked) in err and err.count("\n") == 1, err
            assert "choose a writable" in err, err
        assert list(locked.iterdir()) == []
    finally:
        release_immutable(locked)


def test_a_mount_point_out_is_refused_before_any_work(capsys):
    if not os.path.ismount("/dev/shm"):
        pytest.skip("no /dev/shm mount point")
    assert main(["plan", "--data", str(SAMPLES), "--split", "sample", "--budget", "20", "--out", "/dev/shm"]) == 2
    err = capsys.readouterr().err
    assert "--out /dev/shm is a mount point" in err and err.count("\n") == 1


def test_os_errors_name_the_path_and_what_to_do(tmp_path):
    error = OSError(30, "Read-only file system", str(tmp_path / "run" / "eval.csv"))
    assert one_line(error) == f"{tmp_path / 'run' / 'eval.csv'}: Read-only file system; that file system is " \
                              "read-only: choose a writable place"
    assert one_line(OSError(39, "Directory not empty", "a", None, "b")) == \
        "a -> b: Directory not empty; it already holds files: choose another place"
    assert one_line(PermissionError(13, "Permission denied", "/x")).endswith("check its permissions, or choose "
                                                                                "another place")


def test_user_strings_are_cut_in_messages(tmp_path, capsys):
    huge = "h" * 5_000_000
    assert len(clip(huge)) == 200 and clip(huge).endswith("(5,000,000 characters)") and clip("short") == "short"
    assert main(["plan", "--data", str(SAMPLES), "--split", "sample", "--budget", "20", "--start", huge,
                 "--out", str(tmp_path / "p")]) == 2
    err = capsys.readouterr().err
    assert "unknown start hole 'hhh" in err and len(err) < 400 and err.count("\n") == 1, len(err)
    measured = tmp_path / "measured.csv"
    measured.write_text(f"{huge} {huge},5.0\n")                      # a name with a space: two long words
    assert main(["plan", "--data", str(SAMPLES), "--split", "sample", "--budget", "20", "--measured",
                 str(measured), "--out", str(tmp_path / "p")]) == 2
    err = capsys.readouterr().err
    assert f"{measured}:1: unknown hole" in err and len(err) < 700 and err.count("\n") == 1, len(err)
    assert main(["evaluate", "--agent", huge, "--out", str(tmp_path / "e"), *QUICK]) == 2     # cut on the way out
    err = capsys.readouterr().err
    assert "unknown agent 'hhh" in err and "(5,000,002 characters); choose one of" in err    # the repr, quotes included
    assert len(err) < 600 and err.count("\n") == 1, err


def test_a_utf16_measured_file_is_named(tmp_path, capsys):
    measured = tmp_path / "measured.csv"
    measured.write_text("hole,ctf\n", encoding="utf-16")              # what some Windows editors save
    assert main(["plan", "--data", str(SAMPLES), "--split", "sample", "--budget", "20", "--measured",
                 str(measured), "--out", str(tmp_path / "p")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"cryorl: {measured}: not UTF-8 text (UTF-16 byte 0") and "save it as UTF-8" in err


def test_a_pickle_in_place_of_weights_is_not_a_cryorl_weights_file(tmp_path, capsys):
    import collections
    import pickle

    policy = tmp_path / "policy"
    policy.mkdir()
    (policy / "config.json").write_text(json.dumps({"format": "cryorl-hole-scorer/2", "hidden": 16}))
    with open(policy / "scorer.pt", "wb") as handle:
        pickle.dump({"weights": collections.OrderedDict(), "hook": os.system}, handle)
    assert main(["evaluate", "--agent", str(policy), "--out", str(tmp_path / "ev"), *QUICK]) == 2
    err = capsys.readouterr().err
    assert err == f"cryorl: {policy / 'scorer.pt'}: not a cryorl weights file (it holds Python objects other " \
                  "than tensors, which cryorl never unpickles)\n", err
    from cryorl.perception.predictor import HoleQualityPredictor

    model = tmp_path / "model"
    HoleQualityPredictor("bl_resnet_test", input_size=32).save(model)
    shutil.copy(policy / "scorer.pt", model / "model.pt")
    assert main(["perception", "predict", "--model", str(model), "--data", str(SAMPLES), "--out",
                 str(tmp_path / "p.txt"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "model.pt: not a cryorl weights file" in err and "weights_only" not in err, err


TRAIN = {"algo": "dqn", "n_timesteps": 300, "checkpoint_freq": 200, "keep_checkpoints": 2,
         "env": {"budgets": [30], "sources": [{"grid": {"n_holes": 60}}]},
         "eval": {"freq": 100, "episodes": 1, "budget": 30, "grid": {"n_holes": 60}, "grid_seeds": [5]},
         "policy_kwargs": {"net_arch": [16]}, "learning_starts": 50, "buffer_size": 500, "batch_size": 16}


def test_a_run_folder_is_locked_and_a_resumed_run_repeats_no_eval_rows(tmp_path):
    from cryorl.agents.training import train
    from cryorl.fileio import host_tag
    from cryorl.outputs import OutputBusyError

    run = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\nfrom cryorl.outputs import lock_folder\n"
                               "lock = lock_folder(sys.argv[1])\nprint('held', flush=True)\ntime.sleep(60)",
                               str(run)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(OutputBusyError, match=f"the run folder {run} is in use by another cryorl run "
                                                  f"\\(pid {holder.pid} on"):
            train(TRAIN, run, seed=0, progress_bar=False, log=lambda _: None)
    finally:
        holder.kill()
        holder.wait()
    # 300 steps: a checkpoint at 200, eval rows at 0, 100, 200, 300 — as a run killed at 350 steps leaves it
    train(TRAIN, run, seed=0, progress_bar=False, log=lambda _: None)
    assert pd.read_csv(run / "eval.csv")["timesteps"].tolist() == [0, 100, 200, 300]
    orphans = [run / "checkpoints" / f".model_replay_buffer_400_steps.pkl.{2 ** 22 + 7}-{host_tag()}-x1y2z3w4.part",
               run / "checkpoints" / ".model_replay_buffer_400_steps.pkl.abc123.part",          # an earlier version's
               run / ".eval.csv.a1b2c3.part"]
    for orphan in orphans:
        orphan.write_bytes(b"half a replay buffer")
    messages = []
    train(TRAIN, run, seed=0, timesteps=400, progress_bar=False, log=messages.append)
    assert "(200 steps)" in " ".join(messages) and not any(orphan.exists() for orphan in orphans)
    assert pd.read_csv(run / "eval.csv")["timesteps"].tolist() == [0, 100, 200, 300, 400]   # 300 once
    assert not (run / ".cryorl.lock").exists()
    assert not [p for p in run.rglob("*") if p.name.endswith(".part") or ".partial-" in p.name]
