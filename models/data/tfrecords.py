"""COCO instance annotations -> TFRecords that Model Garden's detection readers take.

One ``tf.train.Example`` per image, with the keys read by
``official.vision.dataloaders.tf_example_decoder.TfExampleDecoder``:

* ``image/encoded`` (the image file's bytes if it is an 8-bit RGB PNG or JPEG, else
  the image re-encoded as one), ``image/format``,
  ``image/height``, ``image/width``, ``image/filename``, ``image/source_id`` (the
  COCO image id as a decimal string), ``image/key/sha256``;
* per instance, in annotation order: ``image/object/bbox/{xmin,ymin,xmax,ymax}``
  (float, normalised by the image width/height), ``image/object/class/label``
  (int64 category id), ``image/object/class/text``, ``image/object/is_crowd``,
  ``image/object/area`` (float, pixels) and, with masks, ``image/object/mask``
  (one single-channel PNG per instance, values 0/1, image-sized).

Only what passes the checks of ``models.data.coco_checks`` and of the image files is
written; ``{prefix}_report.json`` beside the shards lists what was skipped or changed
and why. Images are dealt to shards round-robin; shard files are named
``{prefix}-{i:05d}-of-{n:05d}.tfrecord``. ``python -m models.create_tfrecords``
converts a data set from the command line.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Optional, Sequence

import cv2
import numpy as np
import tensorflow as tf

from models.data import coco_checks


def _bytes(values):
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=list(values)))


def _ints(values):
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v) for v in values]))


def _floats(values):
    return tf.train.Feature(float_list=tf.train.FloatList(value=[float(v) for v in values]))


def encode_png(array: np.ndarray) -> bytes:
    """PNG bytes of `array` (OpenCV's encoder)."""
    ok, data = cv2.imencode(".png", array)
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return data.tobytes()


def create_tf_example(image: dict, annotations: Sequence[dict], image_bytes: bytes,
                      category_names: dict, masks: Optional[Sequence[np.ndarray]] = None,
                      image_format: str = "png") -> tf.train.Example:
    """One example from a COCO image record, its annotations, the encoded image
    (`image_format` 'png' or 'jpeg') and, to write masks, one uint8 `[height, width]`
    0/1 mask per annotation."""
    height, width = int(image["height"]), int(image["width"])
    name = image["file_name"]
    xmin, ymin, xmax, ymax, labels, texts, crowd, area = ([] for _ in range(8))
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
    feature = {
        "image/encoded": _bytes([image_bytes]),
        "image/format": _bytes([image_format.encode("ascii")]),
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
    if masks is not None:
        feature["image/object/mask"] = _bytes(encode_png(mask) for mask in masks)
    return tf.train.Example(features=tf.train.Features(feature=feature))


def shard_paths(prefix, num_shards: int) -> list[Path]:
    """The `num_shards` file paths `{prefix}-{i:05d}-of-{num_shards:05d}.tfrecord`."""
    return [Path(f"{prefix}-{i:05d}-of-{num_shards:05d}.tfrecord") for i in range(num_shards)]


def report_path(output_prefix) -> Path:
    """Where `coco_to_tfrecords` writes its report: `{output_prefix}_report.json`."""
    return Path(f"{output_prefix}_report.json")


def coco_to_tfrecords(annotation_file, image_dir, output_prefix, num_shards: int = 1,
                      include_masks: bool = True) -> tuple[list[Path], dict]:
    """Writes the usable images of a COCO json to ``num_shards`` files; returns their
    paths and the conversion report, also written to ``report_path(output_prefix)``.

    Entries are checked with ``models.data.coco_checks`` (its reason codes), image files
    here: a missing, unreadable or wrongly sized file skips its image; one that is not
    8-bit RGB PNG or JPEG (grayscale, RGBA, 16-bit, other formats) is re-encoded as
    8-bit RGB PNG. With ``include_masks``, annotations without a usable mask are
    skipped. The report holds the totals, the counts per reason and every skipped or
    changed item (``coco_checks.Report.as_dict``).
    """
    if num_shards < 1:
        raise ValueError("num_shards must be >= 1")
    try:
        coco = json.loads(Path(annotation_file).read_text())
    except ValueError as error:
        raise ValueError(f"{annotation_file} is not a JSON file: {error}") from None
    checked = coco_checks.check(coco, str(annotation_file))
    report = checked.report
    paths = shard_paths(output_prefix, num_shards)
    paths[0].parent.mkdir(parents=True, exist_ok=True)
    writers = [tf.io.TFRecordWriter(str(p)) for p in paths]
    images = annotations = 0
    try:
        for image in checked.images:
            anns = checked.annotations[image["id"]]
            encoded = _image_file(Path(image_dir, image["file_name"]), image, report)
            if encoded is None:
                for ann in anns:
                    report.skip("image_skipped", f"image {image['id']} was skipped",
                                annotation_id=ann["id"], image_id=image["id"])
                continue
            masks = None
            if include_masks:
                pairs = [(ann, coco_checks.instance_mask(ann, image, report))
                         for ann in anns]
                anns = [ann for ann, mask in pairs if mask is not None]
                masks = [mask for _, mask in pairs if mask is not None]
            example = create_tf_example(image, anns, encoded[0], checked.categories, masks,
                                        encoded[1])
            writers[images % num_shards].write(example.SerializeToString())
            images += 1
            annotations += len(anns)
    finally:
        for writer in writers:
            writer.close()
    summary = {"annotation_file": str(annotation_file), "image_dir": str(image_dir),
               "include_masks": include_masks,
               "images": {"total": len(coco["images"]), "written": images},
               "annotations": {"total": len(coco["annotations"]), "written": annotations},
               **report.as_dict()}
    report_path(output_prefix).write_text(json.dumps(summary, indent=1, default=str) + "\n")
    return paths, summary


def report_summary(report: dict) -> list[str]:
    """Lines describing a report of ``coco_to_tfrecords``: totals and counts per reason."""
    lines = [f"{report['images']['written']} of {report['images']['total']} images and "
             f"{report['annotations']['written']} of {report['annotations']['total']} "
             "annotations written"]
    for kind in ("skipped", "changed"):
        counts = report[kind]["by_reason"]
        if counts:
            lines.append(f"{kind}: "
                         + ", ".join(f"{n} {code}" for code, n in counts.items()))
    return lines


def _image_file(path: Path, image: dict, report: coco_checks.Report):
    """`(encoded bytes, 'png' | 'jpeg')` of the image file, re-encoded as 8-bit RGB PNG
    unless it is an 8-bit RGB PNG or JPEG; None (reported) if it is missing,
    unreadable or not of the entry's size."""
    ids = {"image_id": image["id"], "file_name": image["file_name"]}
    if not path.is_file():
        report.skip("missing_file", f"{path} does not exist", **ids)
        return None
    data = path.read_bytes()
    array = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if array is None or array.dtype not in (np.uint8, np.uint16):
        kind = "not an image OpenCV reads" if array is None else f"{array.dtype} samples"
        report.skip("unreadable_image", f"{path}: {kind}", **ids)
        return None
    if array.shape[:2] != (image["height"], image["width"]):
        report.skip("size_mismatch", f"{path} is {array.shape[1]}x{array.shape[0]}, the "
                    f"entry says {image['width']}x{image['height']}", **ids)
        return None
    array = array.reshape(array.shape[:2] + (-1,))  # [H, W, channels], BGR(A) order
    channels = array.shape[2]
    fmt = "png" if data.startswith(b"\x89PNG") else \
        "jpeg" if data.startswith(b"\xff\xd8") else None
    if fmt and channels == 3 and array.dtype == np.uint8:
        return data, fmt
    kind = {1: "grayscale", 2: "grayscale+alpha", 3: "colour", 4: "colour+alpha"}[channels]
    report.change("image_converted", f"{8 * array.itemsize}-bit {kind} "
                  f"{(fmt or 'non-PNG/JPEG').upper()} -> 8-bit RGB PNG", **ids)
    if array.dtype == np.uint16:
        array = np.round(array / 257.0).astype(np.uint8)
    if channels < 3:
        array = cv2.cvtColor(np.ascontiguousarray(array[..., 0]), cv2.COLOR_GRAY2BGR)
    return encode_png(np.ascontiguousarray(array[..., :3])), "png"


def convert_split(root, split: str, num_shards: int = 1, include_masks: bool = True,
                  force: bool = False) -> list[Path]:
    """Converts ``root/annotations/instances_{split}.json`` (images in ``root/split``)
    to ``root/tfrecords/{split}-*.tfrecord`` and ``{split}_report.json``
    (``coco_to_tfrecords``).

    ``root/tfrecords/{split}.json`` records the annotation file's hash and the options;
    when they match and the shards and report exist, nothing is rewritten.
    """
    root = Path(root)
    annotation_file = root / "annotations" / f"instances_{split}.json"
    if not annotation_file.is_file():
        raise FileNotFoundError(f"{annotation_file} does not exist: the annotations of "
                                f"split {split!r} are expected there")
    out_dir = root / "tfrecords"
    stamp = out_dir / f"{split}.json"
    params = {"annotations_sha256": hashlib.sha256(annotation_file.read_bytes()).hexdigest(),
              "num_shards": num_shards, "include_masks": include_masks}
    paths = shard_paths(out_dir / split, num_shards)
    if not force and stamp.is_file() and report_path(out_dir / split).is_file() \
            and all(p.is_file() for p in paths):
        try:
            if json.loads(stamp.read_text()) == params:
                return paths
        except ValueError:
            pass
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp.unlink(missing_ok=True)
    for old in out_dir.glob(f"{split}-*-of-*.tfrecord"):
        old.unlink()
    paths, _ = coco_to_tfrecords(annotation_file, root / split, out_dir / split,
                                 num_shards, include_masks)
    stamp.write_text(json.dumps(params, indent=2, sort_keys=True) + "\n")
    return paths

