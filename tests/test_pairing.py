from pathlib import Path

import pytest

from cryocare.errors import InputError
from cryocare.halves import expand_paths, find_halves, half_key, match_halves


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
