"""EPU sessions: the real EPU 3.7 session in ../shared (one square, 570 foil holes, 868 exposures on 217 holes),
CTF from RELION STAR files and CTFFIND folders written here, partial and malformed copies of the session."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cryorl.atlas import MAX_FEATURE_CTF
from cryorl.ctf_results import micrograph_core, read_ctffind_folder, read_relion_ctf
from cryorl.formats.epu import IceModel, is_epu_session, load_epu_session, relative_thickness
from cryorl.loaders import DataFileError

EPU = Path(__file__).resolve().parents[2] / "shared" / "data" / "epu-apoferritin"
SQUARE = "GridSquare_4590776"
DM = Path("Metadata") / f"{SQUARE}.dm"
# the first hole EPU exposed, its four image-shift shots in time order (from GridSquare_4590776.dm)
FIRST_HOLE = "FoilHole_5665438"
FIRST_SHOTS = ["FoilHole_5665438_Data_4601896_4601898_20240406_102527",
               "FoilHole_5665438_Data_4601928_4601930_20240406_102532",
               "FoilHole_5665438_Data_4601905_4601907_20240406_102536",
               "FoilHole_5665438_Data_4601913_4601915_20240406_102539"]
FIRST_SHOT_CTF = [5.0, 3.5, 8.0, 4.0]          # best 3.5 Å, median 4.5 Å, first 5.0 Å

pytestmark = pytest.mark.skipif(not (EPU / "EpuSession.dm").exists(), reason=f"the EPU session is not at {EPU}")


@pytest.fixture(scope="module")
def grid():
    return load_epu_session(EPU)


@pytest.fixture()
def session_copy(tmp_path) -> Path:
    copy = tmp_path / "session"
    shutil.copytree(EPU, copy)
    for path in copy.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    return copy


def microscope_image_xml(x_m: float, y_m: float, time: str) -> str:
    """A FoilHole/Data image's MicroscopeImage XML as EPU writes it (only the elements read kept)."""
    return ('<MicroscopeImage xmlns="http://schemas.datacontract.org/2004/07/Fei.SharedObjects" '
            'xmlns:i="http://www.w3.org/2001/XMLSchema-instance"><name>Empty</name><microscopeData><acquisition>'
            f'<acquisitionDateTime>{time}</acquisitionDateTime></acquisition><stage><Position><A>0</A><B>0</B>'
            f'<X>{x_m!r}</X><Y>{y_m!r}</Y><Z>9.3E-05</Z></Position></stage></microscopeData></MicroscopeImage>')


def test_the_real_session_opens_with_its_foil_holes_in_the_stated_hierarchy(grid):
    atlas, holes = grid.atlas, grid.holes
    assert len(atlas) == 570 and atlas.square_names == (SQUARE,) and atlas.tile_names == ("Tile_4590765",)
    assert atlas.position_unit == "um" and list(holes["hole"]) == list(atlas.names)
    assert int(holes["selected"].sum()) == 276 and int(holes["near_grid_bar"].sum()) == 291
    first = holes.set_index("hole").loc[FIRST_HOLE]
    assert first["stage_x_um"] == pytest.approx(-42.565477) and first["stage_y_um"] == pytest.approx(-559.457645)
    assert (first["image_x_px"], first["image_y_px"]) == (1396.0, 972.0)
    assert first["intensity_mean"] == pytest.approx(723.8662041625372)
    assert first["intensity_sd"] == pytest.approx(27.530339280775316)
    # patches: no EPU grouping here (NoClustering), so the greedy cover within the template's 5 µm image shift
    assert "greedy cover" in grid.patch_rule and "5 µm" in grid.patch_rule and "MaximumImageShift" in grid.patch_rule
    assert np.hypot(atlas.x, atlas.y).max() <= 5.0
    serving = holes["patch"].str.replace("Patch_", "FoilHole_")   # the foil hole whose stage position serves it
    index = serving.map({h: i for i, h in enumerate(holes["hole"])}).to_numpy()
    assert (holes["patch"].to_numpy()[index] == holes["patch"].to_numpy()).all()      # ... is in the patch
    stage_x, stage_y = grid.stage_um
    assert np.allclose(atlas.x, stage_x - stage_x[index]) and np.allclose(atlas.y, stage_y - stage_y[index])
    assert 100 < atlas.n_patches < 570
    # the radius decides: a tiny one gives one hole per patch, a larger one fewer, bigger patches
    assert load_epu_session(EPU, patch_radius_um=0.5).atlas.n_patches == 570
    assert load_epu_session(EPU, patch_radius_um=9.0).atlas.n_patches < atlas.n_patches
    # the session's other 221 squares have no GridSquare .dm (only one square's metadata was published)
    assert grid.missing == ("221 of 222 squares have no Metadata/GridSquare_<id>.dm (e.g. GridSquare_4590878): "
                            "221 without any foil hole known, 0 with foil holes from their XML only",)
    assert len(grid.squares) == 222 and grid.squares["has_dm"].sum() == 1


