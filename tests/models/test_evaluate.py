"""python -m models.evaluate: the experiment and overrides it evaluates, where the
metrics go (runs/<name> or --out_dir) and the table it prints (percent)."""

import json
import os

import pytest

from models import evaluate
from models.configs.experiments import SYNTHETIC_EXPERIMENT
from models.evaluation import coco

METRICS = {"box": {"AP": 0.5, "AP50": 0.75, "AP75": 0.25, "APs": -1.0, "APm": 0.125,
                   "APl": 0.625},
           "mask": {"AP": 0.375, "AP50": 0.5, "AP75": 0.25, "APs": -1.0, "APm": 0.0,
                    "APl": 0.5}}


@pytest.fixture
def evaluations(monkeypatch):
    """The calls of `coco.evaluate`, which returns `METRICS` instead of evaluating."""
    calls = []

    def fake_evaluate(params, checkpoint, steps=None, logging_dir=None):
        calls.append({"params": params, "checkpoint": checkpoint, "steps": steps,
                      "logging_dir": logging_dir})
        return dict(METRICS)

    monkeypatch.setattr(coco, "evaluate", fake_evaluate)
    return calls


def test_evaluates_the_overridden_experiment_into_runs_name(
        tmp_path, monkeypatch, evaluations, command_flags, write_yaml, capsys):
    monkeypatch.chdir(tmp_path)
    config = write_yaml(tmp_path / "variant.yaml", {"task": {"model": {"variant": "dcnv1"}}})
    command_flags(evaluate, "--experiment", SYNTHETIC_EXPERIMENT, "--config_file", config,
                  "--params_override", "task.validation_data.global_batch_size=3",
                  "--checkpoint", "some/run", "--name", "mine", "--steps", "5")
    evaluate.main([])
    (call,) = evaluations
    assert call["params"].task.model.variant == "dcnv1"
    assert call["params"].task.validation_data.global_batch_size == 3
    assert call["checkpoint"] == "some/run" and call["steps"] == 5
    assert call["logging_dir"] == os.path.join("runs", "mine")
    with open(tmp_path / "runs" / "mine" / "metrics.json") as f:
        assert json.load(f) == METRICS
    printed = capsys.readouterr().out.splitlines()
    row = next(line.split() for line in printed if line.startswith("mine"))
    # box AP ... APl, then mask AP ... APl, in percent; -1 (no such objects) as "-".
    assert row == ["mine", "50.0", "75.0", "25.0", "-", "12.5", "62.5",
                   "37.5", "50.0", "25.0", "-", "0.0", "50.0"]
    assert printed[-1] == f"metrics: {os.path.join('runs', 'mine', 'metrics.json')}"


def test_out_dir_takes_the_place_of_runs_name(tmp_path, evaluations, command_flags):
    out = tmp_path / "elsewhere"
    command_flags(evaluate, "--experiment", SYNTHETIC_EXPERIMENT, "--checkpoint", "c",
                  "--out_dir", str(out))
    evaluate.main([])
    assert evaluations[0]["logging_dir"] == str(out)
    assert evaluations[0]["steps"] is None
    assert (out / "metrics.json").is_file()
