"""models.evaluation.coco: metrics read from Model Garden's evaluator logs, metrics.json
and the table of runs."""

import json

import pytest

from models.evaluation import coco

LOGS = {"AP": 0.5, "AP50": 0.75, "AP75": 0.5, "APs": -1.0, "APm": 0.25, "APl": 0.625,
        "mask_AP": 0.25, "mask_AP50": 0.5, "mask_AP75": 0.25, "mask_APs": -1.0,
        "mask_APm": 0.125, "mask_APl": 0.375, "loss": 3.0}


def test_coco_metrics_reads_box_and_mask_keys():
    metrics = coco.coco_metrics(LOGS)
    assert metrics["box"] == {k: LOGS[k] for k in coco.METRIC_KEYS}
    assert metrics["mask"] == {k: LOGS["mask_" + k] for k in coco.METRIC_KEYS}
    box_only = coco.coco_metrics({k: LOGS[k] for k in coco.METRIC_KEYS})
    assert set(box_only) == {"box"}


def test_write_metrics_and_format_table(tmp_path):
    metrics = coco.coco_metrics(LOGS)
    path = coco.write_metrics(metrics, str(tmp_path / "run"))
    assert path == str(tmp_path / "run" / "metrics.json")
    with open(path) as f:
        assert json.load(f) == metrics

    table = coco.format_table({"dcnv2": metrics, "regular": {}},
                              {"dcnv2": {"params (M)": "17.51"}})
    header, rule, dcnv2, regular = table.splitlines()
    assert header.split()[:3] == ["run", "box", "AP"] and header.endswith("params (M)")
    assert set(rule) == {"-"} and len(rule) == len(header)
    # Percent with one decimal; a metric of -1 (no such objects) and missing ones as "-".
    assert dcnv2.split() == ["dcnv2", "50.0", "75.0", "50.0", "-", "25.0", "62.5",
                             "25.0", "50.0", "25.0", "-", "12.5", "37.5", "17.51"]
    assert regular.split() == ["regular"] + ["-"] * 12


@pytest.mark.slow
def test_coco_evaluator_reuses_its_traced_step(tiny_overrides, tmp_path):
    """Called twice on one model, the evaluator traces the validation step once (traces
    counted where the step's Python body runs), starts its aggregation afresh on each
    call (the task's first aggregation of a call gets no state) and gives the same
    metrics."""
    from official.core import task_factory

    from models.common import runtime
    from models.configs.experiments import SYNTHETIC_EXPERIMENT

    params = runtime.experiment_params(SYNTHETIC_EXPERIMENT, tiny_overrides("regular"))
    task = task_factory.get_task(params.task, logging_dir=str(tmp_path))
    traced, states = [], []
    validation_step, aggregate_logs = task.validation_step, task.aggregate_logs

    def counting_step(inputs, model, *args, **kwargs):
        traced.append(model)
        return validation_step(inputs, model, *args, **kwargs)

    def recording_aggregate(state, outputs):
        states.append(state)
        return aggregate_logs(state, outputs)

    task.validation_step = counting_step
    task.aggregate_logs = recording_aggregate
    model = task.build_model()
    evaluator = coco.CocoEvaluator(params, task=task)
    first = evaluator(model)
    assert len(traced) == 1 and traced[0] is model
    batches = len(states)
    assert batches == 2  # 4 validation images, 2 a batch
    second = evaluator(model)
    assert len(traced) == 1
    assert len(states) == 2 * batches
    assert states[0] is None and states[batches] is None
    assert all(state is not None for state in states[1:batches] + states[batches + 1:])
    assert set(first) == {"box", "mask"}
    assert all(set(first[kind]) == set(coco.METRIC_KEYS) for kind in coco.KINDS)
    assert first == second
