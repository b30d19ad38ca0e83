"""Makes a run folder's checkpoints consistent before a run resumes after a crash.

`tf.train.CheckpointManager` writes checkpoint `ckpt-N` in this order (TensorFlow
2.20, seen with strace): the tensors and their index into `ckpt-N_temp/`; the data
file renamed to `ckpt-N.data-00000-of-00001`; `ckpt-N.index` written in place (not
atomically); `ckpt-N_temp/` removed; then the state file `checkpoint` replaced
atomically (a temporary file renamed over it) naming `ckpt-N` the latest; then the
oldest checkpoints beyond `max_to_keep` deleted (index first). Nothing is synced to
disk.

A killed process therefore never leaves `checkpoint` naming a partial checkpoint, but
it can leave a `ckpt-N_temp/` folder, a data file without its index, an empty or
truncated index, a complete `ckpt-N` that `checkpoint` does not name yet, or a
temporary state file; after a machine crash (no sync) anything may be cut short.
`recover(model_dir)` finds the newest checkpoint whose index and data read back,
moves the files of checkpoints that do not into `model_dir/damaged/` (logging what
and why; a name already there from an earlier crash gets a `.K` suffix; nothing is
deleted but the leftover temporary files of a checkpoint that loads, so a checkpoint
that only failed to read this once can be moved back), and
rewrites `checkpoint` to name what is left, so both trainers resume from that
checkpoint.
"""

import os
import re
from typing import Optional

from absl import logging
from google.protobuf import text_format
import tensorflow as tf

CHECKPOINT_NAME = "ckpt"
STATE_FILE = "checkpoint"
DAMAGED_DIR = "damaged"


def recover(model_dir: str, name: str = CHECKPOINT_NAME) -> Optional[str]:
    """Leaves only checkpoints that load in `model_dir` (the others go to
    `model_dir/damaged/`); returns the newest one's prefix (`model_dir/ckpt-N`), or
    None when none loads.

    The newest candidate must read back whole (every tensor, checksums included);
    older ones must have a readable index and all their data files.
    """
    if not tf.io.gfile.isdir(model_dir):
        return None
    good = []
    for step, paths in sorted(_checkpoint_files(model_dir, name).items(), reverse=True):
        prefix = os.path.join(model_dir, f"{name}-{step}")
        problem = _problem(prefix, read_values=not good)
        if problem is None:
            good.append(prefix)
            for path in paths:
                if path.endswith("_temp"):
                    tf.io.gfile.rmtree(path)
            continue
        damaged = os.path.join(model_dir, DAMAGED_DIR)
        logging.warning("Moving the checkpoint %s, which does not load, to %s: %s",
                        prefix, damaged, problem)
        tf.io.gfile.makedirs(damaged)
        for path in paths:
            tf.io.gfile.rename(path, _unused_path(damaged, os.path.basename(path)))
    for leftover in tf.io.gfile.glob(os.path.join(model_dir, STATE_FILE + ".tmp*")):
        tf.io.gfile.remove(leftover)
    good.reverse()
    _write_state(model_dir, good)
    if good:
        logging.info("Resuming %s from %s (checkpoints that load: %s)", model_dir,
                     good[-1], ", ".join(os.path.basename(p) for p in good))
    return good[-1] if good else None


def _unused_path(folder: str, base: str) -> str:
    """`folder/base`, or `folder/base.K` with the smallest K >= 1 not taken where an
    earlier crash left a file or folder of that name (a folder cannot be renamed over
    a non-empty one, and nothing kept aside is overwritten)."""
    path, count = os.path.join(folder, base), 0
    while tf.io.gfile.exists(path):
        count += 1
        path = os.path.join(folder, f"{base}.{count}")
    return path


def _checkpoint_files(model_dir: str, name: str) -> dict:
    """`{step: [path, ...]}`: the index, data files and `_temp` folder of each
    `name-<step>` checkpoint in `model_dir`."""
    pattern = re.compile(
        rf"{re.escape(name)}-(\d+)(\.index|\.data-\d{{5}}-of-\d{{5}}|_temp)")
    files = {}
    for entry in tf.io.gfile.listdir(model_dir):
        match = pattern.fullmatch(entry.rstrip("/"))
        if match:
            files.setdefault(int(match.group(1)), []).append(
                os.path.join(model_dir, entry.rstrip("/")))
    return files


def _problem(prefix: str, read_values: bool) -> Optional[str]:
    """Why the checkpoint `prefix` does not load, or None. `read_values` reads every
    tensor (checksummed); otherwise only the index and which data files exist."""
    if not tf.io.gfile.exists(prefix + ".index"):
        return "no index file (the write stopped before it)"
    data = tf.io.gfile.glob(prefix + ".data-*-of-*")
    counts = {int(path[-5:]) for path in data}
    if len(counts) != 1 or len(data) != counts.pop():
        return f"{len(data)} data file(s), not the set its names announce"
    try:
        reader = tf.train.load_checkpoint(prefix)
        if read_values:
            for key in reader.get_variable_to_dtype_map():
                reader.get_tensor(key)
    except (tf.errors.OpError, IndexError, ValueError) as error:
        return f"it does not read back: {str(error).splitlines()[0]}"
    return None


def _write_state(model_dir: str, prefixes: list):
    """Points `model_dir/checkpoint` (CheckpointManager's state) at `prefixes`
    (oldest first; the last is the latest), keeping the recorded timestamps; deletes it
    when `prefixes` is empty. Replaces the file atomically, and only if it changes."""
    path = os.path.join(model_dir, STATE_FILE)
    try:
        state = tf.train.get_checkpoint_state(model_dir)
    except (tf.errors.OpError, ValueError):  # unparsable: rewritten below
        state = None
    if not prefixes:
        if tf.io.gfile.exists(path):
            logging.warning("No checkpoint of %s loads: training starts from scratch",
                            model_dir)
            tf.io.gfile.remove(path)
        return
    recorded = {}
    if state is not None:
        recorded = dict(zip(state.all_model_checkpoint_paths,
                            state.all_model_checkpoint_timestamps))
        if list(state.all_model_checkpoint_paths) == prefixes \
                and state.model_checkpoint_path == prefixes[-1]:
            return
    timestamps = [recorded.get(p) or tf.io.gfile.stat(p + ".index").mtime_nsec / 1e9
                  for p in prefixes]
    last_preserved = state.last_preserved_timestamp if state else min(timestamps) - 1
    new_state = tf.compat.v1.train.generate_checkpoint_state_proto(
        model_dir, prefixes[-1], list(prefixes), timestamps, last_preserved)
    temporary = path + ".tmp-recover"
    with tf.io.gfile.GFile(temporary, "w") as f:
        f.write(text_format.MessageToString(new_state))
    tf.io.gfile.rename(temporary, path, overwrite=True)
    logging.warning("%s now names %s as the latest checkpoint", path, prefixes[-1])
