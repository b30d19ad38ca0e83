"""The layers under tf.distribute: MirroredStrategy over two logical CPUs matches one
device on the same global batch, and MultiWorkerMirroredStrategy with two worker
processes on localhost (on ports held for them from the start, so no other process can
take them) ends with identical weights on both workers.

Each case runs in fresh processes: logical devices must be configured before
TensorFlow initialises, and a multi-worker cluster needs one process per worker (tens
of seconds: marked slow)."""

import contextlib
import json
import socket
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from tests.layers import helpers

pytestmark = pytest.mark.slow

# Shared by the child scripts: a small model holding both layers, its data, and a
# deterministic set of weights (nonzero offset branches, so offsets matter).
_MODEL = """
import numpy as np

def make_data():
    rng = np.random.default_rng(0)
    images = rng.standard_normal((8, 10, 10, 3)).astype("float32")
    targets = rng.standard_normal((8, 4)).astype("float32")
    return images, targets

def make_model(keras, layers):
    import tensorflow as tf

    class WholeImageRois(keras.layers.Layer):
        # One RoI per sample over the whole 4 x 4 map: a batch maps to a batch.

        def call(self, x):
            count = tf.shape(x)[0]
            return tf.concat([tf.cast(tf.range(count)[:, None], tf.float32),
                              tf.zeros([count, 2]), tf.fill([count, 2], 4.0)], axis=1)

        def compute_output_shape(self, shape):
            return (shape[0], 5)

    images = keras.Input((10, 10, 3))
    x = layers.DeformConv2D(6, 3, padding="same", activation="relu")(images)
    x = layers.DeformConv2D(4, 3, strides=2, deformable_groups=2, modulated=False)(x)
    x = layers.DeformRoIPool(output_size=2, hidden_units=8)(x, WholeImageRois()(x))
    outputs = keras.layers.Dense(4)(keras.layers.Flatten()(x))
    model = keras.Model(images, outputs)
    rng = np.random.default_rng(1)
    model.set_weights([rng.standard_normal(w.shape).astype("float32") * 0.2
                       for w in model.weights])
    return model
"""

_MIRRORED = _MODEL + """
import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])

import keras
from keras_dcn import layers

images, targets = make_data()

def train(model):
    model.compile(keras.optimizers.SGD(0.05), "mse")
    model.fit(images, targets, batch_size=8, epochs=1, shuffle=False, verbose=0)
    return [w.numpy() for w in model.weights]

single = train(make_model(keras, layers))
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
assert strategy.num_replicas_in_sync == 2
with strategy.scope():
    model = make_model(keras, layers)
mirrored = train(model)
initial = make_model(keras, layers).get_weights()
for start, one, two in zip(initial, single, mirrored):
    assert np.any(start != one)
    np.testing.assert_allclose(two, one, rtol=1e-5, atol=1e-6)
print("MIRRORED-OK", len(single))
"""

# A custom training loop: Keras 3.15's `Model.fit` fails under a multi-worker
# strategy before the first step (`_maybe_symbolic_build` reduces the first batch with
# `strategy.reduce`, which does not accept per-replica inputs there).
_WORKER = _MODEL + """
import sys
import tensorflow as tf

strategy = tf.distribute.MultiWorkerMirroredStrategy()
assert strategy.num_replicas_in_sync == 2

import keras
from keras_dcn import layers

GLOBAL_BATCH = 8
images, targets = make_data()
with strategy.scope():
    model = make_model(keras, layers)
    optimizer = keras.optimizers.SGD(0.05)
    optimizer.build(model.trainable_variables)
dataset = tf.data.Dataset.from_tensor_slices((images, targets)).repeat().batch(GLOBAL_BATCH)
options = tf.data.Options()
options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
batches = iter(strategy.experimental_distribute_dataset(dataset.with_options(options)))

@tf.function
def train_step(batch):
    def replica_step(x, y):
        with tf.GradientTape() as tape:
            errors = tf.reduce_mean(tf.square(model(x, training=True) - y), axis=-1)
            loss = tf.reduce_sum(errors) / GLOBAL_BATCH
        gradients = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables))  # all-reduced
        return loss
    return strategy.reduce("SUM", strategy.run(replica_step, args=batch), axis=None)

initial = [w.numpy() for w in model.weights]
losses = [float(train_step(next(batches))) for _ in range(3)]
assert all(np.isfinite(losses)), losses
for start, weight in zip(initial, model.weights):
    assert np.any(start != weight.numpy()), weight.path  # every weight trained
np.savez(sys.argv[1], *[w.numpy() for w in model.weights])
print("WORKER-OK", losses)
"""


def test_mirrored_two_devices_match_one_device():
    result = helpers.check(helpers.run_python(_MIRRORED, timeout=300))
    assert "MIRRORED-OK" in result.stdout


@contextlib.contextmanager
def _reserved_ports(count):
    """`count` localhost ports, held until the block ends.

    Each port stays bound by a socket with SO_REUSEPORT, so no other process can take
    it (the kernel hands it to no `bind(0)`, and a bind without SO_REUSEPORT fails);
    the workers' gRPC servers bind it beside that socket because TF_GRPC_REUSE_PORT=1
    makes them set SO_REUSEPORT too. A port that was closed before the workers bound
    it could be taken in between."""
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind(("127.0.0.1", 0))
            ports.append(sock.getsockname()[1])
        yield ports


def test_multi_worker_mirrored_two_processes(tmp_path):
    workers = []
    with _reserved_ports(2) as ports:
        cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
        try:
            for index in range(2):
                env = helpers.python_env(TF_GRPC_REUSE_PORT="1", TF_CONFIG=json.dumps(
                    {"cluster": cluster, "task": {"type": "worker", "index": index}}))
                workers.append(subprocess.Popen(
                    [sys.executable, "-c", textwrap.dedent(_WORKER),
                     str(tmp_path / f"worker{index}.npz")],
                    cwd=helpers.REPO, env=env, stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE, text=True))
            deadline = time.monotonic() + 300
            outputs = [worker.communicate(timeout=max(1.0, deadline - time.monotonic()))
                       for worker in workers]
        finally:
            for worker in workers:
                if worker.poll() is None:
                    worker.kill()
                    worker.communicate()
    for worker, (stdout, stderr) in zip(workers, outputs):
        assert worker.returncode == 0 and "WORKER-OK" in stdout, f"{stdout}\n{stderr}"
    weights = [np.load(tmp_path / f"worker{index}.npz") for index in range(2)]
    assert len(weights[0].files) == len(weights[1].files) > 0
    for name in weights[0].files:
        np.testing.assert_array_equal(weights[0][name], weights[1][name])
