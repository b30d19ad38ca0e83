"""Deployment without keras_dcn: a Keras model holding both layers, exported inside
`keras_dcn.ops.standard_ops_only()`, is a SavedModel of standard TensorFlow ops that a
process without keras_dcn serves, and converts to LiteRT with builtin ops only; both
give the outputs of the model that runs the compiled kernels."""

import numpy as np
import pytest
import tensorflow as tf
import keras

import keras_dcn
from keras_dcn.layers import DeformConv2D, DeformRoIPool
from tests.layers.helpers import check, run_python

pytestmark = pytest.mark.slow
SIZE, ROIS = 16, 3


def _model(rng):
    """Conv, DeformConv2D (offsets and mask made non-zero), DeformRoIPool on its
    output: inputs an image batch of one and RoIs `[R, 5]`."""
    image = keras.Input((SIZE, SIZE, 3), batch_size=1, name="image")
    rois = keras.Input((5,), name="rois")
    features = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(image)
    deform = DeformConv2D(6, 3, padding="same")
    features = deform(features)
    pool = DeformRoIPool(output_size=3, spatial_scale=1.0, hidden_units=16)
    model = keras.Model([image, rois], pool(features, rois))
    for layer in (deform, pool):
        for variable in layer.weights:
            if "offset" in variable.path:
                variable.assign(rng.normal(size=variable.shape).astype("float32") * 0.3)
    inputs = [rng.normal(size=(1, SIZE, SIZE, 3)).astype("float32"),
              np.array([[0, 1, 2, 9, 12], [0, 4.5, 0, 15, 6], [0, 0, 0, 16, 16]], "float32")]
    return model, inputs


def _exported(model, path):
    with keras_dcn.ops.standard_ops_only():
        model.export(str(path), verbose=False)
    return str(path)


def test_standard_ops_saved_model_serves_without_keras_dcn(tmp_path, rng):
    model, inputs = _model(rng)
    want = model([tf.constant(x) for x in inputs]).numpy()
    saved = _exported(model, tmp_path / "portable")
    np.savez(tmp_path / "inputs.npz", *inputs)
    check(run_python(f"""
        import sys, numpy as np, tensorflow as tf
        sys.modules["keras_dcn"] = None  # importing it would fail
        inputs = np.load({str(tmp_path / 'inputs.npz')!r})
        loaded = tf.saved_model.load({saved!r})
        served = loaded.serve([inputs["arr_0"], inputs["arr_1"]])
        np.save({str(tmp_path / 'served.npy')!r}, served.numpy())
        """))
    np.testing.assert_allclose(np.load(tmp_path / "served.npy"), want, rtol=0, atol=1e-5)


def test_litert_conversion_with_builtin_ops_only(tmp_path, rng):
    Interpreter = pytest.importorskip("ai_edge_litert.interpreter").Interpreter

    model, inputs = _model(rng)
    want = model([tf.constant(x) for x in inputs]).numpy()
    converter = tf.lite.TFLiteConverter.from_saved_model(
        _exported(model, tmp_path / "portable"))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    interpreter = Interpreter(model_content=converter.convert())
    details = interpreter.get_input_details()
    rois = next(d for d in details if "rois" in d["name"])
    interpreter.resize_tensor_input(rois["index"], inputs[1].shape)
    interpreter.allocate_tensors()
    for detail in details:
        interpreter.set_tensor(detail["index"], inputs[1] if detail is rois else inputs[0])
    interpreter.invoke()
    got = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
