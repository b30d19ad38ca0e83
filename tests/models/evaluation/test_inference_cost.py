"""models.evaluation.inference_cost: the parameters of the inference model (without the
training-only mimic branch) and the median time of its pass on a validation batch."""

import itertools

import numpy as np
import pytest
from official.core import task_factory

from models.common import runtime
from models.configs.experiments import SYNTHETIC_EXPERIMENT
from models.evaluation import inference_cost


@pytest.mark.slow
def test_parameters_are_those_of_the_inference_components(tiny_overrides):
    """The weights of the backbone, FPN, heads and RoI aligners, counted one by one: not
    the mimic branch, nor the counters of the loss means, which the model holds too."""
    overrides = tiny_overrides("dcnv2")
    overrides["task"]["model"]["mimic"] = {"enabled": True, "crop_size": 32}
    params = runtime.experiment_params(SYNTHETIC_EXPERIMENT, overrides)
    model = task_factory.get_task(params.task).build_model()
    components = [model.backbone, model.decoder, model.rpn_head, *model.detection_head,
                  model.mask_head, model.roi_aligner, model.mask_roi_aligner]
    want = sum(int(np.prod(v.shape)) for layer in components for v in layer.weights)
    assert inference_cost.inference_params(model) == want
    assert model.count_params() > want + model.mimic_branch.count_params()


def test_seconds_are_the_median_of_the_timed_passes(tiny_overrides, monkeypatch):
    """A stand-in model on a batch of validation images: traced once, then timed
    `repeats` times; the clock gives passes of 5, 1, 4, 2 and 3 seconds."""
    params = runtime.experiment_params(SYNTHETIC_EXPERIMENT, tiny_overrides("dcnv2"))
    calls = []

    def model(images, image_shape, training):
        calls.append((tuple(images.shape), tuple(image_shape.shape), training))
        return {"detections": images[:, :1, :1, 0]}

    starts = itertools.count(0.0, 10.0)
    durations = iter([5.0, 1.0, 4.0, 2.0, 3.0])
    clock = itertools.chain.from_iterable(
        (start, start + next(durations)) for start in starts)
    monkeypatch.setattr(inference_cost.time, "perf_counter", lambda: next(clock))
    assert inference_cost.inference_seconds(params, model, repeats=5) == pytest.approx(3.0)
    # Traced once: a batch of 2 images of 64 x 64, their sizes, inference mode.
    assert calls == [((2, 64, 64, 3), (2, 2), False)]
