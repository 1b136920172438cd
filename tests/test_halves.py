"""One pairing rule for every entry point: partners by name, anything unmatched is an error."""

import ast
from pathlib import Path

import pytest

import cryocare.halves
from cryocare.errors import InputError
from cryocare.halves import expand_paths, find_halves, half_key, match_halves


def _touch(folder: Path, *names: str) -> list[Path]:
    paths = []
    for name in names:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
        paths.append(path)
    return paths


def test_folders_whose_file_names_do_not_pair_are_refused(tmp_path):
    # Regression (issue 19): a cryoCARE config with evn_dir/ts_01.mrc and odd_dir/ts_02.mrc
    # was paired silently, the very bug of cryoCARE 0.3.0 (#52).
    even, odd = _touch(tmp_path, "evn_dir/ts_01.mrc", "odd_dir/ts_02.mrc")
    for evens, odds in (([tmp_path / "evn_dir"], [tmp_path / "odd_dir"]),
                        ([str(tmp_path / "evn_dir" / "*.mrc")], [tmp_path / "odd_dir"])):
        with pytest.raises(InputError, match="do not pair by name") as caught:
            find_halves(evens, odds)
        assert str(even) in str(caught.value) and str(odd) in str(caught.value)


def test_explicit_lists_are_paired_by_name_not_by_position(tmp_path):
    evens = _touch(tmp_path, "evn_dir/ts_01.mrc", "evn_dir/ts_02.mrc")
    odds = _touch(tmp_path, "odd_dir/ts_02.mrc", "odd_dir/ts_01.mrc")
    pairs = find_halves(evens, odds)
    assert [(e.name, o.name) for e, o in pairs] == [("ts_01.mrc", "ts_01.mrc"),
                                                    ("ts_02.mrc", "ts_02.mrc")]


def test_unmatched_file_in_explicit_lists_is_named(tmp_path):
    evens = _touch(tmp_path, "even/ts_01.mrc", "even/ts_02.mrc")
    odds = _touch(tmp_path, "odd/ts_01.mrc", "odd/ts_03.mrc")
    with pytest.raises(InputError, match=r"no partner found for .*even/ts_02.mrc, .*odd/ts_03"):
        find_halves(evens, odds)


def test_marked_files_in_even_and_odd_folders_pair(tmp_path):
    # Warp's TS_01_EVN.mrc / TS_01_ODD.mrc sorted into even/ and odd/ folders: the folder
    # marker and the name marker are both removed (was: no partner found).
    evens = _touch(tmp_path, "even/TS_01_EVN.mrc")
    odds = _touch(tmp_path, "odd/TS_01_ODD.mrc")
    assert find_halves([tmp_path / "even"], [tmp_path / "odd"]) == [(evens[0], odds[0])]


def test_marker_in_a_shared_parent_folder_says_nothing(tmp_path):
    even, odd = _touch(tmp_path / "even_odd_test", "a.mrc", "b.mrc")
    assert match_halves([even], [odd]) == [(even, odd)]


def test_in_lists_a_file_whose_half_the_name_does_not_tell_is_refused():
    with pytest.raises(InputError, match="cannot tell the half of other.mrc"):
        match_halves(["TS_01_EVN.mrc", "TS_02_EVN.mrc"], ["TS_02_ODD.mrc", "other.mrc"])


def test_by_pattern_a_file_named_as_the_other_half_is_refused(tmp_path):
    _touch(tmp_path, "a_ODD.mrc", "a_EVN.mrc")
    with pytest.raises(InputError, match=r"a_ODD.mrc \(given as even, named as odd\)"):
        find_halves([str(tmp_path / "*_ODD.mrc")], [str(tmp_path / "*_EVN.mrc")])


@pytest.mark.parametrize(("even", "odd", "warned"), [
    # Regressions (issue 29): explicit --even/--odd files were refused for their names.
    ("A.mrc", "i16o.mrc", False),
    ("TS_01_EVN.mrc", "i16o.mrc", False),
    ("odd_e.mrc", "odd_o.mrc", True),  # the even file carries the odd marker
    ("a_ODD.mrc", "a_EVN.mrc", True),  # swapped: taken as given, with a warning
    ("evn_dir/ts_01.mrc", "odd_dir/ts_02.mrc", False),  # folder markers: no file-name hint
    ("ts_01_EVN.mrc", "ts_02_ODD.mrc", True),  # marked names of two different tomograms
    ("rec_TS_1_half1.mrc", "rec_TS_1_half2.mrc", False),
])
def test_one_even_and_one_odd_file_are_taken_as_given(tmp_path, caplog, even, odd, warned):
    even_path, odd_path = _touch(tmp_path, even, odd)
    with caplog.at_level("WARNING", logger="cryocare.halves"):
        assert find_halves([even_path], [str(odd_path)]) == [(even_path, odd_path)]
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert bool(warnings) == warned, warnings
    if warned:
        assert "paired as given" in warnings[0] and even_path.name in warnings[0]


