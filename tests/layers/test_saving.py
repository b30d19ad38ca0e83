"""Serialization of the Keras 3 layers: registration, configs, `.keras` files, weight
files and SavedModel export served in a fresh process."""

import keras
import numpy as np
import pytest

import keras_dcn
from keras_dcn.layers import DeformConv2D, DeformRoIPool
from tests.layers import helpers

ROIS = np.array([[0, 1.5, 2.0, 13.0, 15.0], [1, 4.0, 0.0, 15.5, 9.0], [1, 0, 0, 16, 16]],
                "float32")


@pytest.fixture
def images(rng):
    """Two 16 x 16 RGB images."""
    return rng.standard_normal((2, 16, 16, 3)).astype("float32")


def _model(rng):
    """Images -> DeformConv2D -> DeformRoIPool(rois), with nonzero branch weights."""
    images = keras.Input((16, 16, 3), name="images")
    rois = keras.Input((5,), name="rois")
    conv = DeformConv2D(4, 3, padding="same", activation="relu")
    features = conv(images)
    pool = DeformRoIPool(output_size=3, hidden_units=8, gamma=0.2)
    model = keras.Model([images, rois], pool(features, rois))
    conv.offset_kernel.assign(rng.standard_normal(conv.offset_kernel.shape) * 0.2)
    conv.offset_bias.assign(rng.standard_normal(conv.offset_bias.shape) * 0.2)
    pool.offset_kernel.assign(rng.standard_normal(pool.offset_kernel.shape))
    pool.hidden1_kernel.assign(rng.standard_normal(pool.hidden1_kernel.shape) * 0.3)
    return model


def _outputs(model, images):
    return keras.ops.convert_to_numpy(model([images, ROIS]))


@pytest.mark.parametrize("cls", [DeformConv2D, DeformRoIPool])
def test_registered_as_serializable(cls):
    name = f"keras_dcn>{cls.__name__}"
    assert keras.saving.get_registered_name(cls) == name
    assert keras.saving.get_registered_object(name) is cls
    layer = cls(4, 3) if cls is DeformConv2D else cls(output_size=2, hidden_units=8)
    clone = keras.layers.deserialize(keras.layers.serialize(layer))
    assert type(clone) is cls and clone.get_config() == layer.get_config()


def test_keras_file_round_trip(tmp_path, rng, images):
    model = _model(rng)
    expected = _outputs(model, images)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert [type(layer) for layer in loaded.layers] == [type(layer) for layer in model.layers]
    np.testing.assert_array_equal(_outputs(loaded, images), expected)
    for old, new in zip(model.weights, loaded.weights):
        assert old.path == new.path
        np.testing.assert_array_equal(old.numpy(), new.numpy())


def test_weights_file_round_trip(tmp_path, rng, images):
    model = _model(rng)
    expected = _outputs(model, images)
    path = tmp_path / "model.weights.h5"
    model.save_weights(path)
    fresh = _model(rng)
    assert not np.array_equal(_outputs(fresh, images), expected)
    fresh.load_weights(path)
    np.testing.assert_array_equal(_outputs(fresh, images), expected)


def test_model_from_config(rng, images):
    model = _model(rng)
    clone = keras.Model.from_config(model.get_config())
    clone.set_weights(model.get_weights())
    np.testing.assert_array_equal(_outputs(clone, images), _outputs(model, images))


_SERVE = """
import sys
import numpy as np
import tensorflow as tf

path, data = sys.argv[1], np.load(sys.argv[2])
try:
    tf.saved_model.load(path)
except Exception as error:  # the ops are not registered yet
    print("WITHOUT-IMPORT:", type(error).__name__, error)
else:
    print("WITHOUT-IMPORT: loaded")

import keras_dcn  # registers the ops

loaded = tf.saved_model.load(path)
outputs = loaded.serve([tf.constant(data["images"]), tf.constant(data["rois"])])
np.testing.assert_array_equal(outputs.numpy(), data["expected"])
outputs = loaded.signatures["serving_default"](
    images=tf.constant(data["images"]), rois=tf.constant(data["rois"]))["output_0"]
np.testing.assert_array_equal(outputs.numpy(), data["expected"])
print("SERVED", "keras" in sys.modules, "tf_keras" in sys.modules)
"""


@pytest.mark.slow
def test_export_serves_in_a_fresh_process(tmp_path, rng, images):
    """A process that imports only tensorflow and keras_dcn serves the export; loading
    before `import keras_dcn` fails (ops not registered); keras_dcn did not pull in
    tf_keras."""
    model = _model(rng)
    export_dir = tmp_path / "exported"
    model.export(str(export_dir), verbose=False)
    assert (export_dir / "saved_model.pb").is_file()
    data = tmp_path / "data.npz"
    np.savez(data, images=images, rois=ROIS, expected=_outputs(model, images))
    result = helpers.check(helpers.run_python(_SERVE, str(export_dir), str(data)))
    lines = result.stdout.splitlines()
    without = next(line for line in lines if line.startswith("WITHOUT-IMPORT"))
    assert "Op type not registered 'DcnDeformConv2D'" in without, without
    served = next(line for line in lines if line.startswith("SERVED"))
    assert served.endswith("False"), f"import keras_dcn imported tf_keras: {served}"
