"""models.training.learning_curves: the loss history read from a run's Keras CSV log
and the picture of losses and validation AP."""

import csv

import cv2
import numpy as np
import yaml

from models.training import learning_curves
from models.training import validation_ap

COLUMNS = ["epoch", "total_loss", "rpn_score_loss", "mask_loss", "frcnn_fg_accuracy",
           "learning_rate"]
NAMES = ("total_loss", "rpn_score_loss", "mask_loss", "frcnn_fg_accuracy")


def _run(tmp_path, rows, steps_per_loop=25):
    """A run folder with `params.yaml` and `keras_history.csv` holding `rows`."""
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(
        {"task": {"model": {"variant": "dcnv2"}},
         "trainer": {"steps_per_loop": steps_per_loop, "train_steps": 1000}}))
    with open(tmp_path / "keras_history.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(COLUMNS)
        writer.writerows(rows)
    return str(tmp_path)


def test_loss_history_by_step(tmp_path, rng):
    """Epoch e ends at step (e + 1) * steps_per_loop; an epoch logged twice (a resumed
    run) keeps its last row; only the loss and classifier columns present are read, as
    floats."""
    losses = rng.uniform(0.1, 3.0, (6, 4)).round(4)
    epochs = [0, 1, 2, 1, 3, 2]  # epochs 1 and 2 logged again after a resume
    rows = [[epoch, *values, 0.02] for epoch, values in zip(epochs, losses)]
    model_dir = _run(tmp_path, rows, steps_per_loop=25)
    history = learning_curves.loss_history(model_dir)
    assert history["step"] == [25, 50, 75, 100]
    assert set(history) == {"step", *NAMES}
    last_row = {epoch: index for index, epoch in enumerate(epochs)}  # later rows win
    for column, name in enumerate(NAMES):
        assert history[name] == [float(losses[last_row[epoch], column])
                                 for epoch in range(4)]


def test_plot_learning_curves_writes_a_picture(tmp_path, rng):
    """The picture is a PNG of the figure's size (15 x 4.2 inches at 100 dpi) with
    ink in all three panels, written with and without an AP history."""
    rows = [[epoch, *rng.uniform(0.1, 3.0, 3), rng.uniform(), 0.02] for epoch in range(5)]
    model_dir = _run(tmp_path, rows, steps_per_loop=10)
    bare = learning_curves.plot_learning_curves(model_dir, str(tmp_path / "bare.png"))
    for step in (20, 40):
        validation_ap.append_history(model_dir, step, {
            "box": {"AP": 0.1 * step / 20, "AP50": 0.3}, "mask": {"AP": 0.05, "AP50": 0.2}})
    out = str(tmp_path / "curves.png")
    assert learning_curves.plot_learning_curves(model_dir, out, title="dcnv2") == out
    for path in (bare, out):
        image = cv2.imread(path)
        assert image is not None and image.shape == (420, 1500, 3)
        # Not blank: each third of the figure has dark pixels (axes, curves, text).
        dark = image.min(axis=2) < 128
        assert all(dark[:, left:left + 500].sum() > 500 for left in (0, 500, 1000))
    assert not np.array_equal(cv2.imread(bare), cv2.imread(out))
