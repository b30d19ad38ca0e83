"""Converting a COCO set with bad entries and image files (tests/models/data/bad_coco.py):
the report lists each skipped or changed item with its reason, the records hold
exactly the valid part (8-bit RGB images, boxes clipped, one mask per box), the
command prints the summary, and (slow) Model Garden's trainer trains and evaluates
on what is valid."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from official.vision.dataloaders import tf_example_decoder

from models import create_tfrecords
from models.common import image_files
from models.configs.experiments import SYNTHETIC_EXPERIMENT
from models.data import tfrecords
from tests.layers.helpers import REPO, check, python_env
from tests.models.data import bad_coco


@pytest.fixture(scope="module")
def bad_set(tmp_path_factory):
    """`(root, expectations of bad_coco.make, {split: report})`, converted with masks
    (train in two shards)."""
    root = tmp_path_factory.mktemp("bad_coco")
    expected = bad_coco.make(root)
    reports = {}
    for split, shards in (("train", 2), ("val", 1)):
        tfrecords.convert_split(root, split, num_shards=shards)
        reports[split] = json.loads(
            tfrecords.report_path(root / "tfrecords" / split).read_text())
    return root, expected, reports


def _items(report, kind):
    """`{(kind, id, reason)}` of a report's skipped or changed items."""
    return {("annotation", item["annotation_id"], item["reason"])
            if "annotation_id" in item else ("image", item["image_id"], item["reason"])
            for item in report[kind]["items"]}


@pytest.mark.parametrize("split", ["train", "val"])
def test_report_lists_every_skipped_and_changed_item(bad_set, split):
    root, expected, reports = bad_set
    report, expected = reports[split], expected[split]
    assert _items(report, "skipped") == expected["skipped"]
    assert _items(report, "changed") == expected["changed"]
    coco = json.loads((root / "annotations" / f"instances_{split}.json").read_text())
    assert report["images"]["total"] == len(coco["images"])
    assert report["annotations"]["total"] == len(coco["annotations"])
    assert sum(report["skipped"]["by_reason"].values()) == len(expected["skipped"])
    if split == "train":
        assert report["images"]["written"] == len(expected["images"])
        assert report["annotations"]["written"] == len(expected["annotations"])
        details = {item["reason"]: item["detail"] for item in report["skipped"]["items"]}
        assert "000002.png does not exist" in details["missing_file"]
        assert "is 64x64, the entry says 80x64" in details["size_mismatch"]
        assert "unknown_category" in report["skipped"]["by_reason"]


def test_records_hold_the_valid_part(bad_set):
    root, expected, _ = bad_set
    decoder = tf_example_decoder.TfExampleDecoder(include_mask=True)
    records = tf.data.TFRecordDataset(sorted(str(p) for p in
                                             (root / "tfrecords").glob("train-*.tfrecord")))
    images, boxes = [], 0
    for record in records:
        out = decoder.decode(record)
        image_id = int(out["source_id"].numpy())
        images.append(image_id)
        # OpenCV's 8-bit colour reading: grey replicated, alpha dropped, 16-bit v * 257
        # read back as v, as the converter does.
        original = image_files.read_rgb(root / "train" / f"{image_id:06d}.png")
        np.testing.assert_array_equal(out["image"].numpy(), original)
        count = int(tf.shape(out["groundtruth_boxes"])[0])
        masks = out["groundtruth_instance_masks"].numpy()
        assert masks.shape == (count, 64, 64)
        assert masks.reshape(count, -1).max(1).min() == 1  # no empty mask
        assert np.all(out["groundtruth_boxes"].numpy() <= 1.0)
        boxes += count
    assert sorted(images) == expected["train"]["images"]
    assert boxes == len(expected["train"]["annotations"])


def test_command_prints_the_summary(bad_set, capsys, command_flags):
    root, expected, _ = bad_set
    command_flags(create_tfrecords, "--root", str(root), "--splits", "train",
                  "--shards", "2")
    create_tfrecords.main([])
    out = capsys.readouterr().out
    assert "train: 2 shard(s)" in out
    written = len(expected["train"]["annotations"])
    assert f"5 of 10 images and {written} of" in out
    assert "1 missing_file" in out and "3 image_converted" in out
    assert f"report: {root / 'tfrecords' / 'train_report.json'}" in out


@pytest.mark.slow
def test_training_and_evaluation_run_on_the_valid_part(bad_set, tmp_path, tiny_overrides,
                                                        write_yaml):
    """Model Garden's trainer on the converted bad set, one train shard cut short
    (read up to the damage with task.drop_damaged_records), evaluated against the
    raw val annotations that pycocotools cannot take as they are."""
    root, _, _ = bad_set
    records = tmp_path / "records"
    shutil.copytree(root / "tfrecords", records)
    shard = records / "train-00001-of-00002.tfrecord"
    with open(shard, "r+b") as f:
        f.truncate(shard.stat().st_size - 100)
    overrides = tiny_overrides("dcnv2", train_steps=2)
    overrides["task"].update({
        "train_data": dict(overrides["task"]["train_data"],
                           input_path=str(records / "train-*.tfrecord")),
        "validation_data": dict(overrides["task"]["validation_data"],
                                input_path=str(records / "val-*.tfrecord")),
        "annotation_file": str(root / "annotations" / "instances_val.json"),
        "drop_damaged_records": True})
    overrides["trainer"]["validation_steps"] = 2  # the 4 val images
    model_dir = tmp_path / "run"
    command = [sys.executable, "-m", "models.train", f"--experiment={SYNTHETIC_EXPERIMENT}",
               f"--model_dir={model_dir}", "--mode=train_and_eval",
               f"--config_file={write_yaml(tmp_path / 'bad.yaml', overrides)}"]
    result = check(subprocess.run(command, cwd=REPO, env=python_env(), capture_output=True,
                                  text=True, timeout=600))
    log = result.stdout + result.stderr
    assert "train-00001-of-00002.tfrecord: unreadable from byte" in log
    assert "evaluating against its valid part" in log
    valid = json.loads((model_dir / "valid_instances_val.json").read_text())
    assert all("segmentation" in a and "area" in a for a in valid["annotations"])
    metrics = json.loads((model_dir / "metrics.json").read_text())
    assert set(metrics) >= {"box", "mask"}
    assert all(-1 <= v <= 1 for kind in ("box", "mask") for v in metrics[kind].values())
