import numpy as np
import pandas as pd
import pytest

from cryorl.atlas import Atlas, AtlasError
from tests.conftest import make_tiny_atlas


def test_tiny_atlas_basics(tiny_atlas):
    assert len(tiny_atlas) == 8
    assert (tiny_atlas.n_tiles, tiny_atlas.n_squares, tiny_atlas.n_patches) == (2, 3, 4)
    assert tiny_atlas.is_good().tolist() == [True, True, False, True, False, True, False, True]
    assert tiny_atlas.ctf_fit_failed.tolist() == [False] * 4 + [True] + [False] * 3
    assert tiny_atlas.index("h5") == 5
    assert "8 holes in 4 patches, 3 squares, 2 tiles" in repr(tiny_atlas)
    with pytest.raises(KeyError, match="no hole named 'nope'"):
        tiny_atlas.index("nope")


def test_atlas_is_immutable(tiny_atlas):
    with pytest.raises(ValueError):
        tiny_atlas.true_ctf[0] = 1.0
    with pytest.raises(AttributeError):
        tiny_atlas.budget = 3


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_round_trip_through_files(tmp_path, aldolase, suffix):
    path = aldolase.save(tmp_path / f"holes{suffix}")
    loaded = Atlas.load(path)
    pd.testing.assert_frame_equal(loaded.to_frame(), aldolase.to_frame())
    assert loaded.position_unit == "px"
    assert [p for p in tmp_path.iterdir() if p.name.endswith(".part")] == []


def test_saved_hole_table_reads_with_plain_pandas_and_names_its_unit(tmp_path, tiny_atlas):
    from dataclasses import replace

    path = replace(tiny_atlas, position_unit="um").save(tmp_path / "holes.csv")
    frame = pd.read_csv(path)                                      # no comment line to skip
    assert list(frame.columns[:6]) == ["hole", "tile", "square", "patch", "x_um", "y_um"]
    assert frame["x_um"].tolist() == tiny_atlas.x.tolist()
    assert Atlas.load(path).position_unit == "um"
    old = tmp_path / "old.csv"                                     # the 0.1.0 layout still loads
    old.write_text("# position_unit=px\n" + tiny_atlas.to_frame().to_csv(index=False))
    assert Atlas.load(old).position_unit == "px" and len(Atlas.load(old)) == 8


def test_round_trip_through_frame_keeps_units(tiny_atlas):
    from dataclasses import replace

    atlas = replace(tiny_atlas, position_unit="um")
    again = Atlas.from_frame(atlas.to_frame(), position_unit="um")
    np.testing.assert_array_equal(again.patch, atlas.patch)
    np.testing.assert_array_equal(again.true_ctf, atlas.true_ctf)
    assert again.patch_names == atlas.patch_names


def _frame(**changes):
    frame = make_tiny_atlas().to_frame()
    for column, (row, value) in changes.items():
        frame.loc[row, column] = value
    return frame


@pytest.mark.parametrize("changes, message", [
    ({"hole": (3, "h1")}, r"duplicate hole name 'h1' at holes \[1, 3\]"),
    ({"predicted_ctf": (2, np.nan)}, r"hole 2 \('h2'\): predicted CTFMaxRes is nan"),
    ({"true_ctf": (6, -1.0)}, r"hole 6 \('h6'\): true CTFMaxRes -1.0 Å is negative"),
    ({"square": (6, "A1")}, r"hole 6 \('h6'\): square 'A1' appears in more than one tile"),
    ({"square": (3, "A2")},
     r"hole 4 \('h4'\): patch 'p2' appears in more than one square \('A2' at hole 3, 'A1' here\)"),
])
def test_validation_names_the_offending_hole(changes, message):
    with pytest.raises(AtlasError, match=message):
        Atlas.from_frame(_frame(**changes))


def test_missing_columns_are_named():
    with pytest.raises(AtlasError, match=r"lacks columns \['true_ctf'\]"):
        Atlas.from_frame(make_tiny_atlas().to_frame().drop(columns="true_ctf"))


def test_subset_drops_unused_levels(tiny_atlas):
    sub = tiny_atlas.subset(tiny_atlas.tile == 1)
    assert len(sub) == 2 and sub.n_tiles == 1 and sub.patch_names == ("p4",)
    assert sub.names.tolist() == ["h6", "h7"]
