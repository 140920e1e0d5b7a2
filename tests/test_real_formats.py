"""Both CryoRL releases as users get them: Leginon image versions, the 2022 classifier layout, swapped columns."""
from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest

from cryorl import CryoEMEnv, load_cryorl_dataset, load_grid
from cryorl.cli import main
from cryorl.loaders import DataFileError, read_ctf_csv

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
    with pytest.raises(DataFileError, match=r"target_CTF_Y1_train.csv:1: most confidences look like CTFMaxRes "
                                            r"values \(here 12.9204\) .* are columns 4 and 5 swapped"):
        load_cryorl_dataset(split, "train")


def make_whole_session_variant(aldolase_dir, dest, *, name=CTF):
    """The training split as the published whole-session and val files look: confidences below 0 (down to -0.02) and
    above 1, -1 placeholder rows for the atlas tiles, squares and patches, and a raw ``…en`` exposure (-1, no CTF
    estimate) beside every aligned ``…en-a`` copy; the hole rows keep their values."""
    dest.mkdir()
    shutil.copy(aldolase_dir / PREDICTIONS, dest / PREDICTIONS)
    shutil.copy(aldolase_dir / "timestamps.csv", dest / "timestamps.csv")
    ctf = pd.read_csv(aldolase_dir / CTF, header=None)
    ctf.loc[::40, 4] = -0.016                                 # as on line 998 of the val split
    ctf.loc[7, 4] = -0.02
    ctf.loc[9, 4] = 1.004
    stamps = pd.read_csv(aldolase_dir / "timestamps.csv", header=None)[0]
    targets = stamps[~stamps.str.contains("en")]
    rows = [ctf]
    rows.append(pd.DataFrame({0: targets, 1: 0.0, 2: 0.0, 3: -1, 4: -1}))
    rows.append(pd.DataFrame({0: ctf[0].str.replace(r"-a$", "", regex=True), 1: ctf[1], 2: ctf[2], 3: -1, 4: -1}))
    whole = pd.concat(rows, ignore_index=True).sample(frac=1.0, random_state=0)  # interleaved, as in the file
    whole.to_csv(dest / name, header=False, index=False)
    return dest, ctf, len(targets)


def test_negative_confidences_and_placeholder_rows_load(aldolase_dir, tmp_path, aldolase, capsys):
    data, ctf, n_targets = make_whole_session_variant(aldolase_dir, tmp_path / "whole")
    table = read_ctf_csv(data / CTF)
    assert len(table) == 1197
    assert table.attrs["skipped"] == {"not an exposure (atlas tile, square or patch row)": n_targets,
                                      "no CTF estimate (CTFMaxRes -1)": 1197}
    assert table["confidence"].min() == pytest.approx(-0.02) and table["confidence"].max() > 1
    atlas = load_cryorl_dataset(data, "train")
    holes = lambda a: a.to_frame().drop(columns="ctf_confidence").set_index("hole").sort_index()   # noqa: E731
    assert holes(atlas).equals(holes(aldolase))      # the same holes, hierarchy and values (file order differs)
    assert main(["data", "info", str(data), "--split", "train"]) == 0
    printed = capsys.readouterr().out
    assert f"skipped {n_targets} rows of {CTF}: not an exposure" in printed
    assert f"skipped 1197 rows of {CTF}: no CTF estimate" in printed


def test_the_whole_session_file_is_the_split_session(aldolase_dir, tmp_path, aldolase, capsys):
    data, _, _ = make_whole_session_variant(aldolase_dir, tmp_path / "whole", name="target_CTF_Y1.csv")
    val = pd.read_csv(data / PREDICTIONS, header=None, sep=" ")       # every split's predictions are read
    val.iloc[600:].to_csv(data / "Y1_2_regress_8bit_res50_val_by_hl.txt", header=False, index=False, sep=" ")
    val.iloc[:600].to_csv(data / PREDICTIONS, header=False, index=False, sep=" ")
    grid = load_grid(data)                                             # the only split there
    assert grid.split == "session" and len(grid.atlas) == 1197
    assert np.array_equal(np.sort(grid.atlas.predicted_ctf), np.sort(aldolase.predicted_ctf))
    shutil.copy(aldolase_dir / CTF, data / CTF)
    with pytest.raises(ValueError, match=r"holds the splits train, session: name one with --split"):
        load_grid(data)
    assert main(["evaluate", "--agent", "greedy-local", "--data", str(data), "--budgets", "30", "--episodes", "1",
                 "--out", str(tmp_path / "ev"), "--quiet"]) == 2
    assert "name one with --split" in capsys.readouterr().err
    assert main(["evaluate", "--agent", "greedy-local", "--data", str(data), "--split", "session", "--budgets",
                 "30", "--episodes", "1", "--out", str(tmp_path / "ev"), "--quiet"]) == 0


def test_raw_exposure_with_its_own_estimate_beside_the_aligned_copy(aldolase_dir, tmp_path):
    split = _copy_split(aldolase_dir, tmp_path / "split")
    ctf = pd.read_csv(split / CTF, header=None)
    raw = ctf.iloc[:5].copy()
    raw[0] = raw[0].str.replace(r"-a$", "", regex=True)
    pd.concat([ctf, raw]).to_csv(split / CTF, header=False, index=False)
    table = read_ctf_csv(split / CTF)
    assert len(table) == 1197 and table.attrs["skipped"] == {"raw exposure beside its aligned copy": 5}
    assert table["name"].str.endswith("-a").all()


@pytest.mark.parametrize("value, message", [
    ("0", r"CTFMaxRes 0 Å is not a positive resolution"),
    ("-3", r"CTFMaxRes -3 Å is not a positive resolution"),
    ("inf", r"CTFMaxRes inf Å is not a positive resolution"),
])
def test_a_ctf_that_is_not_a_resolution_is_refused(aldolase_dir, tmp_path, value, message):
    split = _copy_split(aldolase_dir, tmp_path / "split")
    lines = (split / CTF).read_text().splitlines()
    fields = lines[12].split(",")
    lines[12] = ",".join(fields[:3] + [value] + fields[4:])
    (split / CTF).write_text("\n".join(lines) + "\n")
    with pytest.raises(DataFileError, match=rf"{CTF}:13: {message}"):
        load_cryorl_dataset(split, "train")


def test_a_table_of_placeholders_only_is_refused(tmp_path):
    path = tmp_path / CTF
    path.write_text("21mar02c_grid1_00010gr,0,0,-1,-1\n21mar02c_grid1c_00019gr_00023sq_v01_00006hl_v01_00005en,0,0,-1,-1\n")
    with pytest.raises(DataFileError, match=r"no hole exposure with a CTF estimate among its 2 rows \(1 not an "
                                            r"exposure .*, 1 no CTF estimate"):
        read_ctf_csv(path)


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
