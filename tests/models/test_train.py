"""python -m models.train: Model Garden's flags (gin ones among them) and the Keras
trainer's reach `train_lib.run_experiment`; the metrics of an evaluation are written
and printed, a training-only run writes none (training itself: tests/models/training/)."""

import json
import os

import gin
import pytest

from models import train
from models.configs.experiments import SYNTHETIC_EXPERIMENT
from models.training import train_lib

BOX = {"AP": 0.25, "AP50": 0.5, "AP75": 0.125, "APs": 0.0, "APm": 0.375, "APl": -1.0}


@pytest.mark.parametrize("mode, returned", [("train_and_eval", {"box": BOX}),
                                            ("train", None)])
def test_runs_the_experiment_and_writes_its_metrics(
        tmp_path, monkeypatch, command_flags, capsys, mode, returned):
    calls = []
    monkeypatch.setattr(train_lib, "run_experiment",
                        lambda *args: calls.append(args) or returned)
    model_dir = str(tmp_path / "run")
    command_flags(train, "--experiment", SYNTHETIC_EXPERIMENT, "--mode", mode,
                  "--model_dir", model_dir, "--trainer", "keras", "--cpu_replicas", "2",
                  "--verbose", "2", "--params_override", "task.model.variant=dcnv1")
    train.main([])
    (params, given_dir, given_mode, trainer, replicas, verbose), = calls
    assert params.task.model.variant == "dcnv1"
    assert (given_dir, given_mode, trainer, replicas, verbose) == (
        model_dir, mode, "keras", 2, 2)
    path = os.path.join(model_dir, "metrics.json")
    if returned is None:
        assert not os.path.exists(path)
        return
    with open(path) as f:
        assert json.load(f) == returned
    printed = capsys.readouterr().out
    assert f"metrics: {path}" in printed
    row = next(line.split() for line in printed.splitlines()
               if line.startswith(model_dir))
    assert row[1:7] == ["25.0", "50.0", "12.5", "0.0", "37.5", "-"]


def test_defaults_are_model_gardens_trainer_on_one_device(tmp_path, monkeypatch,
                                                          command_flags):
    calls = []
    monkeypatch.setattr(train_lib, "run_experiment", lambda *args: calls.append(args))
    command_flags(train, "--experiment", SYNTHETIC_EXPERIMENT, "--mode", "train",
                  "--model_dir", str(tmp_path))
    train.main([])
    assert calls[0][3:] == ("orbit", 0, 1)


@gin.configurable
def _gin_probe(value=0):
    return value


def test_reads_gin_flags_before_the_experiment(tmp_path, monkeypatch, command_flags):
    """`--gin_params` bindings hold when the experiment runs, as in Model Garden's
    `official/vision/train.py`; a binding of nothing known is refused."""
    seen = []
    monkeypatch.setattr(train_lib, "run_experiment", lambda *args: seen.append(_gin_probe()))
    command_flags(train, "--experiment", SYNTHETIC_EXPERIMENT, "--mode", "train",
                  "--model_dir", str(tmp_path), "--gin_params", "_gin_probe.value=7")
    try:
        train.main([])
        assert seen == [7]
        gin.clear_config()
        command_flags(train, "--experiment", SYNTHETIC_EXPERIMENT, "--mode", "train",
                      "--model_dir", str(tmp_path), "--gin_params", "no_such_function.x=1")
        with pytest.raises(ValueError, match="no_such_function"):
            train.main([])
    finally:
        gin.clear_config()
