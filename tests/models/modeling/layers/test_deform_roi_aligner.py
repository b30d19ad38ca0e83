"""models.modeling.layers.deform_roi_aligner: MultilevelDeformableROIAligner against
Model Garden's MultilevelROIAligner: FPN level assignment, sampling conventions, the
branch; without the branch (`deformable=False`), plain RoIAlign of each box on its
level."""

import numpy as np
import pytest
import tensorflow as tf
from official.vision.modeling.layers import roi_aligner

import keras_dcn
from tests import reference
from tests.layers import helpers
from models.modeling.layers.deform_roi_aligner import MultilevelDeformableROIAligner, assign_levels

IMAGE = 256
LEVELS = range(2, 7)


def _features(rng, batch=2, channels=8, fill=None):
    return {str(level): tf.constant(
        rng.normal(size=(batch, IMAGE >> level, IMAGE >> level, channels))
        if fill is None else fill(level, batch, IMAGE >> level, channels), tf.float32)
        for level in LEVELS}


def _boxes(rng, batch, count, min_size):
    """Random boxes (y1, x1, y2, x2) inside the image, sides >= min_size."""
    y1 = rng.uniform(0, IMAGE - min_size, (batch, count))
    x1 = rng.uniform(0, IMAGE - min_size, (batch, count))
    y2 = np.minimum(y1 + rng.uniform(min_size, IMAGE, (batch, count)), IMAGE)
    x2 = np.minimum(x1 + rng.uniform(min_size, IMAGE, (batch, count)), IMAGE)
    return tf.constant(np.stack([y1, x1, y2, x2], -1), tf.float32)


def _plain(**kwargs):
    """The aligner with a zero branch and no modulation: plain RoI pooling."""
    return MultilevelDeformableROIAligner(modulated=False, hidden_units=16, **kwargs)


# Sides around the level boundaries (224 * 2**k) and degenerate boxes.
EDGE_BOXES = [[0, 0, 224, 224], [0, 0, 223.9, 224], [0, 0, 448, 448], [0, 0, 447, 448],
              [0, 0, 112, 112], [0, 0, 111.9, 112], [0, 0, 56, 56], [0, 0, 0, 0],
              [10, 10, 10, 50], [0, 0, 896, 896], [0, 0, 2000, 2000], [0, 0, 1, 1],
              [5, 5, 61, 117], [0, 0, 256, 64]]


def test_level_assignment_matches_model_garden():
    """Features constant per level (value = level) reveal the level each aligner
    picks for a box: both must agree with `assign_levels`."""
    boxes = tf.constant([EDGE_BOXES], tf.float32)
    features = _features(np.random.default_rng(0), batch=1,
                         fill=lambda level, b, s, c: np.full((b, s, s, c), level))
    ours = _plain(crop_size=7, sampling_ratio=1, aligned=False)(features, boxes)
    theirs = roi_aligner.MultilevelROIAligner(crop_size=7)(features, boxes)
    levels = assign_levels(boxes, 2, 6).numpy()[0]
    # The first bin: inside the feature map even for boxes larger than the image
    # (reads past the map's end are clamped by Model Garden, zero for the op).
    np.testing.assert_allclose(theirs[0, :, 0, 0, 0], levels, atol=1e-5)
    np.testing.assert_allclose(ours[0, :, 0, 0, 0], levels, atol=1e-5)
    assert list(levels[:7]) == [4, 3, 5, 4, 3, 2, 2]
    assert levels[7] == 2 and levels[8] == 2  # zero area
    assert levels[9] == 6 and levels[10] == 6  # clipped to the top level


def test_levels_follow_the_fpn_rule():
    rng = np.random.default_rng(1)
    boxes = _boxes(rng, 3, 200, 1.0)
    side = np.sqrt((boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1]))
    expected = np.clip(np.floor(np.log2(side / 224.0)) + 4, 3, 5)
    np.testing.assert_array_equal(assign_levels(boxes, 3, 5).numpy(), expected)


def test_one_centred_sample_unaligned_equals_model_garden():
    """sampling_ratio=1, aligned=False, zero offsets: Model Garden's RoIAlign
    (one bilinear sample at each bin centre), for boxes >= 1 pixel on their level."""
    rng = np.random.default_rng(2)
    features = _features(rng)
    boxes = _boxes(rng, 2, 60, min_size=64.0)  # >= 1 pixel even on level 6
    for crop in (7, 14):
        want = roi_aligner.MultilevelROIAligner(crop_size=crop)(features, boxes)
        got = _plain(crop_size=crop, sampling_ratio=1, aligned=False)(features, boxes)
        assert got.shape == want.shape == (2, 60, crop, crop, 8)
        np.testing.assert_allclose(got.numpy(), want.numpy(), atol=1e-4)


