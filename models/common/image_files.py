"""Reads and writes RGB uint8 images as files (OpenCV, which keeps BGR)."""

import cv2
import numpy as np


def read_rgb(path: str) -> np.ndarray:
    """The RGB uint8 `[H, W, 3]` image in the file `path` (PNG, JPEG, ...)."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise FileNotFoundError(path)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def save_png(path: str, image: np.ndarray) -> str:
    """Writes an RGB uint8 image as PNG; returns `path`."""
    if not cv2.imwrite(str(path), cv2.cvtColor(np.asarray(image, np.uint8),
                                               cv2.COLOR_RGB2BGR)):
        raise OSError(f"could not write {path}")
    return str(path)
