"""Fuzzing of the four raw ops and the two public ops: random shapes (mostly
consistent, sometimes not), attributes (sometimes out of range), values (NaN, Inf,
huge, tiny), dtypes (sometimes unsupported or mixed) and both data formats, forward
and gradient.

Every call must either return tensors of the expected shapes or raise a clear error:
ValueError, TypeError or a TensorFlow InvalidArgumentError / ResourceExhaustedError
whose message names an argument or attribute. A crash or a hang is caught by running
this module in a child process (tests/ops/test_fuzz.py, `make fuzz`): the call being
made is written to the log before it runs.

    python -m tests.ops.fuzz --calls 100000 --seed 0 --log fuzz.log
"""

import argparse
import collections
import sys
import time

import numpy as np
import tensorflow as tf

from keras_dcn._library import ops as lib
from keras_dcn.ops import deform_conv2d, deform_roi_pool

FLOAT_DTYPES = (tf.float16, tf.bfloat16, tf.float32, tf.float64)
CLEAN_ERRORS = (ValueError, TypeError, tf.errors.InvalidArgumentError,
                tf.errors.ResourceExhaustedError)
# A clear error names what is wrong: one of these words is in its message. A result
# too large for memory gets TensorFlow's out-of-memory error, which names its shape.
NAMES = ("OOM when allocating", "input", "offsets", "mask", "kernel", "bias", "output_grad", "features",
         "rois", "strides", "dilation", "padding", "groups", "deformable_groups",
         "output_size", "spatial_scale", "sampling_ratio", "gamma", "aligned",
         "data_format", "dtype", "attr 'T'")