def test_exposures_and_the_operators_trace_on_epus_clock(grid):
    exposures = grid.exposures
    assert len(exposures) == 868 and exposures["hole"].nunique() == 217
    assert (exposures.groupby("hole").size() == 4).all() and grid.holes["exposures"].sum() == 868
    assert exposures["in_dm"].all() and not exposures["in_xml"].any()
    assert exposures[exposures["hole"] == FIRST_HOLE]["micrograph"].tolist() == FIRST_SHOTS
    assert exposures["time"].iloc[0] == pd.Timestamp("2024-04-06 10:25:27")
    assert exposures["time"].iloc[-1] == pd.Timestamp("2024-04-06 14:35:40")
    trace = grid.trace
    assert len(trace) == 217 and trace.holes[0] == FIRST_HOLE and trace.minutes[0] == 0
    assert np.all(np.diff(trace.minutes) >= 0) and 249 < trace.minutes[-1] < 251
    assert trace.minutes[1] == pytest.approx(64 / 60)           # second hole's first shot at 10:26:31
    assert len(trace.on(grid.atlas)) == 217


def test_predicted_quality_from_the_ice_filter(grid):
    holes = grid.holes
    reference = np.quantile(holes["intensity_mean"], 0.98)
    t = -np.log(723.8662041625372 / reference)
    first = holes.set_index("hole").loc[FIRST_HOLE]
    assert first["relative_thickness"] == pytest.approx(t)
    assert first["predicted_ctf"] == pytest.approx(IceModel().predicted_ctf(np.array([t]))[0])
    # over the grid bars (dark: thick or opaque) the prediction is poor; EPU's selected holes look better
    bar, selected = holes["near_grid_bar"].to_numpy(bool), holes["selected"].to_numpy(bool)
    assert holes["predicted_ctf"][bar].median() == MAX_FEATURE_CTF
    assert holes["predicted_ctf"][selected].median() < 9.0
    assert holes["probability_good"][selected].mean() > holes["probability_good"][bar].mean()
    # the physical curve: empty holes (the brightest, t ≈ 0) are poor, thin ice best, thick ice poor
    # by hand: t = 0.4 is 140 nm of ice, 3 + 3 · ((140 − 35) / 45)^1.5 = 13.69 Å; t = 0.1 is 35 nm, 3 Å
    model = IceModel()
    assert model.predicted_ctf(np.array([0.0, 0.1, 0.4, np.nan])).round(2).tolist() == [13.0, 3.0, 13.69, 20.0]
    assert relative_thickness(np.array([100.0, 50.0, np.nan]), np.array([1, 1, 1]), quantile=1.0) == \
        pytest.approx([0.0, np.log(2), np.nan], nan_ok=True)


def test_the_ice_model_refits_where_ctfs_are_known():
    rng = np.random.default_rng(0)
    t = rng.uniform(0.0, 0.6, 400)
    truth = IceModel(mean_free_path_nm=280.0, offset_nm=25.0)
    ctf = truth.predicted_ctf(t) * np.exp(rng.normal(0.0, 0.05, t.size))
    fitted = IceModel.fit(np.append(t, np.nan), np.append(ctf, 4.0))
    assert fitted.mean_free_path_nm == pytest.approx(280.0, rel=0.05) and fitted.offset_nm == pytest.approx(25, abs=4)
    with pytest.raises(ValueError, match="too few"):
        IceModel.fit(t[:5], ctf[:5])


