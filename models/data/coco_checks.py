"""Checks of COCO instance annotations: what can be trained and evaluated on, and why
the rest cannot.

`check(coco)` goes through a COCO "instances" dict and returns the usable images
(the first entry of each id), their usable annotations (copies, boxes clipped to the
image) and the category names, with a `Report` of each item it skipped or changed
and why. `instance_mask` decodes an annotation's mask, or reports why it cannot.
`valid_annotation_file` writes the valid part of an annotation file for evaluation.

Reason codes of skipped items:

* images: `bad_image_entry` (no id, file name or positive integer size),
  `duplicate_image_id` (a later entry of an id; its annotations go to the first);
  found by the converter (`models.data.tfrecords`): `missing_file`,
  `unreadable_image`, `size_mismatch` (the file's size is not the entry's);
* annotations: `bad_annotation_entry` (no id, image id or category id),
  `duplicate_annotation_id`, `unknown_image`, `unknown_category`, `bad_box` (not
  four finite numbers), `degenerate_box` (width or height <= 0),
  `box_outside_image` (nothing left once clipped to the image), `image_skipped` (its
  image was skipped); when masks are used, `no_mask` (no segmentation), `bad_mask`
  (not a valid polygon list or RLE of the image's size) and `empty_mask` (no pixel).

Reason codes of changed items: `box_clipped` (a box partly outside the image, clipped
to it), `area_from_box` (a missing or invalid area, set to the clipped box's),
`image_converted` (an image file that is not 8-bit RGB PNG / JPEG, re-encoded as one).

An annotation without a usable mask is skipped when masks are used: Model Garden's
decoder takes masks for all instances of an image or for none, and a made-up mask
would teach the mask head wrong shapes.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import math
import os
from numbers import Real
from typing import Optional

from absl import logging
import numpy as np
from pycocotools import mask as mask_util
import tensorflow as tf

_LISTS = ("images", "annotations", "categories")


class Report:
    """What a check skipped and changed: `skipped` and `changed` hold one
    `{'image_id' | 'annotation_id': ..., 'reason': code, 'detail': text}` per item."""

    def __init__(self):
        self.skipped = []
        self.changed = []

    def skip(self, reason: str, detail: str, **ids):
        """Records a skipped item (`image_id=` or `annotation_id=`, maybe both)."""
        self.skipped.append({**ids, "reason": reason, "detail": detail})

    def change(self, reason: str, detail: str, **ids):
        """Records a changed item."""
        self.changed.append({**ids, "reason": reason, "detail": detail})

    def as_dict(self) -> dict:
        """`{'skipped': {'by_reason': {code: count}, 'items': [...]}, 'changed': ...}`."""
        return {kind: {"by_reason": dict(sorted(collections.Counter(
                           item["reason"] for item in items).items())),
                       "items": items}
                for kind, items in (("skipped", self.skipped), ("changed", self.changed))}


@dataclasses.dataclass
class Checked:
    """The usable part of a COCO dict.

    Attributes:
      images: image entries, in file order.
      annotations: image id -> its annotations (copies; `bbox` clipped, `area` set).
      categories: category id -> name.
      report: what was skipped or changed.
    """
    images: list
    annotations: dict
    categories: dict
    report: Report


def check(coco: dict, source: str = "the annotation file") -> Checked:
    """Splits a COCO instances dict into what is usable and a report of the rest.

    Raises:
      ValueError: `coco` has no `images`, `annotations` or `categories` list, or a
        category without an id and a name (`source` names the file).
    """
    if not isinstance(coco, dict) or any(not isinstance(coco.get(k), list) for k in _LISTS):
        raise ValueError(f"{source}: expected a COCO instances file, a JSON object with "
                         f"the lists {', '.join(_LISTS)}")
    categories = {}
    for category in coco["categories"]:
        if not isinstance(category, dict) or not _is_id(category.get("id")) \
                or not isinstance(category.get("name"), str):
            raise ValueError(f"{source}: a category needs an integer id and a name, got "
                             f"{category!r}")
        categories.setdefault(category["id"], category["name"])
    report = Report()
    images = _check_images(coco["images"], report)
    sizes = {image["id"]: (image["width"], image["height"]) for image in images}
    annotations = {image_id: [] for image_id in sizes}
    seen = set()
    for ann in coco["annotations"]:
        ann_id = ann.get("id") if isinstance(ann, dict) else None
        if not _is_id(ann_id) or not _is_id(ann.get("image_id")) \
                or not _is_id(ann.get("category_id")):
            report.skip("bad_annotation_entry",
                        "needs an id, an image_id and a category_id", annotation_id=ann_id)
            continue
        ids = {"annotation_id": ann_id, "image_id": ann["image_id"]}
        if ann_id in seen:
            report.skip("duplicate_annotation_id", "an earlier annotation has this id",
                        **ids)
            continue
        seen.add(ann_id)
        if ann["image_id"] not in sizes:
            report.skip("unknown_image", f"no usable image has id {ann['image_id']}", **ids)
        elif ann["category_id"] not in categories:
            report.skip("unknown_category", f"no category has id {ann['category_id']}",
                        **ids)
        else:
            fixed = _check_box(ann, *sizes[ann["image_id"]], report)
            if fixed is not None:
                annotations[ann["image_id"]].append(fixed)
    return Checked(images, annotations, categories, report)


def _check_images(entries: list, report: Report) -> list:
    """Image entries with an id, a file name and a positive integer size, the first
    of each id."""
    images, ids = [], {}
    for image in entries:
        image_id = image.get("id") if isinstance(image, dict) else None
        if not _is_id(image_id) or not isinstance(image.get("file_name"), str) \
                or not image["file_name"] or not all(
                    _is_id(image.get(k)) and image[k] > 0 for k in ("width", "height")):
            report.skip("bad_image_entry",
                        "needs an integer id, a file_name and positive integer width "
                        "and height", image_id=image_id)
        elif image_id in ids:
            report.skip("duplicate_image_id", f"the id of {ids[image_id]} too (kept)",
                        image_id=image_id, file_name=image["file_name"])
        else:
            ids[image_id] = image["file_name"]
            images.append(image)
    return images


def _check_box(ann: dict, width: int, height: int, report: Report) -> Optional[dict]:
    """A copy of `ann` with its box clipped to the image and a valid area, or None."""
    ids = {"annotation_id": ann["id"], "image_id": ann["image_id"]}
    box = ann.get("bbox")
    if not isinstance(box, (list, tuple)) or len(box) != 4 or not all(
            _is_number(v) for v in box):
        report.skip("bad_box", f"bbox {box!r} is not [x, y, width, height]", **ids)
        return None
    x, y, w, h = (float(v) for v in box)
    if w <= 0 or h <= 0:
        report.skip("degenerate_box", f"bbox {box!r} has no area", **ids)
        return None
    fixed = dict(ann, bbox=[x, y, w, h])
    if x < 0 or y < 0 or x + w > width or y + h > height:
        x0, y0, x1, y1 = max(x, 0.0), max(y, 0.0), min(x + w, width), min(y + h, height)
        if x1 <= x0 or y1 <= y0:
            report.skip("box_outside_image",
                        f"bbox {box!r} lies outside the {width}x{height} image", **ids)
            return None
        fixed["bbox"] = [x0, y0, x1 - x0, y1 - y0]
        report.change("box_clipped", f"bbox {box!r} -> {fixed['bbox']}", **ids)
    if not _is_number(ann.get("area")) or ann["area"] < 0:
        fixed["area"] = fixed["bbox"][2] * fixed["bbox"][3]
        report.change("area_from_box", f"area {ann.get('area')!r} -> {fixed['area']}",
                      **ids)
    return fixed


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


def instance_mask(ann: dict, image: dict, report: Report) -> Optional[np.ndarray]:
    """The uint8 `[height, width]` 0/1 mask of `ann` on `image`, or None (reported as
    `no_mask`, `bad_mask` or `empty_mask`)."""
    ids = {"annotation_id": ann["id"], "image_id": ann["image_id"]}
    height, width = image["height"], image["width"]
    segmentation = ann.get("segmentation")
    if not segmentation:
        report.skip("no_mask", "the annotation has no segmentation", **ids)
        return None
    problem = _segmentation_problem(segmentation, height, width)
    if problem is None:
        try:
            mask = segmentation_to_mask(segmentation, height, width)
        except Exception as error:  # pycocotools raises bare Exceptions on bad input
            problem = f"pycocotools cannot decode it: {error}"
    if problem is not None:
        report.skip("bad_mask", problem, **ids)
        return None
    if not mask.any():
        report.skip("empty_mask", "the segmentation covers no pixel of the image", **ids)
        return None
    return mask


def _segmentation_problem(segmentation, height: int, width: int) -> Optional[str]:
    """Why `segmentation` is no polygon list or RLE of a `height x width` image, or None."""
    if isinstance(segmentation, list):
        for polygon in segmentation:
            if not isinstance(polygon, list) or len(polygon) < 6 or len(polygon) % 2 \
                    or not all(_is_number(v) for v in polygon):
                return "a polygon is not a list of at least 3 (x, y) points"
        return None
    if not isinstance(segmentation, dict) or "counts" not in segmentation:
        return f"expected polygons or an RLE, got {type(segmentation).__name__}"
    if list(segmentation.get("size", ())) != [height, width]:
        return (f"the RLE's size {segmentation.get('size')!r} is not the image's "
                f"[{height}, {width}]")
    return None


def valid_subset(coco: dict, include_masks: bool, source: str = "the annotation file"
                 ) -> tuple:
    """`(valid COCO dict, Report)`: the images and annotations (with a usable mask
    when `include_masks`) that `check` keeps; other keys as they were."""
    checked = check(coco, source)
    annotations = []
    for image in checked.images:
        for ann in checked.annotations[image["id"]]:
            if not include_masks or instance_mask(ann, image, checked.report) is not None:
                annotations.append(ann)
    return dict(coco, images=checked.images, annotations=annotations), checked.report


def valid_annotation_file(path: str, include_masks: bool, out_dir: str) -> str:
    """`path` if every entry of the COCO file is usable; else writes its valid part
    (`valid_subset`) to `out_dir/valid_<name>`, logs what was left out, and returns
    that path."""
    with tf.io.gfile.GFile(path) as f:
        coco = json.load(f)
    valid, report = valid_subset(coco, include_masks, path)
    if not report.skipped and not report.changed:
        return path
    counts = report.as_dict()
    tf.io.gfile.makedirs(out_dir)
    out = os.path.join(out_dir, "valid_" + os.path.basename(path))
    with tf.io.gfile.GFile(out, "w") as f:
        json.dump(valid, f)
    logging.warning(
        "%s: evaluating against its valid part, %s (%d of %d annotations): skipped %s, "
        "changed %s", path, out, len(valid["annotations"]), len(coco["annotations"]),
        counts["skipped"]["by_reason"], counts["changed"]["by_reason"])
    return out


def _is_number(value) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value)


def _is_id(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
