"""Both CryoRL releases as users get them: Leginon image versions, the 2022 classifier layout, swapped columns."""
from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest

from cryorl import CryoEMEnv, load_cryorl_dataset
from cryorl.cli import main
from cryorl.loaders import DataFileError

CTF = "target_CTF_Y1_train.csv"
PREDICTIONS = "Y1_2_regress_8bit_res50_train_by_hl.txt"
PATCH = "21mar02c_grid1c_00019gr_00023sq_v01_00006hl_v01"      # a patch of the training split


def _copy_split(source, dest):
    dest.mkdir()
    for name in (CTF, PREDICTIONS, "timestamps.csv"):
        shutil.copy(source / name, dest / name)
    return dest


def _rename(folder, old: str, new: str, which) -> list[str]:
    """Rename the holes chosen by ``which(names)`` in the CTF table and the predictions, as Leginon would."""
    ctf = pd.read_csv(folder / CTF, header=None)
    chosen = ctf[0][which(ctf[0])].tolist()
    mapping = {name: name.replace(old, new) for name in chosen}
    ctf[0] = ctf[0].replace(mapping)
    ctf.to_csv(folder / CTF, header=False, index=False)
    predictions = pd.read_csv(folder / PREDICTIONS, header=None, sep=" ")
    predictions[0] = predictions[0].replace(mapping)
    predictions.to_csv(folder / PREDICTIONS, header=False, index=False, sep=" ")
    return [mapping[name] for name in chosen]


def test_image_versions_of_one_target_are_one_patch_and_square(aldolase_dir, tmp_path):
    split = _copy_split(aldolase_dir, tmp_path / "split")
    in_patch = lambda names: names.str.startswith(PATCH + "_")                      # noqa: E731
    second = _rename(split, "_00006hl_v01_", "_00006hl_v02_", lambda n: in_patch(n) & (np.arange(len(n)) % 2 == 0))
    moved = _rename(split, "_00023sq_v01_00004hl", "_00023sq_v02_00004hl",
                    lambda n: n.str.contains("_00019gr_00023sq_v01_00004hl_"))
    atlas = load_cryorl_dataset(split, "train")
    original = load_cryorl_dataset(aldolase_dir, "train")
    assert (atlas.n_tiles, atlas.n_squares, atlas.n_patches) == (original.n_tiles, original.n_squares,
                                                                    original.n_patches)
    v2 = atlas.index(second[0])                                                     # names keep their _v02
    v1 = int(np.flatnonzero([name.startswith(PATCH + "_") for name in atlas.names])[0])
    assert atlas.patch[v1] == atlas.patch[v2]
    assert atlas.patch_names[atlas.patch[v2]] == "21mar02c_grid1c_00019gr_00023sq_v01_00006hl"
    square_v2 = atlas.index(moved[0])
    assert atlas.square[square_v2] == atlas.square[v1]                               # sq_v02 is the same square
    assert atlas.square_names[atlas.square[v1]] == "21mar02c_grid1c_00019gr_00023sq"
    env = CryoEMEnv(atlas)
    env.reset(options={"start": v1})
    assert env.step(v2)[4]["switch_level"] == 0                                      # a hole move, not a patch move


def test_swapped_ctf_and_confidence_columns_are_refused(aldolase_dir, tmp_path):
    split = _copy_split(aldolase_dir, tmp_path / "split")
    table = pd.read_csv(split / CTF, header=None)
    table[[3, 4]] = table[[4, 3]].to_numpy()
    table.to_csv(split / CTF, header=False, index=False)
    with pytest.raises(DataFileError, match=r"target_CTF_Y1_train.csv:1: CTF fit confidence 12.9204 is outside "
                                            r"\[0, 1\]; .* are columns 4 and 5 swapped"):
        load_cryorl_dataset(split, "train")


def make_2022_layout(aldolase_dir, dest):
    """The first CryoRL release's layout: ``CTF_*_by_hl.csv`` and a two-class classifier's probabilities (here made
    from the regressor's predictions: P(CTFMaxRes < 6 Å) = sigmoid((6 - predicted) / 1.5), two decimals)."""
    dest.mkdir()
    shutil.copy(aldolase_dir / CTF, dest / "CTF_train_by_hl.csv")
    shutil.copy(aldolase_dir / "timestamps.csv", dest / "timestamps.csv")
    predictions = pd.read_csv(aldolase_dir / PREDICTIONS, header=None, sep=" ")
    good = np.round(1.0 / (1.0 + np.exp(-(6.0 - predictions[1]) / 1.5)), 2)
    lines = [f"{name} {p:.2f} {1 - p:.2f}\n" for name, p in zip(predictions[0], good)]
    (dest / "2_cat_8bit_res50_train_by_hl.txt").write_text("".join(lines))
    return dest


def test_every_agent_runs_on_classifier_probabilities(aldolase_dir, tmp_path, capsys):
    data = make_2022_layout(aldolase_dir, tmp_path / "aldolase-2022")
    atlas = load_cryorl_dataset(data, "train")
    assert not atlas.has_ctf_predictions and atlas.predicted_good is not None
    agents = ["random", "predict-rank", "greedy-local", "snowball", "planner", "oracle", "dqn", "ppo"]
    out = tmp_path / "eval"
    assert main(["evaluate", "--agent", *agents, "--data", str(data), "--split", "train", "--era", "2022",
                 "--costs", "cryorl-2022", "--budgets", "120", "--episodes", "3", "--out", str(out), "--quiet"]) == 0
    summary = pd.read_csv(out / "summary.csv").set_index("agent")["good_mean"]
    assert summary.index.tolist() == agents
    # the classifier carries real information: every rule that reads it beats random by far
    for agent in ("greedy-local", "snowball", "planner", "dqn", "ppo"):
        assert summary[agent] > 3 * summary["random"], summary
    assert summary["oracle"] >= summary["greedy-local"]


def test_benchmark_report_on_the_2022_layout(aldolase_dir, tmp_path, capsys):
    data = make_2022_layout(aldolase_dir, tmp_path / "aldolase-2022")
    out = tmp_path / "report"
    assert main(["benchmark", "--data", str(data), "--split", "train", "--era", "2022", "--costs", "cryorl-2022",
                 "--published", "cryorl-2022", "--agents", "greedy-local", "dqn", "--budgets", "120",
                 "--episodes", "2", "--out", str(out), "--quiet", "--no-steps"]) == 0
    text = (out / "report.md").read_text()
    assert "cryoRL DQN, ResNet-50 (published)" in text and "| dqn |" in text and "human operator" in text
