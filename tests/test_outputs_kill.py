"""The output protocol under kills, races, symlinks and ``..`` (cryorl.outputs): --out holds the complete old
output or the complete new one after a kill at any step, and nothing a user made is deleted by the next run."""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from cryorl.cli import main
from cryorl.fileio import KILL_AT_ENV, atomic_write_text
from cryorl.outputs import JOURNAL, OutputBusyError, OutputExistsError, check_output_folder, output_folder

REPO = Path(__file__).resolve().parents[1]
SESSION = REPO / "data_samples" / "session"
QUICK = ["--budgets", "30", "--episodes", "1", "--quiet"]
KILLED = -signal.SIGKILL

# a command that replaces `report` with a two-file output, through cryorl.outputs only (fast to start)
SWAP = """
import sys
from pathlib import Path
from cryorl.outputs import output_folder
with output_folder(Path(sys.argv[1]), overwrite=True, what="report") as tmp:
    (tmp / "report.md").write_text("new report")
    (tmp / "table.csv").write_text("hole,ctf\\nnew,4.0\\n")
"""
OLD = {"report.md": "old report", "mine.txt": "the user's own notes", "sub/deep.txt": "deep"}
NEW = {"report.md": "new report", "table.csv": "hole,ctf\nnew,4.0\n"}


def contents(folder: Path) -> dict[str, str] | None:
    """Every file under ``folder`` (relative path -> text), the protocol's journal left out; None if missing."""
    if not folder.is_dir():
        return None
    return {p.relative_to(folder).as_posix(): p.read_text() for p in folder.rglob("*")
            if p.is_file() and p.name != JOURNAL}


def write_old(out: Path) -> None:
    for name, text in OLD.items():
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text(text)


def run_killed_at(k: int, script: str, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True,
                          env={**os.environ, KILL_AT_ENV: str(k), **env}, timeout=120)


@pytest.mark.parametrize("mode", ["exchange", "two renames"])
def test_a_kill_at_every_step_leaves_the_old_or_the_new_output(tmp_path, mode):
    """Killed (SIGKILL) at each step of the swap in turn: with renameat2(RENAME_EXCHANGE) --out is always the
    complete old or new output; with two renames it may be missing until the next run, which puts the old one
    back. The next run without --overwrite deletes nothing, and leaves no temporary folder or lock behind."""
    env = {"CRYORL_NO_RENAMEAT2": "1"} if mode == "two renames" else {}
    seen = []
    for k in range(1, 20):
        root = tmp_path / f"k{k}"
        out = root / "report"
        out.mkdir(parents=True)
        write_old(out)
        result = run_killed_at(k, SWAP, str(out), **env)
        if result.returncode == 0:
            break
        assert result.returncode == KILLED, result.stderr
        state = contents(out)
        if mode == "exchange":
            assert state in (OLD, NEW), (k, state)
        else:
            assert state in (OLD, NEW, None), (k, state)
        with pytest.raises(OutputExistsError, match="already holds files"):
            check_output_folder(out)                                  # the next run, without --overwrite
        after = contents(out)
        assert after in (OLD, NEW) and (state is None or after == state), (k, state, after)
        seen.append("old" if after == OLD else "new")
        assert [p.name for p in root.iterdir()] == ["report"], (k, sorted(p.name for p in root.iterdir()))
        assert not (out / JOURNAL).exists()
    else:
        raise AssertionError("the swap never finished")
    assert contents(out) == NEW and [p.name for p in root.iterdir()] == ["report"]
    assert k - 1 == (4 if mode == "exchange" else 7), seen                # a kill at every step was tried
    assert "old" in seen and "new" in seen


def test_the_issue_leftovers_are_restored_not_deleted(tmp_path, capsys):
    """The state the earlier protocol left when killed between its two renames: --out missing, the old output in
    .NAME.partial-PID-old-*, the new one in .NAME.partial-PID-*. The next run (without --overwrite) puts the old
    output back with the user's file in it; a folder nothing proves temporary is left alone."""
    dead = 2 ** 22 + 7                                               # no such process
    old = tmp_path / f".ev.partial-{dead}-old-uk3397nx"
    old.mkdir()
    (old / "summary.csv").write_text("old summary")
    (old / "mine.txt").write_text("keep me")
    unproven = tmp_path / f".ev.partial-{dead}-uk3397nx"
    unproven.mkdir()
    (unproven / "summary.csv").write_text("new, never finished")
    assert main(["evaluate", "--agent", "random", "--out", str(tmp_path / "ev"), *QUICK]) == 2
    err = capsys.readouterr().err
    assert "restored" in err and "already holds files" in err
    assert contents(tmp_path / "ev") == {"summary.csv": "old summary", "mine.txt": "keep me"}
    assert not old.exists() and unproven.exists()


