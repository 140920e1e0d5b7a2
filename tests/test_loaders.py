import shutil
from pathlib import Path

import numpy as np
import pytest

from cryorl import DataFileError, load_cryorl_dataset, load_grid
from cryorl.loaders import read_ctf_csv, read_predictions, read_timestamps

CTF = "target_CTF_Y1_train.csv"
PRED = "Y1_2_regress_8bit_res50_train_by_hl.txt"


def test_real_training_split(aldolase):
    assert len(aldolase) == 1197
    assert (aldolase.n_tiles, aldolase.n_squares, aldolase.n_patches) == (6, 9, 60)
    assert aldolase.is_good().sum() == 540
    assert aldolase.ctf_fit_failed.sum() == 16
    assert aldolase.names[0] == "21mar02c_grid1c_00008gr_00011sq_v01_00002hl_v01_00017en-a"
    # hierarchy parsed from the names
    i = aldolase.index("21mar02c_grid1c_00019gr_00023sq_v01_00006hl_v01_00005en-a")
    assert aldolase.tile_names[aldolase.tile[i]] == "21mar02c_grid1c_00019gr"
    assert aldolase.square_names[aldolase.square[i]] == "21mar02c_grid1c_00019gr_00023sq"
    assert aldolase.patch_names[aldolase.patch[i]] == "21mar02c_grid1c_00019gr_00023sq_v01_00006hl"
    assert aldolase.true_ctf[i] == pytest.approx(12.920361)
    assert aldolase.predicted_ctf[i] == pytest.approx(14.48)
    # holes are grouped: each patch's holes are contiguous, patches sorted by name
    assert np.all(np.diff(aldolase.patch) >= 0)


def test_timestamps(aldolase_dir):
    stamps = read_timestamps(aldolase_dir / "timestamps.csv")
    assert len(stamps) == 2527
    assert str(stamps.time.min()) == "2021-03-02 11:51:50"


@pytest.fixture()
def split(tmp_path, aldolase_dir) -> Path:
    """A writable copy of the training split to corrupt."""
    for name in (CTF, PRED, "timestamps.csv"):
        shutil.copy(aldolase_dir / name, tmp_path / name)
    return tmp_path


def _edit(path: Path, line: int, text: str | None) -> None:
    lines = path.read_text().splitlines()
    if text is None:
        del lines[line - 1]
    else:
        lines[line - 1] = text
    path.write_text("\n".join(lines) + "\n")


def _first_fields(path: Path) -> list[str]:
    return path.read_text().splitlines()[0].split(",")


@pytest.mark.parametrize("line, mutate, message", [
    (7, lambda f: ",".join(f + ["0.5"]), r"target_CTF_Y1_train.csv:7: inconsistent number of fields"),
    (5, lambda f: ",".join(f[:3] + ["abc"] + f[4:]), r":5: column 'ctf_max_res' has 'abc', which is not a number"),
    (9, lambda f: ",".join(f[:1] + [""] + f[2:]), r":9: missing value for column 'x'"),
    (4, lambda f: ",".join(["21mar02c_grid1c_garbage"] + f[1:]), r":4: hole name '21mar02c_grid1c_garbage' does "
                                                                  "not parse as a Leginon exposure name"),
    (3, lambda f: ",".join(f[:3] + ["-2"] + f[4:]), r":3: CTFMaxRes -2 Å is not a positive resolution"),
])
def test_malformed_ctf_rows_are_named(split, line, mutate, message):
    path = split / CTF
    fields = path.read_text().splitlines()[line - 1].split(",")
    _edit(path, line, mutate(fields))
    with pytest.raises(DataFileError, match=message):
        load_cryorl_dataset(split)


def test_duplicate_hole_names(split):
    path = split / CTF
    first = path.read_text().splitlines()[0]
    _edit(path, 10, first)
    with pytest.raises(DataFileError, match=r":10: hole name '.*00005en-a' repeats line 1"):
        read_ctf_csv(path)


