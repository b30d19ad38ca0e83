"""python -m models.demo end to end on a tiny budget: every stage runs and leaves what
it promises (the AP of such a run is near zero; the accuracy figures come from the
full command, not from tests)."""

import json
import os

import cv2
import pytest
import tensorflow as tf

from models import demo
from models.training import validation_ap

TINY_RECIPE = ("--train_images", "8", "--val_images", "4", "--size", "64",
               "--pretrain_steps", "2", "--pretrain_images", "12", "--steps", "4",
               "--batch", "2")


@pytest.mark.slow
def test_demo_runs_every_stage(tmp_path, command_flags, capsys):
    data, out = tmp_path / "data", tmp_path / "run"
    argv = (*TINY_RECIPE, "--data", str(data), "--out", str(out), "--pictures", "3")
    command_flags(demo, *argv)
    demo.main([])
    first = capsys.readouterr().out
    assert "generated" in first and "trained: validation accuracy" in first

    with open(out / "metrics.json") as f:
        metrics = json.load(f)
    assert tf.train.load_checkpoint(metrics["checkpoint"]).get_tensor(
        "global_step/.ATTRIBUTES/VARIABLE_VALUE") == 4
    for task in ("box", "mask"):
        assert 0.0 <= metrics[task]["AP"] <= 1.0
    # The final evaluation is in the AP history (the periodic one has its own tests).
    history = validation_ap.read_history(str(out))
    assert [entry["step"] for entry in history] == [4]
    assert history[-1]["box"]["AP"] == metrics["box"]["AP"]
    assert os.path.exists(out / "export" / "saved_model" / "saved_model.pb")
    assert tf.io.gfile.glob(str(out / "train" / "events.out.tfevents.*"))

    curves = cv2.imread(str(out / "learning_curves.png"))
    assert curves is not None and min(curves.shape[:2]) > 100
    picture = cv2.imread(str(out / "prediction.png"))
    # Three images, two a row, each drawn with its ground truth beside it: 2 rows of
    # 4 tiles of at least 256 pixels (64-pixel images enlarged 4 times).
    assert picture.shape[0] >= 2 * 256 and picture.shape[1] >= 4 * 256

    # A rerun reuses the data and the pretrained backbone, and resumes the finished run.
    command_flags(demo, *argv)
    demo.main([])
    again = capsys.readouterr().out
    assert "reused (up to date)" in again and "reused: validation accuracy" in again
