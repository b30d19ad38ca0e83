"""Both trainers refuse to resume a run (the `tiny_run` fixture's folder) with a config
that changed the model's shapes, before training anything and before rewriting the
run's params.yaml."""

import shutil

import pytest

from models.common import checkpoint_compat
from models.common import runtime
from models.configs.experiments import SYNTHETIC_EXPERIMENT
from models.training import train_lib


@pytest.mark.parametrize("trainer", ["orbit", "keras"])
def test_resume_with_another_number_of_classes(trainer, tiny_run, tiny_overrides,
                                               tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(tiny_run("dcnv2"), run_dir)
    saved = (run_dir / "params.yaml").read_text()
    params = runtime.experiment_params(SYNTHETIC_EXPERIMENT, tiny_overrides("dcnv2", 2),
                                       {"task": {"model": {"num_classes": 5}}})
    with pytest.raises(checkpoint_compat.CheckpointMismatchError,
                       match=r"ckpt-0 does not fit this model: .*\[32, 7\] in the "
                             r"checkpoint, \[32, 5\] in this model.*"
                             r"task.model.num_classes: 7 -> 5"):
        train_lib.run_experiment(params, str(run_dir), "train", trainer=trainer, verbose=0)
    assert (run_dir / "params.yaml").read_text() == saved
    assert sorted(p.name for p in run_dir.glob("ckpt-*")) == [
        "ckpt-0.data-00000-of-00001", "ckpt-0.index"]
