"""models.data.tfrecords: records read back through Model Garden's own decoder and
Mask R-CNN parser match the COCO annotations they were written from."""

import json

import numpy as np
import pytest
import tensorflow as tf
from official.vision.dataloaders import maskrcnn_input, tf_example_decoder
from pycocotools import mask as mask_util

from models.data import synthetic, tfrecords

SIZE = 64
NUM_IMAGES = 6


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    root = tmp_path_factory.mktemp("shapes")
    paths = synthetic.generate(root, NUM_IMAGES, 1, SIZE, seed=3, workers=1)
    files = tfrecords.convert_split(root, "train", num_shards=2)
    coco = json.loads(paths.annotations["train"].read_text())
    return paths, files, coco


def _records(files):
    return [r.numpy() for r in tf.data.TFRecordDataset([str(f) for f in files])]


def test_shards(converted):
    paths, files, _ = converted
    assert [f.name for f in files] == ["train-00000-of-00002.tfrecord",
                                       "train-00001-of-00002.tfrecord"]
    assert [len(_records([f])) for f in files] == [3, 3]
    stamp = [f.stat().st_mtime_ns for f in files]
    assert tfrecords.convert_split(paths.root, "train", num_shards=2) == files
    assert [f.stat().st_mtime_ns for f in files] == stamp  # up to date: not rewritten


def test_model_garden_decoder_round_trip(converted):
    paths, files, coco = converted
    decoder = tf_example_decoder.TfExampleDecoder(include_mask=True)
    images = {img["id"]: img for img in coco["images"]}
    seen = 0
    for record in _records(files):
        out = decoder.decode(tf.constant(record))
        image_id = int(out["source_id"].numpy())
        anns = [a for a in coco["annotations"] if a["image_id"] == image_id]
        png = (paths.images["train"] / images[image_id]["file_name"]).read_bytes()
        np.testing.assert_array_equal(out["image"].numpy(), tf.io.decode_png(png, 3).numpy())
        assert (int(out["height"]), int(out["width"])) == (SIZE, SIZE)
        np.testing.assert_array_equal(out["groundtruth_classes"].numpy(),
                                      [a["category_id"] for a in anns])
        assert not out["groundtruth_is_crowd"].numpy().any()
        np.testing.assert_allclose(out["groundtruth_area"].numpy(), [a["area"] for a in anns])
        boxes = out["groundtruth_boxes"].numpy() * SIZE  # ymin, xmin, ymax, xmax
        expected = [[y, x, y + h, x + w] for x, y, w, h in (a["bbox"] for a in anns)]
        np.testing.assert_allclose(boxes, np.reshape(expected, (-1, 4)), atol=1e-4)
        masks = out["groundtruth_instance_masks"].numpy()
        assert masks.shape == (len(anns), SIZE, SIZE)
        for mask, ann in zip(masks, anns):
            rle = dict(ann["segmentation"], counts=ann["segmentation"]["counts"].encode())
            np.testing.assert_array_equal(mask, mask_util.decode(rle).astype(np.float32))
        seen += 1
    assert seen == NUM_IMAGES


def test_model_garden_maskrcnn_parser(converted):
    _, files, coco = converted
    # Model Garden's Mask R-CNN defaults (levels 2-6, one scale, three aspect ratios,
    # anchor size 8) at a small output size, with its training augmentations.
    parser = maskrcnn_input.Parser(
        output_size=[128, 128], min_level=2, max_level=6, num_scales=1,
        aspect_ratios=[0.5, 1.0, 2.0], anchor_size=8.0, aug_rand_hflip=True,
        aug_scale_min=0.8, aug_scale_max=1.25, max_num_instances=20, include_mask=True,
        mask_crop_size=28)
    decoder = tf_example_decoder.TfExampleDecoder(include_mask=True)
    records = _records(files[:1])[:2]  # image ids 1 and 3 (round-robin shard 0)
    counts = [sum(a["image_id"] == i for a in coco["annotations"]) for i in (1, 3)]
    # Run eagerly: tracing this parser into a graph (as tf.data's map does) takes
    # ~10 s of CPU and exercises the same ops on the same data.
    for is_training in (True, False):
        for record, count, image_id in zip(records, counts, (1, 3)):
            image, labels = parser.parse_fn(is_training)(decoder.decode(tf.constant(record)))
            assert image.shape == (128, 128, 3)
            assert set(labels["anchor_boxes"]) == {"2", "3", "4", "5", "6"}
            if is_training:
                assert labels["gt_masks"].shape == (20, 28, 28)
                assert labels["gt_boxes"].shape == (20, 4)
                # Scale jitter may crop boxes away, never add one.
                valid = labels["gt_classes"].numpy() > 0
                assert 1 <= valid.sum() <= count
                assert labels["gt_masks"].numpy()[valid].max() > 0.5
            else:
                truth = labels["groundtruths"]
                assert int(truth["source_id"]) == image_id
                assert int(truth["num_detections"]) == count
                assert truth["masks"].shape == (20, 28, 28)
