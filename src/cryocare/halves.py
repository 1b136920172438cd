"""Find even/odd partners by name, never by the order of two lists.

cryoCARE 0.3.0 paired the files of an ``even/`` and an ``odd/`` folder by the
order in which the file system listed them, which is arbitrary, and paired
explicit lists by position even when the names said otherwise. Here every
entry point (command-line lists, folders, globs, cryoCARE configs, STAR
rows) follows one rule: a file is matched to its partner by its name with
the half marker removed, and anything left without a partner is an error
that names it. Markers recognised (case-insensitive, as a separate word of
the file name or of a folder name):

======================  ======================  ===========================
even half               odd half                written by
======================  ======================  ===========================
``EVN``                 ``ODD``                 Warp, AreTomo, IMOD scripts
``even``                ``odd``                 cryoCARE users, many scripts
``half1``               ``half2``               RELION 5
======================  ======================  ===========================

A word is delimited by ``_``, ``-``, ``.`` or the ends of the name, so
``seventeen.mrc`` carries no marker. When pairing, markers in folder names
count only below the folder that all the files share (``evn_dir/ts_01.mrc``
and ``odd_dir/ts_01.mrc`` are partners; a common parent such as
``/data/even_odd_test/`` says nothing about which half a file is).

How the pipelines name their halves, all recognised by the markers above:

==========  =====================================================================
AreTomo3    ``TS_01_EVN_Vol.mrc``/``TS_01_ODD_Vol.mrc`` beside ``TS_01_Vol.mrc``
            (and its even/odd *tilt series* ``TS_01_EVN.mrc``/``TS_01_ODD.mrc``,
            which a folder's pairing leaves out when the ``_Vol`` halves are there)
WarpTools   ``reconstruction/even/TS_01_10.00Apx.mrc`` and
            ``reconstruction/odd/TS_01_10.00Apx.mrc`` (folders of their own; the
            folder ``reconstruction/`` given for both halves means those two), or
            ``TS_01_even.mrc``/``TS_01_odd.mrc``
RELION 5    ``rec_TS_01_half1.mrc``/``rec_TS_01_half2.mrc``
IMOD        ``TS_01_EVN.mrc``/``TS_01_ODD.mrc`` (or ``.rec``)
==========  =====================================================================

Files named one by one are the user's word: a single even file and a single
odd file given as files (not folders or patterns) are paired as given,
whatever their names; a warning is logged when the names suggest otherwise
(the even file named as the odd half, or two marked names that are not
partners). A single pair of names without markers is taken as given by
:func:`match_halves` too.

Examples
--------
>>> match_halves(["a/TS_01_EVN.mrc", "a/TS_02_EVN.mrc"], ["a/TS_02_ODD.mrc", "a/TS_01_ODD.mrc"])
[(PosixPath('a/TS_01_EVN.mrc'), PosixPath('a/TS_01_ODD.mrc')), \
(PosixPath('a/TS_02_EVN.mrc'), PosixPath('a/TS_02_ODD.mrc'))]
>>> match_halves(["evn_dir/ts_01.mrc"], ["odd_dir/ts_02.mrc"])
Traceback (most recent call last):
...
cryocare.errors.InputError: even/odd files do not pair by name: no partner found for \
evn_dir/ts_01.mrc, odd_dir/ts_02.mrc (partners have the same name apart from a marker \
_EVN/_ODD, _even/_odd, _half1/_half2, or even/ and odd/ folders)
"""

from __future__ import annotations

import glob
import logging
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from .errors import InputError

__all__ = ["MRC_SUFFIXES", "TIFF_SUFFIXES", "TOMOGRAM_SUFFIXES", "expand_paths", "half_key",
           "match_halves", "find_halves", "pair_stem"]

logger = logging.getLogger(__name__)

MRC_SUFFIXES = (".mrc", ".rec", ".st", ".mrcs", ".map")
TIFF_SUFFIXES = (".tif", ".tiff")
TOMOGRAM_SUFFIXES = MRC_SUFFIXES + TIFF_SUFFIXES  # what a folder of halves is searched for

_MARKERS = {"even": ("evn", "even", "half1"), "odd": ("odd", "half2")}
_OTHER = {"even": "odd", "odd": "even"}
_WORD = r"(?:^|(?<=[_\-.]))({})(?=$|[_\-.])"
_PATTERNS = {half: re.compile(_WORD.format("|".join(words)), re.IGNORECASE)
             for half, words in _MARKERS.items()}
