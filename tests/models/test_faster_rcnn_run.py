"""The paper's Faster R-CNN end to end, as the Mask R-CNN runs: on the tiny data set
Model Garden's trainer trains it with mimicking and evaluates it (box metrics, no
masks), `models.evaluate`'s evaluation restores it, it exports as a SavedModel that
gives the in-memory model's detections, and `models.analyze` draws its conv5 nodes
(conv5 at stride 16) and its RoI node.

A couple of minutes; `pytest -m "not slow"` leaves it out."""

import json
import os

import cv2
import numpy as np
import pytest
import tensorflow as tf

from models import analyze
from models.analysis import annotated_nodes
from models.common import image_files
from models.common import runtime
from models.configs.fasterrcnn_experiments import FASTER_RCNN_SYNTHETIC_EXPERIMENT
from models.evaluation import coco
from models.serving import detection
from models.training import train_lib

pytestmark = pytest.mark.slow
TRAINER = {"train_steps": 2, "steps_per_loop": 1, "summary_interval": 1,
           "checkpoint_interval": 1, "validation_interval": 2, "validation_steps": 1}


@pytest.fixture(scope="module")
def faster_rcnn_run(tmp_path_factory, tiny_faster_rcnn_overrides):
    """`(params, model_dir, metrics)` of a tiny DCNv2 Faster R-CNN with mimicking,
    trained for two steps and evaluated by Model Garden's trainer."""
    params = runtime.experiment_params(
        FASTER_RCNN_SYNTHETIC_EXPERIMENT, tiny_faster_rcnn_overrides("dcnv2", mimic=True),
        {"trainer": TRAINER})
    model_dir = str(tmp_path_factory.mktemp("faster_rcnn"))
    metrics = train_lib.run_experiment(params, model_dir, "train_and_eval")
    return params, model_dir, metrics


def test_trains_evaluates_and_restores(faster_rcnn_run):
    params, model_dir, metrics = faster_rcnn_run
    assert tf.train.latest_checkpoint(model_dir).endswith("ckpt-2")
    assert set(metrics) == {"box"}  # no mask head, no mask metrics
    again = coco.evaluate(params, model_dir, steps=1)
    assert set(again) == {"box", "checkpoint"}
    assert again["box"] == pytest.approx(metrics["box"])


def test_exports_a_saved_model_with_the_models_detections(faster_rcnn_run, tiny_data,
                                                          tmp_path):
    params, model_dir, _ = faster_rcnn_run
    saved_model = detection.export_saved_model(params, model_dir, str(tmp_path / "export"))
    image = image_files.read_rgb(str(tiny_data["root"] / "val" / "000001.png"))
    module = detection.DcnDetectionModule(params=params, batch_size=1,
                                          input_image_size=[64, 64])
    tf.train.Checkpoint(model=module.model).read(
        tf.train.latest_checkpoint(model_dir)).expect_partial()
    want = module.serve(tf.constant(image[None]))
    got = tf.saved_model.load(saved_model).signatures["serving_default"](
        inputs=tf.constant(image[None]))
    assert "detection_masks" not in got
    assert {"detection_boxes", "detection_classes", "detection_scores",
            "num_detections"} <= set(want) <= set(got)
    for key, value in want.items():
        np.testing.assert_allclose(got[key].numpy(), value.numpy(), rtol=0, atol=1e-3,
                                   err_msg=key)


def test_spatial_support_analysis_of_conv5_at_stride_16(faster_rcnn_run, tiny_data,
                                                        tmp_path, command_flags):
    _, model_dir, _ = faster_rcnn_run
    image = os.path.join(tiny_data["root"], "val", "000001.png")
    out = tmp_path / "analysis"
    command_flags(analyze, "--model_dir", f"dcnv2={model_dir}", "--image", image,
                  "--annotations", tiny_data["annotation_file"], "--out", str(out),
                  "--steps", "0", "--patch_size", "16")
    analyze.main([])
    with open(out / "spatial_support.json") as f:
        run = json.load(f)["runs"]["dcnv2"]
    nodes = annotated_nodes.nodes_from_annotations(tiny_data["annotation_file"], image)
    # The node's cell on conv5's 4x4 map (stride 16), and conv5's three deformable
    # 3x3 convolutions only, though conv4's map has the same size.
    assert run["foreground"]["position"] == [int(v) // 16 for v in nodes["foreground"]]
    assert len(run["foreground"]["layers"]) == 3
    assert "stride 16" in run["model"]
    for key in ("foreground", "background", "roi"):
        assert run[key]["points"] > 0 and run[key]["saliency_error"] <= 0.1
    for name in ("figure1_conv5.png", "figure2_roi.png"):
        assert cv2.imread(str(out / name)) is not None
