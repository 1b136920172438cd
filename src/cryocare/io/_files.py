"""Output files: temporary names beside the target, stale ones removed, checks, syncs."""

from __future__ import annotations

import contextlib
import errno
import glob
import logging
import os
import re
import secrets
import socket
from pathlib import Path

from ..errors import InputError, OutputError, OutputExistsError
from ..halves import MRC_SUFFIXES

logger = logging.getLogger(__package__)  # "cryocare.io", as the public module


def temporary_path(path: str | os.PathLike, *, suffix: str = "") -> Path:
    """A new temporary file name beside ``path`` that :func:`remove_stale_temporaries` knows.

    ``.<name>.cryocare-<host>-<pid>-<token>.tmp<suffix>``: hidden, unique to
    this call, and naming the process that writes it, so that the file of a
    process that died can be recognised and removed. Nothing is created.

    Examples
    --------
    >>> name = temporary_path("out/tomo.mrc").name
    >>> name.startswith(".tomo.mrc.cryocare-") and name.endswith(".tmp")
    True
    """
    path = Path(path)
    return path.with_name(f".{path.name}.cryocare-{_host()}-{os.getpid()}-"
                          f"{secrets.token_hex(4)}.tmp{suffix}")


def remove_stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """Remove temporary files of ``path`` left by processes of this host that no longer run.

    A process killed while writing (SIGKILL, out of memory, power loss)
    leaves its :func:`temporary_path` file beside the target; :func:`write`
    and :func:`open_writer` call this first, so the next write of the same
    target cleans up. Files of running processes, of other hosts (a shared
    file system) and of other targets are left alone.

    Returns
    -------
    list of Path
        The files removed.

    Examples
    --------
    >>> import tempfile
    >>> target = Path(tempfile.mkdtemp()) / "tomo.mrc"
    >>> dead = target.with_name(f".tomo.mrc.cryocare-{_host()}-999999999-0a1b.tmp")
    >>> _ = dead.write_bytes(b"partial")
    >>> [p.name for p in remove_stale_temporaries(target)] == [dead.name]
    True
    """
    path = Path(path)
    pattern = re.compile(rf"\.{re.escape(path.name)}\.cryocare-(?P<host>[A-Za-z0-9-]*)-"
                         rf"(?P<pid>\d+)-[0-9a-f]+\.tmp.*")
    removed = []
    try:
        candidates = list(path.parent.glob(f".{glob.escape(path.name)}.cryocare-*.tmp*"))
    except OSError:
        return removed
    for candidate in candidates:
        match = pattern.fullmatch(candidate.name)
        if match is None or match["host"] != _host() or _alive(int(match["pid"])):
            continue
        try:
            candidate.unlink()
        except OSError as err:
            logger.debug("%s: stale temporary file not removed (%s)", candidate, err.strerror)
            continue
        logger.info("removed %s, left by process %s that no longer runs", candidate,
                    match["pid"])
        removed.append(candidate)
    return removed


def _host() -> str:
    """This host's name as it goes into temporary file names: letters, digits, '-'."""
    name = socket.gethostname().split(".")[0]
    return re.sub(r"[^A-Za-z0-9-]", "-", name)[:32] or "host"


def _alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie, killed but not yet reaped, does not)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True  # another user's process (or a number no process can have)
    except OSError:
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[-1].split()[0] != b"Z"
    except (OSError, IndexError):
        return True


@contextlib.contextmanager
def _output_errors(path: Path):
    """Turn an OSError of writing ``path`` into one :class:`OutputError` that names it."""
    try:
        yield
    except OutputError:
        raise
    except OSError as err:
        reason = err.strerror or str(err) or type(err).__name__
        if err.errno == errno.EFBIG:
            reason += " (the file-size limit of this process or file system)"
        raise OutputError(err.errno, f"{path}: cannot write: {reason}; nothing was written",
                          str(path)) from None


def check_output(path: str | os.PathLike, *, overwrite: bool = False,
                 volume: bool = True) -> Path:
    """Check before any work that a volume (or any output) can be written at ``path``.

    For a volume (the default): the extension, the folder, an existing file
    (refused unless ``overwrite``) and that the folder takes a new file (a
    read-only folder, a full disk or a missing permission is found now, not
    after hours of work): a temporary file is created and removed. Stale
    temporary files of ``path`` (:func:`remove_stale_temporaries`) are removed.

    With ``volume=False`` any output is accepted (a report, a pairs file, a
    folder of results, a volume in a folder that the job creates): an existing
    one is refused unless ``overwrite``, a name with an extension must not be
    a folder, and the nearest folder that exists must be a folder; an MRC name
    in an existing folder is checked as a volume.

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    OutputExistsError, InputError
        As :func:`write`.
    OutputError
        If the folder does not take a new file.

    Examples
    --------
    >>> import tempfile
    >>> check_output(Path(tempfile.mkdtemp()) / "out.mrc").name
    'out.mrc'
    >>> check_output(Path(tempfile.mkdtemp()) / "new" / "report.json", volume=False).name
    'report.json'
    """
    path = Path(path)
    if not volume:
        if path.exists() and not overwrite:
            raise _exists(path)
        if path.is_dir() and path.suffix:
            raise InputError(f"{path}: is a folder, expected a file name")
        if path.suffix.lower() not in MRC_SUFFIXES or not path.parent.is_dir():
            parent = path.parent
            while not parent.exists():
                parent = parent.parent
            if not parent.is_dir():
                raise InputError(f"{path}: cannot be created ({parent} is not a folder)")
            return path
    _check_target(path, overwrite=overwrite)
    remove_stale_temporaries(path)
    probe = temporary_path(path)
    with _output_errors(path):
        try:
            fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            os.close(fd)
        finally:
            with contextlib.suppress(OSError):
                os.unlink(probe)
    return path


def _check_target(path: Path, *, overwrite: bool) -> None:
    if path.suffix.lower() not in MRC_SUFFIXES:
        raise InputError(
            f"{path}: expected an MRC extension ({', '.join(MRC_SUFFIXES)}), "
            f"found '{path.suffix}'"
        )
    if not path.parent.is_dir():
        raise InputError(f"{path}: expected an existing folder {path.parent}, found none")
    if path.is_dir():
        raise InputError(f"{path}: expected a file name, found a directory")
    if path.exists() and not overwrite:
        raise _exists(path)


def _exists(path: Path) -> OutputExistsError:
    return OutputExistsError(f"{path}: exists already (use --overwrite, or overwrite=True, "
                             "to replace it)")


def _fsync(path: Path) -> None:
    """Flush a file (or a folder entry) to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
