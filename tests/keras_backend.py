"""Differentiation on Keras' current backend (KERAS_BACKEND), for the tests that run
under each backend. Importing it lets JAX compute in float64."""

import keras
import numpy as np

BACKEND = keras.backend.backend()
if BACKEND == "jax":
    import jax

    jax.config.update("jax_enable_x64", True)


def numpy(x):
    """A backend tensor (or None) as a NumPy array."""
    return None if x is None else keras.ops.convert_to_numpy(x)


def output_and_gradients(fn, args, upstream, jit=False):
    """`fn(*args)` and the gradients of `sum(fn(*args) * upstream)` with respect to each
    of `args` (backend tensors), by the backend's own differentiation, as NumPy arrays.
    `fn` returns one tensor; `upstream` is an array of its shape and dtype. `jit`
    compiles `fn` under JAX (as `fit` does), which also runs it much faster there."""
    upstream = keras.ops.convert_to_tensor(upstream)
    if BACKEND == "jax":
        output, pullback = jax.vjp(jax.jit(fn) if jit else fn, *args)
        grads = pullback(upstream)
    elif BACKEND == "torch":
        import torch

        leaves = [a.detach().clone().requires_grad_(True) for a in args]
        output = fn(*leaves)
        grads = torch.autograd.grad(output, leaves, grad_outputs=upstream)
    elif BACKEND == "tensorflow":
        import tensorflow as tf

        leaves = [tf.convert_to_tensor(a) for a in args]
        with tf.GradientTape() as tape:
            tape.watch(leaves)
            output = fn(*leaves)
        grads = tape.gradient(output, leaves, output_gradients=upstream)
    else:
        raise NotImplementedError(f"no differentiation on the {BACKEND!r} backend")
    return numpy(output), [numpy(g) for g in grads]
