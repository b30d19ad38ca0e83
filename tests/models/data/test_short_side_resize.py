"""models.data.short_side_resize: Detectron's resize (shorter side, capped longer side)
in Model Garden's parser and serving module, the sizes `Detector` maps boxes back
with, and the check of the two sides against `input_size`."""

import numpy as np
import pytest
import tensorflow as tf
from official.core import task_factory
from official.vision.dataloaders import maskrcnn_input
from official.vision.ops import preprocess_ops
from official.vision.serving import detection as mg_detection

from models.common import runtime
from models.configs.experiments import SYNTHETIC_EXPERIMENT
from models.data.short_side_resize import check, short_side_resize
from models.serving import detection
from models.serving.detector import resized_size


@pytest.mark.parametrize("size, resized", [
    ((480, 640), (1000, 1333)),   # landscape 4:3: the shorter side to 1000
    ((640, 480), (1333, 1000)),   # portrait: the same, turned
    ((400, 1200), (444, 1333)),   # 1:3 would be 1000 x 3000: the longer side to 1333
    ((1500, 1000), (1333, 889)),  # shrunk, the longer side capped
])
def test_parser_resizes_by_the_shorter_side(size, resized):
    image = tf.random.uniform((*size, 3))
    with short_side_resize(maskrcnn_input, 1000, 1333, [1344, 1344, 3]):
        swapped = maskrcnn_input.preprocess_ops
        output, info = swapped.resize_and_crop_image(image, [1344, 1344], [1344, 1344])
    assert maskrcnn_input.preprocess_ops is preprocess_ops  # put back
    assert output.shape == (1344, 1344, 3)
    info = info.numpy()
    np.testing.assert_array_equal(info[0], size)
    np.testing.assert_array_equal(info[1], resized)
    np.testing.assert_allclose(info[2], np.array(resized) / np.array(size), rtol=1e-6)
    # The padding is zeros, the picture the scaled image.
    assert not np.any(output.numpy()[resized[0]:]) and not np.any(output.numpy()[:, resized[1]:])
    assert resized_size(*size, [1344, 1344], 1000, 1333) == resized


def test_detector_sizes_follow_model_gardens_resize_without_short_side():
    for size in [(480, 640), (640, 480), (100, 1000), (64, 64)]:
        _, info = preprocess_ops.resize_and_crop_image(
            tf.zeros((*size, 3)), [512, 384], [512, 384])
        scaled = np.round(info[0].numpy() * info[2].numpy())  # info[1] is [512, 384]
        assert resized_size(*size, [512, 384]) == tuple(int(v) for v in scaled)


def test_zero_short_side_changes_nothing():
    with short_side_resize(maskrcnn_input, 0, 0, [64, 64, 3]):
        assert maskrcnn_input.preprocess_ops is preprocess_ops


@pytest.mark.parametrize("short_side, long_side", [(800, 700), (1000, 1400), (-1, 10)])
def test_bad_sides_are_refused(short_side, long_side):
    with pytest.raises(ValueError, match=r"model.short_side and model.long_side must "
                                         r"satisfy .* min\(input_size\[:2\]\) = 1344"):
        check(short_side, long_side, [1344, 1344, 3])


def test_task_and_serving_resize_by_the_shorter_side(tiny_overrides):
    """The synthetic 64x64 images with `short_side` 32: the task's validation batches
    and the serving module's preprocessing scale them by 1/2, its training batches by
    1/2 times the experiment's scale jittering."""
    overrides = tiny_overrides()
    overrides["task"]["model"].update(short_side=32, long_side=48)
    params = runtime.experiment_params(SYNTHETIC_EXPERIMENT, overrides)
    task = task_factory.get_task(params.task)
    parser = params.task.train_data.parser
    for data, (low, high) in ((params.task.train_data,
                               (parser.aug_scale_min / 2, parser.aug_scale_max / 2)),
                              (params.task.validation_data, (0.5, 0.5))):
        images, labels = next(iter(task.build_inputs(data)))
        info = labels["image_info"].numpy()
        np.testing.assert_array_equal(info[:, 1], [[32, 32]] * len(info))
        scales = info[:, 2]
        assert np.all(scales[:, 0] == scales[:, 1])
        assert np.all((scales >= low - 1 / 64) & (scales <= high + 1 / 64)), scales
        assert images.shape[1:3] == (64, 64)
    assert not np.any(images.numpy()[:, 32:])  # validation: the padding
    assert maskrcnn_input.preprocess_ops is preprocess_ops

    module = detection.DcnDetectionModule(params=params, batch_size=1,
                                          input_image_size=[64, 64])
    image, _, info = module._build_inputs(tf.zeros((48, 64, 3), tf.uint8))
    np.testing.assert_array_equal(info[1].numpy(), [32, 43])  # shorter side 48 -> 32
    assert image.shape[:2] == (64, 64)
    assert mg_detection.preprocess_ops is preprocess_ops