_HINT = ("partners have the same name apart from a marker _EVN/_ODD, _even/_odd, "
         "_half1/_half2, or even/ and odd/ folders")


def half_key(path: str | os.PathLike, half: str) -> str | None:
    """The name of ``path`` with its ``half`` marker removed, or None if it has none.

    The marker is looked for as a word of the file name, else as the whole
    name of a folder (the nearest first), which becomes ``*``.

    Parameters
    ----------
    path : path
        A file name, possibly with folders.
    half : {"even", "odd"}
        Which marker to look for.

    Examples
    --------
    >>> half_key("tomo_12_EVN.mrc", "even"), half_key("odd/tomo_12.mrc", "odd")
    ('tomo_12_.mrc', '*/tomo_12.mrc')
    """
    if half not in _MARKERS:
        raise InputError(f"half must be 'even' or 'odd', got {half!r}")
    path = Path(path)
    pattern = _PATTERNS[half]
    stem, suffix = path.name[: -len(path.suffix) or None], path.suffix
    name, count = pattern.subn("", stem)
    if count:
        return str(path.parent / (name + suffix))
    parts = list(path.parts)
    for index in range(len(parts) - 2, -1, -1):  # nearest folder first
        if pattern.fullmatch(parts[index]):
            parts[index] = "*"  # the same placeholder for both halves
            return str(Path(*parts))
    return None


def pair_stem(path: str | os.PathLike, half: str = "even") -> str:
    """The name a pair goes by: the file name without its half marker and extension.

    Separators left at the ends or doubled where the marker was are
    removed; a name that carries no marker is returned without its
    extension. Use it to name outputs after the pair.

    Examples
    --------
    >>> pair_stem("TS_01_EVN.mrc"), pair_stem("rec_TS_7_half2.mrc", "odd")
    ('TS_01', 'rec_TS_7')
    >>> pair_stem("even/TS_01.rec"), pair_stem("EVN-tomo.mrc"), pair_stem("tomo.mrc")
    ('TS_01', 'tomo', 'tomo')
    """
    if half not in _MARKERS:
        raise InputError(f"half must be 'even' or 'odd', got {half!r}")
    name = Path(path).name
    stem = name[: -len(Path(name).suffix) or None]
    cleaned = _PATTERNS[half].sub("", stem)
    cleaned = re.sub(r"([_\-.])[_\-.]+", r"\1", cleaned).strip("_-.")
    return cleaned or stem


def expand_paths(specs: Iterable[str | os.PathLike], *,
                 suffixes: Sequence[str] = TOMOGRAM_SUFFIXES) -> list[Path]:
    """Files named by ``specs``: files as given, folders by their tomograms, glob patterns.

    A folder stands for its files ending in one of ``suffixes`` (any case;
    default MRC and TIFF), sorted by name. Raises InputError for a name that
    matches nothing.

    Examples
    --------
    >>> expand_paths(["nowhere/*.mrc"])
    Traceback (most recent call last):
    ...
    cryocare.errors.InputError: nowhere/*.mrc: the pattern matches no file
    """
    found: list[Path] = []
    for spec in specs:
        path = Path(spec)
        if path.is_dir():
            found += sorted(p for p in path.iterdir()
                            if p.is_file() and p.suffix.lower() in suffixes)
        elif path.is_file():
            found.append(path)
        elif glob.has_magic(str(spec)):
            matches = sorted(Path(p) for p in glob.glob(str(spec)) if Path(p).is_file())
            if not matches:
                raise InputError(f"{spec}: the pattern matches no file")
            found += matches
        else:
            raise InputError(f"{spec}: no such file or folder")
    return found