def test_one_file_given_as_both_explicit_halves_is_refused(tmp_path):
    (path,) = _touch(tmp_path, "tomo.mrc")
    with pytest.raises(InputError, match="same file as both"):
        find_halves([path], [tmp_path / "." / "tomo.mrc"])


# ---------------------------------------------------- the pipelines' own names, by folder
def test_aretomo3_folder_pairs_the_vol_halves_and_leaves_the_tilt_series_out(tmp_path):
    # AreTomo3 writes, per tilt series, the full tomogram, its halves and even/odd tilt series.
    names = ("TS_01.mrc", "TS_01_Vol.mrc", "TS_01_EVN_Vol.mrc", "TS_01_ODD_Vol.mrc",
             "TS_01_EVN.mrc", "TS_01_ODD.mrc", "TS_02_Vol.mrc", "TS_02_EVN_Vol.mrc",
             "TS_02_ODD_Vol.mrc", "TS_02_EVN.mrc", "TS_02_ODD.mrc", "TS_01_CTF.mrc")
    _touch(tmp_path, *names)
    pairs = find_halves([tmp_path], [tmp_path])
    assert [(e.name, o.name) for e, o in pairs] == [
        ("TS_01_EVN_Vol.mrc", "TS_01_ODD_Vol.mrc"), ("TS_02_EVN_Vol.mrc", "TS_02_ODD_Vol.mrc")]
    globbed = find_halves([str(tmp_path / "*_EVN*.mrc")], [str(tmp_path / "*_ODD*.mrc")])
    assert globbed == pairs


def test_aretomo3_style_evn_odd_names_without_vol_pair(tmp_path):
    _touch(tmp_path, "Position_3_EVN.mrc", "Position_3_ODD.mrc", "Position_3.mrc")
    pairs = find_halves([tmp_path], [tmp_path])
    assert [(e.name, o.name) for e, o in pairs] == [("Position_3_EVN.mrc", "Position_3_ODD.mrc")]


def test_warptools_even_and_odd_folders_pair(tmp_path):
    rec = tmp_path / "warp_tiltseries" / "reconstruction"
    evens = _touch(rec, "even/TS_2_10.00Apx.mrc", "even/TS_1_10.00Apx.mrc")
    odds = _touch(rec, "odd/TS_1_10.00Apx.mrc", "odd/TS_2_10.00Apx.mrc")
    _touch(rec, "TS_1_10.00Apx.mrc", "TS_2_10.00Apx.mrc")  # the full reconstructions
    expected = [(evens[1], odds[0]), (evens[0], odds[1])]
    assert find_halves([rec / "even"], [rec / "odd"]) == expected
    assert find_halves([rec], [rec]) == expected  # the parent folder for both halves


def test_warptools_even_odd_suffixes_pair(tmp_path):
    _touch(tmp_path, "TS_1_10.00Apx_even.mrc", "TS_1_10.00Apx_odd.mrc", "TS_1_10.00Apx.mrc")
    pairs = find_halves([str(tmp_path / "*_even.mrc")], [str(tmp_path / "*_odd.mrc")])
    assert [(e.name, o.name) for e, o in pairs] == [("TS_1_10.00Apx_even.mrc",
                                                      "TS_1_10.00Apx_odd.mrc")]


def test_relion5_half1_half2_pair(tmp_path):
    _touch(tmp_path / "Tomograms" / "job007" / "tomograms", "rec_TS_01_half1.mrc",
           "rec_TS_01_half2.mrc", "rec_TS_01.mrc", "rec_TS_10_half2.mrc", "rec_TS_10_half1.mrc")
    folder = tmp_path / "Tomograms" / "job007" / "tomograms"
    pairs = find_halves([folder], [folder])
    assert [(e.name, o.name) for e, o in pairs] == [
        ("rec_TS_01_half1.mrc", "rec_TS_01_half2.mrc"), ("rec_TS_10_half1.mrc",
                                                         "rec_TS_10_half2.mrc")]


def test_imod_evn_odd_pair(tmp_path):
    _touch(tmp_path, "tomo3_EVN.rec", "tomo3_ODD.rec", "tomo3.rec", "tomo4_EVN.mrc",
           "tomo4_ODD.mrc", "tomo4.mrc", "tomo3.st")
    pairs = find_halves([tmp_path], [tmp_path])
    assert [(e.name, o.name) for e, o in pairs] == [("tomo3_EVN.rec", "tomo3_ODD.rec"),
                                                    ("tomo4_EVN.mrc", "tomo4_ODD.mrc")]
    pairs = find_halves([str(tmp_path / "*_EVN.rec")], [str(tmp_path / "*_ODD.rec")])
    assert [(e.name, o.name) for e, o in pairs] == [("tomo3_EVN.rec", "tomo3_ODD.rec")]


def test_one_file_as_both_halves_is_refused():
    with pytest.raises(InputError, match="same file as both"):
        match_halves(["x.mrc"], ["./x.mrc"])