def write_star(path: Path, grid, values: dict[str, float], extra: dict[str, float]) -> None:
    import starfile

    names = list(values) + list(extra)
    micrographs = pd.DataFrame({
        "rlnMicrographName": [f"MotionCorr/job002/Movies/{SQUARE}/Data/{n}_fractions.mrc" for n in names],
        "rlnOpticsGroup": 1,
        "rlnDefocusU": 12000.0, "rlnDefocusV": 11800.0,
        "rlnCtfMaxResolution": list(values.values()) + list(extra.values()),
    })
    optics = pd.DataFrame({"rlnOpticsGroupName": ["opticsGroup1"], "rlnOpticsGroup": [1],
                           "rlnMicrographPixelSize": [0.83]})
    starfile.write({"optics": optics, "micrographs": micrographs}, path)


@pytest.fixture(scope="module")
def shot_ctf(grid) -> dict[str, float]:
    """A CTFMaxRes for every exposure but those of one hole; the first hole's shots as FIRST_SHOT_CTF."""
    rng = np.random.default_rng(7)
    names = grid.exposures["micrograph"].tolist()
    values = dict(zip(names, np.round(rng.uniform(2.8, 12.0, len(names)), 3)))
    values.update(zip(FIRST_SHOTS, FIRST_SHOT_CTF))
    last_hole = grid.trace.holes[-1]
    return {n: v for n, v in values.items() if not n.startswith(last_hole + "_")}


def test_a_relion_star_file_gives_each_hole_its_ctf_by_the_stated_rule(grid, shot_ctf, tmp_path):
    star = tmp_path / "micrographs_ctf.star"
    write_star(star, grid, shot_ctf, {"FoilHole_1_Data_2_3_20240406_000000": 4.0})
    table = read_relion_ctf(star)
    assert len(table) == 865 and table["micrograph"].iloc[0] == list(shot_ctf)[0]
    for rule, expected in (("best", 3.5), ("median", 4.5), ("first", 5.0)):
        loaded = load_epu_session(EPU, ctf=star, ctf_rule=rule)
        holes = loaded.holes.set_index("hole")
        assert holes.loc[FIRST_HOLE, "true_ctf"] == expected, rule
    exposures = loaded.exposures.set_index("micrograph")
    assert exposures.loc[FIRST_SHOTS, "ctf_max_res"].tolist() == FIRST_SHOT_CTF
    # by hand for another hole: the best of its four shots
    hole = grid.trace.holes[5]
    shots = [v for n, v in shot_ctf.items() if n.startswith(hole + "_")]
    best = load_epu_session(EPU, ctf=star).holes.set_index("hole")
    assert len(shots) == 4 and best.loc[hole, "true_ctf"] == min(shots)
    atlas = loaded.atlas
    assert np.isfinite(atlas.true_ctf).sum() == 216                 # 217 exposed holes, one without estimates
    assert np.isnan(atlas.true_ctf[atlas.index(grid.trace.holes[-1])])
    assert np.isnan(atlas.true_ctf[~loaded.holes["exposures"].to_numpy().astype(bool)]).all()
    assert loaded.missing[1:] == ("1 of 865 micrographs in micrographs_ctf.star match no exposure of the session",
                                  "4 of 868 exposures have no CTF estimate in micrographs_ctf.star: 1 exposed holes "
                                  "without a true CTFMaxRes")


