"""models.modeling.rcnn_mimic: R-CNN feature mimicking. The sampling, cropping and losses
against numpy references, then a tiny Mask R-CNN with the branch: where the gradients
of each loss go, which RoIs are mimicked, that the mimic loss falls in training, and
that inference, the Keras validation step and the exported SavedModel never run it."""

import collections

import cv2
import numpy as np
import pytest
import tensorflow as tf
import tf_keras
from official.core import task_factory

from models.common import checkpoint_compat
from models.common import runtime
from models.configs.experiments import SYNTHETIC_EXPERIMENT
from models.modeling import rcnn_mimic as mimic
from models.serving import detection
from tests import random_state


def _np_iou(a, b):
    inter_h = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0,
                      None)
    inter_w = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0,
                      None)
    inter = inter_h * inter_w
    area = lambda x: (x[..., 2] - x[..., 0]) * (x[..., 3] - x[..., 1])
    union = area(a) + area(b) - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0)


def _random_boxes(rng, shape, size=64.0):
    corners = rng.uniform(0, size, shape + (2, 2))
    low, high = corners.min(axis=-2), corners.max(axis=-2)
    return np.concatenate([low, high], axis=-1).astype(np.float32)


def test_box_iou_matches_numpy(rng):
    a, b = _random_boxes(rng, (3, 20)), _random_boxes(rng, (3, 20))
    b[0, :5] = a[0, :5]  # identical boxes: IoU 1
    np.testing.assert_allclose(mimic.box_iou(a, b).numpy(), _np_iou(a, b), atol=1e-6)
    np.testing.assert_allclose(mimic.box_iou(a[0, :5], b[0, :5]).numpy(), 1.0, atol=1e-6)


def test_crop_and_resize_samples_the_box_at_pixel_centres():
    height, width, size = 24, 40, 5
    yy, xx = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    # A linear image: bilinear interpolation reproduces it exactly inside the image.
    image = np.stack([yy * 100.0 + xx, -xx * 2.0 + yy], -1).astype(np.float32)
    images = np.stack([image, image + 7.0])
    boxes = np.array([[[2.0, 4.0, 12.0, 34.0], [5.5, 1.0, 20.0, 9.0]],
                      [[0.5, 0.5, 23.5, 39.5], [3.0, 3.0, 8.0, 8.0]]], np.float32)
    crops = mimic.crop_and_resize(images, boxes, size).numpy()
    assert crops.shape == (4, size, size, 2)
    for n, (b, k) in enumerate([(0, 0), (0, 1), (1, 0), (1, 1)]):
        y1, x1, y2, x2 = boxes[b, k]
        ys = y1 + (np.arange(size) + 0.5) * (y2 - y1) / size - 0.5
        xs = x1 + (np.arange(size) + 0.5) * (x2 - x1) / size - 0.5
        gy, gx = np.meshgrid(ys, xs, indexing="ij")
        want = np.stack([gy * 100.0 + gx, -gx * 2.0 + gy], -1) + 7.0 * b
        np.testing.assert_allclose(crops[n], want, rtol=1e-5, atol=1e-3)


def test_crop_and_resize_keeps_a_bfloat16_image_in_bfloat16(rng):
    """Under mixed_bfloat16 the images arrive in bfloat16, which
    `tf.image.crop_and_resize` does not take: the crops are sampled from the same
    values in float32 and returned in bfloat16."""
    images = tf.cast(rng.uniform(0, 255, (2, 16, 20, 3)), tf.bfloat16)
    boxes = tf.constant([[[1.0, 2.0, 9.0, 15.0]], [[0.0, 0.0, 16.0, 20.0]]])
    got = mimic.crop_and_resize(images, boxes, 6)
    assert got.dtype == tf.bfloat16
    want = mimic.crop_and_resize(tf.cast(images, tf.float32), boxes, 6)
    np.testing.assert_array_equal(got.numpy(), tf.cast(want, tf.bfloat16).numpy())


