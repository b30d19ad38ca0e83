"""Runs the ops of an op library without GPU kernels on the CPU where TensorFlow sees
a GPU, with one warning.

A library built without CUDA (``KERAS_DCN_CUDA=0``, or no nvcc at build time) has CPU
kernels only. Under a GPU device scope TensorFlow's soft placement may move its ops to
the CPU by itself, but with soft placement off the ops fail to place. Here every op
call runs under ``tf.device("/CPU:0")`` once a GPU is visible, and the first call says
so; without a GPU nothing changes.
"""

import functools
import warnings

import tensorflow as tf


class CpuOnlyOps:
    """The op functions of ``module`` (what ``tf.load_op_library`` returned), placed on
    the CPU when TensorFlow sees a GPU. ``path`` names the library in the warning."""

    def __init__(self, module, path):
        self.module = module
        self._path = path
        self._gpus = None  # the GPUs TensorFlow lists, once an op has been called

    def _on_cpu(self):
        if self._gpus is None:
            self._gpus = tf.config.list_physical_devices("GPU")
            if self._gpus:
                warnings.warn(
                    f"keras_dcn's op library {self._path} was built without CUDA "
                    f"kernels, so its ops run on the CPU although TensorFlow sees "
                    f"{len(self._gpus)} GPU(s). Build keras-dcn with KERAS_DCN_CUDA=1 "
                    f"for GPU kernels.",
                    RuntimeWarning,
                    stacklevel=4,
                )
        return bool(self._gpus)

    def __getattr__(self, name):
        attribute = getattr(self.module, name)
        if not callable(attribute):
            return attribute

        @functools.wraps(attribute)
        def op(*args, **kwargs):
            if not self._on_cpu():
                return attribute(*args, **kwargs)
            with tf.device("/CPU:0"):
                return attribute(*args, **kwargs)

        setattr(self, name, op)
        return op
