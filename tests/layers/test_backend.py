"""The Keras 3 layers need Keras' TensorFlow backend and say so. (That `import keras_dcn`
does not import tf_keras is checked by the fresh process of
test_saving.test_export_serves_in_a_fresh_process.)"""

import keras
import pytest

from keras_dcn.layers import DeformConv2D, DeformRoIPool


@pytest.mark.parametrize("make", [lambda: DeformConv2D(4, 3), lambda: DeformRoIPool()],
                         ids=["DeformConv2D", "DeformRoIPool"])
def test_other_backend_is_refused_with_a_clear_error(monkeypatch, make):
    # Only the TensorFlow backend is installed here, so pretend: the layers ask
    # keras.backend.backend() when they are made.
    monkeypatch.setattr(keras.backend, "backend", lambda: "jax")
    with pytest.raises(RuntimeError, match=r"needs Keras' TensorFlow backend .* 'jax' "
                                           r"backend\. Set .*KERAS_BACKEND=tensorflow"):
        make()