def test_sampling_conventions_on_a_linear_field():
    """On features linear in (y, x) bilinear reads are exact, so the sampling grid
    does not matter (2x2 samples average to the centre) and `aligned` moves every
    read by exactly -0.5 feature pixel in y and x."""
    a, b, c = 0.3, -0.2, 1.0

    def ramp(level, batch, size, channels):
        y, x = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
        return np.broadcast_to((a * y + b * x + c)[None, :, :, None],
                               (batch, size, size, channels))

    features = _features(None, batch=1, fill=ramp)
    # Boxes well inside the image, so that no read is clamped at a border.
    boxes = tf.constant([[[40, 40, 90, 120], [64, 32, 200, 220], [100, 100, 116, 130]]],
                        tf.float32)
    want = roi_aligner.MultilevelROIAligner(crop_size=7)(features, boxes).numpy()
    unaligned = _plain(crop_size=7, sampling_ratio=2, aligned=False)(features, boxes)
    aligned = _plain(crop_size=7, sampling_ratio=2, aligned=True)(features, boxes)
    np.testing.assert_allclose(unaligned.numpy(), want, atol=1e-4)
    np.testing.assert_allclose(aligned.numpy(), want - 0.5 * (a + b), atol=1e-4)


def test_modulation_halves_the_output_at_initialisation():
    rng = np.random.default_rng(3)
    features = _features(rng)
    boxes = _boxes(rng, 2, 20, min_size=8.0)
    plain = _plain(crop_size=7)(features, boxes)
    modulated = MultilevelDeformableROIAligner(crop_size=7, modulated=True,
                                               hidden_units=16)(features, boxes)
    np.testing.assert_allclose(modulated.numpy(), 0.5 * plain.numpy(), atol=1e-6)


def test_one_shared_branch_learns_from_every_level():
    rng = np.random.default_rng(4)
    features = _features(rng)
    boxes = tf.constant([EDGE_BOXES[:7] + [[0, 0, 256, 256]]], tf.float32)
    aligner = MultilevelDeformableROIAligner(crop_size=7, hidden_units=16)
    with tf.GradientTape() as tape:
        out = aligner(features, boxes)
        loss = tf.reduce_sum(out * out)
    names = [v.name.split("/")[-1] for v in aligner.trainable_variables]
    assert len(aligner.trainable_variables) == 6, names  # 2 fc + offset fc, shared
    grads = tape.gradient(loss, aligner.trainable_variables)
    offset_grad = grads[names.index("offset_kernel:0")]
    assert offset_grad is not None and float(tf.reduce_max(tf.abs(offset_grad))) > 0


def _random_branch(aligner, rng):
    """Gives the aligner's branch random weights (offsets of about a bin) and returns
    them by name."""
    weights = {}
    for variable in aligner.pool.weights:
        name = variable.name.split("/")[-1].split(":")[0]
        scale = 0.3 if name.endswith("kernel") else 0.1
        weights[name] = rng.normal(scale=scale, size=variable.shape).astype(np.float32)
        variable.assign(weights[name])
    return weights


def _level_rois(boxes, levels):
    """Each box as a `deform_roi_pool` row on its level: (b, x1, y1, x2, y2) / 2**l."""
    rows = []
    for b in range(boxes.shape[0]):
        for k, box in enumerate(boxes[b]):
            y1, x1, y2, x2 = box / 2.0 ** levels[b][k]
            rows.append([b, x1, y1, x2, y2])
    return np.array(rows, np.float32)


