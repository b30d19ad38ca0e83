"""Detectron's resize in Model Garden's input and serving code: the shorter side of an
image to `short_side` pixels, unless its longer side would then pass `long_side`, where
the longer side goes to `long_side` (Section 5.1 of the paper: a shorter side of 1,000).

Model Garden's parser and serving module scale an image to fit inside `input_size`
(`preprocess_ops.resize_and_crop_image`), so a square `input_size` gives a portrait
image a shorter side than a landscape one. Inside `short_side_resize(module, ...)`,
`module`'s `preprocess_ops.resize_and_crop_image` first works out the image's size
under the rule above and then runs Model Garden's own `resize_and_crop_image` to fit
that size (so scale jittering, cropping and padding are Model Garden's). The padded
size, a multiple of the largest FPN stride, stays that of `input_size`, which must
hold `long_side` in both orientations.

The swap lasts while the parser or the serving function is traced (`Dataset.map` and
`tf.function` trace at once), in the tracing thread.
"""

import contextlib

import tensorflow as tf

from official.vision.ops import preprocess_ops


class _ShortSideOps:
    """`preprocess_ops`, with `resize_and_crop_image` resizing by the shorter side."""

    def __init__(self, short_side, long_side):
        self._short_side = short_side
        self._long_side = long_side

    def __getattr__(self, name):
        return getattr(preprocess_ops, name)

    def resize_and_crop_image(self, image, desired_size, padded_size, **kwargs):
        """Model Garden's `resize_and_crop_image` of `image` `[H, W, C]` to the size the
        rule gives it, rounded to whole pixels (in place of `desired_size`), then
        padded to `padded_size`; `kwargs` (scale jittering, ...) as Model Garden takes
        them, except that the rule's size is taken as it is (`keep_aspect_ratio`
        False: each axis is scaled to its rounded length, as Detectron does)."""
        del desired_size
        size = tf.cast(tf.shape(image)[:2], tf.float32)
        by_short = tf.round(size * (self._short_side / tf.reduce_min(size)))
        by_long = tf.round(size * (self._long_side / tf.reduce_max(size)))
        resized = tf.where(tf.reduce_max(by_short) > self._long_side, by_long, by_short)
        kwargs["keep_aspect_ratio"] = False
        return preprocess_ops.resize_and_crop_image(
            image, tf.cast(resized, tf.int32), padded_size, **kwargs)


def check(short_side, long_side, input_size):
    """ValueError unless `(short_side, long_side)` is off (`short_side` 0) or
    `0 < short_side <= long_side <= min(input_size[:2])`."""
    if short_side == 0:
        return
    limit = min(input_size[:2])
    if not 0 < short_side <= long_side <= limit:
        raise ValueError(
            f"model.short_side and model.long_side must satisfy 0 < short_side <= "
            f"long_side <= min(input_size[:2]) = {limit} (the padded image holds the "
            f"longer side in either orientation), or short_side = 0 for Model Garden's "
            f"resize; got short_side={short_side}, long_side={long_side}")


@contextlib.contextmanager
def short_side_resize(module, short_side, long_side, input_size):
    """Inside, `module` (one that calls `preprocess_ops.resize_and_crop_image`)
    resizes by the shorter side; with `short_side` 0 nothing changes."""
    check(short_side, long_side, input_size)
    if short_side == 0:
        yield
        return
    original = module.preprocess_ops
    module.preprocess_ops = _ShortSideOps(short_side, long_side)
    try:
        yield
    finally:
        module.preprocess_ops = original
