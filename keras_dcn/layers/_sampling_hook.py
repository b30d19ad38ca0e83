"""The sampling hook: a public way to observe or replace the offsets and mask a
deformable layer samples with (the spatial-support analysis, `keras_dcn.analysis`,
watches them through it)."""


class SamplingHookMixin:
    """`set_sampling_hook` of `DeformConv2D` and `DeformRoIPool` (both frameworks).

    `layer.set_sampling_hook(hook)` installs `hook(layer, inputs, offsets, mask, rois)`,
    called in every forward pass between the offset / mask branch and the op, with
    channels_last tensors:

    * `DeformConv2D`: `inputs` `[N, H, W, C]`, `offsets` `[N, Ho, Wo, 2 * dg * kh * kw]`
      (the op's channel order), `mask` `[N, Ho, Wo, dg * kh * kw]` (after the sigmoid)
      or None, `rois` None;
    * `DeformRoIPool`: `inputs` the features `[N, H, W, C]`, `offsets` `[R, oh, ow, 2]`,
      `mask` `[R, oh, ow, 1]` or None, `rois` `[R, 5]`.

    It returns the `(offsets, mask)` the op then uses: the same tensors to observe them
    (for example to watch them on a `tf.GradientTape`), others to perturb them.
    `set_sampling_hook(None)` removes it. The hook runs when the layer's Python code
    runs: eagerly, or when a `tf.function` traces it.
    """

    _sampling_hook = None

    def set_sampling_hook(self, hook):
        """Installs `hook` (a callable, see the class doc) or removes it (None)."""
        if hook is not None and not callable(hook):
            raise ValueError(f"hook must be a callable or None, got {hook!r}")
        # Not an attribute the frameworks track: a plain Python value.
        object.__setattr__(self, "_sampling_hook", hook)

    def _hooked(self, inputs, offsets, mask, rois=None):
        hook = self._sampling_hook
        if hook is None:
            return offsets, mask
        return hook(self, inputs, offsets, mask, rois)
