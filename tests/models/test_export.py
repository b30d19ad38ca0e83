"""python -m models.export: the experiment, checkpoint, folder, signature batch size
and choice of ops it exports with (the export itself: tests/models/serving/test_detection.py)."""

import pytest

from models import export
from models.configs.experiments import SYNTHETIC_EXPERIMENT
from models.serving import detection


@pytest.mark.parametrize("flag, batch_size, standard", [
    ((), 1, False), (("--batch_size", "4"), 4, False), (("--batch_size", "0"), None, False),
    (("--standard_ops_only",), 1, True)])
def test_exports_the_overridden_experiment(monkeypatch, command_flags, capsys, flag,
                                           batch_size, standard):
    calls = []
    monkeypatch.setattr(detection, "export_saved_model",
                        lambda *args, standard_ops_only: calls.append(
                            (*args, standard_ops_only)) or "out/saved_model")
    command_flags(export, "--experiment", SYNTHETIC_EXPERIMENT, "--checkpoint", "run",
                  "--export_dir", "out", "--params_override",
                  "task.model.variant=regular", *flag)
    export.main([])
    (params, checkpoint, export_dir, given_batch_size, given_standard), = calls
    assert params.task.model.variant == "regular"
    assert (checkpoint, export_dir, given_batch_size, given_standard) == (
        "run", "out", batch_size, standard)
    assert capsys.readouterr().out.strip() == "SavedModel: out/saved_model"