def _branch(**kwargs):
    return mimic.RCNNMimicBranch(num_classes=5, **kwargs)


@pytest.mark.parametrize("roi_type", ["positive", "negative", "all"])
def test_eligible_rois(roi_type, rng):
    rois = _random_boxes(rng, (2, 30))
    gt = np.where(rng.uniform(size=(2, 30, 1)) < 0.5,
                  rois + rng.uniform(-3, 3, rois.shape).astype(np.float32),
                  _random_boxes(rng, (2, 30)))
    classes = rng.integers(0, 5, (2, 30))
    rois[1, -4:] = 0.0  # the sampler's padding
    gt[:, :5] = rois[:, :5]  # ground-truth boxes the sampler mixed in
    branch = _branch(roi_type=roi_type, iou_threshold=0.6)
    got = branch.eligible(rois, gt, tf.constant(classes)).numpy()

    non_empty = (rois[..., 2] > rois[..., 0]) & (rois[..., 3] > rois[..., 1])
    proposal = np.arange(30)[None] >= 5
    positive = (classes > 0) & (_np_iou(rois, gt) >= 0.6)
    negative = classes == 0
    want = {"positive": positive, "negative": negative, "all": positive | negative}
    np.testing.assert_array_equal(got, want[roi_type] & non_empty & proposal)
    assert (positive & proposal).any() and not positive.all()
    assert (want[roi_type] & ~proposal).any()  # some excluded only as ground truth


@pytest.mark.parametrize("num_rois,per_image", [(20, 6), (4, 6)])
def test_sample_draws_eligible_rois_without_repeats(num_rois, per_image):
    eligible = np.zeros((3, num_rois), bool)
    eligible[0, [1, 3]] = True                  # fewer than the slots
    eligible[1, :] = True                       # more than the slots
    # image 2: none eligible
    indices, weights = _branch(rois_per_image=per_image).sample(tf.constant(eligible))
    indices, weights = indices.numpy(), weights.numpy()
    assert indices.shape == weights.shape == (3, per_image)
    for image in range(3):
        chosen = indices[image][weights[image] > 0]
        assert len(chosen) == min(per_image, eligible[image].sum())
        assert len(set(chosen)) == len(chosen)
        assert eligible[image][chosen].all()
        assert ((0 <= indices[image]) & (indices[image] < num_rois)).all()
    assert set(indices[0][weights[0] > 0]) == {1, 3}


