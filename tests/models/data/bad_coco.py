"""A COCO data set with every kind of bad entry and image file the converter meets,
made from a small synthetic one (64x64 images, 8 train and 4 val images), and what
the converter must make of each entry."""

import copy
import json

import cv2
import numpy as np
from pycocotools import mask as mask_util

from models.data import synthetic

SIZE = 64


def _rle(mask):
    rle = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": list(mask.shape), "counts": rle["counts"].decode("ascii")}


def make(root) -> dict:
    """Writes the set under `root` (the layout of `models.data.synthetic`); returns
    `{'train': {'skipped': {(kind, id, reason)}, 'changed': {...}, 'images': [image ids
    written], 'annotations': [annotation ids written]}, 'val': {...}}`, kind 'image' or
    'annotation'.
    """
    synthetic.generate(root, 8, 4, SIZE, seed=5, workers=1)
    return {"train": _spoil_train(root), "val": _spoil_val(root)}


def _load(root, split):
    return json.loads((root / "annotations" / f"instances_{split}.json").read_text())


def _save(root, split, coco):
    (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(coco))


def _spoil_train(root) -> dict:
    coco = _load(root, "train")
    images = root / "train"
    files = {image["id"]: images / image["file_name"] for image in coco["images"]}
    skipped, changed = set(), set()

    def image_file(image_id, array):
        cv2.imwrite(str(files[image_id]), array)

    files[2].unlink()
    skipped.add(("image", 2, "missing_file"))
    bgr = cv2.imread(str(files[3]))
    image_file(3, cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY))
    image_file(4, cv2.cvtColor(cv2.imread(str(files[4])), cv2.COLOR_BGR2BGRA))
    image_file(5, cv2.imread(str(files[5])).astype(np.uint16) * 257)
    changed |= {("image", image_id, "image_converted") for image_id in (3, 4, 5)}
    files[7].write_bytes(b"not an image")
    skipped.add(("image", 7, "unreadable_image"))
    coco["images"][5]["width"] = SIZE + 16  # id 6
    skipped.add(("image", 6, "size_mismatch"))
    coco["images"].append(dict(coco["images"][0], file_name="000008.png"))  # id 1 again
    skipped.add(("image", 1, "duplicate_image_id"))
    coco["images"].append({"id": 50, "width": SIZE, "height": SIZE})  # no file name
    skipped.add(("image", 50, "bad_image_entry"))
    skipped |= {("annotation", a["id"], "image_skipped") for a in coco["annotations"]
                if a["image_id"] in (2, 6, 7)}
    written_images = [1, 3, 4, 5, 8]
    written = [a["id"] for a in coco["annotations"] if a["image_id"] in written_images]

    base = next(a for a in coco["annotations"] if a["image_id"] == 1)
    square = np.zeros((SIZE, SIZE), np.uint8)
    square[50:, 50:] = 1
    extra = {
        "degenerate_box": {"bbox": [10, 10, 0, 5]},
        "box_outside_image": {"bbox": [SIZE + 10, 5, 10, 10]},
        "bad_box": {"bbox": [1, 2, "three", 4]},
        "no_mask": {"segmentation": []},
        "empty_mask": {"segmentation": _rle(np.zeros((SIZE, SIZE)))},
        "bad_mask": {"segmentation": [[1, 2, 3, 4]]},
        "unknown_image": {"image_id": 999},
        "unknown_category": {"category_id": 99},
        "duplicate_annotation_id": {"id": base["id"]},
        "box_clipped": {"bbox": [50, 50, 30, 30], "segmentation": _rle(square)},
        "area_from_box": {"area": None},
    }
    for number, (reason, fields) in enumerate(extra.items()):
        ann = {**copy.deepcopy(base), "id": 1000 + number, **fields}
        coco["annotations"].append(ann)
        if reason in ("box_clipped", "area_from_box"):
            changed.add(("annotation", ann["id"], reason))
            written.append(ann["id"])
        else:
            skipped.add(("annotation", ann["id"], reason))
    _save(root, "train", coco)
    return {"skipped": skipped, "changed": changed, "images": written_images,
            "annotations": written}


def _spoil_val(root) -> dict:
    """Val entries that would stop pycocotools: no segmentation, no area, a repeated
    annotation id."""
    coco = _load(root, "val")
    first, second, third = coco["annotations"][:3]
    del first["segmentation"]
    del second["area"]
    coco["annotations"].append(dict(third, bbox=[0, 0, 4, 4]))  # same id as `third`
    _save(root, "val", coco)
    return {"skipped": {("annotation", first["id"], "no_mask"),
                        ("annotation", third["id"], "duplicate_annotation_id")},
            "changed": {("annotation", second["id"], "area_from_box")}}
