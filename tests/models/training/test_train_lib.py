"""End to end in fresh processes with a tiny model: Model Garden's trainer
(`python -m models.train`, MirroredStrategy over two logical CPUs) trains and
evaluates (metrics.json); a second process resumes from its checkpoint, then Keras
`fit` (MirroredStrategy over two logical CPUs) continues; the result exports as a
SavedModel that a third process (importing only keras_dcn and models.serving.detector)
loads and runs, giving the in-memory model's outputs, and draws.

These tests take a few minutes (each process traces the whole Mask R-CNN);
`pytest tests/models -m "not slow"` leaves them out."""

import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
import tensorflow as tf

from models.common import runtime
from models.configs.experiments import SYNTHETIC_EXPERIMENT
from models.serving import detection
from tests.layers.helpers import REPO, check, python_env, run_python

TIMEOUT = 600
pytestmark = pytest.mark.slow


def _train(model_dir, config_file, *flags):
    command = [sys.executable, "-m", "models.train", f"--experiment={SYNTHETIC_EXPERIMENT}",
               f"--model_dir={model_dir}", f"--config_file={config_file}",
               "--cpu_replicas=2", *flags]
    result = subprocess.run(command, cwd=REPO, env=python_env(), capture_output=True,
                            text=True, timeout=TIMEOUT)
    check(result)
    return result.stdout + result.stderr


def _checkpoints(model_dir):
    return sorted(int(name[5:-6]) for name in os.listdir(model_dir)
                  if name.startswith("ckpt-") and name.endswith(".index"))


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_overrides, write_yaml):
    """A model dir after two fresh processes: (1) `python -m models.train`, Model
    Garden's trainer, MirroredStrategy over 2 CPUs, 1 step and COCO evaluation;
    (2) Model Garden's trainer resuming to step 2 (one replica), then Keras `fit`
    (MirroredStrategy over 2 CPUs, with a validation loss) continuing to step 3."""
    work = tmp_path_factory.mktemp("train")
    model_dir = str(work / "run")
    config = write_yaml(work / "tiny.yaml", tiny_overrides("dcnv2", train_steps=1))
    logs = {"first": _train(model_dir, config, "--mode=train_and_eval")}
    with open(os.path.join(model_dir, "metrics.json")) as f:
        logs["metrics"] = json.load(f)
    driver = f"""
from absl import logging
from models import train
from models.common import runtime
from models.configs.experiments import SYNTHETIC_EXPERIMENT
logging.set_verbosity(logging.INFO)
runtime.split_cpu(2)
def params(steps):
    return runtime.experiment_params(
        SYNTHETIC_EXPERIMENT, {config!r}, {{"trainer": {{"train_steps": steps}}}})
train.run(params(2), {model_dir!r}, "train", trainer="orbit")
print("== keras", flush=True)
train.run(params(3), {model_dir!r}, "train", trainer="keras", cpu_replicas=2, verbose=2)
"""
    result = subprocess.run([sys.executable, "-c", driver], cwd=REPO, env=python_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            timeout=TIMEOUT)
    assert result.returncode == 0, result.stdout[-20000:]
    output = result.stdout
    logs["resumed"], logs["keras"] = output.split("== keras", 1)
    return model_dir, config, logs


def test_model_garden_trainer_resumes_under_mirrored_strategy(trained):
    model_dir, _, logs = trained
    assert "MirroredStrategy with 2 replica(s)" in logs["first"]
    assert "device:CPU:1" in logs["first"]
    assert "restored from checkpoint" in logs["resumed"]
    assert os.path.join(model_dir, "ckpt-1") in logs["resumed"]
    assert "training until step 2" in logs["resumed"]
    metrics = logs["metrics"]
    for kind in ("box", "mask"):
        assert set(metrics[kind]) == {"AP", "AP50", "AP75", "APs", "APm", "APl"}
        assert all(-1 <= v <= 1 for v in metrics[kind].values())


def test_keras_fit_continues_under_mirrored_strategy(trained):
    model_dir, _, logs = trained
    assert "MirroredStrategy with 2 replica(s)" in logs["keras"]
    assert "device:CPU:1" in logs["keras"]
    assert "Resumed from" in logs["keras"]
    assert os.path.join(model_dir, "ckpt-2") in logs["keras"]
    assert _checkpoints(model_dir)[-1] == 3
    with open(os.path.join(model_dir, "keras_history.csv")) as f:
        rows = f.read().strip().splitlines()
    header, last = rows[0].split(","), rows[-1].split(",")
    assert "total_loss" in header and "val_mask_loss" in header
    values = dict(zip(header, last))
    assert all(np.isfinite(float(values[k])) for k in ("total_loss", "val_total_loss"))


def test_export_reload_in_fresh_process_and_draw(trained, tiny_data, tmp_path):
    model_dir, config, _ = trained
    params = runtime.experiment_params(SYNTHETIC_EXPERIMENT, config)
    saved_model = detection.export(params, model_dir, str(tmp_path / "export"))
    assert os.path.isfile(os.path.join(saved_model, "saved_model.pb"))

    image_path = str(tiny_data["root"] / "val" / "000001.png")
    from models.serving.detector import read_rgb  # noqa: E402  (after keras_dcn is loaded)
    image = read_rgb(image_path)
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
        from models.serving.detector import read_rgb
        raw = detector.raw(read_rgb({image_path!r}))
        np.savez({str(outputs)!r}, **raw)
        predict_and_draw({saved_model!r}, {image_path!r}, {str(picture)!r},
                         score_threshold=0.0)
        """, timeout=TIMEOUT))
    got = dict(np.load(outputs))
    assert set(want) <= set(got)
    assert {"detection_boxes", "detection_classes", "detection_scores",
            "num_detections", "detection_masks"} <= set(got)
    count = int(want["num_detections"][0])
    assert int(got["num_detections"][0]) == count
    np.testing.assert_allclose(got["detection_scores"], want["detection_scores"],
                               atol=1e-4)
    np.testing.assert_allclose(got["detection_boxes"], want["detection_boxes"],
                               atol=1e-3)
    np.testing.assert_array_equal(got["detection_classes"], want["detection_classes"])
    np.testing.assert_allclose(got["detection_masks"], want["detection_masks"],
                               atol=1e-4)
    assert picture.stat().st_size > 0
    drawn = cv2.imread(str(picture))
    assert drawn.shape == (64, 64, 3)