def test_a_dead_runs_new_folder_is_removed_and_a_live_ones_kept(tmp_path):
    out = tmp_path / "report"
    with output_folder(out) as folder:
        (folder / "report.md").write_text("first")
    dead, alive = tmp_path / ".report.partial-4194311-abc", tmp_path / ".report.partial-1-abc"
    for folder, pid in ((dead, 2 ** 22 + 7), (alive, 1)):
        folder.mkdir()
        (folder / JOURNAL).write_text(json.dumps({"role": "new", "pid": pid, "host": socket.gethostname(),
                                                  "run": folder.name, "target": "report"}))
    with output_folder(out, overwrite=True) as folder:
        (folder / "report.md").write_text("second")
    assert contents(out) == {"report.md": "second"} and not dead.exists() and alive.exists()


def strace_works() -> bool:
    if shutil.which("strace") is None:
        return False
    return subprocess.run(["strace", "-f", "-o", os.devnull, "true"], capture_output=True).returncode == 0


@pytest.mark.skipif(not strace_works(), reason="needs strace (and ptrace permitted)")
@pytest.mark.parametrize("mode", ["exchange", pytest.param("two renames", marks=pytest.mark.slow)])
def test_cli_killed_at_each_rename_by_strace(tmp_path, capsys, mode):
    """The issue's probe: `cryorl evaluate --overwrite` killed by strace at its 1st, 2nd, ... rename system call
    (renameat2 included); with two renames --out may be missing until the next run puts the old output back."""
    env = {**os.environ, **({"CRYORL_NO_RENAMEAT2": "1"} if mode == "two renames" else {})}
    reference = tmp_path / "reference"
    assert main(["evaluate", "--agent", "random", "--out", str(reference), *QUICK]) == 0
    capsys.readouterr()

    def state_of(out: Path) -> str:
        files = contents(out)
        if files is None and mode == "two renames":
            return "missing"
        if files == old:
            return "old"
        assert sorted(files) == ["summary.csv", "trajectories.csv"], files          # complete new output
        assert files["trajectories.csv"] == (reference / "trajectories.csv").read_text()
        assert pd.read_csv(out / "summary.csv")["agent"].tolist() == ["random"]
        return "new"

    seen = []
    for k in range(1, 20):
        root = tmp_path / f"k{k}"
        out = root / "ev"
        shutil.copytree(reference, out)
        (out / "summary.csv").write_text("the previous evaluation")
        (out / "mine.txt").write_text("keep me")
        old = contents(out)
        result = subprocess.run(["strace", "-f", "-o", os.devnull, "-e",
                                 f"inject=rename,renameat,renameat2:signal=SIGKILL:when={k}", sys.executable, "-m",
                                 "cryorl", "evaluate", "--agent", "random", "--out", str(out), "--overwrite",
                                 *QUICK], capture_output=True, text=True, timeout=120, env=env)
        state = state_of(out)
        if result.returncode == 0:
            break
        assert result.returncode in (137, -9), result.stderr
        assert main(["evaluate", "--agent", "random", "--out", str(out), *QUICK]) == 2
        assert "already holds files" in capsys.readouterr().err
        after = state_of(out)
        assert after == state or (state, after) == ("missing", "old"), k
        assert [p.name for p in root.iterdir()] == ["ev"], k
        seen.append(state)
    else:
        raise AssertionError("never finished")
    assert state == "new" and [p.name for p in root.iterdir()] == ["ev"]
    # exchange: one rename (the exchange), old before it; two renames: old, missing between them, new after
    assert seen == (["old"] if mode == "exchange" else ["old", "missing", "new"]), seen


