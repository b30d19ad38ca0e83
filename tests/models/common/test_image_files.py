"""models.common.image_files: RGB images written and read back unchanged."""

import numpy as np
import pytest

from models.common import image_files


def test_png_round_trip_keeps_rgb_order(tmp_path):
    image = np.random.default_rng(0).integers(0, 256, (7, 9, 3), dtype=np.uint8)
    image[0, 0] = (255, 0, 0)  # red stays in channel 0
    path = image_files.save_png(tmp_path / "image.png", image)
    assert path == str(tmp_path / "image.png")
    np.testing.assert_array_equal(image_files.read_rgb(path), image)
    with pytest.raises(FileNotFoundError):
        image_files.read_rgb(tmp_path / "missing.png")
    with pytest.raises(OSError, match="could not write"):
        image_files.save_png(tmp_path / "no_such_dir" / "image.png", image)
