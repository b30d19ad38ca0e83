"""End to end in fresh processes with a tiny model (the `trained` fixture): Model
Garden's trainer (`python -m models.train`, MirroredStrategy over two logical CPUs)
trains and evaluates (metrics.json); a second process resumes from its checkpoint
(`train_lib.run_experiment`), then Keras `fit` (MirroredStrategy over two logical
CPUs) continues.

These tests take a few minutes (each process traces the whole Mask R-CNN);
`pytest tests/models -m "not slow"` leaves them out."""

import os

import numpy as np
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("trained")]  # one worker trains it


def _checkpoints(model_dir):
    return sorted(int(name[5:-6]) for name in os.listdir(model_dir)
                  if name.startswith("ckpt-") and name.endswith(".index"))


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
        # COCO's -1 means no object of that size; accuracy itself is checked on an
        # overfit run (test_keras_trainer.py), not on this one-step run.
        assert all(v == -1 or 0 <= v <= 1 for v in metrics[kind].values())


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
