"""Exceptions raised by cryocare.

Every error a user can cause by bad input is an :class:`InputError` whose
message is one line naming the file or value, what was expected and what
was found. The command line prints that line and exits with status 2.
An output that cannot be written (no space left, a file-size limit, a
read-only folder) is an :class:`OutputError`, also one line naming the file;
nothing partial is left behind.
"""

__all__ = ["CryocareError", "InputError", "OutputExistsError", "OutputError"]


class CryocareError(Exception):
    """Base class of all errors raised on purpose by cryocare."""


class InputError(CryocareError, ValueError):
    """Bad input: a missing or malformed file, a wrong shape, an invalid option."""


class OutputExistsError(InputError, FileExistsError):
    """An output file exists already and overwriting was not asked for."""


class OutputError(CryocareError, OSError):
    """An output could not be written: no space, a file-size limit, no permission.

    An :class:`OSError` with the ``errno`` of the cause and ``filename`` set
    to the output; its message is one line naming the file.

    Examples
    --------
    >>> import errno
    >>> error = OutputError(errno.ENOSPC, "out.mrc: cannot write: no space left", "out.mrc")
    >>> str(error), error.errno == errno.ENOSPC, isinstance(error, OSError)
    ('out.mrc: cannot write: no space left', True, True)
    """

    def __str__(self) -> str:
        return self.strerror if self.strerror else super().__str__()
