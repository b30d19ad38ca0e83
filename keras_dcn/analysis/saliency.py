"""Error-bounded saliency region of a node (Section 2.1 of the paper).

The smallest image region that gives the node the same response as the full image,
within a relative error bound. The paper leaves its procedure to an appendix it does
not include; this module uses the following one.

1. The image is cut into square patches of `patch_size` pixels (the last row and
   column of patches may be smaller): `P = ceil(H / p) * ceil(W / p)` patches.
2. Patches are ranked by an importance map, by default the node's effective receptive
   field (`receptive_field.effective_receptive_field`): a patch's score is the sum of
   the map over its pixels; ties keep the row-major order.
3. `reveal(k)` keeps the `k` best patches of the image and sets every other pixel to
   the fill value (by default the image's mean colour, per channel). Its error is
   `e(k) = || f(reveal(k)) - f(image) ||_2 / || f(image) ||_2` over the node's values
   `f` (the whole response vector, not only its sum).
4. A binary search over `k` in `[0, P]` (`e(P) = 0`) returns the smallest `k` with
   `e(k) <= error_bound` when `e` does not increase with `k`; otherwise a `k` with
   `e(k) <= error_bound < e(k - 1)`. The region is the union of those `k` patches.

Cost: one forward and backward pass for the default ranking, then at most
`ceil(log2(P + 1))` forward passes of the node (9 for a 128 x 128 image with 8-pixel
patches, 12 for 1024 x 1024 with 16-pixel patches). The region is only as fine as the
patches and depends on the ranking: it is an upper bound on the smallest region of
patches, exact for nodes whose response depends on the revealed patches monotonically
in the ranked order.
"""

import dataclasses
import math
from typing import Optional

import numpy as np
import tensorflow as tf

from keras_dcn.analysis import nodes
from keras_dcn.analysis import receptive_field


@dataclasses.dataclass
class SaliencyRegion:
    """An error-bounded saliency region.

    Attributes:
      mask: bool `[H, W]`, True on the revealed patches.
      patches: `k`, the number of revealed patches.
      error: `e(k)`, the relative error of the response with only them revealed.
      order: int `[P]`, patch indices (row-major over the patch grid) best first.
      patch_size: side of the patches, in pixels.
      evaluations: forward passes of the node the search ran (the full image included).
    """
    mask: np.ndarray
    patches: int
    error: float
    order: np.ndarray
    patch_size: int
    evaluations: int


def patch_scores(importance: np.ndarray, patch_size: int) -> np.ndarray:
    """Sum of `importance` `[H, W]` over each patch: `[ceil(H / p), ceil(W / p)]`."""
    height, width = importance.shape
    rows, cols = math.ceil(height / patch_size), math.ceil(width / patch_size)
    padded = np.zeros((rows * patch_size, cols * patch_size), np.float64)
    padded[:height, :width] = importance
    return padded.reshape(rows, patch_size, cols, patch_size).sum(axis=(1, 3))


def region_mask(order: np.ndarray, count: int, shape, patch_size: int) -> np.ndarray:
    """bool `[H, W]`: the first `count` patches of `order` (row-major patch indices)."""
    height, width = shape
    cols = math.ceil(width / patch_size)
    mask = np.zeros((height, width), bool)
    for index in order[:count]:
        row, col = divmod(int(index), cols)
        mask[row * patch_size:(row + 1) * patch_size,
             col * patch_size:(col + 1) * patch_size] = True
    return mask


def relative_error(response: np.ndarray, reference: np.ndarray) -> float:
    """`||response - reference||_2 / ||reference||_2`."""
    return float(np.linalg.norm(np.ravel(response) - np.ravel(reference))
                 / np.linalg.norm(np.ravel(reference)))


def error_bounded_saliency_region(node: nodes.Node, image, error_bound: float = 0.1,
                                  patch_size: int = 8,
                                  importance: Optional[np.ndarray] = None,
                                  fill=None) -> SaliencyRegion:
    """The node's error-bounded saliency region (procedure and cost in the module doc).

    Args:
      node: `node(images [1, H, W, C]) -> response` (`keras_dcn.analysis.nodes`).
      image: `[H, W, C]` or `[1, H, W, C]`.
      error_bound: the relative error allowed, in `(0, 1)` (the paper's 10%: 0.1).
      patch_size: side of the patches, in pixels.
      importance: `[H, W]` map ranking the patches; default the effective receptive
        field.
      fill: value of the hidden pixels: None for the image's mean colour, or a scalar
        or `[C]` array.

    Raises:
      ValueError: for a bad argument, or a node whose response on the full image is 0
        (the relative error is then undefined).
    """
    if not 0 < error_bound < 1:
        raise ValueError(f"error_bound must lie in (0, 1), got {error_bound!r}")
    if isinstance(patch_size, bool) or not isinstance(patch_size, (int, np.integer)) \
            or patch_size < 1:
        raise ValueError(f"patch_size must be a positive int, got {patch_size!r}")
    images = nodes.image_batch(image)
    height, width, channels = images.shape[1:]
    if importance is None:
        importance = receptive_field.effective_receptive_field(node, images)
    importance = np.asarray(importance, np.float64)
    if importance.shape != (height, width):
        raise ValueError(f"importance must have shape {(height, width)} (the image's), "
                         f"got {importance.shape}")
    if fill is None:
        fill = tf.reduce_mean(images, axis=[0, 1, 2])
    fill = tf.broadcast_to(tf.cast(fill, tf.float32), [channels])

    scores = patch_scores(importance, patch_size)
    order = np.argsort(-scores.ravel(), kind="stable")
    total = order.size
    reference = tf.cast(node(images), tf.float32).numpy()
    if not np.any(reference):
        raise ValueError("the node's response on the full image is 0: the relative error "
                         "of a saliency region is undefined")
    errors = {total: 0.0}

    def error(count):
        if count not in errors:
            mask = region_mask(order, count, (height, width), patch_size)
            keep = tf.constant(mask[None, :, :, None])
            revealed = tf.where(keep, images, fill[None, None, None, :])
            errors[count] = relative_error(tf.cast(node(revealed), tf.float32).numpy(),
                                           reference)
        return errors[count]

    low, high = 0, total
    while low < high:
        middle = (low + high) // 2
        if error(middle) <= error_bound:
            high = middle
        else:
            low = middle + 1
    return SaliencyRegion(
        mask=region_mask(order, high, (height, width), patch_size), patches=high,
        error=error(high), order=order, patch_size=patch_size,
        evaluations=len(errors))