def test_a_ctffind_folder_gives_the_same_ctfs(grid, shot_ctf, tmp_path):
    folder = tmp_path / "CtfFind" / "job003" / "Movies" / SQUARE / "Data"
    folder.mkdir(parents=True)
    header = ("# Output from CTFFind version 4.1.14, run on 2024-04-06 12:00:00\n"
              "# Input file: {0}_fractions.mrc ; Number of micrographs: 1\n"
              "# Columns: #1 - micrograph number; #2 - defocus 1 [Angstroms]; #3 - defocus 2; #4 - azimuth of "
              "astigmatism; #5 - additional phase shift [radians]; #6 - cross correlation; #7 - spacing (in "
              "Angstroms) up to which CTF rings were fit successfully\n")
    for name, value in shot_ctf.items():
        (folder / f"{name}_fractions.txt").write_text(header.format(name) + f"1.000000 12013.3 11820.1 -41.2 0.0 "
                                                                          f"0.0712 {value}\n")
        (folder / f"{name}_fractions_avrot.txt").write_text("# rotational average, not a CTF result\n1 2 3\n")
    (folder.parents[3] / "note.txt").write_text("not CTFFIND output\n")
    table = read_ctffind_folder(tmp_path / "CtfFind")
    assert len(table) == 864 and set(table["micrograph"]) == set(shot_ctf)
    loaded = load_epu_session(EPU, ctf=tmp_path / "CtfFind")
    assert loaded.holes.set_index("hole").loc[FIRST_HOLE, "true_ctf"] == 3.5
    assert loaded.missing[1:] == ("4 of 868 exposures have no CTF estimate in CtfFind: 1 exposed holes without a true "
                                  "CTFMaxRes",)
    bad = folder / f"{FIRST_SHOTS[0]}_fractions.txt"
    bad.write_text(header.format("x") + "1.0 12013.3 11820.1 -41.2\n")
    with pytest.raises(DataFileError, match=r"_fractions.txt:4: 4 columns; CTFFIND writes at least 7"):
        read_ctffind_folder(tmp_path / "CtfFind")


def test_micrograph_names_match_on_their_epu_core():
    names = pd.Series(["MotionCorr/job002/Movies/FoilHole_5665438_Data_4601896_4601898_20240406_102527_fractions.mrc",
                       "FoilHole_5665438_Data_4601896_4601898_20240406_102527_EER.mrc",
                       r"X:\data\FoilHole_5665438_Data_4601896_4601898_20240406_102527.tiff",
                       "FoilHole_5665438_Data_4601896_4601898_20240406_1025271.mrc", "other.mrc"])
    core = "FoilHole_5665438_Data_4601896_4601898_20240406_102527"
    assert micrograph_core(names).tolist()[:3] == [core] * 3 and micrograph_core(names)[3:].isna().all()


def test_a_session_without_its_grid_square_dm_loads_from_its_foil_hole_xml(session_copy):
    (session_copy / DM).unlink()
    images = session_copy / "Images-Disc1" / SQUARE
    (images / "FoilHoles").mkdir()
    (images / "Data").mkdir()
    (images / "FoilHoles" / "FoilHole_5665438_20240406_102451.xml").write_text(
        microscope_image_xml(-4.2565e-05, -5.5946e-04, "2024-04-06T10:24:51.5+01:00"))
    for i, shot in enumerate(FIRST_SHOTS[:2]):
        (images / "Data" / f"{shot}.xml").write_text(
            microscope_image_xml(-4.2565e-05, -5.5946e-04, f"2024-04-06T10:25:{30 + 5 * i}.2+01:00"))
    (images / "Data" / "FoilHole_5665439_Data_4601896_4601898_20240406_102631.xml").write_text(
        microscope_image_xml(-4.6245e-05, -5.5790e-04, "2024-04-06T10:26:33.0+01:00"))
    assert is_epu_session(session_copy)
    grid = load_epu_session(session_copy)
    holes = grid.holes.set_index("hole")
    assert list(holes.index) == ["FoilHole_5665438", "FoilHole_5665439"]
    assert holes["source"].tolist() == ["FoilHole XML", "Data XML"]
    assert holes.loc["FoilHole_5665438", "stage_x_um"] == pytest.approx(-42.565)
    assert holes["intensity_mean"].isna().all() and holes["selected"].isna().all()
    assert (holes["predicted_ctf"] == MAX_FEATURE_CTF).all() and holes["exposures"].tolist() == [2, 1]
    assert grid.exposures["in_xml"].all() and not grid.exposures["in_dm"].any()
    assert grid.exposures["xml_time"].iloc[0] == pd.Timestamp("2024-04-06 10:25:30.2")
    assert grid.trace.holes == ("FoilHole_5665438", "FoilHole_5665439")
    assert grid.missing == (
        "222 of 222 squares have no Metadata/GridSquare_<id>.dm (e.g. GridSquare_4590878): 221 without any foil "
        "hole known, 1 with foil holes from their XML only",
        "2 foil holes of 1 square are known only from their FoilHole/Data XML (no GridSquare .dm entry): no "
        "ice-filter intensity, position in the square image, grid-bar flag or selection",
        "2 of 2 foil holes have no ice-filter intensity (PixelIntensityMean): predicted the worst, 20 Å")


