"""models.serving: the tiny run of the `trained` fixture exports as a SavedModel that a
fresh process (importing only keras_dcn and models.serving.detector) loads and runs,
giving the in-memory model's outputs, and draws.

A few minutes (the run is trained in fresh processes); `pytest tests/models -m "not
slow"` leaves it out."""

import os

import cv2
import numpy as np
import pytest
import tensorflow as tf

from models.common import image_files
from models.common import runtime
from models.configs.experiments import SYNTHETIC_EXPERIMENT
from models.serving import detection
from tests.layers.helpers import check, run_python

TIMEOUT = 600
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("trained")]  # one worker trains it
# The SavedModel runs the in-memory model's float32 graph; only the order of float
# sums may differ (graph rewrites, threads): scores and masks, in [0, 1], agree within
# 1e-4, boxes, in pixels of the 64-pixel image, within 1e-3 (a thousandth of a pixel).
EXPORT_TOLERANCE = {"detection_boxes": 1e-3}


def test_export_reload_in_fresh_process_and_draw(trained, tiny_data, tmp_path):
    model_dir, config, _ = trained
    params = runtime.experiment_params(SYNTHETIC_EXPERIMENT, config)
    saved_model = detection.export_saved_model(params, model_dir, str(tmp_path / "export"))
    assert os.path.isfile(os.path.join(saved_model, "saved_model.pb"))

    image_path = str(tiny_data["root"] / "val" / "000001.png")
    image = image_files.read_rgb(image_path)
    module = detection.DcnDetectionModule(
        params=params, batch_size=1, input_image_size=[64, 64])
    tf.train.Checkpoint(model=module.model).read(
        tf.train.latest_checkpoint(model_dir)).expect_partial()
    want = {k: v.numpy() for k, v in module.serve(tf.constant(image[None])).items()}

    outputs = tmp_path / "outputs.npz"
    picture = tmp_path / "picture.png"
    check(run_python(f"""
        import sys, numpy as np
        from models.serving.detector import Detector, predict_and_draw
        assert not [name for name in sys.modules if name.startswith(
            ("models.configs", "models.modeling", "models.tasks", "models.registry_imports"))]
        detector = Detector({saved_model!r})
        from models.common.image_files import read_rgb
        raw = detector.raw(read_rgb({image_path!r}))
        np.savez({str(outputs)!r}, **raw)
        predict_and_draw({saved_model!r}, [{image_path!r}], {str(picture)!r},
                         score_threshold=0.0)
        """, timeout=TIMEOUT))
    got = dict(np.load(outputs))
    assert {"detection_boxes", "detection_classes", "detection_scores",
            "num_detections", "detection_masks"} <= set(want) <= set(got)
    for key, value in want.items():
        if value.dtype.kind in "iu":  # counts and classes
            np.testing.assert_array_equal(got[key], value, err_msg=key)
        else:
            np.testing.assert_allclose(got[key], value, rtol=0,
                                       atol=EXPORT_TOLERANCE.get(key, 1e-4), err_msg=key)
    assert picture.stat().st_size > 0
    drawn = cv2.imread(str(picture))
    # One tile: the 64x64 image enlarged four times, under a title band.
    assert drawn.shape[1] == 256 + 2 * 4 and drawn.shape[0] > 256 + 2 * 4


def _op_types(saved_model):
    """The op types of every graph and function of a SavedModel."""
    from tensorflow.core.protobuf import saved_model_pb2
    proto = saved_model_pb2.SavedModel()
    with open(os.path.join(saved_model, "saved_model.pb"), "rb") as f:
        proto.ParseFromString(f.read())
    types = set()
    for meta_graph in proto.meta_graphs:
        types.update(node.op for node in meta_graph.graph_def.node)
        for function in meta_graph.graph_def.library.function:
            types.update(node.op for node in function.node_def)
    return types


def test_standard_ops_export_loads_without_keras_dcn(trained, tiny_data, tmp_path):
    """With `standard_ops_only` the SavedModel holds no keras_dcn op, and a fresh
    process that never imports keras_dcn (as stock TF Serving would) gets the outputs
    of the export that uses the compiled kernels."""
    model_dir, config, _ = trained
    params = runtime.experiment_params(SYNTHETIC_EXPERIMENT, config)
    image = image_files.read_rgb(str(tiny_data["root"] / "val" / "000001.png"))
    exports = {}
    for standard in (False, True):
        saved_model = detection.export_saved_model(
            params, model_dir, str(tmp_path / f"export_{standard}"), standard_ops_only=standard)
        types = _op_types(saved_model)
        assert any(t.startswith("Dcn") for t in types) is not standard
        exports[standard] = saved_model
    np.save(tmp_path / "image.npy", image[None])
    for standard, saved_model in exports.items():
        check(run_python(f"""
            import sys, numpy as np, tensorflow as tf
            if {standard}:  # the kernels' SavedModel needs the ops registered
                sys.modules["keras_dcn"] = None  # importing it would fail
            else:
                import keras_dcn
            serve = tf.saved_model.load({saved_model!r}).signatures["serving_default"]
            outputs = serve(inputs=tf.constant(np.load({str(tmp_path / 'image.npy')!r})))
            np.savez({str(tmp_path / f'outputs_{standard}.npz')!r},
                     **{{k: v.numpy() for k, v in outputs.items()}})
            """, timeout=TIMEOUT))
    custom, standard = (dict(np.load(tmp_path / f"outputs_{s}.npz")) for s in (False, True))
    assert set(custom) == set(standard)
    for key, value in custom.items():
        if value.dtype.kind in "iu":
            np.testing.assert_array_equal(standard[key], value, err_msg=key)
        else:
            np.testing.assert_allclose(standard[key], value, rtol=0,
                                       atol=EXPORT_TOLERANCE.get(key, 1e-4), err_msg=key)
