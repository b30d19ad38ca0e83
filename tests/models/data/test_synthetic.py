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



# ----------------------------------------------------------------------------------
# Appearance and layout knobs of GeneratorConfig


def _star_points(canvas: np.ndarray) -> int:
    """Points of a canonical star mask: tips of its radius profile around the canvas
    centre (rays every half degree), counted with hysteresis between 75% and 85% of
    the longest ray (tips reach the full radius, valleys at most 60% of it)."""
    inside = canvas > 127
    centre = (canvas.shape[0] - 1) / 2
    angles = np.linspace(0, 2 * np.pi, 720, endpoint=False)
    radii = np.arange(0, canvas.shape[0] / 2, 0.25)
    y = np.round(centre + radii[None] * np.sin(angles)[:, None]).astype(int)
    x = np.round(centre + radii[None] * np.cos(angles)[:, None]).astype(int)
    profile = np.where(inside[y, x], radii[None], 0.0).max(axis=1)
    tip = profile.max()
    count, up = 0, False
    for value in np.roll(profile, -int(np.argmin(profile))):  # start in a valley
        if not up and value > 0.85 * tip:
            up, count = True, count + 1
        elif up and value < 0.75 * tip:
            up = False
    return count


def test_default_config_spelled_out_draws_the_same_images():
    """The new knobs default to the earlier behaviour: a config with every new field
    written out at its documented default (fills as a list) draws identical images
    and instances."""
    spelled = synthetic.GeneratorConfig(
        max_background_noise=35.0, blur_probability=0.3,
        fills=["flat", "gradient", "stripes", "blotches"], min_star_points=4,
        centred=False)
    assert spelled == synthetic.GeneratorConfig()
    for index in range(4):
        image, instances = synthetic.render_image(
            synthetic.image_rng(11, "train", index), SIZE, SIZE)
        again, again_instances = synthetic.render_image(
            synthetic.image_rng(11, "train", index), SIZE, SIZE, spelled)
        np.testing.assert_array_equal(image, again)
        assert len(instances) == len(again_instances)
        for a, b in zip(instances, again_instances):
            assert a["category_id"] == b["category_id"] and a["geometry"] == b["geometry"]
            np.testing.assert_array_equal(a["mask"], b["mask"])


@pytest.mark.parametrize("change", [
    {"max_background_noise": 0.0}, {"blur_probability": 1.0}, {"fills": ("stripes",)},
    {"min_star_points": 7}, {"centred": True}], ids=lambda change: next(iter(change)))
def test_each_new_knob_changes_the_drawing(change):
    """Every new field is used: changing it alone changes some of a few images."""
    config = synthetic.GeneratorConfig(**change)
    differs = False
    for index in range(8):
        image, _ = synthetic.render_image(synthetic.image_rng(12, "train", index), SIZE, SIZE)
        other, _ = synthetic.render_image(synthetic.image_rng(12, "train", index), SIZE,
                                          SIZE, config)
        differs |= not np.array_equal(image, other)
    assert differs


def test_config_normalises_fills_and_rejects_bad_values():
    """`fills` lists become tuples (equal configs compare and hash alike); unknown or
    empty fills and star points outside 3..7 raise ValueError."""
    listed = synthetic.GeneratorConfig(fills=["gradient", "flat"])
    assert listed.fills == ("gradient", "flat")
    assert listed == synthetic.GeneratorConfig(fills=("gradient", "flat"))
    assert hash(listed) == hash(synthetic.GeneratorConfig(fills=("gradient", "flat")))
    for fills in ([], ("flat", "checkers"), ("plaid",)):
        with pytest.raises(ValueError, match="fills"):
            synthetic.GeneratorConfig(fills=fills)
    for points in (2, 8, 0):
        with pytest.raises(ValueError, match="min_star_points"):
            synthetic.GeneratorConfig(min_star_points=points)
    for points in (3, 7):
        assert synthetic.GeneratorConfig(min_star_points=points).min_star_points == points


def test_flat_fill_paints_each_instance_in_one_colour():
    """With only flat fills, no noise and no blur, every visible mask holds a single
    RGB value; striped fills (the contrast case) do not."""
    quiet = dict(max_noise=0.0, blur_probability=0.0)
    flat = synthetic.GeneratorConfig(fills=("flat",), **quiet)
    striped = synthetic.GeneratorConfig(fills=("stripes",), **quiet)
    seen, varied = 0, 0
    for index in range(6):
        image, instances = synthetic.render_image(
            synthetic.image_rng(13, "train", index), SIZE, SIZE, flat)
        for inst in instances:
            pixels = image[inst["mask"]]
            assert (pixels == pixels[0]).all(), (index, inst["category_id"])
            seen += 1
        image, instances = synthetic.render_image(
            synthetic.image_rng(13, "train", index), SIZE, SIZE, striped)
        varied += sum(len(np.unique(image[inst["mask"]], axis=0)) > 1
                      for inst in instances)
    assert seen >= 6 and varied >= 3


def test_min_star_points_bounds_the_points_of_stars(rng):
    """Canonical stars have between `min_star_points` and 7 points: exactly 7 when the
    minimum is 7; at least 4 by default; 3-point stars appear only with a minimum of
    3."""
    star = synthetic.CLASS_NAMES.index("star") + 1
    counts = {minimum: [_star_points(synthetic._canonical_mask(rng, star, minimum))
                        for _ in range(40)] for minimum in (3, 4, 7)}
    assert set(counts[7]) == {7}
    assert min(counts[4]) == 4 and max(counts[4]) <= 7
    assert min(counts[3]) == 3 and max(counts[3]) <= 7


