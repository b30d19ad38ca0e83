"""What running an experiment needs: its params, its checkpoint, its distribution strategy.

`experiment_params` reads a registered experiment with overrides (dicts, YAML / JSON
strings or YAML files, applied in order as Model Garden's `--params_override`).
`latest_checkpoint` finds the checkpoint of a run folder. `distribution_strategy` is
Model Garden's strategy of `params.runtime`, or, with `cpu_replicas > 1`, a
`MirroredStrategy` over that many logical CPU devices (one machine's CPU split in
replicas, to exercise multi-replica training without GPUs).
"""

from typing import Optional, Union

import tensorflow as tf

from official.common import distribute_utils
from official.core import config_definitions as cfg
from official.core import exp_factory
from official.modeling import hyperparams

from models import registry_imports  # noqa: F401  the experiments and their task


def experiment_params(experiment: str, *overrides: Union[dict, str, None],
                      lock: bool = True) -> cfg.ExperimentConfig:
    """The registered `experiment` with `overrides` applied and validated."""
    params = exp_factory.get_exp_config(experiment)
    for override in overrides:
        if not override:
            continue
        if isinstance(override, str):
            params = hyperparams.override_params_dict(params, override, is_strict=True)
        else:
            params.override(override, is_strict=True)
    params.validate()
    if lock:
        params.lock()
    return params


def latest_checkpoint(path: str) -> str:
    """`path` itself, or the latest checkpoint in the directory `path`."""
    if tf.io.gfile.isdir(path):
        found = tf.train.latest_checkpoint(path)
        if not found:
            raise FileNotFoundError(f"no checkpoint in {path}")
        return found
    return path


def split_cpu(replicas: int) -> list:
    """Splits the CPU into `replicas` logical devices; call before TensorFlow runs
    anything. Returns their names."""
    cpu = tf.config.list_physical_devices("CPU")[0]
    current = tf.config.get_logical_device_configuration(cpu)
    if not current or len(current) != replicas:
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(replicas)])
    return [device.name for device in tf.config.list_logical_devices("CPU")]


def distribution_strategy(params: cfg.ExperimentConfig,
                          cpu_replicas: Optional[int] = 0) -> tf.distribute.Strategy:
    """`MirroredStrategy` over `cpu_replicas` logical CPUs, or the runtime's strategy."""
    if cpu_replicas and cpu_replicas > 1:
        return tf.distribute.MirroredStrategy(devices=split_cpu(cpu_replicas))
    runtime = params.runtime
    return distribute_utils.get_distribution_strategy(
        distribution_strategy=runtime.distribution_strategy,
        all_reduce_alg=runtime.all_reduce_alg,
        num_gpus=runtime.num_gpus,
        tpu_address=runtime.tpu)