def test_wrong_column_count_for_whole_file(split):
    path = split / CTF
    path.write_text("\n".join(",".join(line.split(",")[:4]) for line in path.read_text().splitlines()) + "\n")
    with pytest.raises(DataFileError, match=r":1: expected 5 columns \(name, x, y, ctf_max_res, confidence\), "
                                            "found 4"):
        load_cryorl_dataset(split)


@pytest.mark.parametrize("content", ["", "\n\n"])
def test_empty_file(split, content):
    (split / PRED).write_text(content)
    with pytest.raises(DataFileError, match=r"Y1_2_regress_8bit_res50_train_by_hl.txt: the predictions file is empty"):
        load_cryorl_dataset(split)


def test_non_numeric_prediction(split):
    name = (split / PRED).read_text().splitlines()[11].split()[0]
    _edit(split / PRED, 12, f"{name} n/a")
    with pytest.raises(DataFileError, match=r"_by_hl.txt:12: column 'predicted_ctf' has 'n/a'"):
        load_cryorl_dataset(split)


def test_missing_predictions_policies(split, aldolase):
    lines = (split / PRED).read_text().splitlines()
    missing = [lines[0].split()[0], lines[1].split()[0]]
    (split / PRED).write_text("\n".join(lines[2:]) + "\n")
    with pytest.raises(DataFileError, match=r"2 holes of .* have no prediction, e.g. '.*00005en-a' \(line 1\)"):
        load_cryorl_dataset(split)
    with pytest.warns(UserWarning, match="dropping 2 holes"):
        dropped = load_cryorl_dataset(split, missing_prediction="drop")
    assert len(dropped) == 1195 and not set(missing) & set(dropped.names)
    worst = load_cryorl_dataset(split, missing_prediction="worst")
    assert len(worst) == 1197
    assert [worst.predicted_ctf[worst.index(n)] for n in missing] == [20.0, 20.0]
    assert worst.to_frame().drop(columns="predicted_ctf").equals(aldolase.to_frame().drop(columns="predicted_ctf"))


def test_classifier_probability_format(split, aldolase):
    lines = (split / PRED).read_text().splitlines()
    rng = np.random.default_rng(0)
    probs = rng.random(len(lines))
    (split / PRED).write_text("\n".join(f"{ln.split()[0]} {p:.4f} {1 - p:.4f}" for ln, p in zip(lines, probs)) + "\n")
    atlas = load_cryorl_dataset(split)
    assert not atlas.has_ctf_predictions
    assert atlas.predicted_good[atlas.index(lines[0].split()[0])] == pytest.approx(probs[0], abs=1e-4)
    (split / PRED).write_text(f"{lines[0].split()[0]} 1.3 -0.3\n")
    with pytest.raises(DataFileError, match=r":1: class probabilities \[1.3, -0.3\] are not in \[0, 1\]"):
        read_predictions(split / PRED)


def test_bad_timestamp(split):
    _edit(split / "timestamps.csv", 6, "21mar02c_grid1_00015gr,yesterday")
    with pytest.raises(DataFileError, match=r"timestamps.csv:6: time 'yesterday' is not 'YYYY-MM-DD HH:MM:SS'"):
        read_timestamps(split / "timestamps.csv")


def test_missing_folder_points_to_download_into_the_cache(tmp_path, monkeypatch, split):
    monkeypatch.setenv("CRYORL_CACHE", str(tmp_path / "cache"))
    with pytest.raises(FileNotFoundError, match=r"no data at .*nowhere; fetch the public data with `cryorl data "
                                                r"download aldolase` \(into .*cache/aldolase\)") as error:
        load_grid(tmp_path / "nowhere")
    assert "--dest" not in str(error.value)                 # never suggests downloading into the mistyped path
    with pytest.raises(FileNotFoundError, match=r"no 'val' split in .*; it holds train"):
        load_grid(split, "val")
    with pytest.raises(FileNotFoundError, match=r"no 'val' split .*; it holds 'train'\)"):
        load_cryorl_dataset(split, "val")


def test_binary_file_is_refused(split):
    (split / CTF).write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe" * 10)
    with pytest.raises(DataFileError, match="target_CTF_Y1_train.csv"):
        load_cryorl_dataset(split)
