"""models.serving.detector: COCO ground truth by file name, boxes as (y1, x1, y2, x2) and
masks as pycocotools decodes them."""

import json

import numpy as np
from pycocotools import mask as mask_util
from pycocotools.coco import COCO

from models.serving import detector


def _check_against_pycocotools(annotation_file, truth):
    """Every image of the file: boxes from [x, y, w, h], classes, and masks equal to
    pycocotools' `annToMask`, in the file's annotation order."""
    coco = COCO(annotation_file)
    assert set(truth) == {image["file_name"] for image in coco.dataset["images"]}
    for image in coco.dataset["images"]:
        annotations = coco.loadAnns(coco.getAnnIds(imgIds=image["id"]))
        got = truth[image["file_name"]]
        want_boxes = np.array([[y, x, y + h, x + w] for x, y, w, h in
                               (a["bbox"] for a in annotations)], np.float32).reshape(-1, 4)
        np.testing.assert_array_equal(got["boxes"], want_boxes)
        assert got["boxes"].shape == (len(annotations), 4)
        np.testing.assert_array_equal(got["classes"], [a["category_id"] for a in annotations])
        if annotations and all("segmentation" in a for a in annotations):
            assert got["masks"].dtype == bool
            assert got["masks"].shape == (len(annotations), image["height"], image["width"])
            for mask, annotation in zip(got["masks"], annotations):
                np.testing.assert_array_equal(mask, coco.annToMask(annotation).astype(bool))
        else:
            assert got["masks"] is None


def test_ground_truth_of_a_generated_set(tiny_data):
    """The synthetic validation annotations (compressed RLE) read back as pycocotools
    reads them."""
    truth = detector.coco_ground_truth(tiny_data["annotation_file"])
    _check_against_pycocotools(tiny_data["annotation_file"], truth)
    assert sum(len(t["classes"]) for t in truth.values()) > 0


def test_ground_truth_of_every_segmentation_form(tmp_path, rng):
    """Compressed RLE, uncompressed RLE and polygons on a non-square image; an image
    with no annotation (no boxes, no masks); one whose annotation has no segmentation
    (boxes, no masks)."""
    height, width = 30, 46
    masks = rng.random((2, height, width)) < 0.3
    compressed = mask_util.encode(np.asfortranarray(masks[0].astype(np.uint8)))
    compressed["counts"] = compressed["counts"].decode("ascii")
    # Uncompressed RLE: run lengths of the column-major mask, starting with zeros.
    flat = masks[1].flatten(order="F").astype(np.int64)
    changes = np.flatnonzero(np.diff(np.concatenate([[0], flat, [1 - flat[-1]]])))
    counts = np.diff(np.concatenate([[0], changes])).tolist()
    assert sum(counts) == height * width
    images = [{"id": 1, "file_name": "a.png", "height": height, "width": width},
              {"id": 2, "file_name": "b.png", "height": 20, "width": 20},
              {"id": 7, "file_name": "c.png", "height": 20, "width": 24}]
    annotations = [
        {"id": 1, "image_id": 1, "category_id": 3, "bbox": [4.0, 2.0, 10.0, 20.0],
         "segmentation": compressed, "area": 1, "iscrowd": 0},
        {"id": 2, "image_id": 1, "category_id": 1, "bbox": [0.5, 1.5, 40.0, 25.0],
         "segmentation": {"size": [height, width], "counts": counts}, "area": 1,
         "iscrowd": 0},
        {"id": 3, "image_id": 1, "category_id": 6, "bbox": [10.0, 5.0, 20.0, 12.0],
         "segmentation": [[10, 5, 30, 5, 30, 17, 10, 17], [35, 20, 44, 20, 40, 28]],
         "area": 1, "iscrowd": 0},
        {"id": 4, "image_id": 7, "category_id": 2, "bbox": [1.0, 2.0, 3.0, 4.0],
         "area": 1, "iscrowd": 0},
    ]
    path = tmp_path / "instances.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations,
                                "categories": [{"id": i, "name": str(i)}
                                               for i in range(1, 7)]}))
    truth = detector.coco_ground_truth(str(path))
    _check_against_pycocotools(str(path), truth)
    a = truth["a.png"]
    np.testing.assert_array_equal(a["boxes"], [[2, 4, 22, 14], [1.5, 0.5, 26.5, 40.5],
                                               [5, 10, 17, 30]])
    np.testing.assert_array_equal(a["masks"][0], masks[0])
    np.testing.assert_array_equal(a["masks"][1], masks[1])
    assert a["masks"][2, 10, 20] and not a["masks"][2, 0, 0]
    b = truth["b.png"]
    assert b["boxes"].shape == (0, 4) and b["masks"] is None and len(b["classes"]) == 0
    c = truth["c.png"]
    np.testing.assert_array_equal(c["boxes"], [[2, 1, 6, 4]])
    assert c["masks"] is None and c["classes"].tolist() == [2]
