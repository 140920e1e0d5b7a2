"""Distributed data-parallel training: 2 gloo processes on CPU against one process, checkpoints and resume."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from cryorl.cli import main
from cryorl.synth import GridSpec

WORKER = Path(__file__).with_name("distributed_worker.py")


def launch(args, processes=None, **popen):
    """``python WORKER …`` or, with ``processes``, the same under torchrun (gloo, a free port)."""
    command = [sys.executable]
    if processes:
        command += ["-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    return subprocess.Popen(command + [str(a) for a in args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, **popen)


def finish(process, timeout=240):
    output, _ = process.communicate(timeout=timeout)
    assert process.returncode == 0, output[-3000:]
    return output


def descendants(pid):
    """Process ids below ``pid`` (torchrun starts its workers in sessions of their own)."""
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        children = parents.get(todo.pop(), [])
        found += children
        todo += children
    return found


def weights(folder):
    return torch.load(Path(folder) / "model.pt", weights_only=True)


def max_difference(a, b):
    return max((a[k].double() - b[k].double()).abs().max().item() for k in a if "num_batches" not in k)


def test_two_gloo_processes_equal_one_process_on_the_same_global_batch(tmp_path):
    """2 processes × 16 crops (DDP, adversarial training: PGD inside every step) against 1 process accumulating
    2 × 16: the same gradients, so the same weights, batch-norm statistics and validation history."""
    ddp, single, plain = (tmp_path / name for name in ("ddp", "single", "plain"))
    for folder in (ddp, single, plain):
        folder.mkdir()
    runs = [launch([WORKER, ddp, "--distributed", "--adversarial"], processes=2),
            launch([WORKER, single, "--accumulate", "2", "--adversarial"])]
    for run in runs:
        finish(run)
    assert max_difference(weights(ddp), weights(single)) < 1e-5
    history = [json.loads((folder / "history.json").read_text()) for folder in (ddp, single)]
    assert len(history[0]) == 3
    for a, b in zip(*history):
        assert a.keys() == b.keys()
        for key in a:
            assert a[key] == pytest.approx(b[key], rel=1e-4, abs=1e-5), key
    # without the micro-batches, batch norm sees 32 crops at once: a different run, so the check above can fail
    finish(launch([WORKER, plain, "--adversarial"]))
    assert max_difference(weights(plain), weights(single)) > 1e-3


def test_compressed_gradients_train_close_to_exact_ones(tmp_path):
    """fp16 and PowerSGD communication hooks: the hook is in effect (the weights are not the exact run's), the first
    epoch's loss is close to the exact one and the model learns as well (noisy at this size: loose bounds)."""
    (tmp_path / "exact").mkdir()
    finish(launch([WORKER, tmp_path / "exact", "--accumulate", "2"]))
    exact = json.loads((tmp_path / "exact" / "history.json").read_text())
    for compression in ("fp16", "powersgd"):
        (tmp_path / compression).mkdir()
        finish(launch([WORKER, tmp_path / compression, "--distributed", "--compression", compression], processes=2))
        history = json.loads((tmp_path / compression / "history.json").read_text())
        assert history[0]["train_loss"] == pytest.approx(exact[0]["train_loss"], rel=0.1), compression
        assert history[-1]["val_mae"] < 0.75 * history[0]["val_mae"], compression
        assert history[-1]["val_mae"] < exact[-1]["val_mae"] + 1.0, compression
        assert max_difference(weights(tmp_path / compression), weights(tmp_path / "exact")) > 1e-4, compression


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    from cryorl.images.synth_session import simulate_session

    return simulate_session(tmp_path_factory.mktemp("ddp") / "session", seed=5, progress=False, crops=True,
                            spec=GridSpec(n_holes=160, n_patches=8, n_squares=2, n_tiles=1))


def cli_train(session, out, *extra):
    return ["-m", "cryorl", "perception", "train", "--distributed", "--backbone", "resnet_test", "--input-size",
            "32", "--batch-size", "32", "--data", session, "--out", out, "--threads", "1", "--quiet", *extra]


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds torchrun's workers in /proc")
def test_killed_distributed_run_resumes_to_the_same_weights(session, tmp_path):
    epochs = ["--epochs", "40"]
    reference = launch(cli_train(session, tmp_path / "reference", *epochs), processes=2)
    finish(reference)
    assert json.loads((tmp_path / "reference" / "config.json").read_text())["metadata"]["processes"] == 2
    assert not (tmp_path / "reference.checkpoint.pt").exists()          # a finished run removes its checkpoint

    out, checkpoint = tmp_path / "resumed", tmp_path / "resumed.checkpoint.pt"
    run = launch(cli_train(session, out, *epochs), processes=2)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and run.poll() is None:
        if checkpoint.exists() and torch.load(checkpoint, weights_only=True)["epoch"] >= 2:
            break
        time.sleep(0.05)
    assert run.poll() is None, run.communicate()[0][-3000:]
    for pid in [run.pid, *descendants(run.pid)]:                        # torchrun and both workers, at once
        os.kill(pid, signal.SIGKILL)
    run.communicate()
    done = torch.load(checkpoint, weights_only=True)["epoch"]
    assert 2 <= done < 40 and not out.exists()

    # without --resume the checkpoint is not overwritten; with it the run continues where it stopped
    assert main(["perception", "train", "--data", str(session), "--out", str(out), "--quiet"]) == 2
    resumed = launch(cli_train(session, out, *epochs, "--resume"), processes=2)
    finish(resumed)
    history = json.loads((out / "config.json").read_text())["metadata"]["history"]
    assert [row["epoch"] for row in history] == list(range(1, 41))
    assert max_difference(weights(out), weights(tmp_path / "reference")) < 1e-6
    assert not checkpoint.exists()


def test_distributed_needs_torchrun(tmp_path, capsys):
    assert main(["perception", "train", "--distributed", "--out", str(tmp_path / "m"), "--quiet"]) == 2
    assert "torchrun" in capsys.readouterr().err
