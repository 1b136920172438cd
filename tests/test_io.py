"""Tests of cryocare.io: MRC round trips, headers, atomic writes and clear errors.

Every test uses tiny arrays in ``tmp_path`` and a seeded RNG. pytest runs with
``filterwarnings = error``, so any warning leaking from mrcfile or NumPy fails.
"""

import contextlib
import logging
import os

import mrcfile
import numpy as np
import pytest

from cryocare import __version__
from cryocare.errors import InputError, OutputExistsError
from cryocare.io import VolumeInfo, read, read_info, read_pair, write


@pytest.fixture
def rng():
    return np.random.default_rng(20240611)


def _volume(rng, shape=(6, 7, 8)):
    return rng.normal(5.0, 2.0, size=shape).astype(np.float32)


@contextlib.contextmanager
def _raises(exc, *paths):
    """Expect `exc` with a one-line message naming every path."""
    with pytest.raises(exc) as info:
        yield info
    message = str(info.value)
    assert "\n" not in message, message
    for path in paths:
        assert str(path) in message, message


def _edit_header(path, **fields):
    """Set raw header fields of an existing MRC file (to fake odd files)."""
    with mrcfile.open(path, mode="r+") as mrc:
        for name, value in fields.items():
            setattr(mrc.header, name, value)


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


# --- round trips ---------------------------------------------------------


@pytest.mark.parametrize("shape", [(9, 11), (4, 9, 11)], ids=["2d", "3d"])
def test_round_trip_values_dtype_shape(tmp_path, rng, shape):
    data = _volume(rng, shape)
    out = write(tmp_path / "v.mrc", data)
    assert out == tmp_path / "v.mrc"
    back = read(out)
    assert back.dtype == np.float32
    assert back.shape == shape
    np.testing.assert_array_equal(back, data)
    assert read_info(out).shape == shape


def test_integer_and_float64_input_written_as_float32(tmp_path):
    data = np.arange(24, dtype=np.int64).reshape(2, 3, 4)
    path = write(tmp_path / "v.mrc", data)
    assert read_info(path).dtype == np.float32
    np.testing.assert_array_equal(read(path), data.astype(np.float32))


@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.uint8, np.uint16, np.float16])
def test_other_modes_read_as_float32(tmp_path, dtype):
    data = np.arange(-12, 12).reshape(2, 3, 4)
    if np.dtype(dtype).kind == "u":
        data = data + 12
    path = tmp_path / "v.mrc"
    mrcfile.write(path, data.astype(dtype))
    back = read(path)
    assert back.dtype == np.float32
    np.testing.assert_array_equal(back, data.astype(np.float32))  # exact: all fit in float32


def test_int16_file_reads_as_float32_and_info_reports_int16(tmp_path):
    data = np.array([[[-300, 0], [1, 32000]]], dtype=np.int16)
    path = tmp_path / "v.rec"
    mrcfile.write(path, data)
    assert read_info(path).dtype == np.int16
    np.testing.assert_array_equal(read(path), data.astype(np.float32))


def test_big_endian_file_reads_correctly(tmp_path, rng):
    data = _volume(rng)
    path = tmp_path / "v.mrc"
    mrcfile.write(path, data.astype(">f4"))
    np.testing.assert_array_equal(read(path), data)
    np.testing.assert_array_equal(read(path, mmap=True), data)


def test_extensions_any_case_and_stacks(tmp_path, rng):
    data = _volume(rng)
    for name in ["a.MRC", "b.Rec", "c.st", "d.mrcs", "e.map"]:
        path = write(tmp_path / name, data, voxel_size=(12.0, 10.0, 8.0))
        np.testing.assert_array_equal(read(path), data)
        assert read_info(path).voxel_size == (12.0, 10.0, 8.0)
    with mrcfile.open(tmp_path / "d.mrcs", header_only=True) as mrc:
        assert mrc.header.ispg == 0  # MRC2014: space group 0 marks an image stack
    with mrcfile.open(tmp_path / "a.MRC", header_only=True) as mrc:
        assert mrc.header.ispg == 1  # a volume


def test_read_accepts_any_extension(tmp_path, rng):
    data = _volume(rng)
    path = tmp_path / "v.dat"
    mrcfile.write(path, data)
    np.testing.assert_array_equal(read(path), data)


# --- header: voxel size, origin, labels, statistics ------------------------


