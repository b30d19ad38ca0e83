"""COCO instance annotations -> TFRecords that Model Garden's detection readers take.

One ``tf.train.Example`` per image, with the keys read by
``official.vision.dataloaders.tf_example_decoder.TfExampleDecoder``:

* ``image/encoded`` (the image file's bytes, PNG or JPEG), ``image/format``,
  ``image/height``, ``image/width``, ``image/filename``, ``image/source_id`` (the
  COCO image id as a decimal string), ``image/key/sha256``;
* per instance, in annotation order: ``image/object/bbox/{xmin,ymin,xmax,ymax}``
  (float, normalised by the image width/height), ``image/object/class/label``
  (int64 category id), ``image/object/class/text``, ``image/object/is_crowd``,
  ``image/object/area`` (float, pixels) and, with masks, ``image/object/mask``
  (one single-channel PNG per instance, values 0/1, image-sized).

Images are dealt to shards round-robin; shard files are named
``{prefix}-{i:05d}-of-{n:05d}.tfrecord``. ``python -m models.create_tfrecords``
converts a data set from the command line.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
import tensorflow as tf
from pycocotools import mask as mask_util


def _bytes(values):
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=list(values)))


def _ints(values):
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v) for v in values]))


def _floats(values):
    return tf.train.Feature(float_list=tf.train.FloatList(value=[float(v) for v in values]))


def segmentation_to_mask(segmentation, height: int, width: int) -> np.ndarray:
    """A COCO segmentation (polygons, RLE or compressed RLE) -> uint8 [h, w] of 0/1."""
    if isinstance(segmentation, list):  # polygons
        rle = mask_util.merge(mask_util.frPyObjects(segmentation, height, width))
    elif isinstance(segmentation["counts"], list):  # uncompressed RLE
        rle = mask_util.frPyObjects(segmentation, height, width)
    else:
        counts = segmentation["counts"]
        rle = {"size": segmentation["size"],
               "counts": counts.encode("ascii") if isinstance(counts, str) else counts}
    return mask_util.decode(rle).astype(np.uint8)


def encode_png(array: np.ndarray) -> bytes:
    """PNG bytes of `array` (OpenCV's encoder)."""
    ok, data = cv2.imencode(".png", array)
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return data.tobytes()


def create_tf_example(image: dict, annotations: Sequence[dict], image_bytes: bytes,
                      category_names: dict, include_masks: bool = True) -> tf.train.Example:
    """One example from a COCO image record, its annotations and the image file bytes."""
    height, width = int(image["height"]), int(image["width"])
    name = image["file_name"]
    fmt = "png" if name.lower().endswith(".png") else "jpeg"
    xmin, ymin, xmax, ymax, labels, texts, crowd, area, masks = ([] for _ in range(9))
    for ann in annotations:
        x, y, w, h = ann["bbox"]
        xmin.append(x / width)
        ymin.append(y / height)
        xmax.append((x + w) / width)
        ymax.append((y + h) / height)
        labels.append(ann["category_id"])
        texts.append(category_names[ann["category_id"]].encode("utf8"))
        crowd.append(ann.get("iscrowd", 0))
        area.append(ann["area"])
        if include_masks:
            masks.append(encode_png(segmentation_to_mask(ann["segmentation"], height, width)))
    feature = {
        "image/encoded": _bytes([image_bytes]),
        "image/format": _bytes([fmt.encode("ascii")]),
        "image/height": _ints([height]),
        "image/width": _ints([width]),
        "image/filename": _bytes([name.encode("utf8")]),
        "image/source_id": _bytes([str(image["id"]).encode("ascii")]),
        "image/key/sha256": _bytes([hashlib.sha256(image_bytes).hexdigest().encode("ascii")]),
        "image/object/bbox/xmin": _floats(xmin),
        "image/object/bbox/ymin": _floats(ymin),
        "image/object/bbox/xmax": _floats(xmax),
        "image/object/bbox/ymax": _floats(ymax),
        "image/object/class/label": _ints(labels),
        "image/object/class/text": _bytes(texts),
        "image/object/is_crowd": _ints(crowd),
        "image/object/area": _floats(area),
    }
    if include_masks:
        feature["image/object/mask"] = _bytes(masks)
    return tf.train.Example(features=tf.train.Features(feature=feature))


def shard_paths(prefix, num_shards: int) -> list[Path]:
    """The `num_shards` file paths `{prefix}-{i:05d}-of-{num_shards:05d}.tfrecord`."""
    return [Path(f"{prefix}-{i:05d}-of-{num_shards:05d}.tfrecord") for i in range(num_shards)]


def coco_to_tfrecords(annotation_file, image_dir, output_prefix, num_shards: int = 1,
                      include_masks: bool = True) -> list[Path]:
    """Writes every image of a COCO json to ``num_shards`` files; returns their paths.

    Annotations with a non-positive box or one that leaves the image are skipped.
    """
    if num_shards < 1:
        raise ValueError("num_shards must be >= 1")
    coco = json.loads(Path(annotation_file).read_text())
    names = {c["id"]: c["name"] for c in coco["categories"]}
    per_image = defaultdict(list)
    for ann in coco["annotations"]:
        per_image[ann["image_id"]].append(ann)
    paths = shard_paths(output_prefix, num_shards)
    paths[0].parent.mkdir(parents=True, exist_ok=True)
    writers = [tf.io.TFRecordWriter(str(p)) for p in paths]
    try:
        for index, image in enumerate(coco["images"]):
            width, height = image["width"], image["height"]
            anns = [a for a in per_image[image["id"]]
                    if a["bbox"][2] > 0 and a["bbox"][3] > 0
                    and a["bbox"][0] + a["bbox"][2] <= width
                    and a["bbox"][1] + a["bbox"][3] <= height]
            data = Path(image_dir, image["file_name"]).read_bytes()
            example = create_tf_example(image, anns, data, names, include_masks)
            writers[index % num_shards].write(example.SerializeToString())
    finally:
        for writer in writers:
            writer.close()
    return paths


def convert_split(root, split: str, num_shards: int = 1, include_masks: bool = True,
                  force: bool = False) -> list[Path]:
    """Converts ``root/annotations/instances_{split}.json`` (images in ``root/split``)
    to ``root/tfrecords/{split}-*.tfrecord``.

    ``root/tfrecords/{split}.json`` records the annotation file's hash and the options;
    when they match and the shards exist, nothing is rewritten.
    """
    root = Path(root)
    annotation_file = root / "annotations" / f"instances_{split}.json"
    out_dir = root / "tfrecords"
    stamp = out_dir / f"{split}.json"
    params = {"annotations_sha256": hashlib.sha256(annotation_file.read_bytes()).hexdigest(),
              "num_shards": num_shards, "include_masks": include_masks}
    paths = shard_paths(out_dir / split, num_shards)
    if not force and stamp.is_file() and all(p.is_file() for p in paths):
        try:
            if json.loads(stamp.read_text()) == params:
                return paths
        except ValueError:
            pass
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp.unlink(missing_ok=True)
    for old in out_dir.glob(f"{split}-*-of-*.tfrecord"):
        old.unlink()
    paths = coco_to_tfrecords(annotation_file, root / split, out_dir / split, num_shards,
                              include_masks)
    stamp.write_text(json.dumps(params, indent=2, sort_keys=True) + "\n")
    return paths

