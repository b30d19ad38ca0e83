"""Shared fixtures of the Mask R-CNN tests: a tiny synthetic data set (64x64 images,
Model Garden TFRecords), the overrides of a tiny `dcn_maskrcnn_synthetic` model
(ResNet-10, FPN levels 2-4, a handful of proposals) and of a tiny
`dcn_fasterrcnn_synthetic` one, sized for CPU tests, untrained runs
of it, a run trained in fresh processes, and the flags of a command line."""

import json
import os
import shutil
import subprocess
import sys

from absl import flags
import pytest
import yaml

from models.configs.experiments import SYNTHETIC_EXPERIMENT
from models.data import synthetic, tfrecords

IMAGE_SIZE = 64
END_TO_END_TIMEOUT = 600


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """`{'root', 'train', 'val', 'annotation_file'}` of a 6 + 4 image data set."""
    root = tmp_path_factory.mktemp("shapes64")
    synthetic.generate(root, 6, 4, IMAGE_SIZE, seed=1, workers=1)
    for split in ("train", "val"):
        tfrecords.convert_split(root, split, num_shards=1)
    return {
        "root": root,
        "train": str(root / "tfrecords" / "train-*.tfrecord"),
        "val": str(root / "tfrecords" / "val-*.tfrecord"),
        "annotation_file": str(root / "annotations" / "instances_val.json"),
    }


@pytest.fixture(scope="session")
def tiny_overrides(tiny_data):
    """`tiny_overrides(variant='dcnv2', train_steps=1)`: overrides of the synthetic
    experiment for a tiny model on `tiny_data`."""
    return lambda variant="dcnv2", train_steps=1: _overrides(tiny_data, variant,
                                                             train_steps)


def _overrides(data, variant, train_steps):
    pooling = {"hidden_units": 32, "sampling_ratio": 2}
    return {
        "task": {
            "model": {
                "variant": variant,
                "input_size": [IMAGE_SIZE, IMAGE_SIZE, 3],
                "max_level": 4,
                "backbone": {"dcn_resnet": {"model_id": 10}},
                "decoder": {"fpn": {"num_filters": 16}},
                "rpn_head": {"num_filters": 16},
                "detection_head": {"fc_dims": 32},
                "mask_head": {"num_filters": 16, "num_convs": 1},
                "roi_generator": {"pre_nms_top_k": 64, "num_proposals": 16,
                                  "test_pre_nms_top_k": 64, "test_num_proposals": 8},
                "roi_sampler": {"num_sampled_rois": 8},
                "mask_sampler": {"num_sampled_masks": 2},
                "detection_generator": {"pre_nms_top_k": 64, "max_num_detections": 8},
                "roi_aligner": pooling,
                "mask_roi_aligner": pooling,
            },
            "train_data": {"input_path": data["train"], "global_batch_size": 2,
                           "shuffle_buffer_size": 8},
            "validation_data": {"input_path": data["val"], "global_batch_size": 2},
            "annotation_file": data["annotation_file"],
        },
        "trainer": {
            "train_steps": train_steps,
            "steps_per_loop": 1,
            "summary_interval": 1,
            "checkpoint_interval": 1,
            "validation_interval": train_steps,
            "validation_steps": 1,
            "optimizer_config": {
                "learning_rate": {"stepwise": {"values": [0.002, 0.0002, 0.00002]}},
                "warmup": {"linear": {"warmup_steps": 1, "warmup_learning_rate": 0.001}},
            },
        },
    }


@pytest.fixture(scope="session")
def tiny_faster_rcnn_overrides(tiny_data):
    """`tiny_faster_rcnn_overrides(variant='dcnv2', mimic=False)`: overrides of
    `dcn_fasterrcnn_synthetic` for a tiny model (ResNet-50 at an eighth of the width)
    on `tiny_data`."""
    return lambda variant="dcnv2", mimic=False: {
        "task": {
            "model": {
                "variant": variant,
                "input_size": [IMAGE_SIZE, IMAGE_SIZE, 3],
                "backbone": {"dcn_resnet": {"depth_multiplier": 0.125}},
                "decoder": {"c4_c5": {"num_filters": 16}},
                "rpn_head": {"num_filters": 16},
                "detection_head": {"fc_dims": 32},
                "roi_generator": {"pre_nms_top_k": 64, "num_proposals": 16,
                                  "test_pre_nms_top_k": 64, "test_num_proposals": 8},
                "roi_sampler": {"num_sampled_rois": 8},
                "detection_generator": {"pre_nms_top_k": 64, "max_num_detections": 8},
                "roi_aligner": {"hidden_units": 32},
                "mimic": {"enabled": mimic, "rois_per_image": 2, "crop_size": 32,
                          "roi_type": "all"},
            },
            "train_data": {"input_path": tiny_data["train"], "global_batch_size": 2,
                           "shuffle_buffer_size": 4},
            "validation_data": {"input_path": tiny_data["val"], "global_batch_size": 2},
            "annotation_file": tiny_data["annotation_file"],
        },
    }