def test_sample_is_random():
    eligible = tf.ones([1, 50], bool)
    draws = {tuple(sorted(_branch(rois_per_image=5).sample(eligible)[0].numpy()[0]))
             for _ in range(5)}
    assert len(draws) > 1


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_mimic_losses_match_numpy(reduction, rng):
    batch, slots, dims, classes = 3, 4, 8, 5
    rcnn = rng.normal(size=(batch, slots, dims)).astype(np.float32)
    frcnn = rng.normal(size=(batch, slots, dims)).astype(np.float32)
    frcnn[0, 0] = 2.5 * rcnn[0, 0]  # parallel: no loss
    logits = rng.normal(size=(batch, slots, classes)).astype(np.float32)
    targets = rng.integers(0, classes, (batch, slots))
    weights = (rng.uniform(size=(batch, slots)) < 0.7).astype(np.float32)
    weights[0, 0] = 1.0
    outputs = {mimic.RCNN_FEATURES: rcnn, mimic.FRCNN_FEATURES: frcnn,
               mimic.CLASS_OUTPUTS: logits, mimic.CLASS_TARGETS: targets,
               mimic.WEIGHTS: weights}
    got = {k: float(v) for k, v in mimic.mimic_losses(outputs, reduction).items()}

    cos = (rcnn * frcnn).sum(-1) / np.linalg.norm(rcnn, axis=-1) / np.linalg.norm(frcnn,
                                                                               axis=-1)
    total = ((1 - cos) * weights).sum()
    want_mimic = total / batch if reduction == "sum" else total / weights.sum()
    shifted = logits - logits.max(-1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    cross_entropy = -np.take_along_axis(log_probs, targets[..., None], -1)[..., 0]
    want_cls = (cross_entropy * weights).sum() / weights.sum()
    assert got[mimic.MIMIC_LOSS] == pytest.approx(want_mimic, rel=1e-5)
    assert got[mimic.CLASS_LOSS] == pytest.approx(want_cls, rel=1e-5)
    assert 1 - cos[0, 0] == pytest.approx(0, abs=1e-6)


def test_crops_are_made_of_the_sampled_slots_only(rng):
    """Only slots with a weight are cropped, each from its own image, in slot order."""
    images = tf.constant(rng.uniform(size=(2, 16, 12, 3)), tf.float32)
    boxes = tf.constant(rng.uniform(0, 8, size=(2, 3, 4)) + [0, 0, 6, 4], tf.float32)
    weights = tf.constant([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    branch = mimic.RCNNMimicBranch(num_classes=3, rois_per_image=3, crop_size=5)
    crops, slots = branch.crops(images, boxes, weights)
    np.testing.assert_array_equal(slots, [[0, 0], [0, 2], [1, 2]])
    every = mimic.crop_and_resize(images, boxes, 5).numpy().reshape(2, 3, 5, 5, 3)
    np.testing.assert_allclose(crops, every[[0, 0, 1], [0, 2, 2]], rtol=1e-6, atol=1e-6)
    none, no_slots = branch.crops(images, boxes, tf.zeros((2, 3)))
    assert none.shape == (0, 5, 5, 3) and no_slots.shape == (0, 2)


def test_branch_rejects_bad_settings():
    with pytest.raises(ValueError, match="roi_type"):
        _branch(roi_type="hard")
    with pytest.raises(ValueError, match="reduction"):
        mimic.mimic_losses({}, reduction="max")


# --- the branch inside a tiny Mask R-CNN -------------------------------------------

MIMIC = {"enabled": True, "rois_per_image": 4, "crop_size": 32}


def _task(tiny_overrides, variant="dcnv2", **settings):
    overrides = tiny_overrides(variant)
    model = overrides["task"]["model"]
    model["mimic"] = {**MIMIC, **settings}
    # Omega holds RPN proposals only: keep every anchor as a proposal, so that some
    # of the untrained RPN's are positives, and sample enough of them.
    model["roi_generator"].update(pre_nms_top_k=2000, num_proposals=1000)
    model["roi_sampler"] = {"num_sampled_rois": 64}
    params = runtime.experiment_params(SYNTHETIC_EXPERIMENT, overrides)
    return params, task_factory.get_task(params.task)


@pytest.fixture(scope="module")
def tiny(tiny_overrides):
    """A dcnv2 task with mimicking, its model and one training batch."""
    with random_state.restored():
        tf_keras.utils.set_random_seed(3)
        params, task = _task(tiny_overrides)
        model = task.build_model()
        batch = next(iter(task.build_inputs(params.task.train_data)))
    return task, model, batch


def _training_outputs(model, batch):
    images, labels = batch
    return model(images, **model._target_inputs(labels), training=True)


@pytest.mark.slow
def test_branch_outputs_and_positive_rois_only(tiny):
    task, model, batch = tiny
    outputs = _training_outputs(model, batch)
    weights = outputs[mimic.WEIGHTS].numpy()
    assert weights.shape == (2, MIMIC["rois_per_image"]) and weights.sum() > 0
    assert outputs[mimic.RCNN_FEATURES].shape == outputs[mimic.FRCNN_FEATURES].shape
    assert outputs[mimic.RCNN_FEATURES].shape[-1] == model.detection_head[0].get_config()[
        "fc_dims"]
    # Empty slots run no crop: their R-CNN features are zeros; sampled ones are not.
    rcnn = outputs[mimic.RCNN_FEATURES].numpy()
    assert not rcnn[weights == 0].any() and rcnn[weights > 0].any(axis=-1).all()
    # Only positives (foreground targets) are mimicked; negatives are excluded.
    targets = outputs[mimic.CLASS_TARGETS].numpy()
    assert (targets[weights > 0] > 0).all()
    # Fast R-CNN targets include background RoIs, so there were negatives to exclude.
    assert (outputs["class_targets"].numpy() == 0).any()
    losses = task.build_losses(outputs, batch[1], model.losses)
    assert {"mimic_loss", "rcnn_cls_loss"} <= set(losses)
    plain = {k: v for k, v in outputs.items() if not k.startswith("mimic_")}
    base = task.build_losses(plain, batch[1], model.losses)
    weighted = 0.1 * losses["mimic_loss"] + 0.1 * losses["rcnn_cls_loss"]
    assert float(losses["total_loss"]) == pytest.approx(
        float(base["total_loss"] + weighted), rel=1e-5)


@pytest.mark.slow
def test_model_garden_train_step_adds_and_logs_the_losses(tiny):
    task, model, batch = tiny
    metrics = task.build_metrics(training=True)
    logs = task.train_step(batch, model, tf_keras.optimizers.SGD(0.0), metrics)
    results = {m.name: float(m.result()) for m in metrics}
    assert results["mimic_loss"] > 0 and results["rcnn_cls_loss"] > 0
    assert float(logs["loss"]) == pytest.approx(results["total_loss"])


@pytest.mark.slow
def test_a_batch_without_eligible_rois_runs_no_crop(tiny, monkeypatch):
    task, model, batch = tiny
    monkeypatch.setattr(model.mimic_branch, "eligible",
                        lambda rois, *args: tf.zeros(tf.shape(rois)[:2], tf.bool))
    outputs = _training_outputs(model, batch)
    assert not outputs[mimic.WEIGHTS].numpy().any()
    assert not outputs[mimic.RCNN_FEATURES].numpy().any()
    losses = task.build_losses(outputs, batch[1], model.losses)
    assert float(losses["mimic_loss"]) == 0.0 and float(losses["rcnn_cls_loss"]) == 0.0
    assert np.isfinite(float(losses["total_loss"]))


@pytest.mark.slow
def test_negative_rois_when_asked(tiny_overrides):
    params, task = _task(tiny_overrides, roi_type="negative")
    model = task.build_model()
    batch = next(iter(task.build_inputs(params.task.train_data)))
    outputs = _training_outputs(model, batch)
    weights = outputs[mimic.WEIGHTS].numpy()
    assert weights.sum() > 0
    assert (outputs[mimic.CLASS_TARGETS].numpy()[weights > 0] == 0).all()


def _reached(model, batch, loss_fn):
    """Names of the variables of `model` that get a non-zero gradient from
    `loss_fn(training outputs)`."""
    with tf.GradientTape() as tape:
        loss = loss_fn(_training_outputs(model, batch))
    variables = model.trainable_variables
    grads = tape.gradient(loss, variables)
    reached = set()
    for variable, grad in zip(variables, grads):
        if grad is not None and float(tf.reduce_max(tf.abs(grad))) > 0:
            reached.add(variable.name)
    return reached


@pytest.mark.slow
def test_mimic_gradients_reach_shared_parts_not_the_classifiers(tiny):
    _, model, batch = tiny
    reached = _reached(
        model, batch, lambda outputs: mimic.mimic_losses(outputs)[mimic.MIMIC_LOSS])
    head = model.detection_head[0]
    shared = {
        "backbone": model.backbone.trainable_variables,
        "decoder": model.decoder.trainable_variables,
        "deformable RoI pooling branch": model.roi_aligner.trainable_variables,
        "fc layers": [v for fc in head._fcs for v in fc.trainable_variables],
    }
    for part, variables in shared.items():
        assert any(v.name in reached for v in variables), part
    # The offset branches of the deformable convs learn from it too.
    assert any("offset" in name for name in reached)
    unshared = (head._classifier.trainable_variables
                + head._box_regressor.trainable_variables
                + model.mimic_branch.trainable_variables
                + model.rpn_head.trainable_variables
                + model.mask_head.trainable_variables)
    assert not any(v.name in reached for v in unshared)

    reached = _reached(
        model, batch, lambda outputs: mimic.mimic_losses(outputs)[mimic.CLASS_LOSS])
    assert all(v.name in reached for v in model.mimic_branch.trainable_variables)
    assert not any(v.name in reached for v in head._classifier.trainable_variables)


@pytest.mark.slow
def test_crop_pass_leaves_the_batch_norm_statistics_alone(tiny):
    """A training pass with the branch moves the backbone's and FPN's batch-norm
    moving statistics exactly as the same pass without it: the crops never enter
    them."""
    _, model, batch = tiny
    moving = [v for v in model.backbone.non_trainable_variables
              + model.decoder.non_trainable_variables if "moving" in v.name]
    assert moving
    variables = list(model.variables)
    saved = [v.numpy() for v in variables]
    before = [v.numpy() for v in moving]

    def statistics_after_a_pass(branch):
        for variable, value in zip(variables, saved):
            variable.assign(value)
        kept, model.mimic_branch = model.mimic_branch, branch
        try:
            outputs = _training_outputs(model, batch)
        finally:
            model.mimic_branch = kept
        assert (mimic.WEIGHTS in outputs) == (branch is not None)
        return [v.numpy() for v in moving]

    try:
        with_branch = statistics_after_a_pass(model.mimic_branch)
        without = statistics_after_a_pass(None)
    finally:
        for variable, value in zip(variables, saved):
            variable.assign(value)
    for variable, got, want in zip(moving, with_branch, without):
        np.testing.assert_array_equal(got, want, err_msg=variable.name)
    assert any(not np.array_equal(got, old) for got, old in zip(with_branch, before))


@pytest.mark.slow
def test_inference_and_validation_do_not_run_the_branch(tiny):
    _, model, (images, labels) = tiny
    inference = model(images, image_shape=labels["image_info"][:, 1, :],
                      anchor_boxes=labels["anchor_boxes"], training=False)
    assert "detection_boxes" in inference
    validation = model(images, **model._target_inputs(labels), training=False,
                       sample_targets=True)
    for outputs in (inference, validation):
        assert not any(key.startswith("mimic_") or key.startswith("sampled_")
                       for key in outputs)


def _mimic_loss(model, images, labels):
    """L_mimic (mean over Omega) of one training forward pass with fixed random
    draws (proposal sampling and Omega)."""
    tf_keras.utils.set_random_seed(11)
    outputs = model(images, **model._target_inputs(labels), training=True)
    return float(mimic.mimic_losses(outputs, "mean")[mimic.MIMIC_LOSS])


@pytest.mark.slow
def test_mimic_loss_falls_and_is_logged(tiny_overrides):
    tf_keras.utils.set_random_seed(7)
    # L_mimic at full weight, so that the other losses do not decide its course.
    params, task = _task(tiny_overrides, rois_per_image=8, mimic_weight=1.0)
    model = task.build_model()
    model.compile(optimizer=tf_keras.optimizers.SGD(0.02, momentum=0.9))
    images, labels = next(iter(task.build_inputs(params.task.train_data)))
    before = _mimic_loss(model, images, labels)
    one_batch = tf.data.Dataset.from_tensors((images, labels)).repeat()
    history = model.fit(one_batch, steps_per_epoch=1, epochs=16, verbose=0).history
    after = _mimic_loss(model, images, labels)
    # Seeds 7-9 gave after / before = 0.03-0.44 on an AVX2 machine.
    assert after < 0.8 * before, (before, after)
    assert {"mimic_loss", "rcnn_cls_loss"} <= set(history)
    assert np.all(np.isfinite(history["mimic_loss"]))
    names = [m.name for m in task.build_metrics(training=True)]
    assert {"mimic_loss", "rcnn_cls_loss"} <= set(names)


def _trained_checkpoint(params, task, model_dir):
    model = task.build_model()
    optimizer = tf_keras.optimizers.SGD(0.01)
    batch = next(iter(task.build_inputs(params.task.train_data)))
    task.train_step(batch, model, optimizer, task.build_metrics(training=True))
    tf.train.Checkpoint(model=model).save(str(model_dir / "ckpt"))
    return str(model_dir)


def _serving_ops(saved_model_dir):
    """Op types of the serving signature, its function library included."""
    graph = tf.saved_model.load(saved_model_dir).signatures["serving_default"].graph
    definition = graph.as_graph_def()
    ops = [node.op for node in definition.node]
    ops += [node.op for function in definition.library.function
            for node in function.node_def]
    return collections.Counter(ops), [node.name for node in definition.node] + [
        node.name for function in definition.library.function
        for node in function.node_def]


@pytest.mark.slow
def test_exported_model_has_no_trace_of_the_branch(tiny_overrides, tiny_data, tmp_path):
    exported = {}
    for name, settings in (("mimic", MIMIC), ("plain", {"enabled": False})):
        overrides = tiny_overrides("dcnv2")
        overrides["task"]["model"]["mimic"] = settings
        params = runtime.experiment_params(SYNTHETIC_EXPERIMENT, overrides)
        task = task_factory.get_task(params.task)
        (tmp_path / name).mkdir()
        checkpoint = _trained_checkpoint(params, task, tmp_path / name)
        exported[name] = detection.export_saved_model(params, checkpoint,
                                                      str(tmp_path / name / "export"))

    mimic_ops, mimic_names = _serving_ops(exported["mimic"])
    plain_ops, _ = _serving_ops(exported["plain"])
    assert mimic_ops == plain_ops
    assert not any("mimic" in name or "rcnn-scores" in name for name in mimic_names)

    def variables(path):
        return sorted((name, tuple(shape)) for name, shape in
                      tf.train.list_variables(f"{path}/variables/variables"))
    assert variables(exported["mimic"]) == variables(exported["plain"])
    assert not any("mimic" in name for name, _ in variables(exported["mimic"]))

    loaded = {name: tf.saved_model.load(path) for name, path in exported.items()}

    image = tf.constant(cv2.imread(str(tiny_data["root"] / "val" / "000001.png"))[None])
    outputs = {name: model.signatures["serving_default"](inputs=image)
               for name, model in loaded.items()}
    assert set(outputs["mimic"]) == set(outputs["plain"])
    for key, value in outputs["mimic"].items():
        assert value.shape == outputs["plain"][key].shape and \
            value.dtype == outputs["plain"][key].dtype
        assert np.all(np.isfinite(value.numpy()))


@pytest.mark.slow
def test_a_mimic_run_resumes_from_its_checkpoint(tiny_overrides, tmp_path):
    """The branch runs only in training, yet a freshly built model has its classifier,
    so a checkpoint written after training fits the model a resumed run builds."""
    params, task = _task(tiny_overrides)
    model = task.build_model()
    fc_dims = model.detection_head[0].get_config()["fc_dims"]
    assert model.mimic_branch.classifier.kernel.shape == (fc_dims, 7)
    batch = next(iter(task.build_inputs(params.task.train_data)))
    _training_outputs(model, batch)
    path = tf.train.Checkpoint(model=model).save(str(tmp_path / "ckpt"))
    checkpoint_compat.check_model_fits(task.build_model(), path, params)
