"""models.data.coco_checks: each kind of bad COCO entry is skipped or fixed with its
reason, masks are decoded or refused, and the valid part of a file that stops
pycocotools' evaluation evaluates."""

import json

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from models.data import coco_checks

SQUARE = [[2.0, 2.0, 6.0, 2.0, 6.0, 6.0, 2.0, 6.0]]


def _coco():
    image = {"id": 1, "file_name": "a.png", "width": 10, "height": 8}
    ann = {"id": 1, "image_id": 1, "category_id": 1, "bbox": [2, 2, 4, 4], "area": 16,
           "iscrowd": 0, "segmentation": SQUARE}
    return {
        "images": [image, dict(image, file_name="b.png"), {"id": 2, "file_name": "c.png",
                                                           "width": 0, "height": 8}],
        "categories": [{"id": 1, "name": "square"}],
        "annotations": [
            ann,
            dict(ann, id=2, bbox=[2, 2, 0, 4]),
            dict(ann, id=3, bbox=[20, 2, 4, 4]),
            dict(ann, id=4, bbox=[8, 6, 4, 4]),
            dict(ann, id=5, bbox=[2, 2, float("nan"), 4]),
            dict(ann, id=6, image_id=7),
            dict(ann, id=7, category_id=3),
            dict(ann, id=1),
            dict(ann, id=8, area="big"),
            {"image_id": 1, "category_id": 1, "bbox": [1, 1, 2, 2]},
        ],
    }


def _reasons(items):
    return {(item.get("annotation_id", item.get("image_id")), item["reason"])
            for item in items}


def test_check_skips_and_fixes_each_bad_entry():
    checked = coco_checks.check(_coco(), "x.json")
    assert [image["file_name"] for image in checked.images] == ["a.png"]
    assert checked.categories == {1: "square"}
    assert _reasons(checked.report.skipped) == {
        (1, "duplicate_image_id"), (2, "bad_image_entry"), (2, "degenerate_box"),
        (3, "box_outside_image"), (5, "bad_box"), (6, "unknown_image"),
        (7, "unknown_category"), (1, "duplicate_annotation_id"),
        (None, "bad_annotation_entry")}
    assert _reasons(checked.report.changed) == {(4, "box_clipped"), (8, "area_from_box")}
    kept = {ann["id"]: ann for ann in checked.annotations[1]}
    assert sorted(kept) == [1, 4, 8]
    assert kept[4]["bbox"] == [8.0, 6.0, 2.0, 2.0]
    assert kept[8]["area"] == 16.0
    counts = checked.report.as_dict()
    assert counts["skipped"]["by_reason"]["duplicate_image_id"] == 1
    assert counts["changed"]["by_reason"] == {"area_from_box": 1, "box_clipped": 1}


def test_check_refuses_what_is_not_coco():
    with pytest.raises(ValueError, match="x.json: expected a COCO instances file"):
        coco_checks.check({"images": []}, "x.json")
    with pytest.raises(ValueError, match="x.json: a category needs an integer id"):
        coco_checks.check(dict(_coco(), categories=[{"name": "square"}]), "x.json")


@pytest.mark.parametrize("segmentation, reason", [
    (None, "no_mask"),
    ([], "no_mask"),
    ([[1, 2, 3, 4]], "bad_mask"),
    ({"size": [4, 4], "counts": "0"}, "bad_mask"),
    ("polygon", "bad_mask"),
    ({"size": [8, 10], "counts": [80]}, "empty_mask"),
])
def test_instance_mask_refuses_unusable_segmentations(segmentation, reason):
    report = coco_checks.Report()
    ann = {"id": 9, "image_id": 1, "segmentation": segmentation}
    assert coco_checks.instance_mask(ann, {"height": 8, "width": 10}, report) is None
    assert _reasons(report.skipped) == {(9, reason)}


def test_instance_mask_of_a_polygon():
    report = coco_checks.Report()
    ann = {"id": 9, "image_id": 1, "segmentation": SQUARE}
    mask = coco_checks.instance_mask(ann, {"height": 8, "width": 10}, report)
    assert mask.shape == (8, 10) and mask.dtype == np.uint8
    assert mask.max() == 1 and 9 <= mask.sum() <= 25
    assert not report.skipped


def test_valid_part_of_a_file_that_stops_pycocotools(tmp_path):
    coco = _coco()
    coco["images"] = coco["images"][:1]
    coco["annotations"] = [coco["annotations"][0],
                           {"id": 2, "image_id": 1, "category_id": 1, "bbox": [1, 1, 3, 3],
                            "iscrowd": 0}]  # no area, no segmentation
    raw = tmp_path / "raw.json"
    raw.write_text(json.dumps(coco))
    detections = [{"image_id": 1, "category_id": 1, "bbox": [2, 2, 4, 4], "score": 0.9,
                   "segmentation": {"size": [8, 10], "counts": "0"}}]
    truth = COCO(str(raw))
    with pytest.raises(KeyError):
        COCOeval(truth, truth.loadRes(detections), "segm").evaluate()

    path = coco_checks.valid_annotation_file(str(raw), True, str(tmp_path / "out"))
    assert path == str(tmp_path / "out" / "valid_raw.json")
    assert [a["id"] for a in json.loads(open(path).read())["annotations"]] == [1]
    for kind in ("bbox", "segm"):
        truth = COCO(path)
        evaluation = COCOeval(truth, truth.loadRes(detections), kind)
        evaluation.evaluate()
        evaluation.accumulate()
    coco["annotations"] = coco["annotations"][:1]
    raw.write_text(json.dumps(coco))
    assert coco_checks.valid_annotation_file(str(raw), True, str(tmp_path)) == str(raw)
