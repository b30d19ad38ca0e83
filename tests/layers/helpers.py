"""Helpers shared by the layer tests: running Python in a fresh process, and checking
gradients against central differences."""

import os
import subprocess
import sys
import textwrap

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def python_env(**extra):
    """The environment of a child Python: ours, the checkout first on the path."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (REPO, env.get("PYTHONPATH")) if p)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env.update(extra)
    return env


def run_python(source, *args, env=None, timeout=240):
    """Runs `source` (code) in a fresh interpreter; returns the CompletedProcess."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(source), *args], cwd=REPO,
        env=env or python_env(), capture_output=True, text=True, timeout=timeout)


def check(result):
    """Asserts a child exited with 0, showing its output otherwise."""
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result


def central_differences(loss, values, indices, delta=1e-6):
    """d loss / d values at `indices` (tuples into the float64 array `values`), by
    central differences of `loss(values) -> float`."""
    slopes = []
    for index in indices:
        step = np.zeros_like(values)
        step[index] = delta
        slopes.append((loss(values + step) - loss(values - step)) / (2 * delta))
    return np.array(slopes)


def sample_indices(rng, shape, count):
    """`count` distinct random index tuples into an array of `shape`."""
    flat = rng.choice(int(np.prod(shape)), size=min(count, int(np.prod(shape))),
                      replace=False)
    return [tuple(int(i) for i in np.unravel_index(f, shape)) for f in flat]


def assert_layer_gradients(grads, inputs, weights, independent, cotangent, rng, scales,
                           count=6):
    """Checks a layer's gradients against central differences of an independent
    computation.

    grads: the layer's gradients of `sum(outputs * cotangent)` with respect to its
    input, then to each of `weights` (`{name: float64 array}` in the layer's order);
    `independent(inputs, weights)` computes the outputs. Each gradient is checked at
    `count` random entries (the input's also at its 3 largest), scaled by
    `scales.get(name, 1.0)`; the differences there must not all be ~0.
    """
    named = [("inputs", inputs)] + list(weights.items())
    for (name, values), grad in zip(named, grads):
        def loss(changed, name=name):
            if name == "inputs":
                return np.sum(independent(changed, weights) * cotangent)
            return np.sum(independent(inputs, {**weights, name: changed}) * cotangent)
        grad = np.asarray(grad)
        indices = sample_indices(rng, values.shape, count)
        if name == "inputs":
            top = np.argsort(-np.abs(grad), axis=None)[:3]
            indices += [tuple(int(i) for i in np.unravel_index(t, values.shape)) for t in top]
        numeric = central_differences(loss, values, indices)
        got = np.array([grad[index] for index in indices])
        np.testing.assert_allclose(got, scales.get(name, 1.0) * numeric, rtol=1e-5,
                                   atol=1e-8, err_msg=name)
        assert np.abs(numeric).max() > 1e-4, f"{name}: the checked entries have no gradient"
