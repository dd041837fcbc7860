"""Multi-host training on JAX's own runtime: 2 processes x 2 CPU devices over localhost.

Also runnable alone: `make test-distributed`.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import pytest

from tests.test_train import REPO, assert_trees_close, params_of, run_cli


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(args, process_id, port, devices=2, heartbeat=10):
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
               TF_CPP_MIN_LOG_LEVEL="2", JAXMUSIC_HEARTBEAT_TIMEOUT=str(heartbeat))
    return subprocess.Popen(
        [sys.executable, "-m", "jaxmusic", *args, "--coordinator", f"127.0.0.1:{port}",
         "--num-processes", "2", "--process-id", str(process_id)],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def common(prepared, workdir, epochs=1):
    return ["train", "--config", "configs/tiny/cnn.py", "--no-evaluate", "--quiet",
            "--workdir", str(workdir), f"--config.data.prepared={prepared}",
            f"--config.train.epochs={epochs}", "--config.data.readers=2",
            "--config.train.patience=0", "--config.train.optimizer=sgd",
            "--config.train.learning_rate=0.05"]


@pytest.mark.slow
def test_two_processes_equal_one_process_four_devices(tiny_prepared, tmp_path):
    run_cli(common(tiny_prepared, tmp_path / "single"), devices=4)
    port = free_port()
    procs = [launch(common(tiny_prepared, tmp_path / "multi"), i, port) for i in range(2)]
    outs = [p.communicate(timeout=400)[0] for p in procs]
    for p, out in zip(procs, outs):
        assert p.returncode == 0, out
    assert_trees_close(params_of(tmp_path / "single"), params_of(tmp_path / "multi"),
                       rtol=2e-4, atol=2e-5)
    # Only process 0 writes the run files.
    assert (tmp_path / "multi" / "history.json").exists()


@pytest.mark.slow
def test_a_killed_process_fails_the_run_instead_of_hanging(tiny_prepared, tmp_path):
    port = free_port()
    procs = [launch(common(tiny_prepared, tmp_path / "run", epochs=50), i, port)
             for i in range(2)]
    time.sleep(25)  # past start-up, into training
    assert procs[0].poll() is None and procs[1].poll() is None, procs[0].stdout.read()
    procs[1].kill()
    t0 = time.time()
    try:
        procs[0].communicate(timeout=180)
    except subprocess.TimeoutExpired:
        procs[0].kill()
        pytest.fail("the surviving process hung after its peer was killed")
    assert procs[0].returncode != 0
    assert time.time() - t0 < 180
