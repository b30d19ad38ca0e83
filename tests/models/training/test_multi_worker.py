"""Multi-worker training of the synthetic experiment: two `python -m models.train`
workers on localhost under `multi_worker_mirrored` (TF_CONFIG) train; when one is
preempted (SIGTERM), both save a checkpoint at once (Model Garden's on-demand
checkpoint); the next run resumes from it on both workers, which end with the same
state.

Minutes (two processes each trace the tiny Mask R-CNN): slow tests only."""

import json
import re
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from models.configs.experiments import SYNTHETIC_EXPERIMENT
from tests.layers.helpers import REPO, python_env

pytestmark = pytest.mark.slow

TIMEOUT = 600
PREEMPTED = "PreemptionCheckpointHandler: checkpoint saved"


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _start_workers(model_dir, config, steps, logs, checkpoint_interval):
    """Starts the two workers, training to `steps`, their output to files in `logs`
    (a pipe left unread would stall one worker and, through the collectives, both).
    Returns the processes and the paths of their logs."""
    ports = _free_ports(2)
    cluster = {"worker": [f"localhost:{port}" for port in ports]}
    workers, paths = [], []
    for index in range(2):
        env = python_env(TF_CONFIG=json.dumps(
            {"cluster": cluster, "task": {"type": "worker", "index": index}}))
        command = [sys.executable, "-m", "models.train",
                   f"--experiment={SYNTHETIC_EXPERIMENT}", "--mode=train",
                   f"--model_dir={model_dir}", f"--config_file={config}",
                   "--params_override=runtime.distribution_strategy=multi_worker_mirrored,"
                   f"trainer.train_steps={steps},trainer.steps_per_loop=1,"
                   f"trainer.checkpoint_interval={checkpoint_interval}"]
        paths.append(logs / f"steps{steps}_worker{index}.log")
        with open(paths[-1], "w") as log:
            workers.append(subprocess.Popen(command, cwd=REPO, env=env, stdout=log,
                                            stderr=subprocess.STDOUT))
    return workers, paths


def _finish(workers, paths):
    """Waits for the workers; returns their output, once both exited with 0."""
    try:
        for worker in workers:
            worker.wait(timeout=TIMEOUT)
    finally:
        for worker in workers:
            worker.kill()
    outputs = [path.read_text() for path in paths]
    for worker, output in zip(workers, outputs):
        assert worker.returncode == 0, output[-20000:]
    return outputs


def _train_two_workers(model_dir, config, steps, logs):
    """Runs the two workers to `steps`, checkpointing at the end; returns their output."""
    return _finish(*_start_workers(model_dir, config, steps, logs, steps))


def _wait_for(path, pattern):
    """Waits until the log at `path` matches `pattern`; returns the match."""
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        match = re.search(pattern, path.read_text())
        if match:
            return match
        time.sleep(1)
    raise AssertionError(f"{pattern!r} never appeared in {path}")


def _assert_same_state(chief_checkpoint, other_checkpoint):
    """Every value of the two checkpoints (weights, statistics, optimizer slots) is
    the same."""
    assert other_checkpoint != chief_checkpoint
    chief, other = (tf.train.load_checkpoint(path)
                    for path in (chief_checkpoint, other_checkpoint))
    names = list(chief.get_variable_to_shape_map())
    assert len(names) > 100 and any("momentum" in name for name in names)
    for name in names:
        np.testing.assert_array_equal(chief.get_tensor(name), other.get_tensor(name),
                                      err_msg=name)


def test_two_workers_are_preempted_and_resume_with_the_same_state(tiny_overrides,
                                                                  write_yaml, tmp_path):
    """Two workers train; a SIGTERM to one (a preemption notice) makes both save a
    checkpoint of the step they are at, though none was due for 1000 steps; the
    platform then kills them. A new run resumes from that step on both workers (the
    other one from its copy of the chief's checkpoint) and ends with the same state
    on both."""
    model_dir = str(tmp_path / "run")
    config = write_yaml(tmp_path / "tiny.yaml", tiny_overrides("dcnv2"))
    workers, paths = _start_workers(model_dir, config, 1000, tmp_path, 1000)
    try:
        _wait_for(paths[0], r"train \| step:\s+5 \|")
        workers[1].send_signal(signal.SIGTERM)
        for path in paths:
            _wait_for(path, PREEMPTED)
    finally:
        for worker in workers:
            worker.kill()
            worker.wait()
    for index, path in enumerate(paths):
        output = path.read_text()
        assert f"task_id = {index}, num_workers = 2" in output
        assert "CollectiveAllReduceStrategy with 2 replica(s)" in output
    saved = tf.train.latest_checkpoint(model_dir)
    step = int(saved.rsplit("-", 1)[1])
    assert 5 <= step < 1000

    last = step + 2
    resumed = _train_two_workers(model_dir, config, last, tmp_path)
    chief_checkpoint = tf.train.latest_checkpoint(model_dir)
    assert chief_checkpoint.endswith(f"ckpt-{last}")
    assert f"restored from checkpoint: {saved}" in resumed[0]
    assert re.search(rf"restored from checkpoint: \S+/ckpt-{step}\n", resumed[1])
    assert re.search(rf"train \| step:\s+{step} \| training until step {last}", resumed[1])
    other = re.search(rf"saved checkpoint to (\S+/ckpt-{last})\.", resumed[1]).group(1)
    _assert_same_state(chief_checkpoint, other)
