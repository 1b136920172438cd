"""Deprecated name of :mod:`cryocare.halves`, kept for one release.

Import from :mod:`cryocare.halves` instead; the names here are the same objects.
"""

from .halves import MRC_SUFFIXES, expand_paths, find_halves, half_key, match_halves

__all__ = ["MRC_SUFFIXES", "expand_paths", "half_key", "match_halves", "find_halves"]
