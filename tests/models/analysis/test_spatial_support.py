"""models.analysis.spatial_support: a regular run analysed through its deformable twin
computes exactly what the regular model computes; configs, image fitting and nodes."""

import numpy as np
import pytest
import tensorflow as tf

from official.core import task_factory

from keras_dcn import tf_keras as dcn_layers
from models.analysis import spatial_support
from models.common import runtime
from models.configs.experiments import SYNTHETIC_EXPERIMENT
from models.modeling.layers.deform_roi_aligner import MultilevelDeformableROIAligner


def _restored(params, run_dir):
    """The trained model as the task builds it (no analysis changes)."""
    model = task_factory.get_task(params.task).build_model()
    tf.train.Checkpoint(model=model).read(runtime.latest_checkpoint(run_dir)) \
        .expect_partial().assert_existing_objects_matched()
    return model


@pytest.mark.slow
def test_regular_twin_computes_the_regular_model(tiny_run, rng):
    run_dir = tiny_run("regular")
    params = spatial_support.run_params(run_dir)
    assert params.task.model.variant == "regular"
    regular = _restored(params, run_dir)
    twin = spatial_support.load_model(params, run_dir, probe_stages=(4, 5))

    convs, pools = spatial_support.probed_layers(twin)
    assert len(convs) == 4  # ResNet-10: two 3x3 convs in each of conv4 and conv5
    assert all(isinstance(c, dcn_layers.DeformConv2D) and not c.modulated for c in convs)
    assert all(not np.any(c.offset_kernel.numpy()) for c in convs)
    assert isinstance(twin.roi_aligner, MultilevelDeformableROIAligner)
    # The regular model's RoIAlign made deformable: its sampling, zero offsets, no mask.
    plain = regular.roi_aligner.get_config()
    assert plain["deformable"] is False
    assert (pools[0].sampling_ratio, pools[0].aligned, pools[0].modulated) == (
        plain["sampling_ratio"], plain["aligned"], False)

    images = rng.uniform(0, 255, (1, 64, 64, 3)).astype("float32")
    expected = regular.backbone(spatial_support.normalize(images), training=False)
    for level in ("2", "3", "4", "5"):
        position = (1, 0)
        node = spatial_support.backbone_node(twin, int(level), position)
        np.testing.assert_allclose(node(images), expected[level][0, 1, 0], rtol=1e-4,
                                   atol=1e-5)

    box = (6.0, 9.0, 40.0, 55.0)
    _, features = regular._get_backbone_and_decoder_features(
        spatial_support.normalize(images))
    pooled = regular.roi_aligner(features, tf.constant([[box]]), training=False)
    logits, _ = regular.detection_head[0](pooled, training=False)
    fc = spatial_support.roi_node(twin, box)(images)
    np.testing.assert_allclose(twin.detection_head[0]._classifier(fc[None, None]), logits,
                               rtol=1e-4, atol=1e-5)


@pytest.fixture(scope="module")
def dcnv2_model(tiny_run):
    run_dir = tiny_run("dcnv2")
    params = spatial_support.run_params(run_dir)
    return spatial_support.load_model(params, run_dir)  # asserts every weight restored


@pytest.mark.slow
def test_deformable_runs_load_unchanged(dcnv2_model):
    convs, pools = spatial_support.probed_layers(dcnv2_model)
    assert len(convs) == 6 and all(c.modulated for c in convs)
    assert pools[0].modulated and pools[0].sampling_ratio == 2


def test_analysis_model_config():
    def config(variant, stages):
        params = runtime.experiment_params(
            SYNTHETIC_EXPERIMENT, {"task": {"model": {"variant": variant}}})
        return spatial_support.analysis_model_config(params.task.model, stages)

    dcnv1 = config("dcnv1", (4, 5))
    assert dcnv1.variant == "custom"
    assert list(dcnv1.backbone.dcn_resnet.deformable_stages) == [4, 5]
    assert not dcnv1.backbone.dcn_resnet.modulated
    dcnv2 = config("dcnv2", (4,))
    assert list(dcnv2.backbone.dcn_resnet.deformable_stages) == [3, 4, 5]
    assert dcnv2.roi_aligner.modulated and dcnv2.roi_aligner.sampling_ratio == 2
    with pytest.raises(ValueError, match="regular stages of a modulated backbone"):
        config("dcnv2", (2, 5))
    with pytest.raises(ValueError, match="probe_stages must be a subset"):
        config("regular", (6,))


def test_fit_image_scales_and_pads_with_the_mean_colour(rng):
    image = rng.integers(0, 255, (40, 80, 3), dtype=np.uint8)
    canvas, scale = spatial_support.fit_image(image, (64, 64))
    assert scale == pytest.approx(0.8) and canvas.shape == (64, 64, 3)
    assert canvas.dtype == np.uint8
    np.testing.assert_array_equal(canvas[32:], np.broadcast_to(
        np.round([0.485 * 255, 0.456 * 255, 0.406 * 255]).astype(np.uint8), (32, 64, 3)))
    same, one = spatial_support.fit_image(image[:32, :32], (32, 32))
    assert one == 1.0 and np.array_equal(same, image[:32, :32])


@pytest.mark.slow
def test_bad_arguments(tmp_path, dcnv2_model):
    with pytest.raises(FileNotFoundError, match="no params.yaml"):
        spatial_support.run_params(str(tmp_path))
    with pytest.raises(ValueError, match=r"box must be \(y1, x1, y2, x2\)"):
        spatial_support.roi_node(None, (10, 10, 5, 20))
    with pytest.raises(ValueError, match="outside the level-5 map"):
        spatial_support.backbone_node(dcnv2_model, 5, (2, 0))(
            np.zeros((1, 64, 64, 3), "float32"))