def test_branch_runs_once_for_all_levels_as_it_would_per_level():
    """With a trained-looking branch (non-zero offsets and mask), each box's crop is
    the branch and Eq. 2 of the NumPy / plain-TF reference on the box's level, and the
    gradients of the branch weights and of every level's features are those of the
    layer called on each level's boxes alone."""
    rng = np.random.default_rng(12)
    features = _features(rng, channels=4)
    boxes = np.concatenate([_boxes(rng, 2, 10, 4.0).numpy(), np.tile(np.array(
        [[0, 0, 500, 460], [10, 10, 10, 50], [3, 5, 40, 30], [20, 9, 132, 121],
         [16, 30, 240, 254]], np.float32)[None],
        (2, 1, 1))], axis=1)
    aligner = MultilevelDeformableROIAligner(crop_size=7, hidden_units=16)
    aligner(features, tf.constant(boxes))
    weights = _random_branch(aligner, rng)
    levels = [[_level(box, 2, 6) for box in image] for image in boxes]
    assert {lvl for image in levels for lvl in image} >= {2, 3, 4, 5}
    rois = _level_rois(boxes, levels)
    flat_levels = np.array(levels).reshape(-1)
    pool_args = dict(output_size=(7, 7), spatial_scale=1.0, sampling_ratio=2,
                     aligned=True, gamma=aligner.pool.gamma)

    with tf.GradientTape(persistent=True) as tape:
        tape.watch(features)
        out = aligner(features, tf.constant(boxes))
        loss = tf.reduce_sum(out * tf.cos(out))
        per_level = 0.0
        for level in sorted(set(flat_levels)):
            chosen = np.flatnonzero(flat_levels == level)
            pooled = aligner.pool(features[str(level)], tf.constant(rois[chosen]))
            per_level += tf.reduce_sum(pooled * tf.cos(pooled))
    out = out.numpy().reshape(-1, 7, 7, 4)
    for level in sorted(set(flat_levels)):
        chosen = np.flatnonzero(flat_levels == level)
        expected = helpers.independent_deform_roi_pool(
            features[str(level)], rois[chosen], weights, modulated=True, **pool_args)
        np.testing.assert_allclose(out[chosen], expected, atol=2e-4,
                                   err_msg=f"boxes on level {level}")
    used = [features[str(level)] for level in sorted(set(flat_levels))]
    sources = aligner.pool.trainable_variables + used
    for merged, alone in zip(tape.gradient(loss, sources), tape.gradient(per_level, sources)):
        np.testing.assert_allclose(merged.numpy(), alone.numpy(), rtol=1e-4, atol=1e-5)


def test_graph_mode_static_shape_and_empty_levels():
    rng = np.random.default_rng(5)
    features = _features(rng)
    aligner = MultilevelDeformableROIAligner(crop_size=14, hidden_units=16)

    @tf.function
    def run(boxes):
        out = aligner(features, boxes)
        assert out.shape.as_list() == [2, 5, 14, 14, 8]
        return out

    # Every box on level 2: levels 3-6 receive no RoI.
    boxes = tf.constant(np.tile([[[0, 0, 20, 20]]], (2, 5, 1)), tf.float32)
    assert run(boxes).shape == (2, 5, 14, 14, 8)


def test_config_roundtrip():
    aligner = MultilevelDeformableROIAligner(crop_size=14, modulated=False, gamma=0.2,
                                             sampling_ratio=1, hidden_units=8)
    config = aligner.get_config()
    clone = MultilevelDeformableROIAligner.from_config(config)
    assert clone.get_config() == config
    with pytest.raises(ValueError, match="consecutive"):
        aligner({"2": tf.zeros([1, 8, 8, 4]), "4": tf.zeros([1, 2, 2, 4])},
                tf.zeros([1, 1, 4]))


def _level(box, min_level, max_level):
    """The FPN level of one box (y1, x1, y2, x2), written out: floor(log2(sqrt(area) /
    224)) + 4 clipped to the levels, the lowest for a box of zero area."""
    area = float(box[2] - box[0]) * float(box[3] - box[1])
    if area <= 0:
        return min_level
    return int(np.clip(np.floor(np.log2(np.sqrt(area) / 224.0)) + 4, min_level, max_level))