def test_voxel_size_and_origin_kept_in_zyx_order(tmp_path, rng):
    path = write(tmp_path / "v.mrc", _volume(rng), voxel_size=(12.0, 10.0, 8.0),
                 origin=(-3.0, 2.5, 100.0))
    info = read_info(path)
    assert info.voxel_size == (12.0, 10.0, 8.0)
    assert info.origin == (-3.0, 2.5, 100.0)
    with mrcfile.open(path, header_only=True) as mrc:  # the header itself is (x, y, z)
        assert mrc.voxel_size.item() == (8.0, 10.0, 12.0)
        assert mrc.header.origin.item() == (100.0, 2.5, -3.0)


def test_2d_image_keeps_voxel_size(tmp_path, rng):
    path = write(tmp_path / "v.mrc", _volume(rng, (5, 6)), voxel_size=(1.0, 2.0, 3.0))
    assert read_info(path).voxel_size == (1.0, 2.0, 3.0)


def test_isotropic_voxel_size_and_defaults(tmp_path, rng, caplog):
    info = read_info(write(tmp_path / "a.mrc", _volume(rng), voxel_size=4.5))
    assert info.voxel_size == (4.5, 4.5, 4.5)
    assert info.origin == (0.0, 0.0, 0.0)
    with caplog.at_level(logging.WARNING, logger="cryocare.io"):
        info = read_info(write(tmp_path / "b.mrc", _volume(rng)))
    assert info.voxel_size == (0.0, 0.0, 0.0)


def test_like_copies_voxel_size_and_origin(tmp_path, rng):
    source = write(tmp_path / "src.mrc", _volume(rng), voxel_size=(12.0, 10.0, 8.0),
                   origin=(1.0, 2.0, 3.0))
    for like in (source, str(source), read_info(source)):
        out = write(tmp_path / "out.mrc", _volume(rng), like=like, overwrite=True)
        info = read_info(out)
        assert (info.voxel_size, info.origin) == ((12.0, 10.0, 8.0), (1.0, 2.0, 3.0))
    out = write(tmp_path / "out.mrc", _volume(rng), like=source, voxel_size=(2.0, 2.0, 2.0),
                overwrite=True)
    info = read_info(out)
    assert (info.voxel_size, info.origin) == ((2.0, 2.0, 2.0), (1.0, 2.0, 3.0))


def test_label_is_ours_only(tmp_path, rng):
    info = read_info(write(tmp_path / "a.mrc", _volume(rng)))
    assert len(info.labels) == 1
    assert info.labels[0].startswith(f"cryocare {__version__}: written ")
    assert info.labels[0].endswith("Z")
    info = read_info(write(tmp_path / "b.mrc", _volume(rng), label="denoised " + "x" * 100))
    assert info.labels[0].startswith(f"cryocare {__version__}: denoised xxx")
    assert len(info.labels[0]) == 80
    info = read_info(write(tmp_path / "c.mrc", _volume(rng), label="from tömo\t1.mrc"))
    assert info.labels[0].startswith(f"cryocare {__version__}: from t?mo?1.mrc ")


def _header_stats(path):
    with mrcfile.open(path, header_only=True) as mrc:
        h = mrc.header
        return float(h.dmin), float(h.dmax), float(h.dmean), float(h.rms)


def _assert_stats_match(path, data):
    # dmin/dmax are float32 values of the data: exact. dmean/rms (MRC2014: rms is the
    # standard deviation about the mean) are accumulated in float32 by mrcfile with
    # pairwise summation: relative error ~ eps32 * log2(n) ~ 1e-6 here, so rel=1e-5.
    ref = data.astype(np.float64)
    dmin, dmax, dmean, rms = _header_stats(path)
    assert (dmin, dmax) == (ref.min(), ref.max())
    assert dmean == pytest.approx(ref.mean(), rel=1e-5)
    assert rms == pytest.approx(ref.std(), rel=1e-5)


def test_header_statistics_match_numpy(tmp_path, rng):
    data = _volume(rng, (16, 16, 16))
    _assert_stats_match(write(tmp_path / "v.mrc", data), data)


def test_header_statistics_follow_overwrite_regression_cryocare_0_3_0(tmp_path, rng):
    # cryoCARE 0.3.0 left stale dmin/dmax/dmean/rms in headers of rewritten files.
    path = tmp_path / "v.mrc"
    write(path, _volume(rng))
    second = 10.0 * _volume(rng) - 40.0
    write(path, second, overwrite=True)
    _assert_stats_match(path, second)


# --- memory mapping and pairs ------------------------------------------------


def test_mmap_is_read_only_and_equal(tmp_path, rng):
    path = write(tmp_path / "v.mrc", _volume(rng))
    mapped = read(path, mmap=True)
    assert isinstance(mapped, np.memmap)
    assert not mapped.flags.writeable
    with pytest.raises(ValueError):
        mapped[0, 0, 0] = 1.0
    np.testing.assert_array_equal(mapped, read(path))


