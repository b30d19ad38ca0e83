"""Anchors whose scales are whole octaves apart, in Model Garden's input and serving code.

Model Garden places `anchor.num_scales` anchor scales inside one octave of each level
(sizes `anchor_size * 2**level * 2**(i / num_scales)`), which suits an FPN, where the
levels cover the octaves. A single-level RPN such as the paper's Faster R-CNN (conv4,
stride 16) needs its scales an octave apart instead: Detectron's 32, 64, 128, 256 and
512 pixels are `anchor_size` 2 at level 4 with 5 such scales.
`OctaveAnchorGenerator` gives those anchors, in Model Garden's layout
(`{level: [H_l, W_l, num_scales * len(aspect_ratios) * 4]}`, scales outer, aspect
ratios inner), by asking Model Garden's `anchor.Anchor` for one scale at a time.

Inside `octave_anchors(module, True)`, `module`'s `anchor.build_anchor_generator`
(Model Garden's Mask R-CNN parser and detection serving module call it) builds an
`OctaveAnchorGenerator`. As with `short_side_resize`, the swap lasts while the parser
or serving function is traced, in the tracing thread.
"""

import collections
import contextlib
from typing import Mapping, Sequence

import tensorflow as tf

from official.vision.ops import anchor


class OctaveAnchorGenerator:
    """`generator(image_size) -> {level: [H_l, W_l, A * 4]}` anchors (y1, x1, y2, x2)
    of sizes `anchor_size * 2**level * 2**i` for `i < num_scales`, each in every
    aspect ratio (the arguments of Model Garden's `build_anchor_generator`)."""

    def __init__(self, min_level: int, max_level: int, num_scales: int,
                 aspect_ratios: Sequence[float], anchor_size: float):
        self.min_level = min_level
        self.max_level = max_level
        self.num_scales = num_scales
        self.aspect_ratios = list(aspect_ratios)
        self.anchor_size = anchor_size

    def __call__(self, image_size) -> Mapping[str, tf.Tensor]:
        per_scale = [
            anchor.Anchor(min_level=self.min_level, max_level=self.max_level, num_scales=1,
                          aspect_ratios=self.aspect_ratios,
                          anchor_size=self.anchor_size * 2 ** scale,
                          image_size=image_size).multilevel_boxes
            for scale in range(self.num_scales)]
        return collections.OrderedDict(
            (level, tf.concat([boxes[level] for boxes in per_scale], axis=-1))
            for level in per_scale[0])


class _OctaveAnchorModule:
    """`anchor`, with `build_anchor_generator` building an `OctaveAnchorGenerator`."""

    def __getattr__(self, name):
        return getattr(anchor, name)

    build_anchor_generator = OctaveAnchorGenerator


@contextlib.contextmanager
def octave_anchors(module, enabled: bool):
    """Inside, `module` (one that calls `anchor.build_anchor_generator`) builds
    octave-spaced anchors; with `enabled` False nothing changes."""
    if not enabled:
        yield
        return
    original = module.anchor
    module.anchor = _OctaveAnchorModule()
    try:
        yield
    finally:
        module.anchor = original