def _pair_key(path: Path, half: str, root: int) -> tuple[str | None, bool]:
    """Key of ``path`` as the ``half`` half, and whether it carries the other half's marker.

    Marker words are removed from the file name and replaced by ``*`` in the
    folder names from index ``root`` of the absolute path's parts on (below
    the folder all files share). The key is None if no marker was found.
    """
    parts = list(Path(os.path.abspath(path)).parts)
    pattern, other = _PATTERNS[half], _PATTERNS[_OTHER[half]]
    name = Path(parts[-1])
    stem, count = pattern.subn("", name.name[: -len(name.suffix) or None])
    parts[-1] = stem + name.suffix
    for index in range(root, len(parts) - 1):
        parts[index], found = pattern.subn("*", parts[index])
        count += found
    if count:
        return str(Path(*parts)), False
    tail = Path(*Path(os.path.abspath(path)).parts[root:])
    return None, any(other.search(part) for part in tail.parts)


def match_halves(evens: Sequence[str | os.PathLike],
                 odds: Sequence[str | os.PathLike]) -> list[tuple[Path, Path]]:
    """Pair even and odd files by name; sorted by the even file name.

    Parameters
    ----------
    evens, odds : sequence of path
        The files of each half, in any order.

    Returns
    -------
    list of (Path, Path)
        ``(even, odd)`` partners, as given, sorted by the even file's name.

    Raises
    ------
    InputError
        Naming the files: any file without a partner, a file whose half
        cannot be told from its name (except for a single unmarked pair,
        taken as given), a file named as the other half (``_ODD`` given as
        even), two files that would be the same half of one tomogram, or one
        file given as both halves.

    Examples
    --------
    >>> match_halves(["even/TS_2.mrc", "even/TS_1.mrc"], ["odd/TS_1.mrc", "odd/TS_2.mrc"])
    [(PosixPath('even/TS_1.mrc'), PosixPath('odd/TS_1.mrc')), \
(PosixPath('even/TS_2.mrc'), PosixPath('odd/TS_2.mrc'))]
    """
    evens, odds = [Path(p) for p in evens], [Path(p) for p in odds]
    if not evens or not odds:
        raise InputError(f"expected even and odd files, got {len(evens)} even and "
                         f"{len(odds)} odd")
    same = sorted({os.path.abspath(p) for p in evens} & {os.path.abspath(p) for p in odds})
    if same:
        raise InputError(f"{same[0]}: expected two different files for the even and odd "
                         f"halves, found the same file as both")
    folders = [os.path.abspath(p.parent) for p in (*evens, *odds)]
    root = len(Path(os.path.commonpath(folders)).parts)
    keyed: dict[str, dict[str, Path]] = {"even": {}, "odd": {}}
    unmarked, misnamed = [], []
    for half, paths in (("even", evens), ("odd", odds)):
        for path in paths:
            key, other = _pair_key(path, half, root)
            if other:
                misnamed.append(f"{path} (given as {half}, named as {_OTHER[half]})")
            elif key is None:
                unmarked.append(path)
            elif key in keyed[half]:
                raise InputError(f"{keyed[half][key]} and {path} would both be the {half} "
                                 f"half of the same tomogram")
            else:
                keyed[half][key] = path
    if misnamed:
        raise InputError("even/odd files given as the wrong half: " + ", ".join(misnamed))
    if unmarked:
        if len(evens) == 1 and len(odds) == 1 and len(unmarked) == 2:
            logger.info("%s and %s: names carry no half marker; paired as given",
                        evens[0], odds[0])
            return [(evens[0], odds[0])]
        raise InputError(
            "cannot tell the half of " + ", ".join(map(str, unmarked)) +
            " from the name; expected a marker like _EVN/_ODD, _even/_odd, _half1/_half2 "
            "or even/ and odd/ folders"
        )
    lonely = sorted(set(keyed["even"]) ^ set(keyed["odd"]))
    if lonely:
        names = [str(keyed["even"].get(k) or keyed["odd"].get(k)) for k in lonely]
        names.sort(key=lambda name: (name not in map(str, evens), name))
        raise InputError("even/odd files do not pair by name: no partner found for "
                         + ", ".join(names) + f" ({_HINT})")
    return sorted(((keyed["even"][k], keyed["odd"][k]) for k in keyed["even"]),
                  key=lambda pair: str(pair[0]))