def test_mmap_of_int16_keeps_file_dtype(tmp_path):
    path = tmp_path / "v.mrc"
    mrcfile.write(path, np.arange(8, dtype=np.int16).reshape(2, 2, 2))
    mapped = read(path, mmap=True)
    assert mapped.dtype == np.int16
    np.testing.assert_array_equal(mapped, read(path))


def test_mmap_stays_valid_when_file_is_replaced(tmp_path, rng):
    data = _volume(rng)
    path = write(tmp_path / "v.mrc", data)
    mapped = read(path, mmap=True)
    write(path, mapped * 2, overwrite=True)  # atomic replace: the map keeps the old file
    np.testing.assert_array_equal(mapped, data)
    np.testing.assert_array_equal(read(path), data * 2)


@pytest.mark.parametrize("mmap", [False, True])
def test_read_pair(tmp_path, rng, mmap):
    even_data, odd_data = _volume(rng), _volume(rng)
    even = write(tmp_path / "even.mrc", even_data, voxel_size=(12.0, 10.0, 8.0))
    odd = write(tmp_path / "odd.mrc", odd_data, voxel_size=(12.0, 10.0, 8.005))  # within 1e-3
    e, o, info = read_pair(even, odd, mmap=mmap)
    np.testing.assert_array_equal(e, even_data)
    np.testing.assert_array_equal(o, odd_data)
    assert isinstance(info, VolumeInfo)
    assert (info.path, info.voxel_size) == (even, (12.0, 10.0, 8.0))


def test_read_pair_shape_mismatch_names_both_files(tmp_path, rng):
    even = write(tmp_path / "even.mrc", _volume(rng, (4, 5, 6)))
    odd = write(tmp_path / "odd.mrc", _volume(rng, (4, 5, 7)))
    with _raises(InputError, even, odd) as err:
        read_pair(even, odd)
    assert "shape" in str(err.value)


def test_read_pair_voxel_size_mismatch_names_both_files(tmp_path, rng):
    even = write(tmp_path / "even.mrc", _volume(rng), voxel_size=10.0)
    odd = write(tmp_path / "odd.mrc", _volume(rng), voxel_size=10.02)
    with _raises(InputError, even, odd) as err:
        read_pair(even, odd)
    assert "voxel size" in str(err.value)


# --- atomic, non-destructive writes --------------------------------------------


def test_never_overwrites_without_permission(tmp_path, rng):
    path = write(tmp_path / "v.mrc", _volume(rng))
    before = path.read_bytes()
    with _raises(OutputExistsError, path):
        write(path, _volume(rng))
    assert path.read_bytes() == before
    assert _leftovers(tmp_path) == []


def test_no_temporary_files_after_success(tmp_path, rng):
    write(tmp_path / "v.mrc", _volume(rng))
    write(tmp_path / "v.mrc", _volume(rng), overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.mrc"]


def test_failing_write_leaves_no_temporary_file_and_target_untouched(tmp_path, rng):
    path = write(tmp_path / "v.mrc", _volume(rng))
    before = path.read_bytes()
    bad = _volume(rng)
    bad[1, 2, 3] = np.nan
    with _raises(InputError, path):
        write(path, bad, overwrite=True)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.mrc"]


def test_failure_during_replace_removes_temporary_file(tmp_path, rng, monkeypatch):
    path = write(tmp_path / "v.mrc", _volume(rng))
    before = path.read_bytes()

    def broken_replace(src, dst):
        assert os.path.exists(src)  # the temporary file was complete
        raise OSError("disk on fire")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk on fire"):
        write(path, _volume(rng), overwrite=True)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.mrc"]


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int16])
def test_input_array_is_not_modified(tmp_path, rng, dtype):
    data = (_volume(rng) * 10).astype(dtype)
    copy = data.copy()
    write(tmp_path / "v.mrc", data)
    np.testing.assert_array_equal(data, copy)
    assert data.dtype == dtype and data.flags.writeable


# --- errors on read -------------------------------------------------------------


def test_missing_file(tmp_path):
    path = tmp_path / "missing.mrc"
    with _raises(InputError, path) as err:
        read(path)
    assert "not found" in str(err.value)


def test_directory_given_as_file(tmp_path):
    with _raises(InputError, tmp_path) as err:
        read_info(tmp_path)
    assert "directory" in str(err.value)


def test_text_file_is_not_mrc(tmp_path):
    path = tmp_path / "notes.mrc"
    path.write_text("not a tomogram\n")
    with _raises(InputError, path) as err:
        read(path)
    assert "not an MRC file" in str(err.value)


