"""A picture of a run's progress: training losses and validation AP over steps.

`plot_learning_curves(model_dir, out_path)` reads what the Keras trainer leaves in a
run folder (`keras_history.csv`, one row of mean losses per Keras epoch of
`trainer.steps_per_loop` steps, and the AP history of
`models.training.validation_ap`) and draws three panels: the total loss and its
terms by training step, the Fast R-CNN classifier on its sampled RoIs (foreground share,
accuracy on foreground and on background RoIs; `models.modeling.classifier_stats`),
and box / mask AP (and AP50) at the evaluated steps.
"""

import csv
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import yaml  # noqa: E402

from models.modeling import classifier_stats  # noqa: E402
from models.training import keras_trainer  # noqa: E402
from models.training import validation_ap  # noqa: E402

LOSSES = ("total_loss", "rpn_score_loss", "rpn_box_loss", "frcnn_cls_loss",
          "frcnn_box_loss", "mask_loss")


def loss_history(model_dir: str) -> dict:
    """`{'step': [...], name: [...]}`: mean training losses (and classifier
    statistics, where logged) at the end of each Keras epoch (the last rows when a
    resumed run logged an epoch twice)."""
    with open(os.path.join(model_dir, "params.yaml")) as f:
        steps_per_epoch = int(yaml.safe_load(f)["trainer"]["steps_per_loop"])
    by_epoch = {}
    with open(os.path.join(model_dir, keras_trainer.HISTORY_NAME)) as f:
        for row in csv.DictReader(f):
            by_epoch[int(row["epoch"])] = row
    epochs = sorted(by_epoch)
    history = {"step": [(epoch + 1) * steps_per_epoch for epoch in epochs]}
    for name in LOSSES + classifier_stats.NAMES:
        if epochs and name in by_epoch[epochs[0]]:
            history[name] = [float(by_epoch[epoch][name]) for epoch in epochs]
    return history


def _label_panel(axes, title: str, ylabel: str, percent: bool = False):
    """Titles and labels one panel drawn over training steps (0-100 for percents)."""
    axes.set_xlabel("training step")
    axes.set_ylabel(ylabel)
    axes.set_title(title)
    if percent:
        axes.set_ylim(0, 100)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)


def plot_learning_curves(model_dir: str, out_path: str, title: str = "") -> str:
    """Draws the run's losses and validation AP (see the module doc); returns
    `out_path`."""
    losses = loss_history(model_dir)
    aps = validation_ap.read_history(model_dir)
    figure, (left, middle, right) = plt.subplots(1, 3, figsize=(15, 4.2))
    for name in LOSSES:
        if name in losses:
            left.plot(losses["step"], losses[name], label=name,
                      linewidth=2.2 if name == "total_loss" else 1.2)
    _label_panel(left, "training losses", "mean loss over the last epoch")
    for name, label in ((classifier_stats.FOREGROUND_FRACTION, "foreground share"),
                        (classifier_stats.FOREGROUND_ACCURACY, "accuracy, foreground"),
                        (classifier_stats.BACKGROUND_ACCURACY, "accuracy, background")):
        if name in losses:
            middle.plot(losses["step"], [100 * v for v in losses[name]], label=label)
    _label_panel(middle, "Fast R-CNN classifier on its sampled RoIs",
                 "percent of the sampled RoIs", percent=True)
    steps = [record["step"] for record in aps]
    for kind, style in (("box", "-o"), ("mask", "-s")):
        for key, alpha in (("AP", 1.0), ("AP50", 0.45)):
            values = [100 * record.get(kind, {}).get(key, float("nan")) for record in aps]
            right.plot(steps, values, style, alpha=alpha, label=f"{kind} {key}")
    _label_panel(right, "validation AP (COCO, pycocotools)", "percent", percent=True)
    if title:
        figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    figure.savefig(out_path, dpi=100)
    plt.close(figure)
    return out_path
