"""Exceptions raised by cryocare.

Every error a user can cause by bad input is an :class:`InputError` whose
message is one line naming the file or value, what was expected and what
was found. The command line prints that line and exits with status 2.
"""

__all__ = ["CryocareError", "InputError", "OutputExistsError"]


class CryocareError(Exception):
    """Base class of all errors raised on purpose by cryocare."""


class InputError(CryocareError, ValueError):
    """Bad input: a missing or malformed file, a wrong shape, an invalid option."""


class OutputExistsError(InputError, FileExistsError):
    """An output file exists already and overwriting was not asked for."""
