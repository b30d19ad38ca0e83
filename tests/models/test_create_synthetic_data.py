"""python -m models.create_synthetic_data: an HxW set, and its TFRecords when asked."""

import json

from models import create_synthetic_data


def test_command_line(tmp_path, capsys, command_flags):
    out = tmp_path / "cli"
    command_flags(create_synthetic_data, "--out", str(out), "--train", "2", "--val", "1",
                  "--size", "40x56", "--seed", "3", "--workers", "1")
    create_synthetic_data.main([])
    coco = json.loads((out / "annotations" / "instances_val.json").read_text())
    assert coco["images"][0]["height"] == 40 and coco["images"][0]["width"] == 56
    assert "2 images, " in capsys.readouterr().out


def test_tfrecord_shards(tmp_path, command_flags):
    command_flags(create_synthetic_data, "--out", str(tmp_path), "--train", "3", "--val",
                  "1", "--size", "32", "--workers", "1", "--tfrecord_shards", "2")
    create_synthetic_data.main([])
    assert sorted(p.name for p in (tmp_path / "tfrecords").glob("*.tfrecord")) == [
        "train-00000-of-00002.tfrecord", "train-00001-of-00002.tfrecord",
        "val-00000-of-00001.tfrecord"]
