"""Checks that TFRecord files read to their end before training or evaluation uses them.

`tf.data.TFRecordDataset` raises `DataLossError` only when it reaches a truncated or
corrupted record, that is mid-training. `check(input_path)` reads every record of the
files an input path matches (Model Garden's `match_files`; TensorFlow's reader, with
its checksums) once per process and file version, and raises `DamagedRecordsError`
naming each damaged file, the byte offset of the damage and how many records precede
it. With `drop_damaged=True` it logs the same facts as a warning instead, and
`read_undamaged` reads each file up to its damage.
"""

import dataclasses
import functools
import re
from typing import Optional, Sequence, Union

from absl import logging
import tensorflow as tf

from official.core import input_reader

SETTING = "task.drop_damaged_records"  # the config field that passes drop_damaged
_OFFSET = re.compile(r"record at (\d+)")
_WRAPPING = re.compile(r"\{\{[^}]*\}\}|\[\[.*|\[Op:.*")


class DamagedRecordsError(ValueError):
    """Some TFRecord files of an input cannot be read to their end."""


@dataclasses.dataclass(frozen=True)
class FileScan:
    """What reading one TFRecord file found.

    Attributes:
      path: the file.
      records: records readable from its start.
      damage: TensorFlow's message at the first unreadable record; None if none.
      offset: the byte offset TensorFlow names in it (where that record, or for a
        checksum mismatch its payload, starts).
    """
    path: str
    records: int
    damage: Optional[str] = None
    offset: Optional[int] = None

    def describe(self) -> str:
        """`'<path>: unreadable from byte 1234 (truncated record ...); 40 records
        before it'`."""
        where = f"from byte {self.offset}" if self.offset is not None else "part way"
        return (f"{self.path}: unreadable {where} ({self.damage}); {self.records} "
                "record(s) before it")


def scan(path: str) -> FileScan:
    """Reads every record of the TFRecord file `path` (cached per file version)."""
    stat = tf.io.gfile.stat(path)
    return _scan(path, stat.length, stat.mtime_nsec)


@functools.lru_cache(maxsize=None)
def _scan(path: str, size: int, mtime: int) -> FileScan:
    del size, mtime  # the cache key: a rewritten file is read again

    def length(dataset):
        return int(dataset.reduce(tf.constant(0, tf.int64), lambda n, _: n + 1))

    try:
        return FileScan(path, length(tf.data.TFRecordDataset(path)))
    except tf.errors.DataLossError as error:
        lines = error.message.splitlines()
        line = next((line for line in lines if _OFFSET.search(line)), lines[0])
        message = _WRAPPING.sub("", line).strip()  # without TensorFlow's op names
        offset = _OFFSET.search(message)
        readable = length(tf.data.TFRecordDataset(path).ignore_errors())
        return FileScan(path, readable, message, int(offset.group(1)) if offset else None)


def check(input_path: Union[str, Sequence[str]], drop_damaged: bool = False) -> list:
    """Scans the files of `input_path` (Model Garden's patterns); returns their
    `FileScan`s.

    Raises:
      DamagedRecordsError: a file is damaged and `drop_damaged` is False.
    """
    scans = [scan(path) for path in input_reader.match_files(input_path)]
    damaged = [s for s in scans if s.damage]
    if not damaged:
        return scans
    report = "\n  ".join(s.describe() for s in damaged)
    if not drop_damaged:
        raise DamagedRecordsError(
            f"{len(damaged)} TFRecord file(s) of {input_path} cannot be read to the end:"
            f"\n  {report}\nRewrite them (python -m models.create_tfrecords --force), or "
            f"set {SETTING}=true to use only the records before the damage.")
    logging.warning("Reading %d damaged TFRecord file(s) of %s only up to the damage "
                    "(%s=true):\n  %s", len(damaged), input_path, SETTING, report)
    return scans


def count(input_path: Union[str, Sequence[str]]) -> int:
    """Readable records of the files of `input_path`."""
    return sum(scan(path).records for path in input_reader.match_files(input_path))


def read_undamaged(files) -> tf.data.Dataset:
    """`tf.data.TFRecordDataset(files)` that ends each file at its first unreadable
    record (a drop-in `dataset_fn` of Model Garden's input reader)."""
    return tf.data.TFRecordDataset(files).ignore_errors(log_warning=True)
