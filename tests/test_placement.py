"""A library without CUDA kernels runs the ops on the CPU where TensorFlow sees a GPU,
and says so once (keras_dcn/_placement.py). The GPU is faked: TensorFlow's list of
physical GPUs is replaced, and a /GPU:0 scope with soft placement off stands for a
placement that would fail."""

import warnings

import numpy as np
import pytest
import tensorflow as tf

from keras_dcn import _library
from keras_dcn import _placement

_FAKE_GPU = tf.config.PhysicalDevice(name="/physical_device:GPU:0", device_type="GPU")


def _cpu_only_ops(monkeypatch, gpus):
    """CpuOnlyOps over the loaded library, in a process whose GPU list is `gpus`."""
    real = tf.config.list_physical_devices
    monkeypatch.setattr(tf.config, "list_physical_devices",
                        lambda kind=None: gpus if kind == "GPU" else real(kind))
    return _placement.CpuOnlyOps(getattr(_library.ops, "module", _library.ops),
                                 "libkeras_dcn_ops.so")


# The conv op's inputs, made on the CPU: zero offsets on a ramp, with a 3x3 box filter.
_CONV_INPUTS = (tf.reshape(tf.range(25, dtype=tf.float32), [1, 5, 5, 1]),
                tf.zeros([1, 3, 3, 18]), tf.ones([1, 3, 3, 9]), tf.ones([3, 3, 1, 1]),
                tf.zeros([1]))


def _conv(ops):
    return ops.dcn_deform_conv2d(*_CONV_INPUTS)


@pytest.fixture
def no_soft_placement():
    soft = tf.config.get_soft_device_placement()
    tf.config.set_soft_device_placement(False)
    yield
    tf.config.set_soft_device_placement(soft)


def test_visible_gpu_warns_once_and_runs_on_the_cpu(monkeypatch):
    ops = _cpu_only_ops(monkeypatch, [_FAKE_GPU])
    with pytest.warns(RuntimeWarning, match=r"without CUDA kernels.*sees 1 GPU"):
        first = _conv(ops)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        second = _conv(ops)
    assert first.device.endswith("CPU:0") and second.device.endswith("CPU:0")
    expected = [[6 + 5 * i + j for j in range(3)] for i in range(3)]
    np.testing.assert_allclose(first[0, :, :, 0], 9 * np.array(expected, np.float32))


def test_gpu_scope_without_soft_placement_runs_on_the_cpu(monkeypatch, no_soft_placement):
    ops = _cpu_only_ops(monkeypatch, [_FAKE_GPU])
    with pytest.warns(RuntimeWarning):
        with tf.device("/GPU:0"):
            eager = _conv(ops)

    @tf.function
    def traced_conv():
        with tf.device("/GPU:0"):
            return _conv(ops)

    traced = traced_conv()
    assert eager.device.endswith("CPU:0") and traced.device.endswith("CPU:0")
    np.testing.assert_array_equal(eager, traced)


def test_no_gpu_no_warning(monkeypatch):
    ops = _cpu_only_ops(monkeypatch, [])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _conv(ops)


def test_library_without_cuda_kernels_is_wrapped():
    info = _library.build_info()
    if info is None:
        pytest.skip("the library carries no build information")
    assert isinstance(_library.ops, _placement.CpuOnlyOps) == (not info.cuda)