@pytest.fixture(scope="session")
def write_yaml():
    """`write_yaml(path, overrides)`: writes overrides as a YAML config file."""
    def write(path, overrides):
        path.write_text(yaml.safe_dump(json.loads(json.dumps(overrides))))
        return str(path)
    return write


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, tiny_overrides):
    """`tiny_run(variant)`: a run folder of an untrained tiny model of `variant`
    (`params.yaml` and `ckpt-0`, as a training run leaves them), made once."""
    import tensorflow as tf
    from official.core import task_factory
    from official.core import train_utils
    from models.common import runtime

    runs = {}

    def make(variant):
        if variant not in runs:
            params = runtime.experiment_params(SYNTHETIC_EXPERIMENT,
                                               tiny_overrides(variant))
            model = task_factory.get_task(params.task).build_model()
            run_dir = tmp_path_factory.mktemp(f"run_{variant}")
            tf.train.Checkpoint(model=model).write(str(run_dir / "ckpt-0"))
            with open(run_dir / "checkpoint", "w") as f:
                f.write('model_checkpoint_path: "ckpt-0"\n')
            train_utils.serialize_config(params, str(run_dir))
            runs[variant] = str(run_dir)
        return runs[variant]

    return make


def _train(model_dir, config_file, *flags):
    """Runs `python -m models.train` on the tiny experiment; returns its output."""
    from tests.layers.helpers import REPO, check, python_env
    command = [sys.executable, "-m", "models.train", f"--experiment={SYNTHETIC_EXPERIMENT}",
               f"--model_dir={model_dir}", f"--config_file={config_file}",
               "--cpu_replicas=2", *flags]
    result = subprocess.run(command, cwd=REPO, env=python_env(), capture_output=True,
                            text=True, timeout=END_TO_END_TIMEOUT)
    check(result)
    return result.stdout + result.stderr


@pytest.fixture(scope="session")
def trained(tmp_path_factory, tiny_overrides, write_yaml):
    """`(model_dir, config_file, logs)` of a tiny run after two fresh processes: (1)
    `python -m models.train`, Model Garden's trainer, MirroredStrategy over 2 CPUs,
    1 step and COCO evaluation; (2) Model Garden's trainer resuming to step 2 (one
    replica), then Keras `fit` (MirroredStrategy over 2 CPUs, with a validation loss)
    continuing to step 3. Minutes: for slow tests only."""
    from tests.layers.helpers import REPO, python_env
    work = tmp_path_factory.mktemp("train")
    model_dir = str(work / "run")
    config = write_yaml(work / "tiny.yaml", tiny_overrides("dcnv2", train_steps=1))
    logs = {"first": _train(model_dir, config, "--mode=train_and_eval")}
    with open(os.path.join(model_dir, "metrics.json")) as f:
        logs["metrics"] = json.load(f)
    driver = f"""
from absl import logging
from models.common import runtime
from models.configs.experiments import SYNTHETIC_EXPERIMENT
from models.training import train_lib
logging.set_verbosity(logging.INFO)
runtime.split_cpu(2)
def params(steps):
    return runtime.experiment_params(
        SYNTHETIC_EXPERIMENT, {config!r}, {{"trainer": {{"train_steps": steps}}}})
train_lib.run_experiment(params(2), {model_dir!r}, "train", trainer="orbit")
print("== keras", flush=True)
train_lib.run_experiment(params(3), {model_dir!r}, "train", trainer="keras",
                         cpu_replicas=2, verbose=2)
"""
    result = subprocess.run([sys.executable, "-c", driver], cwd=REPO, env=python_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            timeout=END_TO_END_TIMEOUT)
    assert result.returncode == 0, result.stdout[-20000:]
    output = result.stdout
    logs["resumed"], logs["keras"] = output.split("== keras", 1)
    return model_dir, config, logs


@pytest.fixture(scope="session")
def kill_during_save(tmp_path_factory):
    """`kill_during_save(point, save)`: the environment of a child process that
    SIGKILLs itself at `point` ('temp', 'data', 'index' or 'state') of its `save`-th
    checkpoint write (tests/models/kill_during_save.c, built here with cc)."""
    from tests.layers.helpers import python_env
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        pytest.skip("no C compiler to build kill_during_save.c")
    library = tmp_path_factory.mktemp("preload") / "kill_during_save.so"
    source = os.path.join(os.path.dirname(__file__), "kill_during_save.c")
    subprocess.run([compiler, "-shared", "-fPIC", "-O1", "-o", str(library), source,
                    "-ldl"], check=True)
    return lambda point, save: python_env(LD_PRELOAD=str(library), KILL_AT=point,
                                          KILL_AT_SAVE=str(save))


@pytest.fixture
def command_flags():
    """`command_flags(command, *argv)`: defines the absl flags of the command-line module
    `command` and parses `argv` into `flags.FLAGS`, as `python -m` does before
    `command.main` runs; returns `flags.FLAGS`. The flags are removed after the test."""
    defined = {}

    def parse(command, *argv):
        if command not in defined:
            before = set(flags.FLAGS)
            command.define_flags()
            defined[command] = set(flags.FLAGS) - before
        flags.FLAGS.unparse_flags()
        flags.FLAGS([command.__name__, *argv])
        return flags.FLAGS

    yield parse
    for names in defined.values():
        for name in names:
            delattr(flags.FLAGS, name)
    flags.FLAGS.unparse_flags()