def test_png_file_is_not_mrc(tmp_path):
    path = tmp_path / "image.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8)  # longer than a header
    with _raises(InputError, path) as err:
        read(path)
    assert "not an MRC file" in str(err.value)


def test_truncated_data(tmp_path, rng):
    path = write(tmp_path / "v.mrc", _volume(rng))
    os.truncate(path, path.stat().st_size - 10)
    with _raises(InputError, path) as err:
        read(path, mmap=True)
    assert "truncated" in str(err.value)


def test_huge_extended_header_size_is_rejected_without_allocating_it(tmp_path, rng):
    path = write(tmp_path / "v.mrc", _volume(rng))
    _edit_header(path, nsymbt=2**31 - 1)  # mrcfile would allocate 2 GiB to read it
    with _raises(InputError, path) as err:
        read_info(path)
    assert "extended header" in str(err.value)


def test_extra_bytes_after_data_are_logged_not_warned(tmp_path, rng, caplog):
    data = _volume(rng)
    path = write(tmp_path / "v.mrc", data, voxel_size=1.0)
    with open(path, "ab") as f:
        f.write(b"\0" * 16)
    with caplog.at_level(logging.WARNING, logger="cryocare.io"):
        np.testing.assert_array_equal(read(path), data)
    assert "16 bytes after the data block" in caplog.text


def test_complex_mode_4(tmp_path):
    path = tmp_path / "fft.mrc"
    mrcfile.write(path, np.ones((2, 3, 4), dtype=np.complex64))
    with _raises(InputError, path) as err:
        read(path)
    assert "complex" in str(err.value)


@pytest.mark.parametrize(("mode", "word"), [(3, "complex"), (101, "unsupported"),
                                            (7, "unsupported")])
def test_complex_and_unsupported_modes(tmp_path, rng, mode, word):
    path = write(tmp_path / "v.mrc", _volume(rng))
    _edit_header(path, mode=mode)
    with _raises(InputError, path) as err:
        read_info(path)
    assert word in str(err.value)


def test_volume_stack_rejected(tmp_path):
    path = tmp_path / "stack.mrc"
    mrcfile.write(path, np.zeros((2, 2, 3, 4), dtype=np.float32))
    with _raises(InputError, path):
        read(path)


def test_zero_voxel_size_is_logged_not_warned(tmp_path, rng, caplog):
    path = tmp_path / "v.mrc"
    mrcfile.write(path, _volume(rng))  # mrcfile's default cell: voxel size 0
    with caplog.at_level(logging.WARNING, logger="cryocare.io"):
        info = read_info(path)
    assert info.voxel_size == (0.0, 0.0, 0.0)
    assert "voxel size" in caplog.text and str(path) in caplog.text


def test_zero_cell_sampling_is_unknown_voxel_size(tmp_path, rng, caplog):
    path = write(tmp_path / "v.mrc", _volume(rng), voxel_size=3.0)
    _edit_header(path, mx=0)
    with caplog.at_level(logging.WARNING, logger="cryocare.io"):
        assert read_info(path).voxel_size == (3.0, 3.0, 0.0)


def test_unknown_machine_stamp_is_logged_and_read(tmp_path, rng, caplog):
    data = _volume(rng)
    path = write(tmp_path / "v.mrc", data)
    _edit_header(path, machst=[0, 0, 0, 0])
    with caplog.at_level(logging.WARNING, logger="cryocare.io"):
        np.testing.assert_array_equal(read(path), data)
    assert "machine stamp" in caplog.text


# --- errors on write ----------------------------------------------------------


def test_write_rejects_other_extensions(tmp_path, rng):
    path = tmp_path / "v.tif"
    with _raises(InputError, path):
        write(path, _volume(rng))
    assert list(tmp_path.iterdir()) == []


def test_write_needs_existing_folder(tmp_path, rng):
    path = tmp_path / "no" / "v.mrc"
    with _raises(InputError, path.parent):
        write(path, _volume(rng))
    assert not path.parent.exists()


