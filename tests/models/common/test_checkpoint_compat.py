"""models.common.checkpoint_compat: a checkpoint of the tiny model (the `tiny_run`
fixture) fits a model of the same config; one of another number of classes or
variant is refused, naming the variables that differ and the config setting that
changed."""

import functools
import shutil

import pytest
from official.core import task_factory

from models.common import checkpoint_compat
from models.common import runtime
from models.configs.experiments import SYNTHETIC_EXPERIMENT


@pytest.fixture(scope="module")
def build(tiny_overrides):
    """`build(variant, **model_settings)`: `(params, model)` of the tiny experiment."""
    @functools.lru_cache(maxsize=None)
    def make(variant, **model_settings):
        params = runtime.experiment_params(SYNTHETIC_EXPERIMENT, tiny_overrides(variant),
                                           {"task": {"model": model_settings}})
        return params, task_factory.get_task(params.task).build_model()
    return make


def _checkpoint(run_dir):
    return f"{run_dir}/ckpt-0"


def test_same_config_fits(tiny_run, build):
    params, model = build("dcnv2")
    path = _checkpoint(tiny_run("dcnv2"))
    assert checkpoint_compat.model_differences(model, path) == {
        "shape": [], "checkpoint_only": [], "model_only": []}
    checkpoint_compat.check_model_fits(model, path, params)
    assert checkpoint_compat.config_changes(path, params) == []


def test_other_number_of_classes(tiny_run, build):
    params, model = build("dcnv2", num_classes=5)
    path = _checkpoint(tiny_run("dcnv2"))
    with pytest.raises(checkpoint_compat.CheckpointMismatchError) as error:
        checkpoint_compat.check_model_fits(model, path, params)
    message = str(error.value)
    assert message.startswith(f"The checkpoint {path} does not fit this model: ")
    assert ("detection_head/detection-scores/kernel: [32, 7] in the checkpoint, [32, 5] "
            "in this model") in message
    assert "task.model.num_classes: 7 -> 5" in message
    assert "another folder (--model_dir)" in message
    with pytest.raises(checkpoint_compat.CheckpointMismatchError):  # shapes always count
        checkpoint_compat.check_model_fits(model, path, allow_unused=True)


def test_other_variant(tiny_run, build, tmp_path):
    params, model = build("regular")
    path = _checkpoint(tiny_run("dcnv2"))
    differences = checkpoint_compat.model_differences(model, path)
    assert not differences["shape"] and not differences["model_only"]
    assert any("offset_kernel" in name for name in differences["checkpoint_only"])
    with pytest.raises(checkpoint_compat.CheckpointMismatchError,
                       match="only in the checkpoint .*task.model.variant: 'dcnv2' -> "
                             "'regular'"):
        checkpoint_compat.check_model_fits(model, path, params)
    checkpoint_compat.check_model_fits(model, path, params, allow_unused=True)

    params, model = build("dcnv2")
    path = _checkpoint(tiny_run("regular"))
    with pytest.raises(checkpoint_compat.CheckpointMismatchError,
                       match=r"variable\(s\) are only in this model \(.*offset_kernel"):
        checkpoint_compat.check_model_fits(model, path, params, allow_unused=True)

    shutil.copytree(tiny_run("regular"), tmp_path / "run")
    (tmp_path / "run" / "params.yaml").unlink()
    with pytest.raises(checkpoint_compat.CheckpointMismatchError,
                       match="compare with .*params.yaml"):
        checkpoint_compat.check_model_fits(model, _checkpoint(tmp_path / "run"), params)