def conv_output_size(size, kernel_size, attrs):
    """(Ho, Wo) of a convolution of an image of `size` (h, w), by the rule of the
    public op's docstring (TensorFlow's for "same")."""
    pads = attrs["pads"] if attrs["padding"] == "explicit" else [0, 0, 0, 0]
    result = []
    for axis in range(2):
        n, k = size[axis], kernel_size[axis]
        s, d = max(attrs["strides"][axis], 1), max(attrs["dilations"][axis], 1)
        if attrs["padding"] == "same":
            result.append(-(-n // s))
        else:
            padded = n + pads[2 * axis] + pads[2 * axis + 1]
            result.append(max(0, (padded - (k - 1) * d - 1) // s + 1))
    return result


def conv_output_shape(inputs, kernel, attrs):
    """[N, Ho, Wo, filters] of a channels-last call with these tensors."""
    if inputs.shape.rank != 4 or kernel.shape.rank != 4:
        return None
    return [inputs.shape[0], *conv_output_size(inputs.shape[1:3], kernel.shape[:2], attrs),
            kernel.shape[3]]


class Fuzzer:
    """Draws calls from `rng`; `run_one()` makes one and returns its outcome,
    "<op> returned" or "<op> error: <type>", or raises AssertionError for a result of
    the wrong shape or an unclear error. Call i of a seed is made again by running
    i + 1 calls with that seed."""

    def __init__(self, rng, log=None):
        self.rng = rng
        self.log = log

    # ------------------------------------------------------------- drawing values

    def chance(self, p):
        return self.rng.random() < p

    def size(self, low, high):
        """An int in [low, high], sometimes 0 or far out of range. (The huge values are
        too large for any machine's memory, so that a call given one fails at once
        rather than running for long.)"""
        if self.chance(0.03):
            return int(self.rng.choice([0, -1, 2**40, 2**62]))
        return int(self.rng.integers(low, high + 1))

    def maybe_break(self, shape):
        """`shape`, or (rarely) with one dimension changed or one dropped / added."""
        shape = list(shape)
        if shape and self.chance(0.06):
            i = int(self.rng.integers(len(shape)))
            shape[i] = max(0, shape[i] + int(self.rng.choice([-1, 1, 3])))
        if self.chance(0.02):
            shape = shape[:-1] if shape and self.chance(0.5) else shape + [1]
        return shape

    @staticmethod
    def clip(shape):
        """`shape` with every size in [0, 64], so that nothing huge is allocated."""
        return [min(max(int(d), 0), 64) for d in shape]

    def tensor(self, shape, dtype):
        """A tensor of `shape` (clipped)."""
        shape = self.clip(shape)
        values = self.rng.normal(size=shape) * float(self.rng.choice([0.3, 1.0, 5.0]))
        if values.size and self.chance(0.1):
            special = self.rng.choice([np.nan, np.inf, -np.inf, 1e30, -1e30, 1e-30])
            values.flat[self.rng.integers(values.size, size=1 + values.size // 8)] = special
        if self.chance(0.02):
            with np.errstate(invalid="ignore"):
                return tf.constant(np.nan_to_num(values).astype(np.int32))
        return tf.cast(tf.constant(values), dtype)

    def tensors(self, dtype, **shapes):
        """`{name: tensor}` of the (clipped) `shapes`, sometimes broken or of another
        dtype than `dtype`."""
        return {name: self.tensor(self.maybe_break(self.clip(shape)), self.other_dtype(dtype))
                for name, shape in shapes.items()}

    def dtype(self):
        return FLOAT_DTYPES[int(self.rng.integers(len(FLOAT_DTYPES)))]

    def other_dtype(self, dtype):
        """`dtype`, or (rarely) another float dtype."""
        return self.dtype() if self.chance(0.03) else dtype

    # ------------------------------------------------------------------ the calls

    def conv_case(self):
        n, h, w = self.size(0, 2), self.size(0, 9), self.size(0, 9)
        groups, dg = self.size(1, 2), self.size(1, 2)
        channels = self.size(1, 3) * max(groups, 1) * max(dg, 1)
        filters = self.size(1, 3) * max(groups, 1)
        kh, kw = self.size(1, 3), self.size(1, 3)
        strides = [self.size(1, 3), self.size(1, 3)]
        dilations = [self.size(1, 2), self.size(1, 2)]
        padding = str(self.rng.choice(["valid", "same", "explicit"]))
        pads = [self.size(0, 2) for _ in range(4)]
        attrs = dict(strides=strides, dilations=dilations, groups=groups,
                     deformable_groups=dg, padding=padding, pads=pads)
        ho, wo = conv_output_size([h, w], [kh, kw], attrs)
        taps = max(dg, 1) * max(kh, 1) * max(kw, 1)
        dtype = self.dtype()
        tensors = self.tensors(dtype, inputs=[n, h, w, channels],
                               offsets=[n, ho, wo, 2 * taps], mask=[n, ho, wo, taps],
                               kernel=[kh, kw, channels // max(groups, 1), filters],
                               bias=[filters])
        return tensors, attrs

    def call_conv(self):
        tensors, attrs = self.conv_case()
        channels_first = self.chance(0.3)
        if self.chance(0.5):  # the public op
            padding = {"valid": "valid", "same": "same",
                       "explicit": ((attrs["pads"][0], attrs["pads"][1]),
                                    (attrs["pads"][2], attrs["pads"][3]))}[attrs["padding"]]
            args = dict(tensors)
            if channels_first:
                for key in ("inputs", "offsets", "mask"):
                    if args[key].shape.rank == 4:
                        args[key] = tf.transpose(args[key], [0, 3, 1, 2])
            kwargs = dict(strides=attrs["strides"], padding=padding,
                          dilation_rate=attrs["dilations"], groups=attrs["groups"],
                          deformable_groups=attrs["deformable_groups"],
                          data_format="channels_first" if channels_first else "channels_last")
            mask = args["mask"] if self.chance(0.8) else None
            bias = args["bias"] if self.chance(0.8) else None
            watched = [args["inputs"], args["offsets"], args["kernel"]]
            with tf.GradientTape() as tape:
                tape.watch(watched)
                out = deform_conv2d(args["inputs"], args["offsets"], args["kernel"],
                                    mask=mask, bias=bias, **kwargs)
            expected = conv_output_shape(tensors["inputs"], tensors["kernel"], attrs)
            if channels_first:
                expected = [expected[0], expected[3], expected[1], expected[2]]
            self.check_shape(out, expected, "deform_conv2d output")
            if self.chance(0.5):
                grads = tape.gradient(out, watched)
                for grad, tensor in zip(grads, watched):
                    self.check_shape(grad, tensor.shape, "deform_conv2d gradient")
            return
        raw = dict(strides=attrs["strides"], dilations=attrs["dilations"],
                   padding=attrs["padding"].upper(),
                   explicit_paddings=attrs["pads"] if attrs["padding"] == "explicit" else [],
                   groups=attrs["groups"], deformable_groups=attrs["deformable_groups"])
        t = tensors
        if self.chance(0.5):
            out = lib.dcn_deform_conv2d(t["inputs"], t["offsets"], t["mask"], t["kernel"],
                                        t["bias"], **raw)
            self.check_shape(out, conv_output_shape(t["inputs"], t["kernel"], attrs),
                             "DcnDeformConv2D output")
        else:
            grad_shape = self.maybe_break(
                conv_output_shape(t["inputs"], t["kernel"], attrs) or [1, 1, 1, 1])
            output_grad = self.tensor(grad_shape, self.other_dtype(t["inputs"].dtype))
            grads = lib.dcn_deform_conv2d_grad(t["inputs"], t["offsets"], t["mask"],
                                               t["kernel"], output_grad, **raw)
            expected = [t[key].shape for key in ("inputs", "offsets", "mask", "kernel")]
            for grad, shape, key in zip(grads, expected + [t["kernel"].shape[3:]],
                                        ("inputs", "offsets", "mask", "kernel", "bias")):
                self.check_shape(grad, shape, f"DcnDeformConv2DGrad {key} gradient")

    def roi_case(self):
        n, h, w, c = self.size(0, 2), self.size(0, 12), self.size(0, 12), self.size(1, 6)
        r = self.size(0, 6)
        oh, ow = self.size(1, 4), self.size(1, 4)
        scale = float(self.rng.choice([1.0, 0.5, 0.25, 0.0, -1.0, 1e-30, 1e30])
                      if self.chance(0.1) else self.rng.choice([1.0, 0.5, 0.25]))
        attrs = dict(output_size=[oh, ow], spatial_scale=scale,
                     sampling_ratio=int(self.rng.choice([-1, 0, 1, 2, 3, 5000])
                                        if self.chance(0.1) else self.rng.integers(-1, 4)),
                     gamma=float(self.rng.choice([0.1, 1.0, 0.0, -0.5, np.inf]
                                                 if self.chance(0.1) else [0.1, 1.0])),
                     aligned=bool(self.chance(0.5)))
        dtype = self.dtype()
        rois = np.zeros((self.clip([r])[0], 5))
        if rois.size:
            corners = self.rng.uniform(-0.3, 1.3, size=(len(rois), 4)) * \
                np.array([w, h, w, h]) / max(scale, 1e-3)
            rois[:, 1:3] = np.minimum(corners[:, :2], corners[:, 2:])
            rois[:, 3:] = np.maximum(corners[:, :2], corners[:, 2:])
            rois[:, 0] = self.rng.integers(0, max(n, 1), size=len(rois))
            if self.chance(0.15):  # bad boxes: index out of range, NaN, x2 < x1, huge
                row = int(self.rng.integers(len(rois)))
                col = int(self.rng.integers(5))
                rois[row, col] = self.rng.choice([-1.0, n + 0.5, np.nan, np.inf, -5.0, 1e38])
        roi_shape = self.maybe_break([len(rois), 5])
        if roi_shape != [len(rois), 5]:
            rois = np.zeros(self.clip(roi_shape))
        rois = tf.constant(rois, tf.float64 if self.chance(0.5) else tf.float32)
        tensors = self.tensors(dtype, features=[n, h, w, c], offsets=[r, oh, ow, 2],
                               mask=[r, oh, ow, 1])
        return tensors, rois, attrs

    def call_roi_pool(self):
        tensors, rois, attrs = self.roi_case()
        expected = [rois.shape[0], *attrs["output_size"], tensors["features"].shape[-1]]
        if self.chance(0.5):  # the public op
            channels_first = self.chance(0.3)
            features = tensors["features"]
            if channels_first and features.shape.rank == 4:
                features = tf.transpose(features, [0, 3, 1, 2])
            offsets = tensors["offsets"] if self.chance(0.8) else None
            mask = tensors["mask"] if self.chance(0.8) else None
            watched = [t for t in (features, offsets, mask) if t is not None]
            with tf.GradientTape() as tape:
                tape.watch(watched)
                out = deform_roi_pool(features, rois, offsets, mask,
                                      data_format="channels_first" if channels_first
                                      else "channels_last", **attrs)
            if channels_first:
                expected = [expected[0], expected[3], expected[1], expected[2]]
            self.check_shape(out, expected, "deform_roi_pool output")
            if self.chance(0.5):
                for grad, tensor in zip(tape.gradient(out, watched), watched):
                    self.check_shape(grad, tensor.shape, "deform_roi_pool gradient")
            return
        t = tensors
        if self.chance(0.5):
            out = lib.dcn_deform_roi_pool(t["features"], rois, t["offsets"], t["mask"], **attrs)
            self.check_shape(out, expected, "DcnDeformRoiPool output")
        else:
            output_grad = self.tensor(self.maybe_break(expected),
                                      self.other_dtype(t["features"].dtype))
            grads = lib.dcn_deform_roi_pool_grad(t["features"], rois, t["offsets"], t["mask"],
                                                 output_grad, **attrs)
            for grad, key in zip(grads, ("features", "offsets", "mask")):
                self.check_shape(grad, t[key].shape, f"DcnDeformRoiPoolGrad {key} gradient")

    @staticmethod
    def check_shape(tensor, expected, what):
        assert expected is not None, f"{what}: the call returned though a rank was wrong"
        got = list(tensor.shape)
        assert got == list(expected), f"{what} has shape {got}, expected {list(expected)}"

    def run_one(self, index):
        kind = "conv" if self.chance(0.5) else "roi_pool"
        if self.log is not None:
            self.log.write(f"call {index}: {kind}\n")
            self.log.flush()
        try:
            (self.call_conv if kind == "conv" else self.call_roi_pool)()
        except CLEAN_ERRORS as error:
            message = str(error)
            assert any(name in message for name in NAMES), \
                f"call {index} ({kind}) raised an unclear {type(error).__name__}: {message}"
            return f"{kind} error: {type(error).__name__}"
        return f"{kind} returned"


def run(calls, seed, log=None):
    """Makes `calls` calls; returns the count of each outcome."""
    fuzzer = Fuzzer(np.random.default_rng(seed), log)
    outcomes = collections.Counter()
    for index in range(calls):
        outcomes[fuzzer.run_one(index)] += 1
    return outcomes


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--log", default=None, help="file that gets each call before it runs")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    with open(args.log, "w") if args.log else open("/dev/null", "w") as log:
        outcomes = run(args.calls, args.seed, log)
    for outcome, count in sorted(outcomes.items()):
        print(f"{outcome}: {count}")
    print(f"{args.calls} calls in {time.perf_counter() - start:.1f} s, none crashed or hung")
    return 0


if __name__ == "__main__":
    sys.exit(main())