def test_a_hole_known_only_from_xml_beside_the_dm_and_a_missing_atlas(session_copy):
    (session_copy / "Atlas" / "Atlas.dm").unlink()
    foil_holes = session_copy / "Images-Disc1" / SQUARE / "FoilHoles"
    foil_holes.mkdir()
    (foil_holes / "FoilHole_9999001_20240406_150000.xml").write_text(
        microscope_image_xml(-1.0e-04, -5.9e-04, "2024-04-06T15:00:00+01:00"))
    grid = load_epu_session(session_copy)
    assert len(grid.atlas) == 571 and grid.atlas.tile_names == (f"{SQUARE} (no atlas tile)",)
    extra = grid.holes.set_index("hole").loc["FoilHole_9999001"]
    assert extra["source"] == "FoilHole XML" and (extra["stage_x_um"], extra["stage_y_um"]) == (-100.0, -590.0)
    assert grid.missing[0].startswith("no Atlas.dm (looked for ") and grid.missing[0].endswith(
        "pass atlas_path=): every square is its own atlas tile")
    assert grid.missing[2:] == (
        "1 foil holes of 1 square are known only from their FoilHole/Data XML (no GridSquare .dm entry): no "
        "ice-filter intensity, position in the square image, grid-bar flag or selection",
        "1 of 571 foil holes have no ice-filter intensity (PixelIntensityMean): predicted the worst, 20 Å")
    # the atlas given explicitly
    again = load_epu_session(session_copy, atlas_path=EPU / "Atlas")
    assert again.atlas.tile_names == ("Tile_4590765",) and not again.missing[0].startswith("no Atlas.dm")


def test_epus_own_grouping_makes_the_patches_where_the_file_has_it(session_copy):
    dm = session_copy / DM
    text = dm.read_text()
    assert text.count("<PrimaryId>5665439</PrimaryId>") == 1
    dm.write_text(text.replace("<PrimaryId>5665439</PrimaryId>", "<PrimaryId>5665438</PrimaryId>"))
    grid = load_epu_session(session_copy)
    assert grid.patch_rule.startswith("EPU's own grouping") and grid.atlas.n_patches == 569
    holes = grid.holes.set_index("hole")
    assert holes.loc["FoilHole_5665439", "patch"] == holes.loc[FIRST_HOLE, "patch"] == "Patch_5665438"
    # or the primary lists its secondaries (a .NET List<int>; the other holes' lists are references to this one)
    empty = '<SecondaryTargetLocationdIds z:Id="39"><a:_items z:Id="40" z:Size="0"/><a:_size>0</a:_size>'
    ints = "".join(f'<b:int xmlns:b="http://schemas.microsoft.com/2003/10/Serialization/Arrays">{i}</b:int>'
                   for i in (5665439, 5665440))
    assert text.count(empty) == 1
    dm.write_text(text.replace(empty, f'<SecondaryTargetLocationdIds z:Id="39"><a:_items z:Id="40" z:Size="2">'
                                      f'{ints}</a:_items><a:_size>2</a:_size>'))
    holes = load_epu_session(session_copy).holes.set_index("hole")
    assert holes["patch"].nunique() == 568
    assert holes.loc[["FoilHole_5665439", "FoilHole_5665440"], "patch"].tolist() == ["Patch_5665438"] * 2