@pytest.mark.parametrize(
    "data",
    [
        np.ones((2, 3, 4), dtype=np.complex64),
        np.ones((2, 3, 4), dtype=bool),
        np.array([[None, 1], [2, 3]], dtype=object),
        np.ones(5, dtype=np.float32),
        np.ones((2, 2, 2, 2), dtype=np.float32),
        np.ones((0, 3, 4), dtype=np.float32),
        np.full((2, 3), np.inf),
        np.full((2, 3), 1e300),  # beyond float32
    ],
    ids=["complex", "bool", "object", "1d", "4d", "empty", "inf", "overflow"],
)
def test_write_rejects_bad_data(tmp_path, data):
    path = tmp_path / "v.mrc"
    with _raises(InputError, path):
        write(path, data)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "options",
    [
        {"voxel_size": (1.0, 2.0)},
        {"voxel_size": -1.0},
        {"voxel_size": "big"},
        {"origin": 5.0},
        {"origin": (0.0, np.nan, 0.0)},
        {"like": np.zeros(3)},
    ],
)
def test_write_rejects_bad_options(tmp_path, rng, options):
    path = tmp_path / "v.mrc"
    with _raises(InputError, path):
        write(path, _volume(rng), **options)
    assert list(tmp_path.iterdir()) == []


def test_write_like_missing_file_names_it(tmp_path, rng):
    like = tmp_path / "missing.mrc"
    with _raises(InputError, like):
        write(tmp_path / "v.mrc", _volume(rng), like=like)


# --- streaming writer (open_writer) ----------------------------------------


@pytest.mark.parametrize("shape", [(9, 11), (7, 9, 11)], ids=["2d", "3d"])
def test_slab_writer_equals_write_with_the_same_header_stats(tmp_path, rng, shape):
    from cryocare.io import open_writer

    data = _volume(rng, shape) + 100.0  # an offset tests the stable variance update
    with open_writer(tmp_path / "s.mrc", shape, voxel_size=(3.0, 2.0, 1.0)) as writer:
        for start in range(0, shape[0], 3):
            writer.write(data[start:start + 3])
    write(tmp_path / "w.mrc", data, voxel_size=(3.0, 2.0, 1.0))
    np.testing.assert_array_equal(read(tmp_path / "s.mrc"), data)
    assert read_info(tmp_path / "s.mrc").voxel_size == (3.0, 2.0, 1.0)
    with mrcfile.open(tmp_path / "s.mrc") as s, mrcfile.open(tmp_path / "w.mrc") as w:
        assert s.header.dmin == w.header.dmin and s.header.dmax == w.header.dmax
        # mrcfile sums in float32, the writer in float64: equal to float32 precision
        np.testing.assert_allclose(s.header.dmean, w.header.dmean, rtol=1e-6)
        np.testing.assert_allclose(s.header.rms, w.header.rms, rtol=1e-5)
        assert (s.header.nx, s.header.ny, s.header.nz) == (w.header.nx, w.header.ny, w.header.nz)
    import io as text_io

    assert mrcfile.validate(str(tmp_path / "s.mrc"), print_file=text_io.StringIO())


def test_interrupted_slab_writing_leaves_no_file(tmp_path, rng):
    from cryocare.io import open_writer

    target = tmp_path / "s.mrc"
    with pytest.raises(KeyboardInterrupt), open_writer(target, (4, 5, 6)) as writer:
        writer.write(_volume(rng, (2, 5, 6)))
        raise KeyboardInterrupt
    assert not target.exists() and _leftovers(tmp_path) == []


def test_incomplete_or_wrong_slabs_are_refused_and_leave_no_file(tmp_path, rng):
    from cryocare.io import open_writer

    target = tmp_path / "s.mrc"
    with _raises(InputError, target), open_writer(target, (4, 5, 6)) as writer:
        writer.write(_volume(rng, (3, 5, 6)))
    with _raises(InputError, target), open_writer(target, (4, 5, 6)) as writer:
        writer.write(_volume(rng, (2, 6, 5)))
    assert not target.exists() and _leftovers(tmp_path) == []


def test_slab_writer_never_replaces_without_overwrite(tmp_path, rng):
    from cryocare.io import open_writer

    target = write(tmp_path / "s.mrc", _volume(rng, (2, 3, 4)))
    before = target.read_bytes()
    with _raises(OutputExistsError, target):
        open_writer(target, (2, 3, 4))
    assert target.read_bytes() == before
    with open_writer(target, (2, 3, 4), overwrite=True) as writer:
        writer.write(np.zeros((2, 3, 4), np.float32))
    assert float(np.abs(read(target)).max()) == 0.0


