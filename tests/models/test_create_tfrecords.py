"""python -m models.create_tfrecords: a split rewritten with another number of shards."""

import tensorflow as tf

from models import create_tfrecords
from models.data import synthetic, tfrecords


def test_command_line(tmp_path, capsys, command_flags):
    synthetic.generate(tmp_path, 3, 1, 32, workers=1)
    tfrecords.convert_split(tmp_path, "val", num_shards=1)
    command_flags(create_tfrecords, "--root", str(tmp_path), "--splits", "val", "--shards",
                  "3")
    create_tfrecords.main([])
    assert "val: 3 shard(s)" in capsys.readouterr().out
    files = sorted((tmp_path / "tfrecords").glob("val-*.tfrecord"))
    assert [f.name for f in files] == [f"val-0000{i}-of-00003.tfrecord" for i in range(3)]
    assert sum(1 for _ in tf.data.TFRecordDataset([str(f) for f in files])) == 1
