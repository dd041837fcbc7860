"""Worker pools: a worker that dies fails the command with a clear error (it used to
hang for ever in a ``multiprocessing.Pool``); librosa's kernels compile once."""

from __future__ import annotations

import concurrent.futures as cf
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from jaxmusic import workers

REPO = Path(__file__).resolve().parents[1]


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(c) for c in text.split()]


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs Linux /proc")
def test_sample_data_fails_clearly_when_a_worker_is_killed(tmp_path):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.Popen([sys.executable, "-m", "jaxmusic", "sample-data", str(tmp_path / "data"),
                             "--size", "small", "--workers", "2", "--quiet"], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # The workers are the forkserver's children: grandchildren of the command.
        deadline = time.monotonic() + 180
        victims: list[int] = []
        while not victims and time.monotonic() < deadline and proc.poll() is None:
            victims = [g for c in _children(proc.pid) for g in _children(c)]
            time.sleep(0.2)
        assert victims, "no worker process appeared"
        time.sleep(1.0)                       # let it take work
        os.kill(victims[0], signal.SIGKILL)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 2, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("jaxmusic sample-data: error: a worker process died abruptly while "
                           "rendering sample clips"), err
    assert "Traceback" not in err


def test_a_pool_worker_that_dies_raises_instead_of_hanging():
    with workers.process_pool(2) as pool:
        assert pool.submit(abs, -3).result(timeout=120) == 3
        dead = pool.submit(os._exit, 3)
        with pytest.raises(cf.BrokenExecutor):
            dead.result(timeout=120)


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX file lock")
def test_librosa_kernels_compile_under_one_machine_wide_lock():
    """While another process holds the lock, compiling here waits for it."""
    lock = Path(tempfile.gettempdir()) / f"jaxmusic-numba-{os.getuid()}.lock"
    holder = subprocess.Popen([sys.executable, "-c", f"""
import fcntl, sys, time
f = open({str(lock)!r}, "a"); fcntl.flock(f, fcntl.LOCK_EX); print("held", flush=True); time.sleep(3)
"""], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    t0 = time.monotonic()
    workers.compile_librosa_kernels.__wrapped__()
    waited = time.monotonic() - t0
    holder.wait(timeout=30)
    assert waited >= 2.0, waited
    assert all(m in sys.modules for m in workers.LIBROSA_KERNEL_MODULES)