def _resident_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs Linux /proc")
def test_release_pages_drops_mapped_pages_from_resident_memory(tmp_path, rng):
    from cryocare.io import release_pages

    volume = rng.normal(size=(64, 256, 256)).astype(np.float32)  # 16 MiB
    write(tmp_path / "vol.mrc", volume)
    mapped = read(tmp_path / "vol.mrc", mmap=True)
    before = _resident_bytes()
    total = float(mapped.sum(dtype=np.float64))  # touches every page
    touched = _resident_bytes()
    assert touched - before > 12 * 2**20
    assert release_pages(mapped[10:20])  # a view finds its mapping
    assert touched - _resident_bytes() > 12 * 2**20
    assert float(mapped.sum(dtype=np.float64)) == total  # still readable, unchanged
    assert not release_pages(np.array(mapped))  # an array in memory: nothing to drop


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs Linux /proc")
def test_read_region_of_a_memory_map_keeps_almost_nothing_resident(tmp_path, rng):
    from cryocare.io import read_region

    # Rows of 4 KiB: every row of a tile lies on its own page, 8 MiB for this region.
    volume = rng.normal(size=(32, 1024, 1024)).astype(np.float32)
    write(tmp_path / "vol.mrc", volume)
    mapped = read(tmp_path / "vol.mrc", mmap=True)
    region = (slice(0, 32), slice(300, 364), slice(500, 540))
    before = _resident_bytes()
    block = read_region(mapped, region)
    assert _resident_bytes() - before < 4 * 2**20
    assert block.dtype == np.float32 and np.array_equal(block, volume[region])
    assert np.array_equal(read_region(volume, region), volume[region])  # plain arrays too


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs Linux /proc")
def test_read_region_drops_only_the_pages_it_read(tmp_path, rng):
    # Dropping the whole mapping after every slice walked the page tables of the whole
    # file once per slice; only the slices read are dropped now, into ``out`` if given.
    from cryocare.io import read_region

    volume = rng.normal(size=(64, 256, 256)).astype(np.float32)  # 256 KiB per slice
    write(tmp_path / "vol.mrc", volume)
    mapped = read(tmp_path / "vol.mrc", mmap=True)
    out = np.zeros((4, 256, 256), np.float32)
    float(mapped.sum(dtype=np.float64))  # every page of the file resident
    touched = _resident_bytes()
    got = read_region(mapped, (slice(8, 12), slice(None), slice(None)), out=out)
    dropped = touched - _resident_bytes()
    assert got is out and np.array_equal(out, volume[8:12])
    assert 0.5 * 2**20 < dropped < 4 * 2**20  # the 1 MiB read, not the 16 MiB file


# --- labels: kept from the source, ours appended ----------------------------------------


def test_write_keeps_the_labels_of_the_source_header(tmp_path, rng):
    # Regression (issue 19): writing with like= dropped the labels already in the header,
    # and with them the provenance (IMOD appends its label to the existing ones).
    source = tmp_path / "imod.mrc"
    with mrcfile.new(source) as mrc:
        mrc.set_data(_volume(rng))
        mrc.header.nlabl = 0
        mrc.header.label = b""
        for text in ("tilt: Reconstructed by back-projection", "trimvol: Trimmed"):
            mrc.add_label(text)
    out = write(tmp_path / "den.mrc", _volume(rng), like=source, label="denoised")
    labels = read_info(out).labels
    assert labels[:2] == ("tilt: Reconstructed by back-projection", "trimvol: Trimmed")
    assert len(labels) == 3 and labels[2].startswith(f"cryocare {__version__}: denoised ")


def test_a_full_label_list_drops_the_oldest_of_the_source_never_ours(tmp_path, rng):
    from cryocare.io import open_writer

    source = tmp_path / "full.mrc"
    with mrcfile.new(source) as mrc:
        mrc.set_data(_volume(rng))
        mrc.header.nlabl = 0
        mrc.header.label = b""
        for index in range(10):
            mrc.add_label(f"step {index}")
    out = write(tmp_path / "a.mrc", _volume(rng), like=read_info(source), label="ours")
    labels = read_info(out).labels
    assert len(labels) == 10
    assert labels[:9] == tuple(f"step {index}" for index in range(1, 10))
    assert "ours" in labels[9]
    with open_writer(tmp_path / "b.mrc", (6, 7, 8), like=source, label="slabs") as writer:
        writer.write(_volume(rng))
    assert read_info(tmp_path / "b.mrc").labels[:9] == labels[:9]


# --- TIFF tomograms -----------------------------------------------------------------


def test_tiff_tomograms_are_read_like_mrc(tmp_path, rng):
    # Regression (issue 19): TIFF tomograms were refused ("not an MRC file").
    tifffile = pytest.importorskip("tifffile")
    volume = _volume(rng, (5, 16, 12))
    tifffile.imwrite(tmp_path / "t.tif", volume, photometric="minisblack")
    info = read_info(tmp_path / "t.tif")
    assert (info.shape, info.dtype, info.voxel_size, info.labels) == (
        (5, 16, 12), np.dtype(np.float32), (0.0, 0.0, 0.0), ())
    np.testing.assert_array_equal(read(tmp_path / "t.tif"), volume)
    mapped = read(tmp_path / "t.tif", mmap=True)
    assert isinstance(mapped, np.memmap) and not mapped.flags.writeable
    np.testing.assert_array_equal(mapped, volume)


