"""models.common.checkpoint_recovery: a process SIGKILLed at each point of
TensorFlow's checkpoint write (the `kill_during_save` fixture) leaves the files that
point implies, and `recover` resumes from the newest checkpoint that loads, moves the
rest to `damaged/` and points the `checkpoint` file at it; so it does after damage
only a machine crash leaves."""

import os
import signal

import numpy as np
import pytest
import tensorflow as tf

from models.common import checkpoint_recovery
from tests.layers.helpers import run_python

# Saves ckpt-1, ckpt-2, ckpt-3 (v = step) with CheckpointManager(max_to_keep=2).
SAVES = """
import sys
import tensorflow as tf
step = tf.Variable(0, dtype=tf.int64)
value = tf.Variable(tf.zeros([300, 100]))
manager = tf.train.CheckpointManager(tf.train.Checkpoint(step=step, value=value),
                                     sys.argv[1], max_to_keep=2)
for n in (1, 2, 3):
    step.assign(n)
    value.assign(tf.fill([300, 100], float(n)))
    manager.save(checkpoint_number=n)
"""

# kill point -> (files of ckpt-2 the kill leaves, checkpoint recovered)
LEFT = {
    "temp": ({"ckpt-2_temp"}, 1),
    "data": ({"ckpt-2.data-00000-of-00001", "ckpt-2_temp"}, 1),
    "index": ({"ckpt-2.data-00000-of-00001", "ckpt-2.index", "ckpt-2_temp"}, 1),
    "state": ({"ckpt-2.data-00000-of-00001", "ckpt-2.index"}, 2),
}


def _save(path, n):
    step = tf.Variable(n, dtype=tf.int64)
    value = tf.Variable(tf.fill([300, 100], float(n)))
    manager = tf.train.CheckpointManager(tf.train.Checkpoint(step=step, value=value),
                                         str(path), max_to_keep=5)
    return manager.save(checkpoint_number=n)


def _restored_step(model_dir):
    step = tf.Variable(0, dtype=tf.int64)
    value = tf.Variable(tf.zeros([300, 100]))
    manager = tf.train.CheckpointManager(tf.train.Checkpoint(step=step, value=value),
                                         str(model_dir), max_to_keep=2)
    manager.restore_or_initialize()
    np.testing.assert_array_equal(value.numpy(), float(step.numpy()))
    return int(step.numpy())


def _all_load(model_dir):
    prefixes = [os.path.join(model_dir, f[:-6]) for f in os.listdir(model_dir)
                if f.endswith(".index")]
    for prefix in prefixes:
        reader = tf.train.load_checkpoint(prefix)
        for key in reader.get_variable_to_dtype_map():
            reader.get_tensor(key)
    return sorted(os.path.basename(p) for p in prefixes)


@pytest.mark.parametrize("point", sorted(LEFT))
def test_kill_during_a_checkpoint_write(point, tmp_path, kill_during_save):
    model_dir = tmp_path / "run"
    result = run_python(SAVES, str(model_dir), env=kill_during_save(point, 2))
    assert result.returncode == -signal.SIGKILL, result.stderr
    left, expected = LEFT[point]
    files = set(os.listdir(model_dir))
    assert {f for f in files if f.startswith("ckpt-2")} == left
    assert tf.train.latest_checkpoint(str(model_dir)).endswith("ckpt-1")

    latest = checkpoint_recovery.recover(str(model_dir))
    assert latest == str(model_dir / f"ckpt-{expected}")
    assert tf.train.latest_checkpoint(str(model_dir)) == latest
    assert _all_load(model_dir) == [f"ckpt-{n}" for n in range(1, expected + 1)]
    assert not [f for f in os.listdir(model_dir) if "_temp" in f or ".tmp" in f]
    assert _restored_step(model_dir) == expected


def test_damage_a_machine_crash_leaves(tmp_path, caplog):
    for n in (1, 2, 3):
        _save(tmp_path, n)
    os.remove(tmp_path / "ckpt-1.index")  # a sweep cut short: data without index
    data = tmp_path / "ckpt-3.data-00000-of-00001"  # the latest, its data never synced
    with open(data, "r+b") as f:
        f.truncate(data.stat().st_size // 2)
    assert checkpoint_recovery.recover(str(tmp_path)) == str(tmp_path / "ckpt-2")
    assert "Moving the checkpoint" in caplog.text
    assert _all_load(tmp_path) == ["ckpt-2"]
    assert sorted(os.listdir(tmp_path)) == ["checkpoint", "ckpt-2.data-00000-of-00001",
                                            "ckpt-2.index", "damaged"]
    # Nothing is deleted: what did not load is kept aside.
    assert sorted(os.listdir(tmp_path / "damaged")) == [
        "ckpt-1.data-00000-of-00001", "ckpt-3.data-00000-of-00001", "ckpt-3.index"]
    assert _restored_step(tmp_path) == 2


def test_nothing_loads_or_nothing_there(tmp_path):
    assert checkpoint_recovery.recover(str(tmp_path / "missing")) is None
    _save(tmp_path, 1)
    with open(tmp_path / "ckpt-1.index", "r+b") as f:
        f.truncate(10)
    assert checkpoint_recovery.recover(str(tmp_path)) is None
    assert os.listdir(tmp_path) == ["damaged"]
    assert sorted(os.listdir(tmp_path / "damaged")) == ["ckpt-1.data-00000-of-00001",
                                                         "ckpt-1.index"]


def test_damage_at_the_same_step_twice_is_kept_twice(tmp_path):
    """Two crashes while ckpt-2 was written, each recovered: the second ckpt-2_temp
    folder (not empty) and data file go next to the first ones in damaged/."""
    _save(tmp_path, 1)
    for crash in (1, 2):
        (tmp_path / "ckpt-2_temp").mkdir()
        (tmp_path / "ckpt-2_temp" / "part").write_text(f"crash {crash}")
        (tmp_path / "ckpt-2.data-00000-of-00001").write_text(f"crash {crash}")
        assert checkpoint_recovery.recover(str(tmp_path)) == str(tmp_path / "ckpt-1")
    damaged = tmp_path / "damaged"
    assert sorted(os.listdir(damaged)) == [
        "ckpt-2.data-00000-of-00001", "ckpt-2.data-00000-of-00001.1", "ckpt-2_temp",
        "ckpt-2_temp.1"]
    assert (damaged / "ckpt-2_temp" / "part").read_text() == "crash 1"
    assert (damaged / "ckpt-2_temp.1" / "part").read_text() == "crash 2"
    assert _restored_step(tmp_path) == 1


def test_an_intact_folder_is_left_as_it_is(tmp_path):
    for n in (1, 2):
        _save(tmp_path, n)
    before = {f: (tmp_path / f).stat().st_mtime_ns for f in os.listdir(tmp_path)}
    assert checkpoint_recovery.recover(str(tmp_path)) == str(tmp_path / "ckpt-2")
    assert {f: (tmp_path / f).stat().st_mtime_ns for f in os.listdir(tmp_path)} == before
