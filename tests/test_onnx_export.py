"""keras_dcn.onnx_export: models holding both layers become ONNX models (the standard
DeformConv operator, deformable RoI pooling as standard ops) that onnxruntime runs with
the outputs of the compiled kernels."""

import numpy as np
import pytest
import tensorflow as tf
import keras

import keras_dcn.onnx_export
from keras_dcn.layers import DeformConv2D, DeformRoIPool

onnxruntime = pytest.importorskip("onnxruntime")
pytestmark = pytest.mark.slow


def _with_random_offsets(model, rng):
    """Makes every offset / mask branch of `model` non-zero (they start at zero)."""
    for layer in model.layers:
        for variable in layer.weights:
            if "offset" in variable.path:
                variable.assign(rng.normal(size=variable.shape).astype("float32") * 0.3)
    return model


def _run(proto, feeds):
    session = onnxruntime.InferenceSession(proto.SerializeToString(),
                                           providers=["CPUExecutionProvider"])
    return session.run(None, feeds)[0]


@pytest.mark.parametrize("options", [
    dict(padding="same"),
    dict(padding="valid", strides=2, dilation_rate=(1, 2)),
    dict(padding=((2, 0), (1, 1)), groups=2, deformable_groups=2),
    dict(padding="same", modulated=False, use_bias=False),
], ids=["same", "strided_dilated", "explicit_groups", "dcnv1_no_bias"])
def test_deform_conv_becomes_the_standard_operator(options, rng):
    image = keras.Input((13, 11, 4), batch_size=2)
    model = _with_random_offsets(keras.Model(image, DeformConv2D(6, 3, **options)(image)), rng)
    inputs = rng.normal(size=(2, 13, 11, 4)).astype("float32")
    proto = keras_dcn.onnx_export.convert(
        model, [tf.TensorSpec((2, 13, 11, 4), tf.float32, name="image")])
    kinds = {node.op_type for node in proto.graph.node}
    assert "DeformConv" in kinds and not any(k.startswith("Dcn") for k in kinds)
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) == 19
    np.testing.assert_allclose(_run(proto, {"image": inputs}), model(inputs).numpy(),
                               rtol=0, atol=1e-5)


def test_model_with_roi_pooling_runs_in_onnxruntime(rng, tmp_path):
    """Deformable RoI pooling has no ONNX operator: it is exported as standard ops,
    for any number of RoIs; the file written is the model returned."""
    image = keras.Input((16, 16, 3), batch_size=1, name="image")
    rois = keras.Input((5,), name="rois")
    features = DeformConv2D(6, 3, padding="same")(image)
    model = _with_random_offsets(keras.Model(
        [image, rois], DeformRoIPool(output_size=3, hidden_units=16)(features, rois)), rng)
    path = tmp_path / "model.onnx"
    proto = keras_dcn.onnx_export.convert(
        lambda a, b: model([a, b]),
        [tf.TensorSpec((1, 16, 16, 3), tf.float32, name="image"),
         tf.TensorSpec((None, 5), tf.float32, name="rois")], str(path))
    assert path.read_bytes() == proto.SerializeToString()
    inputs = rng.normal(size=(1, 16, 16, 3)).astype("float32")
    for boxes in ([[0, 1, 2, 9, 12]], [[0, 1, 2, 9, 12], [0, 4.5, 0, 15, 6], [0, 0, 0, 16, 16]]):
        boxes = np.array(boxes, "float32")
        np.testing.assert_allclose(_run(proto, {"image": inputs, "rois": boxes}),
                                   model([inputs, boxes]).numpy(), rtol=0, atol=1e-5)


def test_same_padding_needs_a_static_image_size():
    image = keras.Input((None, None, 4))
    model = keras.Model(image, DeformConv2D(2, 3, padding="same")(image))
    with pytest.raises(ValueError, match="padding 'same' needs a static image size"):
        keras_dcn.onnx_export.convert(
            model, [tf.TensorSpec((1, None, None, 4), tf.float32, name="image")])
