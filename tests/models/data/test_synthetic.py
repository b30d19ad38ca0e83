"""models.data.synthetic: determinism, annotation validity, geometric variety, COCO
evaluation of the ground truth against itself, and reuse of finished output."""

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as mask_util
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from models.data import synthetic

SIZE = 64


def _files(root: Path) -> dict:
    """Relative path -> bytes of every image and annotation file under root."""
    return {str(p.relative_to(root)): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.suffix in (".png", ".json")
            and p.name != "manifest.json"}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("shapes")
    return synthetic.generate(root, num_train=8, num_val=4, image_size=SIZE, seed=0, workers=1)


@pytest.fixture(scope="module")
def rendered_256():
    """Instances of a few full-size images, drawn in memory."""
    instances = []
    for index in range(12):
        _, inst = synthetic.render_image(synthetic.image_rng(5, "train", index), 256, 256)
        instances += inst
    return instances


def test_layout(dataset):
    for split, count in (("train", 8), ("val", 4)):
        assert sorted(p.name for p in dataset.images[split].glob("*.png")) == [
            f"{i:06d}.png" for i in range(1, count + 1)]
        coco = json.loads(dataset.annotations[split].read_text())
        assert [c["name"] for c in coco["categories"]] == list(synthetic.CLASS_NAMES)
        assert [c["id"] for c in coco["categories"]] == list(range(1, 7))
        assert [img["id"] for img in coco["images"]] == list(range(1, count + 1))
        assert [a["id"] for a in coco["annotations"]] == list(
            range(1, len(coco["annotations"]) + 1))
        assert all(img["height"] == SIZE and img["width"] == SIZE for img in coco["images"])
    manifest = json.loads(dataset.manifest.read_text())
    assert (manifest["seed"], manifest["num_train"], manifest["height"]) == (0, 8, SIZE)


def test_same_seed_gives_identical_bytes(dataset, tmp_path):
    # In two worker processes this time: the output must not depend on how it is made.
    again = synthetic.generate(tmp_path, 8, 4, SIZE, seed=0, workers=2)
    assert not again.reused
    first, second = _files(dataset.root), _files(again.root)
    assert len(first) == 8 + 4 + 2
    assert first == second


def test_other_seed_differs(dataset, tmp_path):
    other = synthetic.generate(tmp_path, 8, 4, SIZE, seed=1, workers=1)
    first, second = _files(dataset.root), _files(other.root)
    assert first.keys() == second.keys()
    assert all(first[k] != second[k] for k in first)


def test_annotations_match_their_masks(dataset):
    for split in synthetic.SPLITS:
        coco = json.loads(dataset.annotations[split].read_text())
        by_image = {}
        for ann in coco["annotations"]:
            mask = mask_util.decode({"size": ann["segmentation"]["size"],
                                     "counts": ann["segmentation"]["counts"].encode()})
            assert ann["segmentation"]["size"] == [SIZE, SIZE]
            assert mask.any(), "empty mask"
            assert ann["area"] == int(mask.sum()) >= synthetic.GeneratorConfig().min_area
            ys, xs = np.nonzero(mask)
            assert ann["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1,
                                   ys.max() - ys.min() + 1]
            assert ann["iscrowd"] == 0 and 1 <= ann["category_id"] <= 6
            by_image.setdefault(ann["image_id"], []).append(mask)
        for masks in by_image.values():  # visible parts never overlap
            assert np.stack(masks).sum(axis=0).max() == 1


def test_identity_warp_keeps_canonical_mask():
    cfg = synthetic.GeneratorConfig(warp=0.0, max_bend=0.0, max_taper=0.0)
    rng = np.random.default_rng(0)
    canvas = synthetic._canonical_mask(rng, 3)
    warped, magnitude = synthetic._warp_canonical(rng, canvas, cfg)
    np.testing.assert_array_equal(warped, canvas)
    assert magnitude == 0.0
    bent, magnitude = synthetic._warp_canonical(rng, canvas, synthetic.GeneratorConfig())
    assert magnitude > 0.0 and np.mean((bent > 127) != (canvas > 127)) > 0.01


def test_all_classes_appear():
    seen = set()
    for index in range(16):
        _, inst = synthetic.render_image(synthetic.image_rng(0, "train", index), SIZE, SIZE)
        seen |= {i["category_id"] for i in inst}
    assert seen == set(range(1, 7))


def test_geometric_variety(rendered_256):
    boxes = np.array([mask_util.toBbox(mask_util.encode(np.asfortranarray(
        i["mask"].astype(np.uint8)))) for i in rendered_256])
    aspect = boxes[:, 2] / boxes[:, 3]
    areas = np.array([i["mask"].sum() for i in rendered_256])
    geometry = {k: np.array([i["geometry"][k] for i in rendered_256])
                for k in ("rotation", "aspect", "shear", "warp", "occluded")}
    # Box aspect ratios (w / h) on both sides of 1, spanning a factor > 4.
    assert aspect.min() < 0.6 and aspect.max() > 1 / 0.6 and aspect.max() / aspect.min() > 4
    # COCO's small / medium / large buckets are all populated.
    assert (areas < 32 ** 2).any() and ((areas >= 32 ** 2) & (areas < 96 ** 2)).any()
    assert (areas >= 96 ** 2).any()
    assert areas.max() / areas.min() > 50
    assert np.ptp(geometry["rotation"]) > 270
    assert geometry["aspect"].min() < 0.5 and geometry["aspect"].max() > 2.0
    assert geometry["shear"].min() < -0.25 and geometry["shear"].max() > 0.25
    assert (geometry["warp"] > 0.05).mean() > 0.5
    assert (geometry["occluded"] > 0.05).any()


def test_coco_self_evaluation_is_perfect(dataset):
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(dataset.annotations["train"]))
        detections = [{"image_id": a["image_id"], "category_id": a["category_id"],
                       "bbox": a["bbox"], "segmentation": a["segmentation"], "score": 1.0}
                      for a in gt.dataset["annotations"]]
        for iou_type in ("bbox", "segm"):
            dt = gt.loadRes([dict(d) for d in detections])
            evaluator = COCOeval(gt, dt, iou_type)
            evaluator.evaluate()
            evaluator.accumulate()
            evaluator.summarize()
            assert evaluator.stats[0] == pytest.approx(1.0), iou_type  # AP@[.5:.95]
            assert evaluator.stats[1] == pytest.approx(1.0), iou_type  # AP@.5


def test_finished_output_is_reused(tmp_path):
    first = synthetic.generate(tmp_path, 3, 2, 48, seed=4, workers=1)
    stamp = first.manifest.stat().st_mtime_ns
    again = synthetic.generate(tmp_path, 3, 2, 48, seed=4, workers=1)
    assert again.reused and again.manifest.stat().st_mtime_ns == stamp
    fewer = synthetic.generate(tmp_path, 2, 2, 48, seed=4, workers=1)
    assert not fewer.reused
    assert len(list(fewer.images["train"].glob("*.png"))) == 2
    assert json.loads(fewer.manifest.read_text())["num_train"] == 2
    (tmp_path / "val" / "000001.png").unlink()  # damaged output is redrawn
    assert not synthetic.generate(tmp_path, 2, 2, 48, seed=4, workers=1).reused

