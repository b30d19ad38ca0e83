"""models.training.validation_ap: the AP history of a run (one record per step, the
last kept) and the callback that evaluates COCO AP every `interval` steps and writes
it to the history and to TensorBoard."""

import glob
import json
import os
import types

import numpy as np
import pytest
import tensorflow as tf

from models.common import runtime
from models.configs.experiments import SYNTHETIC_EXPERIMENT
from models.evaluation import coco
from models.training import validation_ap


def _metrics(rng):
    return {kind: {key: float(rng.uniform(0, 1)) for key in coco.METRIC_KEYS}
            for kind in coco.KINDS}


def test_history_is_sorted_by_step_and_keeps_the_last_record(tmp_path, rng):
    """Records appended out of order, one step twice (a resumed run): read back
    sorted by step, the later record of the repeated step kept; keys other than box
    and mask are not recorded; a run without history reads as empty."""
    model_dir = str(tmp_path)
    assert validation_ap.read_history(model_dir) == []
    written = {}
    for step in (20, 10, 30, 20):
        metrics = _metrics(rng)
        validation_ap.append_history(model_dir, step, {**metrics, "loss": 1.5})
        written[step] = metrics
    box_only = {"box": _metrics(rng)["box"]}
    validation_ap.append_history(model_dir, np.int64(40), box_only)
    history = validation_ap.read_history(model_dir)
    assert [record["step"] for record in history] == [10, 20, 30, 40]
    for record in history[:3]:
        assert record == {"step": record["step"], **written[record["step"]]}
    assert history[3] == {"step": 40, **box_only}
    with open(os.path.join(model_dir, validation_ap.HISTORY_NAME)) as f:
        lines = [json.loads(line) for line in f]
    assert [line["step"] for line in lines] == [20, 10, 30, 20, 40]


def _scalars(log_dir):
    """`{tag: {step: value}}` of the scalar summaries in the event files of `log_dir`."""
    found = {}
    for path in glob.glob(os.path.join(log_dir, "events.out.tfevents.*")):
        for record in tf.data.TFRecordDataset(path):
            event = tf.compat.v1.Event.FromString(record.numpy())
            for value in event.summary.value:
                found.setdefault(value.tag, {})[event.step] = float(
                    tf.make_ndarray(value.tensor))
    return found


class _StubEvaluator:
    """Stands in for `coco.CocoEvaluator`: records how it is made and called, and
    returns metrics that encode the model's step."""
    made = []

    def __init__(self, params, steps=None, logging_dir=None):
        self.calls = []
        _StubEvaluator.made.append({"params": params, "steps": steps,
                                    "logging_dir": logging_dir, "evaluator": self})

    def __call__(self, model):
        step = int(model.optimizer.iterations.numpy())
        self.calls.append((model, step))
        return {"box": {key: step / 100 + i / 1000 for i, key in enumerate(coco.METRIC_KEYS)},
                "mask": {key: step / 200 for key in coco.METRIC_KEYS}}


@pytest.mark.parametrize("steps_per_epoch, interval, train_steps, want", [
    (3, 6, 20, [6, 12, 18]), (3, 4, 24, [6, 9, 12, 18, 21]), (5, 5, 25, [5, 10, 15, 20]),
    (2, 1, 7, [2, 4, 6])])
def test_periodic_evaluation_at_multiples_of_the_interval(
        tmp_path, monkeypatch, steps_per_epoch, interval, train_steps, want):
    """Driven through Keras epochs of `steps_per_epoch` steps, the callback evaluates
    at exactly the first epoch end at or past each multiple of `interval`, below the
    last step, with one evaluator made once; each result goes to the history and to
    TensorBoard under `validation` at its step."""
    _StubEvaluator.made = []
    monkeypatch.setattr(coco, "CocoEvaluator", _StubEvaluator)
    params = runtime.experiment_params(SYNTHETIC_EXPERIMENT,
                                       {"trainer": {"train_steps": train_steps}})
    model_dir = str(tmp_path)
    callback = validation_ap.PeriodicCocoEvaluation(params, model_dir, interval, steps=2)
    model = types.SimpleNamespace(
        optimizer=types.SimpleNamespace(iterations=tf.Variable(0, dtype=tf.int64)))
    callback.set_model(model)
    epoch_ends = []
    for epoch in range(-(-train_steps // steps_per_epoch)):
        model.optimizer.iterations.assign(min((epoch + 1) * steps_per_epoch, train_steps))
        epoch_ends.append(int(model.optimizer.iterations.numpy()))
        callback.on_epoch_end(epoch)
    assert epoch_ends[-1] == train_steps

    assert len(_StubEvaluator.made) == 1
    made = _StubEvaluator.made[0]
    assert made["params"] is params and made["steps"] == 2
    assert made["logging_dir"] == model_dir
    assert [step for _, step in made["evaluator"].calls] == want
    assert all(called is model for called, _ in made["evaluator"].calls)

    history = validation_ap.read_history(model_dir)
    assert [record["step"] for record in history] == want
    for record in history:
        assert record["box"]["AP"] == pytest.approx(record["step"] / 100)
        assert record["mask"]["APl"] == pytest.approx(record["step"] / 200)

    scalars = _scalars(os.path.join(model_dir, "validation"))
    assert set(scalars) == {f"{kind}_{key}" for kind in coco.KINDS
                            for key in coco.METRIC_KEYS}
    for step in want:
        assert scalars["box_AP"][step] == pytest.approx(step / 100)
        assert scalars["box_APl"][step] == pytest.approx(step / 100 + 5 / 1000)
        assert scalars["mask_AP50"][step] == pytest.approx(step / 200)
    assert sorted(scalars["box_AP"]) == want


def _stubbed_callback(tmp_path, monkeypatch, train_steps, interval, start_step=0):
    """The callback on a stand-in model at `start_step`, with a stub evaluator."""
    _StubEvaluator.made = []
    monkeypatch.setattr(coco, "CocoEvaluator", _StubEvaluator)
    params = runtime.experiment_params(SYNTHETIC_EXPERIMENT,
                                       {"trainer": {"train_steps": train_steps}})
    callback = validation_ap.PeriodicCocoEvaluation(params, str(tmp_path), interval)
    callback.set_model(types.SimpleNamespace(optimizer=types.SimpleNamespace(
        iterations=tf.Variable(start_step, dtype=tf.int64))))
    return callback


def test_no_evaluator_before_the_first_evaluation(tmp_path, monkeypatch):
    """A run shorter than the interval never evaluates and builds no evaluator."""
    callback = _stubbed_callback(tmp_path, monkeypatch, train_steps=10, interval=10)
    for epoch, step in enumerate((5, 10)):
        callback.model.optimizer.iterations.assign(step)
        callback.on_epoch_end(epoch)
    assert _StubEvaluator.made == []
    assert validation_ap.read_history(str(tmp_path)) == []
    assert not os.path.exists(os.path.join(str(tmp_path), "validation"))


def test_resumed_run_evaluates_from_the_next_multiple(tmp_path, monkeypatch):
    """A run resumed past a multiple of the interval evaluates first at the next one."""
    callback = _stubbed_callback(tmp_path, monkeypatch, train_steps=1500, interval=500,
                                 start_step=600)
    callback.on_train_begin()
    for epoch, step in enumerate(range(650, 1501, 50)):
        callback.model.optimizer.iterations.assign(step)
        callback.on_epoch_end(epoch)
    assert [step for _, step in _StubEvaluator.made[0]["evaluator"].calls] == [1000]