def _centroid_distances(config, count=30):
    """Distance of each one-instance draw's mask centroid from the image centre, in
    image sides."""
    config = synthetic.GeneratorConfig(min_instances=1, max_instances=1, **config)
    distances = []
    for index in range(count):
        _, instances = synthetic.render_image(synthetic.image_rng(14, "val", index), SIZE,
                                              SIZE, config)
        for inst in instances:
            ys, xs = np.nonzero(inst["mask"])
            centre = (SIZE - 1) / 2
            distances.append(np.hypot(ys.mean() - centre, xs.mean() - centre) / SIZE)
    return np.array(distances)


def test_centred_instances_sit_near_the_image_centre():
    """`centred=True` puts a shape's centre within +-15% of the image centre per axis,
    so its visible mask's centroid stays near the centre (the shape's own asymmetry
    adds a little); without it centroids spread over the image."""
    centred = _centroid_distances({"centred": True})
    anywhere = _centroid_distances({})
    assert len(centred) >= 20 and len(anywhere) >= 20
    assert centred.max() <= 0.3
    assert np.median(anywhere) > 2 * np.median(centred)
    assert (anywhere > 0.3).any()


def test_manifest_reuse_with_non_default_fills(tmp_path):
    """A manifest written with a tuple `fills` (a list in JSON) matches the same config
    again: the second call reuses the files."""
    config = synthetic.GeneratorConfig(fills=("flat", "gradient"), centred=True)
    first = synthetic.generate(tmp_path, 2, 1, 32, seed=3, workers=1, config=config)
    assert not first.reused
    stamp = first.manifest.stat().st_mtime_ns
    again = synthetic.generate(tmp_path, 2, 1, 32, seed=3, workers=1,
                               config=synthetic.GeneratorConfig(fills=["flat", "gradient"],
                                                                centred=True))
    assert again.reused and again.manifest.stat().st_mtime_ns == stamp
    assert json.loads(first.manifest.read_text())["config"]["fills"] == ["flat", "gradient"]
    other = synthetic.generate(tmp_path, 2, 1, 32, seed=3, workers=1,
                               config=synthetic.GeneratorConfig(fills=("flat",)))
    assert not other.reused


# ----------------------------------------------------------------------------------
# classification_set


def _one_instance_draws(count, size, seed, split, **config):
    """The first `count` one-instance draws, redrawn image by image with
    `render_image` (draws that place nothing skipped): `(images, labels, indices)`."""
    config = synthetic.GeneratorConfig(min_instances=1, max_instances=1, **config)
    images, labels, indices = [], [], []
    index = 0
    while len(images) < count:
        image, instances = synthetic.render_image(
            synthetic.image_rng(seed, split, index), size, size, config)
        if instances:
            assert len(instances) == 1
            images.append(image)
            labels.append(instances[0]["category_id"] - 1)
            indices.append(index)
        index += 1
    return np.stack(images), np.array(labels), indices


def test_classification_set_equals_one_instance_draws():
    """Exact count, uint8 images and 0-based labels, equal to redrawing image by image
    with a one-instance config; the other split gives other images."""
    images, labels = synthetic.classification_set(12, 32, seed=5, split="train", workers=1)
    assert images.shape == (12, 32, 32, 3) and images.dtype == np.uint8
    assert labels.shape == (12,) and labels.dtype == np.int64
    assert labels.min() >= 0 and labels.max() < len(synthetic.CLASS_NAMES)
    want_images, want_labels, _ = _one_instance_draws(12, 32, 5, "train")
    np.testing.assert_array_equal(images, want_images)
    np.testing.assert_array_equal(labels, want_labels)
    val, _ = synthetic.classification_set(12, 32, seed=5, split="val", workers=1)
    assert not np.array_equal(val, images)


def test_classification_set_skips_empty_draws_over_several_rounds():
    """With a config where most draws place nothing (large shapes that must lie almost
    wholly inside the image), the set still has `count` images, the kept draws in
    index order, identical in one process and in two, and deterministic."""
    config = dict(min_inside_frac=0.99, min_area_frac=0.2, max_area_frac=0.5)
    want_images, want_labels, indices = _one_instance_draws(10, 32, 6, "train", **config)
    # The case is only meaningful if several rounds of draws are needed (the first
    # draws count * 9 // 8 + 8).
    assert indices[-1] >= 2 * (10 * 9 // 8 + 8)
    generator = synthetic.GeneratorConfig(**config)
    one = synthetic.classification_set(10, 32, 6, config=generator, workers=1)
    two = synthetic.classification_set(10, 32, 6, config=generator, workers=2)
    again = synthetic.classification_set(10, 32, 6, config=generator, workers=1)
    for images, labels in (one, two, again):
        np.testing.assert_array_equal(images, want_images)
        np.testing.assert_array_equal(labels, want_labels)


def test_classification_set_labels_cover_the_classes():
    """Labels are the drawn shapes' classes: over 60 images every class appears."""
    _, labels = synthetic.classification_set(60, 24, seed=7, workers=1)
    assert len(labels) == 60
    assert set(labels.tolist()) == set(range(len(synthetic.CLASS_NAMES)))