def test_tiff_voxel_size_from_resolution_tags_and_imagej_spacing(tmp_path, rng):
    tifffile = pytest.importorskip("tifffile")
    volume = _volume(rng, (5, 16, 12))
    # ImageJ: unit in the description, 2 pixels per nm in-plane, 0.6 nm between slices.
    tifffile.imwrite(tmp_path / "ij.tif", volume, imagej=True, resolution=(2.0, 2.0),
                     metadata={"spacing": 0.6, "unit": "nm", "axes": "ZYX"})
    assert read_info(tmp_path / "ij.tif").voxel_size == (6.0, 5.0, 5.0)
    # Baseline TIFF: pixels per centimetre; Z taken as the (isotropic) in-plane size.
    tifffile.imwrite(tmp_path / "cm.tif", volume, photometric="minisblack",
                     resolution=(1e8 / 7.0, 1e8 / 7.0), resolutionunit="CENTIMETER",
                     compression="zlib")
    assert read_info(tmp_path / "cm.tif").voxel_size == (7.0, 7.0, 7.0)
    np.testing.assert_array_equal(read(tmp_path / "cm.tif", mmap=True), volume)  # compressed
    out = write(tmp_path / "out.mrc", read(tmp_path / "ij.tif"), like=tmp_path / "ij.tif")
    assert read_info(out).voxel_size == (6.0, 5.0, 5.0)


