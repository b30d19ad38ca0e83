"""Crash-safe training end to end: `python -m models.train` with each trainer is
SIGKILLed during a checkpoint write (the `kill_during_save` fixture) and at random
moments (seeded: 2 to 8 steps into a run, then up to half a second), and resumed
each time, until it reaches its last step. After each kill the next run must resume
from the newest checkpoint that loads, losing at most one checkpoint interval; at the
end every checkpoint left loads and the last one holds the last step.

Minutes (each process traces the tiny Mask R-CNN): slow tests only."""

import os
import random
import re
import signal
import subprocess
import sys
import threading
import time

import pytest
import tensorflow as tf

from models.configs.experiments import SYNTHETIC_EXPERIMENT
from tests.layers.helpers import REPO, python_env

pytestmark = pytest.mark.slow

TRAIN_STEPS = 30
INTERVAL = 4
TIMEOUT = 600
RANDOM = "random"  # a kill a random number of steps into the run, at a random moment
# Lines that show how many steps ran: Model Garden's trainer logs each step it
# finished (twice: log and print), Keras `fit` (verbose 2, one step an epoch)
# announces each epoch it starts; (pattern, steps done = number + offset).
PROGRESS = {"orbit": (re.compile(r"train \| step:\s+(\d+) \| steps/sec"), 0),
            "keras": (re.compile(r"^Epoch (\d+)/\d+", re.M), -1)}
RESUMED = {"orbit": "restored from checkpoint: {}", "keras": "Resumed from {}"}


class _Run:
    """A training process whose output is read while it runs; `reached` is set once
    it shows progress at `steps` different steps (never when `steps` is None)."""

    def __init__(self, command, env, progress, steps=None):
        self._progress, self._steps, self._seen = progress, steps, set()
        self.lines = []
        self.reached = threading.Event()
        self.process = subprocess.Popen(command, cwd=REPO, env=env, text=True,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.process.stdout:
            self.lines.append(line)
            self._seen.update(self._progress.findall(line))
            if self._steps is not None and len(self._seen) >= self._steps:
                self.reached.set()

    def wait_reached(self) -> bool:
        """Waits until `reached`; False if the process ends first."""
        deadline = time.monotonic() + TIMEOUT
        while not self.reached.wait(0.05):
            if self.process.poll() is not None or time.monotonic() > deadline:
                return False
        return True

    def wait(self) -> str:
        """Waits for the exit; returns the output."""
        self.process.wait(TIMEOUT)
        self._reader.join(TIMEOUT)
        return "".join(self.lines)


def _loadable(model_dir) -> list:
    """Steps of the checkpoints in `model_dir` that read back whole."""
    steps = []
    for name in os.listdir(model_dir):
        match = re.fullmatch(r"ckpt-(\d+)\.index", name)
        if not match:
            continue
        try:
            reader = tf.train.load_checkpoint(os.path.join(model_dir, name[:-6]))
            for key in reader.get_variable_to_dtype_map():
                reader.get_tensor(key)
        except (tf.errors.OpError, IndexError):
            continue
        steps.append(int(match.group(1)))
    return sorted(steps)


def _crash_and_resume(trainer, kills, model_dir, config, kill_during_save):
    """Runs `kills` (`(point, save)` of `kill_during_save` or RANDOM), each resuming
    the one before, then a run to the end."""
    command = [sys.executable, "-m", "models.train", f"--experiment={SYNTHETIC_EXPERIMENT}",
               "--mode=train", f"--model_dir={model_dir}", f"--config_file={config}",
               f"--trainer={trainer}", "--verbose=2"]
    pattern, offset = PROGRESS[trainer]
    rng = random.Random(f"{trainer}-crash")
    resume_from = previous = None  # at the last kill: newest loadable checkpoint, kill
    for kill in [*kills, None]:
        if kill == RANDOM:
            run = _Run(command, python_env(), pattern, steps=rng.randint(2, 2 * INTERVAL))
            assert run.wait_reached(), run.wait()[-5000:]
            time.sleep(rng.uniform(0.0, 0.5))
            run.process.send_signal(signal.SIGKILL)
        else:
            run = _Run(command, kill_during_save(*kill) if kill else python_env(), pattern)
        log = run.wait()
        if resume_from is not None:
            path = os.path.join(model_dir, f"ckpt-{resume_from}")
            assert RESUMED[trainer].format(path) in log, log[-5000:]
        if previous not in (None, RANDOM) and previous[0] != "state":
            assert "Moving the checkpoint" in log, log[-5000:]
        previous = kill
        if kill is None:
            assert run.process.returncode == 0, log[-5000:]
            return
        assert run.process.returncode == -signal.SIGKILL, log[-5000:]
        killed_at = max(int(n) + offset for n in pattern.findall(log))
        resume_from = _loadable(model_dir)[-1]
        assert resume_from >= killed_at - INTERVAL, (kill, killed_at, resume_from)


@pytest.mark.parametrize("trainer, kills", [
    ("orbit", [("index", 2), RANDOM, RANDOM]),
    ("keras", [("data", 2), RANDOM]),
])
def test_killed_runs_resume(trainer, kills, tmp_path, tiny_overrides, write_yaml,
                            kill_during_save):
    overrides = tiny_overrides("dcnv2", train_steps=TRAIN_STEPS)
    overrides["trainer"].update(checkpoint_interval=INTERVAL, max_to_keep=3)
    config = write_yaml(tmp_path / "tiny.yaml", overrides)
    model_dir = str(tmp_path / "run")
    _crash_and_resume(trainer, kills, model_dir, config, kill_during_save)
    left = sorted(int(n) for n in re.findall(r"ckpt-(\d+)\.index", " ".join(
        os.listdir(model_dir))))
    assert _loadable(model_dir) == left and left[-1] == TRAIN_STEPS
    assert not [f for f in os.listdir(model_dir) if "_temp" in f or ".tmp" in f]
    reader = tf.train.load_checkpoint(os.path.join(model_dir, f"ckpt-{TRAIN_STEPS}"))
    assert reader.get_tensor("global_step/.ATTRIBUTES/VARIABLE_VALUE") == TRAIN_STEPS
