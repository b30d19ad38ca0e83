"""The README's COCO recipe, command by command, on a tiny data set laid out as COCO
2017 is distributed (`coco/{train,val}2017/`, `coco/annotations/instances_*2017.json`):
TFRecords written where `dcn_maskrcnn_resnetfpn_coco` reads them, a training run of
the registered experiment (shrunk by `--params_override`: 128x128 images, one step, no
ImageNet checkpoint) and its COCO evaluation.

A few minutes (ResNet-50-FPN in fresh processes): slow tests only."""

import json
import shutil
import subprocess
import sys

import pytest

from tests.layers.helpers import python_env

pytestmark = pytest.mark.slow

TIMEOUT = 600
# The README's commands (section "COCO"), with `python` for `.venv/bin/python`.
TFRECORDS = ["-m", "models.create_tfrecords", "--root=coco", "--splits=train2017,val2017"]
TRAIN = ["-m", "models.train", "--experiment=dcn_maskrcnn_resnetfpn_coco", "--mode=train",
         "--model_dir=runs/coco_dcnv2"]
EVALUATE = ["-m", "models.evaluate", "--experiment=dcn_maskrcnn_resnetfpn_coco",
            "--checkpoint=runs/coco_dcnv2", "--name=coco_dcnv2"]
TINY = json.dumps({
    "task": {"init_checkpoint": "",
             "model": {"input_size": [128, 128, 3], "short_side": 96, "long_side": 128},
             "train_data": {"global_batch_size": 2, "shuffle_buffer_size": 4},
             "validation_data": {"global_batch_size": 2}},
    "trainer": {"train_steps": 1, "validation_steps": 2, "steps_per_loop": 1,
                "summary_interval": 1, "checkpoint_interval": 1},
})


def _run(args, cwd):
    result = subprocess.run([sys.executable, *args], cwd=cwd, env=python_env(),
                            capture_output=True, text=True, timeout=TIMEOUT)
    assert result.returncode == 0, (result.stdout + result.stderr)[-20000:]
    return result.stdout + result.stderr


def test_readme_coco_recipe_on_a_tiny_coco_layout(tiny_data, tmp_path):
    coco = tmp_path / "coco"
    (coco / "annotations").mkdir(parents=True)
    for split in ("train", "val"):
        shutil.copytree(tiny_data["root"] / split, coco / f"{split}2017")
        shutil.copy(tiny_data["root"] / "annotations" / f"instances_{split}.json",
                    coco / "annotations" / f"instances_{split}2017.json")

    _run(TFRECORDS, tmp_path)
    assert list((coco / "tfrecords").glob("train2017-*.tfrecord"))
    _run(TRAIN + [f"--params_override={TINY}"], tmp_path)
    assert (tmp_path / "runs" / "coco_dcnv2" / "ckpt-1.index").is_file()
    output = _run(EVALUATE + [f"--params_override={TINY}"], tmp_path)
    metrics = json.loads((tmp_path / "runs" / "coco_dcnv2" / "metrics.json").read_text())
    assert metrics["checkpoint"] == "runs/coco_dcnv2/ckpt-1"
    for kind in ("box", "mask"):  # an untrained model: the numbers, not their size
        assert {"AP", "AP50", "AP75", "APs", "APm", "APl"} <= set(metrics[kind])
        assert 0.0 <= metrics[kind]["AP"] <= 1.0
    assert "coco_dcnv2" in output
