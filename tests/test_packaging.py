"""The package as users install it: a wheel, used from another folder, finds its presets and shipped policies."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import cryorl

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """A wheel built from a copy of the sources (the checkout itself is left untouched)."""
    source = tmp_path_factory.mktemp("source")
    for name in ("setup.cfg", "pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(REPO / name, source / name)
    shutil.copytree(REPO / "cryorl", source / "cryorl", ignore=shutil.ignore_patterns("__pycache__"))
    dist = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist),
                    str(source)], check=True, capture_output=True, timeout=240)
    return next(dist.glob("cryorl-*.whl"))


def test_wheel_ships_presets_policies_hyperparameters_and_license(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    for preset in ("default", "aldolase", "aldolase-papers", "simulated-0.1.0", "simulated-large",
                   "simulated-timestamps"):
        assert f"cryorl/resources/envs/{preset}.yaml" in names
    for agent in ("dqn", "ppo"):
        for file in ("scorer.pt", "config.json", "MODEL_CARD.md"):
            assert f"cryorl/resources/pretrained/{agent}/{file}" in names
    assert {"cryorl/resources/hyperparams/dqn.yml", "cryorl/resources/hyperparams/ppo.yml",
            "cryorl/resources/calibration.json",
            "cryorl/resources/rules.json"} <= set(names)
    assert any(n.endswith(".dist-info/licenses/LICENSE") or n.endswith(".dist-info/LICENSE") for n in names)
    metadata = next(zipfile.ZipFile(wheel).read(n).decode() for n in names if n.endswith(".dist-info/METADATA"))
    assert f"Version: {cryorl.__version__}" in metadata
    requires = [line for line in metadata.splitlines() if line.startswith("Requires-Dist: torch")]
    assert requires and "==" not in requires[0], requires          # a range for users; the pin is ours


def test_unpacked_wheel_runs_from_another_folder(wheel, tmp_path):
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site)}
    check = ("import gymnasium as gym, cryorl; from cryorl.agents import make_policy; "
             f"assert cryorl.__file__.startswith({str(site)!r}), cryorl.__file__; "
             "gym.make('CryoEM-v0', preset='default'); make_policy('dqn'); make_policy('ppo'); print('ok')")
    result = subprocess.run([sys.executable, "-c", check], cwd=elsewhere, env=env, capture_output=True, text=True)
    assert result.stdout.strip() == "ok", result.stderr
    result = subprocess.run([sys.executable, "-m", "cryorl.cli", "evaluate", "--agent", "dqn", "ppo", "--budgets",
                             "30", "--episodes", "1", "--quiet", "--out", "eval"], cwd=elsewhere, env=env,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert (elsewhere / "eval" / "summary.csv").read_text().count("\n") == 3     # header, dqn, ppo


def test_top_level_folders_are_the_package_copies():
    """envs/, agents/hyperparams/ and agents/pretrained/ are what users edit: one copy, the package's."""
    from cryorl.resources import HYPERPARAMS_DIR, PRESET_DIR, PRETRAINED_DIR

    assert (REPO / "envs").resolve() == PRESET_DIR.resolve()
    assert (REPO / "agents" / "hyperparams").resolve() == HYPERPARAMS_DIR.resolve()
    assert (REPO / "agents" / "pretrained").resolve() == PRETRAINED_DIR.resolve()


def test_version_and_train_commands(capsys):
    from cryorl.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.strip() == f"cryorl {cryorl.__version__}"
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    assert "--algo {dqn,ppo}" in capsys.readouterr().out


@pytest.mark.slow
def test_wheel_in_a_fresh_venv(wheel, tmp_path):
    """`pip install` of the wheel (tested versions) into a new virtual environment, then the CLI elsewhere."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "-c", str(REPO / "constraints.txt")]
    subprocess.run([*pip, str(wheel)], check=True, timeout=1200)
    result = subprocess.run([str(venv / "bin" / "cryorl"), "evaluate", "--agent", "dqn", "--budgets", "30",
                             "--episodes", "1", "--quiet", "--out", "eval"], cwd=tmp_path, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "eval" / "trajectories.csv").exists()