def test_one_folder_for_both_halves_is_split_by_the_names(tmp_path):
    evens = _touch(tmp_path, "TS_1_EVN.mrc", "TS_2_EVN.mrc")
    odds = _touch(tmp_path, "TS_2_ODD.mrc", "TS_1_ODD.mrc")
    assert find_halves([tmp_path], [tmp_path]) == [(evens[0], odds[1]), (evens[1], odds[0])]


def test_folders_of_tiff_tomograms_are_expanded(tmp_path):
    evens = _touch(tmp_path, "even/TS_1.tif")
    odds = _touch(tmp_path, "odd/TS_1.tif")
    assert find_halves([tmp_path / "even"], [tmp_path / "odd"]) == [(evens[0], odds[0])]


def test_halves_imports_nothing_of_cryocare_but_errors():
    tree = ast.parse(Path(cryocare.halves.__file__).read_text())
    local = {node.module for node in ast.walk(tree)
             if isinstance(node, ast.ImportFrom) and node.level > 0}
    assert local == {"errors"}


@pytest.mark.parametrize(("path", "half", "stem"), [
    ("TS_01_EVN.mrc", "even", "TS_01"), ("TS_01_ODD.mrc", "odd", "TS_01"),
    ("rec_TS_7_half1.mrc", "even", "rec_TS_7"), ("a/even/TS_01.rec", "even", "TS_01"),
    ("tomo_even_b4.mrc", "even", "tomo_b4"), ("EVN.mrc", "even", "EVN"),
    ("plain.mrc", "odd", "plain"),
])
def test_pair_stem_names_the_pair_without_its_marker(path, half, stem):
    from cryocare.halves import pair_stem

    assert pair_stem(path, half) == stem


# --- keys, markers and expansion (formerly tests/test_pairing.py) -------------------


@pytest.mark.parametrize(
    ("even", "odd"),
    [
        ("TS_01_EVN.mrc", "TS_01_ODD.mrc"),
        ("tomo3_even.rec", "tomo3_odd.rec"),
        ("rec_TS_7_half1.mrc", "rec_TS_7_half2.mrc"),
        ("even/TS_01.mrc", "odd/TS_01.mrc"),
        ("data/EVEN/x.mrc", "data/Odd/x.mrc"),
        ("even.mrc", "odd.mrc"),
    ],
)
def test_keys_of_partners_agree(even, odd):
    assert half_key(even, "even") == half_key(odd, "odd") is not None


def test_markers_must_be_whole_words():
    assert half_key("seventeen.mrc", "even") is None
    assert half_key("oddity_1.mrc", "odd") is None


def test_pairs_by_name_not_by_order():
    # Regression: cryoCARE 0.3.0 zipped two unsorted folder listings.
    evens = ["b_EVN.mrc", "c_EVN.mrc", "a_EVN.mrc"]
    odds = ["c_ODD.mrc", "a_ODD.mrc", "b_ODD.mrc"]
    pairs = match_halves(evens, odds)
    assert [(e.name, o.name) for e, o in pairs] == [
        ("a_EVN.mrc", "a_ODD.mrc"), ("b_EVN.mrc", "b_ODD.mrc"), ("c_EVN.mrc", "c_ODD.mrc")]


def test_a_single_unmarked_pair_is_taken_as_given():
    assert match_halves(["x.mrc"], ["y.mrc"]) == [(Path("x.mrc"), Path("y.mrc"))]


def test_unmatched_files_are_named():
    with pytest.raises(InputError, match="no partner found for .*b_EVN.mrc"):
        match_halves(["a_EVN.mrc", "b_EVN.mrc"], ["a_ODD.mrc"])
    with pytest.raises(InputError, match="cannot tell the half of x.mrc"):
        match_halves(["x.mrc", "a_EVN.mrc"], ["a_ODD.mrc", "b_ODD.mrc"])


def test_duplicates_are_refused():
    with pytest.raises(InputError, match="both be the even half"):
        match_halves(["a_EVN.mrc", "a_even.mrc"], ["a_ODD.mrc"])


def test_folders_and_globs(tmp_path):
    for half in ("even", "odd"):
        (tmp_path / half).mkdir()
        for name in ("t2.mrc", "t1.mrc", "notes.txt"):
            (tmp_path / half / name).write_bytes(b"")
    pairs = find_halves([tmp_path / "even"], [str(tmp_path / "odd" / "*.mrc")])
    assert [(e.parent.name, e.name, o.parent.name, o.name) for e, o in pairs] == [
        ("even", "t1.mrc", "odd", "t1.mrc"), ("even", "t2.mrc", "odd", "t2.mrc")]
    with pytest.raises(InputError, match="matches no file"):
        expand_paths([str(tmp_path / "*.rec")])
    with pytest.raises(InputError, match="no such file or folder"):
        expand_paths([tmp_path / "missing.mrc"])
