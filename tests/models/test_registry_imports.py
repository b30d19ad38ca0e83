"""models.registry_imports: in a fresh process, importing it (and nothing of models/
before) registers both experiments, the task of their config and the `dcn_resnet`
backbone with Model Garden's factories."""

import pytest

from tests.layers.helpers import check, run_python


@pytest.mark.slow
def test_import_registers_the_experiments_task_and_backbone():
    result = check(run_python("""
        from official.core import exp_factory, task_factory
        from official.vision.modeling.backbones import factory

        def registered():
            experiments = [name for name in ("dcn_maskrcnn_resnetfpn_coco",
                                             "dcn_maskrcnn_synthetic")
                           if name in exp_factory._REGISTERED_CONFIGS]
            return experiments, "dcn_resnet" in factory._REGISTERED_BACKBONE_CLS

        print("BEFORE", registered())
        import models.registry_imports
        from models.configs import maskrcnn
        from models.tasks.maskrcnn import DcnMaskRCNNTask
        print("AFTER", registered())
        params = exp_factory.get_exp_config("dcn_maskrcnn_synthetic")
        print("TASK", task_factory.get_task_cls(type(params.task)) is DcnMaskRCNNTask,
              type(params.task) is maskrcnn.DcnMaskRCNNTask)
        """, timeout=300))
    lines = dict(line.split(" ", 1) for line in result.stdout.splitlines()
                 if line.startswith(("BEFORE", "AFTER", "TASK")))
    assert lines["BEFORE"] == "([], False)"
    assert lines["AFTER"] == "(['dcn_maskrcnn_resnetfpn_coco', 'dcn_maskrcnn_synthetic'], True)"
    assert lines["TASK"] == "True True"
