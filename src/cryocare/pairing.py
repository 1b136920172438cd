"""Find even/odd partners by name, never by the order of two lists.

cryoCARE 0.3.0 paired the files of an ``even/`` and an ``odd/`` folder by the
order in which the file system listed them, which is arbitrary. Here a file
is matched to its partner by its name with the half marker removed. Markers
recognised (case-insensitive, as a separate word of the file name or as the
name of a parent folder):

======================  ======================  ===========================
even half               odd half                written by
======================  ======================  ===========================
``EVN``                 ``ODD``                 Warp, AreTomo, IMOD scripts
``even``                ``odd``                 cryoCARE users, many scripts
``half1``               ``half2``               RELION 5
======================  ======================  ===========================

Examples
--------
>>> match_halves(["a/TS_01_EVN.mrc", "a/TS_02_EVN.mrc"], ["a/TS_02_ODD.mrc", "a/TS_01_ODD.mrc"])
[(PosixPath('a/TS_01_EVN.mrc'), PosixPath('a/TS_01_ODD.mrc')), \
(PosixPath('a/TS_02_EVN.mrc'), PosixPath('a/TS_02_ODD.mrc'))]
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from .errors import InputError

__all__ = ["MRC_SUFFIXES", "expand_paths", "half_key", "match_halves", "find_halves"]

MRC_SUFFIXES = (".mrc", ".rec", ".st", ".mrcs", ".map")

_MARKERS = {"even": ("evn", "even", "half1"), "odd": ("odd", "half2")}
_WORD = r"(?:^|(?<=[_\-.]))({})(?=$|[_\-.])"


def half_key(path: str | os.PathLike, half: str) -> str | None:
    """The name of ``path`` with its ``half`` marker removed, or None if it has none.

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
    pattern = re.compile(_WORD.format("|".join(_MARKERS[half])), re.IGNORECASE)
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


def expand_paths(specs: Iterable[str | os.PathLike], *,
                 suffixes: Sequence[str] = MRC_SUFFIXES) -> list[Path]:
    """Files named by ``specs``: files as given, folders by their MRC files, glob patterns.

    Raises InputError for a name that matches nothing.
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


def match_halves(evens: Sequence[str | os.PathLike],
                 odds: Sequence[str | os.PathLike]) -> list[tuple[Path, Path]]:
    """Pair even and odd files by name; sorted by the even file name.

    One even and one odd file are paired even if their names carry no marker.
    Unmatched, unmarked or duplicate names raise an InputError that names them.
    """
    evens, odds = [Path(p) for p in evens], [Path(p) for p in odds]
    if not evens or not odds:
        raise InputError(f"expected even and odd files, got {len(evens)} even and "
                         f"{len(odds)} odd")
    keyed: dict[str, dict[str, Path]] = {"even": {}, "odd": {}}
    unmarked = []
    for half, paths in (("even", evens), ("odd", odds)):
        for path in paths:
            key = half_key(path, half)
            if key is None:
                unmarked.append(path)
            elif key in keyed[half]:
                raise InputError(f"{keyed[half][key]} and {path} would both be the {half} "
                                 f"half of the same tomogram")
            else:
                keyed[half][key] = path
    if unmarked:
        if len(evens) == 1 and len(odds) == 1:
            return [(evens[0], odds[0])]
        raise InputError(
            "cannot tell the half of " + ", ".join(map(str, unmarked)) +
            " from the name; expected a marker like _EVN/_ODD, _even/_odd, _half1/_half2 "
            "or even/ and odd/ folders"
        )
    lonely = sorted(set(keyed["even"]) ^ set(keyed["odd"]))
    if lonely:
        names = [str(keyed["even"].get(k) or keyed["odd"].get(k)) for k in lonely]
        raise InputError("no partner found for " + ", ".join(names))
    return sorted(((keyed["even"][k], keyed["odd"][k]) for k in keyed["even"]),
                  key=lambda pair: str(pair[0]))


def find_halves(even_specs: Iterable[str | os.PathLike],
                odd_specs: Iterable[str | os.PathLike]) -> list[tuple[Path, Path]]:
    """Expand files, folders and globs for both halves, then :func:`match_halves`."""
    return match_halves(expand_paths(even_specs), expand_paths(odd_specs))