def find_halves(even_specs: Iterable[str | os.PathLike],
                odd_specs: Iterable[str | os.PathLike]) -> list[tuple[Path, Path]]:
    """Expand files, folders and globs for both halves, then :func:`match_halves`.

    This is the one pairing rule of every entry point: lists of files are
    paired by name too, never by position. A single even file and a single
    odd file (files, not folders or patterns) are paired as given, whatever
    their names (a warning is logged when the names suggest otherwise). A
    folder given for both halves stands for its files of each half, or, if
    it holds none, for its ``even/`` and ``odd/`` folders (WarpTools); from
    folders and patterns, AreTomo3's even/odd tilt series beside their
    ``_Vol`` tomograms are left out.

    Examples
    --------
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> for name in ("TS_1_EVN.mrc", "TS_1_ODD.mrc"):
    ...     _ = (folder / name).write_bytes(b"")
    >>> [(e.name, o.name) for e, o in find_halves([folder / "*_EVN.mrc"], [folder])]
    [('TS_1_EVN.mrc', 'TS_1_ODD.mrc')]
    """
    evens, odds = list(even_specs), list(odd_specs)
    if len(evens) == 1 and len(odds) == 1 and Path(evens[0]).is_file() \
            and Path(odds[0]).is_file():
        return [_as_given(Path(evens[0]), Path(odds[0]))]
    both = {os.path.abspath(s) for s in evens} & {os.path.abspath(s) for s in odds}
    evens = [_half_folder(s, "even") if os.path.abspath(s) in both else s for s in evens]
    odds = [_half_folder(s, "odd") if os.path.abspath(s) in both else s for s in odds]
    even_files = _without_aretomo_tilt_series(expand_paths(evens))
    odd_files = _without_aretomo_tilt_series(expand_paths(odds))
    # A folder or glob given for both halves (one folder holding *_EVN and *_ODD files)
    # stands for the files of each half only.
    shared = {os.path.abspath(p) for p in even_files} & {os.path.abspath(p) for p in odd_files}
    if shared:
        even_files = [p for p in even_files
                      if os.path.abspath(p) not in shared or _PATTERNS["even"].search(p.stem)]
        odd_files = [p for p in odd_files
                     if os.path.abspath(p) not in shared or _PATTERNS["odd"].search(p.stem)]
    return match_halves(even_files, odd_files)


def _as_given(even: Path, odd: Path) -> tuple[Path, Path]:
    """One even and one odd file named by the user: their pair, with a warning if the names
    suggest otherwise."""
    if os.path.abspath(even) == os.path.abspath(odd):
        raise InputError(f"{even}: expected two different files for the even and odd halves, "
                         f"found the same file as both")
    hints = []
    for path, half in ((even, "even"), (odd, "odd")):
        other = _OTHER[half]
        if _PATTERNS[other].search(path.stem) and not _PATTERNS[half].search(path.stem):
            hints.append(f"{path} is named as the {other} half")
    if not hints:
        keys = half_key(even.name, "even"), half_key(odd.name, "odd")
        if None not in keys and keys[0] != keys[1]:
            hints.append("their names are not those of partners")
    if hints:
        logger.warning("--even %s --odd %s: paired as given, although %s", even, odd,
                       "; ".join(hints))
    return even, odd


def _half_folder(spec, half: str):
    """A folder given for both halves that holds an ``even/`` and an ``odd/`` folder (as
    WarpTools' ``reconstruction/``): the folder of this half; anything else unchanged."""
    path = Path(spec)
    if not path.is_dir() or any(_PATTERNS[h].search(p.stem) for p in path.iterdir()
                                if p.is_file() for h in ("even", "odd")):
        return spec
    folders = [p for p in path.iterdir() if p.is_dir()]
    mine = [p for p in folders if _PATTERNS[half].fullmatch(p.name)]
    theirs = [p for p in folders if _PATTERNS[_OTHER[half]].fullmatch(p.name)]
    return mine[0] if len(mine) == 1 and len(theirs) == 1 else spec


def _without_aretomo_tilt_series(files: list[Path]) -> list[Path]:
    """Leave out ``X_EVN.mrc`` where ``X_EVN_Vol.mrc`` is listed too: AreTomo3 writes its
    even/odd tilt series beside the even/odd volumes, with the same markers."""
    volumes = {(p.parent, p.name.lower()) for p in files}
    kept = [p for p in files
            if (p.parent, f"{p.stem}_vol{p.suffix}".lower()) not in volumes]
    if len(kept) < len(files):
        logger.info("left out as AreTomo3 tilt series beside their _Vol tomograms: %s",
                    ", ".join(str(p) for p in files if p not in kept))
    return kept
