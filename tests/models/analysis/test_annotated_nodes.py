"""models.analysis.annotated_nodes: nodes chosen from COCO annotations, against a
brute-force distance search."""

import json

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from models.analysis import annotated_nodes

HEIGHT, WIDTH = 21, 31


def _write_coco(path, masks, name="000007.png"):
    annotations = []
    for index, mask in enumerate(masks):
        rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
        ys, xs = np.nonzero(mask)
        annotations.append({
            "id": index + 1, "image_id": 3, "category_id": 1, "iscrowd": 0,
            "area": int(mask.sum()),
            "bbox": [int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1),
                     int(ys.max() - ys.min() + 1)],
            "segmentation": {"size": list(mask.shape), "counts": rle["counts"].decode()}})
    coco = {"images": [{"id": 3, "file_name": name, "height": HEIGHT, "width": WIDTH}],
            "annotations": annotations, "categories": [{"id": 1, "name": "shape"}]}
    path.write_text(json.dumps(coco))
    return str(path)


def _depth(region):
    """Euclidean distance of each pixel of `region` to the nearest pixel outside it
    (the image border counts as outside), by brute force."""
    padded = np.pad(region, 1)
    outside = np.argwhere(~padded)
    depth = np.zeros(region.shape)
    for y, x in np.argwhere(region):
        depth[y, x] = np.sqrt(((outside - (y + 1, x + 1)) ** 2).sum(axis=1)).min()
    return depth


def test_nodes_from_annotations(tmp_path):
    big = np.zeros((HEIGHT, WIDTH), bool)
    big[3:10, 3:12] = True
    small = np.zeros((HEIGHT, WIDTH), bool)
    small[14:17, 24:27] = True
    path = _write_coco(tmp_path / "instances.json", [small, big])
    nodes = annotated_nodes.nodes_from_annotations(path, "/anywhere/000007.png")

    assert nodes["roi"] == (3.0, 3.0, 10.0, 12.0)  # (y1, x1, y2, x2) of the largest
    depth = _depth(big)
    assert big[nodes["foreground"]]
    assert depth[nodes["foreground"]] == pytest.approx(depth.max(), abs=1e-3)
    background = ~(big | small)
    depth = _depth(background)
    assert background[nodes["background"]]
    assert depth[nodes["background"]] == pytest.approx(depth.max(), abs=1e-3)

    with pytest.raises(ValueError, match="has no image named 'other.png'"):
        annotated_nodes.nodes_from_annotations(path, "other.png")
