"""Faults of real processes while writing: no space, a read-only folder, SIGKILL, two writers.

Each fault happens in a child process (a file-size limit, dropped privileges or a
kill cannot be undone in the test process); the parent checks what the child said
and what it left beside the output. Tiny volumes: every test takes about a second.
"""

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from cryocare import io
from cryocare.errors import OutputError

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="POSIX limits and signals")


def _child(code: str, *, prefix: list[str] | None = None, timeout: float = 60.0):
    """Run ``code`` in a fresh Python; returns the completed process."""
    return subprocess.run([*(prefix or []), sys.executable, "-c", textwrap.dedent(code)],
                          capture_output=True, text=True, timeout=timeout)


def _files(folder):
    return sorted(p.name for p in folder.iterdir())


@pytest.mark.parametrize("how", ["write", "open_writer"])
def test_a_write_that_runs_out_of_space_raises_one_clear_error_and_leaves_nothing(tmp_path, how):
    # A file-size limit (RLIMIT_FSIZE) makes the kernel refuse to grow the file with EFBIG,
    # as a full disk refuses with ENOSPC. SIGXFSZ is ignored so that write() returns the error.
    target = tmp_path / "out.mrc"
    result = _child(f"""
        import resource, signal, sys
        import numpy as np
        from cryocare import io
        from cryocare.errors import OutputError
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))
        data = np.ones((16, 64, 64), np.float32)  # 256 KiB: over the limit
        try:
            if {how!r} == "write":
                io.write({str(target)!r}, data)
            else:
                with io.open_writer({str(target)!r}, data.shape) as writer:
                    writer.write(data)
        except OutputError as error:
            print(type(error).__name__, error.errno, error.filename)
            print(error, file=sys.stderr)
            sys.exit(3)
    """)
    assert result.returncode == 3, result.stderr
    name, code, filename = result.stdout.split()
    assert (name, int(code), filename) == ("OutputError", 27, str(target))  # EFBIG
    message = result.stderr.strip()
    assert "\n" not in message and message.startswith(f"{target}: cannot write: File too large")
    assert _files(tmp_path) == []


def _unprivileged() -> list[str] | None:
    """A command prefix under which a read-only folder is read-only, or None if there is none."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        return None
    # Root ignores permission bits through CAP_DAC_OVERRIDE: drop it from the bounding set.
    prefix = [setpriv, "--bounding-set=-dac_override,-dac_read_search", "--"]
    probe = subprocess.run([*prefix, sys.executable, "-c", "pass"], capture_output=True)
    return prefix if probe.returncode == 0 else None


def test_a_write_into_a_read_only_folder_raises_one_clear_error_and_leaves_nothing(tmp_path):
    prefix = _unprivileged()
    if prefix is None:
        pytest.skip("running as root without setpriv: permission bits are not enforced")
    folder = tmp_path / "readonly"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        result = _child(f"""
            import sys
            import numpy as np
            from cryocare import io
            from cryocare.errors import OutputError
            target = {str(folder / "out.mrc")!r}
            for attempt in (lambda: io.check_output(target),
                            lambda: io.write(target, np.ones((4, 8, 8))),
                            lambda: io.open_writer(target, (4, 8, 8))):
                try:
                    attempt()
                except OutputError as error:
                    print(error.errno, error)
                else:
                    sys.exit("no error")
        """, prefix=prefix)
    finally:
        folder.chmod(0o755)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 3
    for line in lines:
        assert line == f"13 {folder / 'out.mrc'}: cannot write: Permission denied; nothing " \
                       f"was written"
    assert _files(folder) == []


def test_a_writer_killed_mid_write_leaves_a_temporary_that_the_next_write_removes(tmp_path):
    target = tmp_path / "den.mrc"
    child = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        import numpy as np
        from cryocare import io
        writer = io.open_writer({str(target)!r}, (8, 32, 32))
        writer.write(np.ones((4, 32, 32), np.float32))
        print("half written", flush=True)
        time.sleep(60)
    """)], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "half written"
        left = _files(tmp_path)
        assert len(left) == 1 and left[0].startswith(".den.mrc.cryocare-")
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
        child.stdout.close()
    assert not target.exists()
    io.write(target, np.zeros((8, 32, 32)))  # the next run on the same output
    assert _files(tmp_path) == ["den.mrc"]


def test_two_processes_writing_one_output_never_leave_a_mixed_file(tmp_path):
    target = tmp_path / "out.mrc"
    io.write(target, np.full((16, 64, 64), 1.0))
    code = """
        import sys
        import numpy as np
        from cryocare import io
        value = float(sys.argv[1])
        data = np.full((16, 64, 64), value, np.float32)
        for round in range(15):
            if round % 2:
                io.write({target!r}, data, overwrite=True, label=f"writer {{value}}")
            else:
                with io.open_writer({target!r}, data.shape, overwrite=True) as writer:
                    for z in range(0, 16, 4):
                        writer.write(data[z:z + 4])
    """.format(target=str(target))
    writers = [subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), str(value)],
                                stderr=subprocess.PIPE, text=True) for value in (2.0, 3.0)]
    seen = set()
    deadline = time.monotonic() + 120
    while any(w.poll() is None for w in writers) and time.monotonic() < deadline:
        data = io.read(target)  # whatever file is there, it is one writer's, whole
        values = np.unique(data)
        assert len(values) == 1, values
        seen.add(float(values[0]))
    for writer in writers:
        _, err = writer.communicate(timeout=120)
        assert writer.returncode == 0, err
    final = io.read(target)
    assert len(np.unique(final)) == 1 and float(final[0, 0, 0]) in (2.0, 3.0)
    header = io.read_info(target)
    assert header.shape == (16, 64, 64)
    assert _files(tmp_path) == ["out.mrc"]
    assert seen <= {1.0, 2.0, 3.0}


def test_output_error_is_an_oserror_with_the_path():
    error = OutputError(28, "out.mrc: cannot write: No space left on device", "out.mrc")
    assert isinstance(error, OSError) and error.filename == "out.mrc"
    assert str(error) == "out.mrc: cannot write: No space left on device"
