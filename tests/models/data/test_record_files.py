"""models.data.record_files and the task's input pipeline: a truncated or corrupted
TFRecord file is found before anything trains, named with its byte offset, and read
up to the damage only when the config asks for it."""

import os
import shutil

import pytest
import tensorflow as tf
from official.core import task_factory

from models.common import runtime
from models.configs.experiments import SYNTHETIC_EXPERIMENT
from models.data import record_files

RECORDS = 5


def _write(path, records=RECORDS):
    with tf.io.TFRecordWriter(str(path)) as writer:
        for i in range(records):
            writer.write(f"record {i} ".encode() * 20)
    return path


def _truncate(path, cut=30):
    with open(path, "r+b") as f:
        f.truncate(path.stat().st_size - cut)


def test_scan_of_whole_truncated_and_corrupted_files(tmp_path):
    whole = record_files.scan(str(_write(tmp_path / "whole.tfrecord")))
    assert (whole.records, whole.damage, whole.offset) == (RECORDS, None, None)

    _truncate(_write(tmp_path / "cut.tfrecord"))
    cut = record_files.scan(str(tmp_path / "cut.tfrecord"))
    assert cut.records == RECORDS - 1 and "truncated record" in cut.damage
    record_size = (tmp_path / "whole.tfrecord").stat().st_size // RECORDS
    assert cut.offset == (RECORDS - 1) * record_size

    path = _write(tmp_path / "flipped.tfrecord")
    data = bytearray(path.read_bytes())
    data[record_size + 20] ^= 0xFF  # in the second record's payload
    path.write_bytes(bytes(data))
    flipped = record_files.scan(str(path))
    assert flipped.records == 1 and "corrupted record" in flipped.damage
    assert record_size <= flipped.offset < 2 * record_size  # in the second record


def test_check_names_the_damaged_file_or_warns(tmp_path, caplog):
    _write(tmp_path / "a.tfrecord")
    _truncate(_write(tmp_path / "b.tfrecord"))
    pattern = str(tmp_path / "*.tfrecord")
    with pytest.raises(record_files.DamagedRecordsError) as error:
        record_files.check(pattern)
    message = str(error.value)
    assert f"{tmp_path / 'b.tfrecord'}: unreadable from byte" in message
    assert f"{RECORDS - 1} record(s) before it" in message
    assert "task.drop_damaged_records=true" in message and "a.tfrecord" not in message

    scans = record_files.check(pattern, drop_damaged=True)
    assert {os.path.basename(s.path): s.records for s in scans} == {
        "a.tfrecord": RECORDS, "b.tfrecord": RECORDS - 1}
    assert "b.tfrecord: unreadable from byte" in caplog.text
    assert record_files.count(pattern) == 2 * RECORDS - 1
    read = list(record_files.read_undamaged(sorted(str(p) for p in tmp_path.iterdir())))
    assert len(read) == 2 * RECORDS - 1


def test_rewritten_file_is_scanned_again(tmp_path):
    path = _write(tmp_path / "a.tfrecord", 2)
    assert record_files.scan(str(path)).records == 2
    _write(path, 3)
    assert record_files.scan(str(path)).records == 3


def test_task_inputs_refuse_or_drop_a_damaged_file(tmp_path, tiny_data, tiny_overrides):
    shutil.copy(tiny_data["train"].replace("*", "00000-of-00001"), tmp_path / "t.tfrecord")
    _truncate(tmp_path / "t.tfrecord", cut=100)
    data = {"task": {"train_data": {"input_path": str(tmp_path / "t.tfrecord")}}}
    params = runtime.experiment_params(SYNTHETIC_EXPERIMENT, tiny_overrides(), data)
    task = task_factory.get_task(params.task)
    with pytest.raises(record_files.DamagedRecordsError, match="t.tfrecord: unreadable"):
        task.build_inputs(params.task.train_data)

    params = runtime.experiment_params(SYNTHETIC_EXPERIMENT, tiny_overrides(), data,
                                       {"task": {"drop_damaged_records": True}})
    dataset = task_factory.get_task(params.task).build_inputs(params.task.train_data)
    images, labels = next(iter(dataset))
    assert images.shape[0] == 2 and "gt_boxes" in labels