def test_tiff_pair_and_bad_tiffs(tmp_path, rng):
    tifffile = pytest.importorskip("tifffile")
    volume = _volume(rng, (5, 16, 12))
    for name in ("e.tif", "o.tiff"):
        tifffile.imwrite(tmp_path / name, volume, photometric="minisblack")
    even, odd, info = read_pair(tmp_path / "e.tif", tmp_path / "o.tiff", mmap=True)
    assert even.shape == odd.shape == info.shape == (5, 16, 12)
    text = tmp_path / "notes.tif"
    text.write_text("not an image")
    with _raises(InputError, text) as err:
        read_info(text)
    assert "not a readable TIFF file" in str(err.value)
    raw = (tmp_path / "e.tif").read_bytes()
    cut = tmp_path / "cut.tif"
    cut.write_bytes(raw[: len(raw) // 2])
    with _raises(InputError, cut) as err:
        read(cut)
    assert "truncated TIFF" in str(err.value)
    rgb = tmp_path / "rgb.tif"
    tifffile.imwrite(rgb, np.zeros((16, 16, 3), np.uint8), photometric="rgb")
    with _raises(InputError, rgb) as err:
        read_info(rgb)
    assert "colour" in str(err.value)


# --- checks before any work: finite values, headers ---------------------------------------


def test_nan_in_an_input_half_is_caught_up_front_naming_the_file(tmp_path, rng):
    # Regression (issue 19): NaN in a half was found only when the output was written,
    # and the error named the output file.
    from cryocare.io import check_inputs, validate_pair

    even = write(tmp_path / "t_even.mrc", _volume(rng))
    bad = _volume(rng)
    bad[2, 3, 4] = np.nan
    bad[4, 0, 1] = np.inf
    bad[5, 6, 7] = -np.inf
    odd = write(tmp_path / "t_odd.mrc", np.zeros_like(bad))
    with mrcfile.open(odd, mode="r+") as mrc:  # write() refuses NaN: put it in afterwards
        mrc.data[...] = bad
    with _raises(InputError, odd) as err:
        validate_pair(even, odd)
    assert "found 3 NaN or infinite value(s), the first at (z, y, x) = (2, 3, 4)" in str(
        err.value)
    with _raises(InputError, odd):
        check_inputs([(even, odd)])
    assert validate_pair(even, odd, finite=False).shape == (6, 7, 8)


@pytest.mark.parametrize("where", [(0, 0, 0), (39, 63, 63), (17, 5, 60)])
def test_check_finite_streams_and_finds_the_first_position(tmp_path, where):
    from cryocare.io import check_finite

    volume = np.ones((40, 64, 64), np.float32)
    volume[where] = np.nan
    path = tmp_path / "v.mrc"
    write(path, np.ones_like(volume))
    with mrcfile.open(path, mode="r+") as mrc:
        mrc.data[...] = volume
    for source in (path, volume, read(path, mmap=True)):
        with pytest.raises(InputError, match=rf"1 NaN .* = \({where[0]}, {where[1]}, "
                                             rf"{where[2]}\)"):
            check_finite(source, name="v.mrc")
    check_finite(np.ones((3, 4), np.int16))  # integers are finite
    with pytest.raises(InputError, match=r"\(y, x\) = \(1, 2\)"):
        check_finite(np.array([[0, 0, 0], [0, 0, np.inf]]))


def test_check_finite_of_a_large_file_keeps_little_resident(tmp_path):
    from cryocare.io import check_finite

    path = write(tmp_path / "big.mrc", np.ones((64, 512, 512), np.float32))  # 64 MiB
    before = _resident_bytes()
    check_finite(path)
    assert _resident_bytes() - before < 40 * 2**20  # a chunk of 16 MiB (+ its mask)


def test_check_inputs_reads_every_header_before_any_value(tmp_path, rng, monkeypatch):
    from cryocare import io
    from cryocare.io import _validate

    good = [write(tmp_path / f"a_{h}.mrc", _volume(rng)) for h in ("even", "odd")]
    short = [write(tmp_path / f"b_{h}.mrc", _volume(rng, s))
             for h, s in (("even", (6, 7, 8)), ("odd", (6, 7, 9)))]
    scanned = []
    # Patched where check_inputs looks it up (cryocare.io re-exports only the public names).
    monkeypatch.setattr(_validate, "_scan_file", lambda path, layout, **_: scanned.append(path))
    with _raises(InputError, *short):
        io.check_inputs([good, short])
    assert scanned == []
    mask = write(tmp_path / "mask.mrc", np.ones((6, 7, 9)))
    with _raises(InputError, mask, good[0]):
        io.check_inputs([good], masks=mask)
    assert len(io.check_inputs([good], masks=[None])) == 1
    assert scanned == good


# --- temporary files, failed writes --------------------------------------------------


def test_temporary_files_of_a_dead_writer_are_removed_by_the_next_write(tmp_path, rng):
    # Regression (issue 19): a killed `cryocare predict` left a full-size
    # .den.mrc.<hex>.tmp that no later run removed.
    from cryocare.io import open_writer, temporary_path

    target = tmp_path / "den.mrc"
    ours = temporary_path(target)
    dead = ours.with_name(ours.name.replace(f"-{os.getpid()}-", "-999999999-"))
    other_target = temporary_path(tmp_path / "other.mrc")
    other_host = ours.with_name(ours.name.replace(".cryocare-", ".cryocare-elsewhere-"))
    alive = temporary_path(target)
    for path in (dead, other_target, other_host, alive):
        path.write_bytes(b"partial")
    write(target, _volume(rng))
    assert not dead.exists() and other_target.exists() and other_host.exists()
    assert alive.exists()  # this process runs: maybe another thread writes it
    dead.write_bytes(b"partial")
    with open_writer(target, (6, 7, 8), overwrite=True) as writer:
        writer.write(_volume(rng))
    assert not dead.exists()


def test_check_output_finds_a_bad_target_before_any_work(tmp_path):
    from cryocare.io import check_output

    assert check_output(tmp_path / "out.mrc") == tmp_path / "out.mrc"
    assert sorted(tmp_path.iterdir()) == []
    (tmp_path / "out.mrc").write_bytes(b"")
    with _raises(OutputExistsError, tmp_path / "out.mrc"):
        check_output(tmp_path / "out.mrc")
    with _raises(InputError, tmp_path / "out.tif"):
        check_output(tmp_path / "out.tif")


def test_check_output_of_any_output_allows_new_folders_and_refuses_what_exists(tmp_path):
    """volume=False (the command line's outputs): reports, pairs files, folders made later."""
    from cryocare.io import check_output

    target = tmp_path / "new" / "deeper" / "report.json"
    assert check_output(target, volume=False) == target
    assert not (tmp_path / "new").exists()  # nothing is created
    (tmp_path / "pairs.npz").write_bytes(b"")
    with _raises(OutputExistsError, tmp_path / "pairs.npz"):
        check_output(tmp_path / "pairs.npz", volume=False)
    assert check_output(tmp_path / "pairs.npz", overwrite=True, volume=False).name == "pairs.npz"
    (tmp_path / "out.mrc").mkdir()
    with _raises(InputError, tmp_path / "out.mrc"):
        check_output(tmp_path / "out.mrc", overwrite=True, volume=False)
    (tmp_path / "file").write_bytes(b"")
    with _raises(InputError, tmp_path / "file" / "out"):
        check_output(tmp_path / "file" / "out", volume=False)
