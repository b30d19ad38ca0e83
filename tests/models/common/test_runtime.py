"""models.common.runtime: experiment params with overrides applied in order, the
checkpoint of a run folder, the mixed-precision policy models are built under and
the CPU's bfloat16 support."""

import builtins

import pytest
import tensorflow as tf
import tf_keras

from models.common import runtime
from models.configs.experiments import SYNTHETIC_EXPERIMENT


def test_experiment_params_applies_overrides_in_order(tmp_path):
    config_file = tmp_path / "override.yaml"
    config_file.write_text("task:\n  model:\n    variant: dcnv1\ntrainer:\n  train_steps: 5\n")
    params = runtime.experiment_params(SYNTHETIC_EXPERIMENT, str(config_file), None,
                                       {"task": {"model": {"variant": "regular"}}},
                                       "trainer.train_steps=7")
    assert params.task.model.variant == "regular"
    assert params.trainer.train_steps == 7
    with pytest.raises(ValueError):  # locked
        params.override({"trainer": {"train_steps": 8}})
    with pytest.raises(KeyError):  # strict
        runtime.experiment_params(SYNTHETIC_EXPERIMENT, {"task": {"no_such_field": 1}})


def test_latest_checkpoint(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint in"):
        runtime.latest_checkpoint(str(tmp_path))
    checkpoint = tf.train.Checkpoint(step=tf.Variable(3))
    first = checkpoint.save(str(tmp_path / "ckpt"))
    second = checkpoint.save(str(tmp_path / "ckpt"))
    assert runtime.latest_checkpoint(str(tmp_path)) == second
    assert runtime.latest_checkpoint(first) == first


@pytest.mark.parametrize("dtype, policy", [(None, "float32"), ("float32", "float32"),
                                           ("bfloat16", "mixed_bfloat16"),
                                           ("float16", "mixed_float16")])
def test_mixed_precision_builds_layers_under_the_policy_and_restores_it(dtype, policy):
    before = tf_keras.mixed_precision.global_policy().name
    with runtime.mixed_precision(dtype):
        layer = tf_keras.layers.Dense(2)
    assert tf_keras.mixed_precision.global_policy().name == before
    layer.build([None, 3])
    assert layer.dtype_policy.name == policy
    assert layer.kernel.dtype == tf.float32  # variables stay float32
    compute = tf.float32 if policy == "float32" else getattr(tf, dtype)
    assert layer(tf.ones([1, 3])).dtype == compute


def test_mixed_precision_refuses_other_types_and_restores_the_policy():
    before = tf_keras.mixed_precision.global_policy().name
    with pytest.raises(ValueError, match="mixed_precision_dtype.*int8"):
        with runtime.mixed_precision("int8"):
            pass
    assert tf_keras.mixed_precision.global_policy().name == before


def test_cpu_has_bfloat16_reads_the_cpu_flags(monkeypatch, tmp_path):
    real_open = builtins.open

    def cpuinfo_with(flags):
        path = tmp_path / "cpuinfo"
        path.write_text(f"processor\t: 0\nflags\t\t: fpu sse {flags}\n")
        monkeypatch.setattr(builtins, "open", lambda file, *a, **k: real_open(
            path if file == "/proc/cpuinfo" else file, *a, **k))

    cpuinfo_with("avx512f avx512_bf16")
    assert runtime.cpu_has_bfloat16()
    cpuinfo_with("amx_tile amx_bf16")
    assert runtime.cpu_has_bfloat16()
    cpuinfo_with("avx2 avx512f")
    assert not runtime.cpu_has_bfloat16()
