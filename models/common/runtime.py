"""What running an experiment needs: its params, its checkpoint, its distribution strategy.

`experiment_params` reads a registered experiment with overrides (dicts, YAML / JSON
strings or YAML files, applied in order as Model Garden's `--params_override`).
`latest_checkpoint` finds the checkpoint of a run folder. `distribution_strategy` is
Model Garden's strategy of `params.runtime`, or, with `cpu_replicas > 1`, a
`MirroredStrategy` over that many logical CPU devices (one machine's CPU split in
replicas, to exercise multi-replica training without GPUs). `mixed_precision` builds
models under the Keras mixed-precision policy of `runtime.mixed_precision_dtype`;
`cpu_has_bfloat16` tells whether this CPU multiplies bfloat16 natively.
"""

import contextlib
from typing import Optional, Union

import tensorflow as tf
import tf_keras

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


def cpu_has_bfloat16() -> bool:
    """Whether this CPU has bfloat16 dot products (AVX512_BF16 or AMX), where
    oneDNN runs bfloat16 convolutions and matrix products faster than float32
    (elsewhere it emulates them, slower)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1].split() for line in f
                          if line.startswith("flags")), [])
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


@contextlib.contextmanager
def mixed_precision(dtype: Optional[str]):
    """Builds the Keras layers made inside under Model Garden's mixed-precision
    policy for `dtype` ('bfloat16': 'mixed_bfloat16', 'float16': 'mixed_float16';
    None or 'float32': float32): computations in `dtype`, variables in float32. The
    global policy is restored on leaving; layers keep the policy they were made with."""
    previous = tf_keras.mixed_precision.global_policy()
    if dtype in (None, "", "float32"):
        policy = "float32"
    elif dtype in ("bfloat16", "float16"):
        policy = f"mixed_{dtype}"
    else:
        raise ValueError(f"mixed_precision_dtype must be float32, bfloat16 or float16, "
                         f"got {dtype!r}")
    tf_keras.mixed_precision.set_global_policy(policy)
    try:
        yield
    finally:
        tf_keras.mixed_precision.set_global_policy(previous)