@pytest.mark.parametrize("crop, sampling_ratio, aligned", [(7, 2, True), (14, 1, False)])
def test_plain_aligner_pools_each_box_on_its_level(crop, sampling_ratio, aligned):
    """`deformable=False`: no weights, and each box's crop is RoIAlign (the op without
    offsets or mask, and the NumPy reference) of that box alone, divided by 2 ** level,
    on the level the FPN rule gives it."""
    rng = np.random.default_rng(6)
    features = _features(rng, channels=4)
    extra = [[0, 0, 0, 0], [10, 10, 10, 50], [0, 0, 500, 460], [8, 4, 1000, 1000],
             [30, 40, 31, 41]]  # zero area, level 5, clipped to 6, under a pixel
    boxes = np.concatenate([_boxes(rng, 2, 12, 1.0).numpy(),
                            np.tile(np.array(extra, np.float32)[None], (2, 1, 1))], axis=1)
    aligner = MultilevelDeformableROIAligner(crop_size=crop, deformable=False,
                                             sampling_ratio=sampling_ratio, aligned=aligned)
    out = aligner(features, tf.constant(boxes)).numpy()
    assert aligner.pool is None and aligner.weights == []
    assert out.shape == (2, boxes.shape[1], crop, crop, 4)
    levels = set()
    for b in range(2):
        for k, box in enumerate(boxes[b]):
            level = _level(box, 2, 6)
            levels.add(level)
            y1, x1, y2, x2 = box / 2.0 ** level
            roi = np.array([[b, x1, y1, x2, y2]], np.float32)
            kwargs = dict(output_size=(crop, crop), spatial_scale=1.0,
                          sampling_ratio=sampling_ratio, aligned=aligned)
            by_op = keras_dcn.ops.deform_roi_pool(features[str(level)], roi, **kwargs)
            by_reference = reference.deform_roi_pool(features[str(level)], roi, **kwargs)
            np.testing.assert_allclose(out[b, k], by_op.numpy()[0], atol=1e-5,
                                       err_msg=f"box {b}, {k} on level {level}")
            np.testing.assert_allclose(out[b, k], by_reference.numpy()[0], atol=1e-4,
                                       err_msg=f"box {b}, {k} on level {level}")
    assert levels >= {2, 3, 5, 6}


def test_plain_aligner_equals_an_unmodulated_branch_at_initialisation():
    """The deformable, unmodulated aligner at initialisation (zero offsets) pools
    exactly what the plain one does, with the same sampling."""
    rng = np.random.default_rng(7)
    features = _features(rng)
    boxes = _boxes(rng, 2, 16, min_size=4.0)
    plain = MultilevelDeformableROIAligner(crop_size=7, deformable=False)(features, boxes)
    branch = _plain(crop_size=7)(features, boxes)
    np.testing.assert_allclose(plain.numpy(), branch.numpy(), atol=1e-6)


def test_config_roundtrip_keeps_deformable():
    """`deformable` is in the config (True by default) and survives from_config."""
    assert MultilevelDeformableROIAligner(hidden_units=8).get_config()["deformable"] is True
    aligner = MultilevelDeformableROIAligner(crop_size=14, deformable=False,
                                             sampling_ratio=1, aligned=False)
    config = aligner.get_config()
    assert config["deformable"] is False
    clone = MultilevelDeformableROIAligner.from_config(config)
    assert clone.pool is None and clone.get_config() == config


@pytest.mark.parametrize("deformable", [False, True])
def test_feature_level_pools_every_box_from_one_map(deformable):
    """`feature_level` 5 at `feature_stride` 16 (the paper's Faster R-CNN: conv5 at
    stride 16): each box, whatever its size, is pooled from `features['5']` with its
    corners divided by 16, as the NumPy reference pools it (at initialisation the
    unmodulated branch has zero offsets)."""
    rng = np.random.default_rng(8)
    features = {"4": tf.constant(rng.normal(size=(2, 16, 16, 3)), tf.float32),
                "5": tf.constant(rng.normal(size=(2, 16, 16, 5)), tf.float32)}
    boxes = np.concatenate([_boxes(rng, 2, 6, 1.0).numpy(),
                            np.tile(np.array([[0, 0, 0, 0], [8, 4, 1000, 900]],
                                             np.float32)[None], (2, 1, 1))], axis=1)
    aligner = _plain(crop_size=7, deformable=deformable, feature_level=5,
                     feature_stride=16)
    out = aligner(features, tf.constant(boxes)).numpy()
    assert out.shape == (2, 8, 7, 7, 5)
    for b in range(2):
        for k, box in enumerate(boxes[b]):
            y1, x1, y2, x2 = box / 16.0
            roi = np.array([[b, x1, y1, x2, y2]], np.float32)
            want = reference.deform_roi_pool(features["5"], roi, output_size=(7, 7),
                                             spatial_scale=1.0, sampling_ratio=2,
                                             aligned=True)
            np.testing.assert_allclose(out[b, k], want.numpy()[0], atol=1e-4,
                                       err_msg=f"box {b}, {k}")
    config = aligner.get_config()
    assert (config["feature_level"], config["feature_stride"]) == (5, 16)
    with pytest.raises(ValueError, match="feature_level 5 is not among"):
        aligner({"4": features["4"]}, tf.constant(boxes))
    with pytest.raises(ValueError, match="feature_stride must be positive"):
        MultilevelDeformableROIAligner(feature_level=5)