def test_a_truncated_grid_square_file_is_one_line_naming_file_and_element(session_copy):
    dm = session_copy / DM
    data = dm.read_bytes()
    dm.write_bytes(data[:len(data) // 2])
    with pytest.raises(DataFileError) as error:
        load_epu_session(session_copy)
    message = str(error.value)
    assert "\n" not in message and message.startswith(str(dm)) and "truncated XML" in message
    assert "inside element m_serializationArray/KeyValuePairOfintTargetLocationXml" in message


def test_a_malformed_value_names_file_hole_and_element(session_copy):
    dm = session_copy / DM
    text = dm.read_text()
    dm.write_text(text.replace("<PixelIntensityMean>723.8662041625372<", "<PixelIntensityMean>bright<", 1))
    with pytest.raises(DataFileError, match=r"GridSquare_4590776.dm: foil hole 5665438: element "
                                            r"FilterProperties/PixelIntensityMean is 'bright', not a number"):
        load_epu_session(session_copy)
    dm.write_text(text.replace("<b:x>1458.27393</b:x>", "<b:x>1458.27393</c:x>", 1))
    with pytest.raises(DataFileError, match=r"malformed XML \(mismatched tag.*inside element .*GridSquareShape"):
        load_epu_session(session_copy)


def test_an_entity_declaration_is_refused_not_expanded(session_copy):
    session = session_copy / "EpuSession.dm"
    session.write_text('<?xml version="1.0"?>\n<!DOCTYPE EpuSessionXml [<!ENTITY a "aaaaaaaaaa">'
                       '<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>\n'
                       '<EpuSessionXml><Name>&b;</Name></EpuSessionXml>')
    with pytest.raises(DataFileError, match=r"EpuSession.dm: its DOCTYPE declares entities .*refused"):
        load_epu_session(session_copy)
    session.write_text('<?xml version="1.0"?>\n<!DOCTYPE EpuSessionXml SYSTEM "file:///etc/passwd">\n'
                       '<EpuSessionXml><Name>&x;</Name></EpuSessionXml>')
    with pytest.raises(DataFileError, match=r"EpuSession.dm: malformed XML \(undefined entity"):
        load_epu_session(session_copy)


def test_is_epu_session(tmp_path):
    assert is_epu_session(EPU) and is_epu_session(EPU / "EpuSession.dm")
    assert not is_epu_session(tmp_path) and not is_epu_session(EPU / "README.md")
    with pytest.raises(FileNotFoundError, match="no EPU session"):
        load_epu_session(tmp_path)


def test_every_command_runs_on_the_epu_session_with_its_star_file(grid, tmp_path, capsys):
    """plan (FoilHole ids and stage positions, .nav), evaluate and benchmark against the operator's trace, data
    info: the shared EPU 3.7 session through load_grid, with a STAR file for its 868 micrographs."""
    from cryorl import load_grid
    from cryorl.cli import main

    rng = np.random.default_rng(3)
    names = grid.exposures["micrograph"].tolist()
    star = tmp_path / "micrographs_ctf.star"
    write_star(star, grid, dict(zip(names, np.round(rng.uniform(2.8, 12.0, len(names)), 3))), {})
    opened = load_grid(EPU, ctf=star)
    assert opened.format == "epu" and len(opened.atlas) == 570 and np.isfinite(opened.atlas.true_ctf).sum() == 217
    assert len(opened.human_trace()) == 217 and opened.stage is not None
    plan = tmp_path / "plan"
    assert main(["plan", "--data", str(EPU), "--budget", "60", "--out", str(plan)]) == 0
    rows = pd.read_csv(plan / "plan.csv")
    assert rows["hole"].str.match(r"FoilHole_\d+$").all()
    first = opened.atlas.index(rows["hole"][0])
    assert rows["stage_x_um"][0] == pytest.approx(opened.stage[0][first], abs=1e-3)
    assert rows["hole"][0] in (plan / "plan.nav").read_text()
    out = tmp_path / "ev"
    assert main(["evaluate", "--agent", "greedy-local", "planner", "--data", str(EPU), "--ctf", str(star),
                 "--budgets", "60", "--episodes", "3", "--out", str(out), "--quiet"]) == 0
    assert "evaluated on the 217 measured holes of 570" in capsys.readouterr().err
    steps = pd.read_csv(out / "trajectories.csv")
    assert set(steps["hole"]) <= set(opened.measured().atlas.names)
    report = tmp_path / "report"
    assert main(["benchmark", "--data", str(EPU), "--ctf", str(star), "--agents", "greedy-local", "--budgets", "60",
                 "--episodes", "2", "--out", str(report), "--quiet", "--no-steps"]) == 0
    assert "human operator" in (report / "report.md").read_text()
    assert main(["data", "info", str(EPU), "--ctf", str(star)]) == 0
    assert "quality statistics of the 217 measured holes" in capsys.readouterr().out
    assert main(["evaluate", "--agent", "greedy-local", "--data", str(EPU), "--budgets", "60", "--episodes", "1",
                 "--out", str(tmp_path / "ev2"), "--quiet"]) == 2
    assert "no hole has a measured CTFMaxRes" in capsys.readouterr().err