def holder(kind: str, path: Path) -> subprocess.Popen:
    """Another process holding the lock of ``path`` (an output, or a run folder) until killed."""
    call = "reserve_output" if kind == "output" else "lock_folder"
    process = subprocess.Popen([sys.executable, "-c", f"import sys, time\nfrom cryorl.outputs import {call}\n"
                                f"lock = {call}(sys.argv[1])\nprint('held', flush=True)\ntime.sleep(120)",
                                str(path)], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "held"
    return process


def test_a_second_run_is_refused_while_the_first_holds_the_output(tmp_path, capsys):
    out = tmp_path / "ev"
    assert main(["evaluate", "--agent", "random", "--out", str(out), *QUICK]) == 0
    first = holder("output", out)
    try:
        assert main(["evaluate", "--agent", "random", "--out", str(out), "--overwrite", *QUICK]) == 2
        err = capsys.readouterr().err
        assert f"is in use by another cryorl run (pid {first.pid} on" in err and err.count("\n") == 1, err
        assert main(["plan", "--data", str(SESSION), "--split", "sample", "--budget", "20", "--out", str(out),
                     "--overwrite"]) == 2
        assert "is in use by another cryorl run" in capsys.readouterr().err
    finally:
        first.kill()
        first.wait()
    assert (tmp_path / ".ev.lock").exists()                            # a dead owner's lock: stale, taken over
    assert main(["evaluate", "--agent", "random", "--out", str(out), "--overwrite", *QUICK]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ev"]


def test_two_racing_overwrite_runs_leave_one_complete_output(tmp_path):
    out = tmp_path / "ev"
    assert main(["evaluate", "--agent", "random", "--out", str(out), *QUICK]) == 0
    (out / "mine.txt").write_text("replaced only by a complete output")
    command = [sys.executable, "-m", "cryorl", "evaluate", "--agent", "random", "--out", str(out), "--overwrite",
               *QUICK]
    runs = [subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
            for _ in range(2)]
    results = [(run.wait(timeout=120), run.stderr.read()) for run in runs]
    for code, err in results:
        assert code == 0 or (code == 2 and "is in use by another cryorl run" in err), err
        assert "Errno" not in err and "Traceback" not in err
    assert any(code == 0 for code, _ in results)
    assert sorted(p.name for p in out.iterdir()) == ["summary.csv", "trajectories.csv"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ev"]


def test_overwrite_never_deletes_an_input_however_spelt(tmp_path, capsys, monkeypatch):
    """The issue's first case: --data inplink/aldo (inplink -> inp) with --out inp, and --out xdir/../inp."""
    monkeypatch.chdir(tmp_path)
    assert main(["simulate", "--out", "inp/aldo", "--holes", "60", "--quiet"]) == 0
    Path("inp/notes.txt").write_text("keep")
    Path("inplink").symlink_to("inp")
    Path("xdir").mkdir()
    before = sorted(str(p) for p in Path("inp").rglob("*"))
    evaluate = ["evaluate", "--agent", "greedy-local", "--split", "all", *QUICK]
    for data, out in [("inplink/aldo", "inp"), ("inp/aldo", "xdir/../inp"), ("inplink/aldo", "inplink"),
                      ("xdir/../inp/aldo", "inp/aldo")]:
        assert main([*evaluate, "--data", data, "--out", out, "--overwrite"]) == 2, (data, out)
        err = capsys.readouterr().err
        assert "is or holds the input" in err and f"(given as {data})" in err, err
    # an --out inside the input is refused when it would be replaced (replacing it deletes part of the input)
    assert main([*evaluate, "--data", "inplink", "--out", "inp/aldo", "--overwrite"]) == 2
    assert "lies inside the input" in capsys.readouterr().err
    assert sorted(str(p) for p in Path("inp").rglob("*")) == before and Path("inp/notes.txt").read_text() == "keep"
    # a new folder inside an input replaces nothing: allowed
    assert main([*evaluate, "--data", "inplink/aldo", "--out", "inp/aldo-evaluation"]) == 0
    # a hard link to an input file is that file (compared by inode)
    ctf = next(Path("inp/aldo").glob("target_CTF_*.csv"))
    os.link(ctf, "ctf-copy.csv")
    assert main(["holes", str(SESSION), "--ctf", str(ctf), "--out", "ctf-copy.csv", "--overwrite", "--quiet"]) == 2
    assert "is the input" in capsys.readouterr().err


def test_a_symlinked_out_is_followed_never_replaced(tmp_path, capsys):
    real, link = tmp_path / "real", tmp_path / "link"
    real.mkdir()
    link.symlink_to(real)
    assert main(["evaluate", "--agent", "random", "--out", str(link), *QUICK]) == 0
    assert link.is_symlink() and sorted(p.name for p in real.iterdir()) == ["summary.csv", "trajectories.csv"]
    (real / "mine.txt").write_text("keep")
    assert main(["evaluate", "--agent", "random", "--out", str(link), *QUICK]) == 2        # occupied: refused
    assert "already holds files" in capsys.readouterr().err and (real / "mine.txt").exists()
    assert main(["evaluate", "--agent", "random", "--out", str(link), "--overwrite", *QUICK]) == 0
    assert link.is_symlink() and os.readlink(link) == str(real) and not (real / "mine.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link", "real"]      # no hidden link or folder left
    # a symlinked file --out: the file it points to is replaced, the link stays
    table, table_link = tmp_path / "holes.csv", tmp_path / "holes-link.csv"
    table.write_text("old")
    table_link.symlink_to(table)
    assert main(["holes", str(SESSION), "--out", str(table_link), "--overwrite", "--quiet"]) == 0
    assert table_link.is_symlink() and table.read_text().startswith("hole,")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["holes-link.csv", "holes.csv", "link", "real"]
    atomic_write_text(table_link, "written through the link")             # every atomic write follows a link
    assert table_link.is_symlink() and table.read_text() == "written through the link"


PLAN = """
import sys
from cryorl.cli import main
sys.exit(main(sys.argv[1:]))
"""


def plan_state(out: Path) -> str | None:
    """plan.nav's text, after checking that plan.csv beside it is the same plan (the same holes in the same
    order) and that nothing else is in --out; None without a plan."""
    if not (out / "plan.csv").exists():
        assert not (out / "plan.nav").exists()
        return None
    holes = pd.read_csv(out / "plan.csv")["hole"].tolist()
    nav = (out / "plan.nav").read_text()
    assert [line.split(" ")[2] for line in nav.splitlines() if line.startswith("Note = ")] == holes, \
        "plan.csv and plan.nav of different plans"
    assert sorted(p.name for p in out.iterdir() if p.name != JOURNAL) == ["plan.csv", "plan.nav"]
    return nav


def test_plan_files_change_together_under_kills(tmp_path, capsys):
    """plan.csv and plan.nav are one unit: a kill at each step of a re-plan (an --overwrite plan, and a plan
    --watch re-planning after a new exposure) leaves both from the old plan or both from the new one, and no
    .part file; the next run deletes nothing."""
    common = ["plan", "--data", str(SESSION), "--split", "sample", "--budget", "12"]
    assert main([*common, "--start", "0", "--out", str(tmp_path / "old")]) == 0
    assert main([*common, "--start", "5", "--out", str(tmp_path / "new")]) == 0
    old, new = plan_state(tmp_path / "old"), plan_state(tmp_path / "new")
    assert old != new
    for k in range(1, 10):
        root = tmp_path / f"k{k}"
        out = root / "plan"
        shutil.copytree(tmp_path / "old", out)
        result = run_killed_at(k, PLAN, *common, "--start", "5", "--out", str(out), "--overwrite")
        state = plan_state(out)
        assert state in (old, new), k
        assert main([*common, "--out", str(out)]) == 2                   # the next run: nothing deleted
        assert plan_state(out) == state and [p.name for p in root.iterdir()] == ["plan"], k
        if result.returncode == 0:
            break
        assert result.returncode == KILLED, result.stderr
    assert k == 5 and plan_state(out) == new
    # --watch: its first plan (2 steps, into an empty --out), then a re-plan, killed at each of its steps
    measured = tmp_path / "measured.csv"
    first = pd.read_csv(tmp_path / "old" / "plan.csv")["hole"].iloc[0]
    for j in range(1, 5):
        root = tmp_path / f"watch{j}"
        root.mkdir()
        out, measured = root / "live", root / "measured.csv"
        measured.write_text("")
        watch = subprocess.Popen([sys.executable, "-c", PLAN, *common, "--measured", str(measured), "--watch",
                                  "--interval", "0.05", "--out", str(out)], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True, env={**os.environ, KILL_AT_ENV: str(2 + j)})
        try:
            deadline = time.time() + 60
            while not (out / "plan.nav").exists():
                assert time.time() < deadline and watch.poll() is None, watch.stderr.read()
                time.sleep(0.05)
            before = plan_state(out)
            first = pd.read_csv(out / "plan.csv")["hole"].iloc[0]
            with open(measured, "a") as handle:
                handle.write(f"{first},4.0\n")
            assert watch.wait(timeout=60) == KILLED
        finally:
            watch.kill()
            watch.wait()
        if j == 1:
            reference = root / "reference"
            assert main([*common, "--measured", str(measured), "--out", str(reference)]) == 0
            after = plan_state(reference)
            shutil.rmtree(reference)
        state = plan_state(out)
        assert state in (before, after) and before != after, j
        assert main([*common, "--out", str(out)]) == 2
        assert plan_state(out) == state and sorted(p.name for p in root.iterdir()) == ["live", "measured.csv"]
    capsys.readouterr()


def test_a_watch_holds_its_out_and_stops_rather_than_replace_a_foreign_file(tmp_path):
    out, measured = tmp_path / "live", tmp_path / "measured.csv"
    measured.write_text("")
    watch = subprocess.Popen([sys.executable, "-m", "cryorl", "plan", "--data", str(SESSION), "--split", "sample",
                              "--budget", "12", "--measured", str(measured), "--watch", "--interval", "0.05",
                              "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 60
        while not (out / "plan.nav").exists():
            assert time.time() < deadline and watch.poll() is None
            time.sleep(0.05)
        with pytest.raises(OutputBusyError, match="is in use by another cryorl run"):
            check_output_folder(out, overwrite=True)
        (out / "operator-notes.txt").write_text("the operator saved this here")
        first = pd.read_csv(out / "plan.csv")["hole"].iloc[0]
        with open(measured, "a") as handle:
            handle.write(f"{first},4.0\n")
        assert watch.wait(timeout=60) == 2
    finally:
        watch.kill()
        watch.wait()
    assert "holds files this command did not write (operator-notes.txt)" in watch.stderr.read()
    assert (out / "operator-notes.txt").read_text() == "the operator saved this here"
