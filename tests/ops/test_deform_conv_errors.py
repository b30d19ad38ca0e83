"""Bad arguments of keras_dcn.ops.deform_conv2d and of the raw ops: every one raises
ValueError, TypeError or InvalidArgumentError naming the argument, eagerly, in graphs
that know no shape, and in the kernels themselves; sizes that overflow 64-bit
arithmetic raise instead of crashing."""

import pathlib
import subprocess
import sys

import pytest
import tensorflow as tf

from keras_dcn._library import ops as lib
from keras_dcn.ops import deform_conv2d
from tests.ops.conv_cases import TENSOR_NAMES, to_layout
from tests.ops.helpers import DATA_FORMATS, zeros

InvalidArgumentError = tf.errors.InvalidArgumentError

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]


def valid_args(data_format="channels_last"):
    """Arguments of a valid call: 5x5x4 image, 3x3 kernel, 6 filters, valid padding."""
    shapes = dict(inputs=(1, 5, 5, 4), offsets=(1, 3, 3, 18), kernel=(3, 3, 4, 6),
                  mask=(1, 3, 3, 9), bias=(6,))
    return {name: to_layout(name, zeros(*shape), data_format)
            for name, shape in shapes.items()}


# (overrides of valid_args, overrides of the keyword arguments, exception, match)
EAGER_ERRORS = [
    pytest.param(lambda: dict(inputs=zeros(1, 5, 5)), {}, ValueError, "inputs",
                 id="inputs_rank"),
    pytest.param(lambda: dict(offsets=zeros(1, 3, 3, 18, 1)), {}, ValueError, "offsets",
                 id="offsets_rank"),
    pytest.param(lambda: dict(mask=zeros(1, 3, 9)), {}, ValueError, "mask", id="mask_rank"),
    pytest.param(lambda: dict(kernel=zeros(3, 3, 24)), {}, ValueError, "kernel",
                 id="kernel_rank"),
    pytest.param(lambda: dict(bias=zeros(1, 6)), {}, ValueError, "bias", id="bias_rank"),
    pytest.param(lambda: dict(bias=zeros()), {}, ValueError, "bias", id="bias_scalar"),
    pytest.param(lambda: dict(kernel=zeros(3, 3, 1, 6)), dict(groups=3), ValueError,
                 "groups", id="channels_not_divisible_by_groups"),
    pytest.param(lambda: dict(offsets=zeros(1, 3, 3, 54), mask=zeros(1, 3, 3, 27)),
                 dict(deformable_groups=3), ValueError, "deformable_groups",
                 id="channels_not_divisible_by_deformable_groups"),
    pytest.param(lambda: dict(kernel=zeros(3, 3, 3, 6)), {}, ValueError, "kernel",
                 id="kernel_channels"),
    pytest.param(lambda: {}, dict(groups=2), ValueError, "kernel",
                 id="kernel_channels_with_groups"),
    pytest.param(lambda: dict(kernel=zeros(3, 3, 2, 5), bias=zeros(5)), dict(groups=2),
                 ValueError, "filters.*groups", id="filters_not_divisible_by_groups"),
    pytest.param(lambda: dict(offsets=zeros(1, 3, 3, 16)), {}, ValueError, "offsets",
                 id="offsets_channels"),
    pytest.param(lambda: dict(offsets=zeros(1, 4, 3, 18)), {}, ValueError, "offsets",
                 id="offsets_height"),
    pytest.param(lambda: dict(offsets=zeros(1, 3, 2, 18)), {}, ValueError, "offsets",
                 id="offsets_width"),
    pytest.param(lambda: dict(offsets=zeros(2, 3, 3, 18)), {}, ValueError, "offsets",
                 id="offsets_batch"),
    pytest.param(lambda: dict(offsets=zeros(1, 5, 5, 18)), dict(strides=2), ValueError,
                 "offsets", id="offsets_ignore_strides"),
    pytest.param(lambda: dict(mask=zeros(1, 3, 3, 18)), {}, ValueError, "mask",
                 id="mask_channels"),
    pytest.param(lambda: dict(mask=zeros(1, 3, 2, 9)), {}, ValueError, "mask",
                 id="mask_spatial"),
    pytest.param(lambda: dict(mask=zeros(3, 3, 3, 9)), {}, ValueError, "mask",
                 id="mask_batch"),
    pytest.param(lambda: dict(bias=zeros(5)), {}, ValueError, "bias", id="bias_length"),
    *[pytest.param(lambda: {}, dict(strides=value), (ValueError, TypeError), "strides",
                   id=f"strides_{value!r}")
      for value in [0, -1, (1, 0), (2, -1), (1, 2, 3), (1,), True, None, 1.5, "2"]],
    *[pytest.param(lambda: {}, dict(dilation_rate=value), (ValueError, TypeError),
                   "dilation_rate", id=f"dilation_rate_{value!r}")
      for value in [0, (1, 0), (-2, 1), (1, 1, 1), None, 2.5]],
    *[pytest.param(lambda: {}, dict(groups=value), (ValueError, TypeError), "groups",
                   id=f"groups_{value!r}")
      for value in [0, -1, 1.5, None, "2", (1, 1)]],
    *[pytest.param(lambda: {}, dict(deformable_groups=value), (ValueError, TypeError),
                   "deformable_groups", id=f"deformable_groups_{value!r}")
      for value in [0, -2, 1.5, None]],
    *[pytest.param(lambda: {}, dict(padding=value), (ValueError, TypeError), "padding",
                   id=f"padding_{value!r}")
      for value in ["full", "explicit", "", -1, (1, -1), ((1, 0), (0, -2)), (1, 2, 3),
                    ((1,), (2, 3)), 1.5, None, True, ((1, 1), 2)]],
    *[pytest.param(lambda: {}, dict(data_format=value), ValueError, "data_format",
                   id=f"data_format_{value!r}")
      for value in ["NHWC", "channels_middle", None]],
    pytest.param(lambda: dict(inputs=zeros(1, 2, 2, 4), offsets=zeros(1, 1, 1, 18),
                              mask=zeros(1, 1, 1, 9)), {}, ValueError, "kernel",
                 id="kernel_larger_than_input"),
    pytest.param(lambda: dict(offsets=zeros(1, 1, 1, 18), mask=zeros(1, 1, 1, 9)),
                 dict(dilation_rate=3), ValueError, "kernel",
                 id="dilated_kernel_larger_than_input"),
    pytest.param(lambda: dict(offsets=zeros(1, 3, 3, 18, dtype=tf.float64)), {}, TypeError,
                 "offsets", id="offsets_dtype"),
    pytest.param(lambda: dict(offsets=zeros(1, 3, 3, 18, dtype=tf.int32)), {}, TypeError,
                 "offsets", id="offsets_integer"),
    pytest.param(lambda: dict(mask=zeros(1, 3, 3, 9, dtype=tf.float16)), {}, TypeError,
                 "mask", id="mask_dtype"),
    pytest.param(lambda: dict(kernel=zeros(3, 3, 4, 6, dtype=tf.bfloat16)), {}, TypeError,
                 "kernel", id="kernel_dtype"),
    pytest.param(lambda: dict(bias=zeros(6, dtype=tf.float64)), {}, TypeError, "bias",
                 id="bias_dtype"),
    pytest.param(lambda: dict(inputs=zeros(1, 5, 5, 4, dtype=tf.int32)), {}, TypeError,
                 "inputs", id="inputs_int32"),
    pytest.param(lambda: dict(inputs=zeros(1, 5, 5, 4, dtype=tf.int64),
                              offsets=zeros(1, 3, 3, 18, dtype=tf.int64)), {}, TypeError,
                 "inputs", id="inputs_int64"),
    pytest.param(lambda: dict(inputs=zeros(1, 5, 5, 4, dtype=tf.complex64)), {}, TypeError,
                 "inputs", id="inputs_complex"),
]


@pytest.mark.parametrize("overrides, kwargs, error, match", EAGER_ERRORS)
def test_bad_argument_raises(overrides, kwargs, error, match):
    with pytest.raises(error, match=match):
        deform_conv2d(**{**valid_args(), **overrides()}, **kwargs)


def call_traced(args, kwargs, rank_known=True):
    """Calls the op through a tf.function that knows no dimension (or not even the rank)
    of any argument, so that only the kernel can check the shapes."""
    names = [name for name in TENSOR_NAMES if args.get(name) is not None]
    specs = [tf.TensorSpec([None] * args[n].shape.rank if rank_known else None, args[n].dtype)
             for n in names]
    fn = tf.function(lambda *tensors: deform_conv2d(**dict(zip(names, tensors)), **kwargs),
                     input_signature=specs)
    return fn(*(args[n] for n in names))


# (overrides of valid_args, keyword arguments, match); shapes are only known at run time.
RUNTIME_ERRORS = [
    pytest.param(lambda: dict(offsets=zeros(1, 4, 3, 18)), {}, "offsets", id="offsets_height"),
    pytest.param(lambda: dict(offsets=zeros(1, 3, 4, 18)), {}, "offsets", id="offsets_width"),
    pytest.param(lambda: dict(offsets=zeros(1, 3, 3, 16)), {}, "offsets",
                 id="offsets_channels"),
    pytest.param(lambda: dict(offsets=zeros(2, 3, 3, 18)), {}, "offsets", id="offsets_batch"),
    pytest.param(lambda: dict(mask=zeros(1, 2, 3, 9)), {}, "mask", id="mask_height"),
    pytest.param(lambda: dict(mask=zeros(1, 3, 3, 8)), {}, "mask", id="mask_channels"),
    pytest.param(lambda: dict(mask=zeros(2, 3, 3, 9)), {}, "mask", id="mask_batch"),
    pytest.param(lambda: dict(bias=zeros(7)), {}, "bias", id="bias_length"),
    pytest.param(lambda: dict(kernel=zeros(3, 3, 1, 6)), dict(groups=3), "groups",
                 id="channels_not_divisible_by_groups"),
    pytest.param(lambda: dict(offsets=zeros(1, 3, 3, 54), mask=zeros(1, 3, 3, 27)),
                 dict(deformable_groups=3), "deformable_groups",
                 id="channels_not_divisible_by_deformable_groups"),
    pytest.param(lambda: dict(kernel=zeros(3, 3, 3, 6)), {}, "kernel", id="kernel_channels"),
    pytest.param(lambda: dict(kernel=zeros(3, 3, 2, 5), bias=zeros(5)), dict(groups=2),
                 "kernel", id="filters_not_divisible_by_groups"),
    pytest.param(lambda: dict(inputs=zeros(1, 2, 5, 4)), {}, "kernel",
                 id="kernel_larger_than_input"),
    pytest.param(lambda: {}, dict(dilation_rate=(1, 3)), "kernel",
                 id="dilated_kernel_larger_than_input"),
]


@pytest.mark.parametrize("data_format", DATA_FORMATS)
@pytest.mark.parametrize("overrides, kwargs, match", RUNTIME_ERRORS)
def test_bad_shape_at_run_time_raises(overrides, kwargs, match, data_format):
    args = {name: to_layout(name, value, data_format)
            for name, value in {**valid_args(), **overrides()}.items()}
    with pytest.raises(InvalidArgumentError, match=match):
        call_traced(args, dict(kwargs, data_format=data_format))


@pytest.mark.parametrize("data_format", DATA_FORMATS)
@pytest.mark.parametrize("name, shape", [
    ("inputs", (1, 5, 5)), ("inputs", (1, 1, 5, 5, 4)), ("offsets", (1, 3, 54)),
    ("mask", (1, 3, 3, 9, 1)), ("kernel", (3, 3, 24)), ("bias", (1, 6)),
])
def test_bad_rank_at_run_time_raises(name, shape, data_format):
    args = valid_args(data_format)
    args[name] = zeros(*shape)
    # The kernel calls its first input "input"; under channels_first a shape check
    # named after the argument runs before the transpose to channels_last.
    pattern = name.removesuffix("s") + "s?[ _]must"
    with pytest.raises(InvalidArgumentError, match=pattern):
        call_traced(args, dict(data_format=data_format), rank_known=False)


def raw_args(op):
    """Positional arguments of a valid call of the raw forward or gradient op."""
    last = zeros(6) if op == "forward" else zeros(1, 3, 3, 6)
    return [zeros(1, 5, 5, 4), zeros(1, 3, 3, 18), zeros(1, 3, 3, 9), zeros(3, 3, 4, 6), last]


def call_raw(op, args, attrs):
    fn = lib.dcn_deform_conv2d if op == "forward" else lib.dcn_deform_conv2d_grad
    return fn(*args, **attrs)


RAW_ATTR_ERRORS = [
    pytest.param(dict(padding="EXPLICIT", explicit_paddings=[1, 1, 1]), "explicit_paddings",
                 id="three_explicit_paddings"),
    pytest.param(dict(padding="EXPLICIT", explicit_paddings=[]), "explicit_paddings",
                 id="no_explicit_paddings"),
    pytest.param(dict(padding="EXPLICIT", explicit_paddings=[1, -1, 0, 0]),
                 "explicit_paddings", id="negative_explicit_padding"),
    pytest.param(dict(padding="VALID", explicit_paddings=[1, 1, 1, 1]), "explicit_paddings",
                 id="explicit_paddings_with_valid"),
    pytest.param(dict(padding="FULL"), "padding", id="unknown_padding"),
    pytest.param(dict(strides=[0, 1]), "strides", id="zero_stride"),
    pytest.param(dict(strides=[1, -3]), "strides", id="negative_stride"),
    pytest.param(dict(strides=[1]), "strides", id="one_stride"),
    pytest.param(dict(strides=[1, 1, 1, 1]), "strides", id="four_strides"),
    pytest.param(dict(dilations=[1, 0]), "dilation", id="zero_dilation"),
    pytest.param(dict(dilations=[2, 2, 2]), "dilation", id="three_dilations"),
    pytest.param(dict(groups=0), "groups", id="zero_groups"),
    pytest.param(dict(deformable_groups=-1), "deformable_groups",
                 id="negative_deformable_groups"),
]


@pytest.mark.parametrize("op", ["forward", "grad"])
@pytest.mark.parametrize("attrs, match", RAW_ATTR_ERRORS)
def test_raw_op_rejects_bad_attributes(attrs, match, op):
    with pytest.raises(InvalidArgumentError, match=match):
        call_raw(op, raw_args(op), attrs)
    # The shape function, which runs when a graph is built, refuses them as well.
    with pytest.raises((ValueError, InvalidArgumentError), match=match):
        tf.function(lambda: call_raw(op, raw_args(op), attrs))()


# (argument index, shape, attributes, match); index 4 is bias or output_grad.
RAW_SHAPE_ERRORS = [
    pytest.param(0, (1, 5, 5), {}, "input", id="input_rank"),
    pytest.param(0, (1, 5, 5, 0), {}, "input", id="input_no_channels"),
    pytest.param(0, (1, 2, 5, 4), {}, "kernel", id="kernel_larger_than_input"),
    pytest.param(1, (1, 3, 4, 18), {}, "offsets", id="offsets_width"),
    pytest.param(1, (1, 3, 3, 18, 1), {}, "offsets", id="offsets_rank"),
    pytest.param(1, (2, 3, 3, 18), {}, "offsets", id="offsets_batch"),
    pytest.param(2, (1, 3, 3, 8), {}, "mask", id="mask_channels"),
    pytest.param(2, (1, 3, 3), {}, "mask", id="mask_rank"),
    pytest.param(3, (3, 3, 24), {}, "kernel", id="kernel_rank"),
    pytest.param(3, (0, 3, 4, 6), {}, "kernel", id="kernel_empty"),
    pytest.param(3, (3, 3, 3, 6), {}, "kernel", id="kernel_channels"),
    pytest.param(3, (3, 3, 4, 6), dict(groups=2), "kernel", id="kernel_channels_groups"),
    pytest.param(3, (3, 3, 2, 5), dict(groups=2), "kernel", id="filters_not_divisible"),
    pytest.param(3, (3, 3, 1, 6), dict(groups=3), "groups", id="channels_not_divisible"),
    pytest.param(2, (1, 3, 3, 27), dict(deformable_groups=3), "deformable_groups",
                 id="channels_not_divisible_by_deformable_groups"),
]


@pytest.mark.parametrize("op", ["forward", "grad"])
@pytest.mark.parametrize("index, shape, attrs, match", RAW_SHAPE_ERRORS)
def test_raw_op_rejects_bad_shapes(index, shape, attrs, match, op):
    args = raw_args(op)
    args[index] = zeros(*shape)
    with pytest.raises(InvalidArgumentError, match=match):
        call_raw(op, args, attrs)


@pytest.mark.parametrize("op, shape, match", [
    ("forward", (5,), "bias"),
    ("forward", (1, 6), "bias"),
    ("grad", (1, 3, 3, 5), "output_grad"),
    ("grad", (2, 3, 3, 6), "output_grad"),
    ("grad", (1, 3, 2, 6), "output_grad"),
    ("grad", (1, 3, 3), "output_grad"),
])
def test_raw_op_rejects_bad_bias_or_output_grad(op, shape, match):
    args = raw_args(op)
    args[4] = zeros(*shape)
    with pytest.raises(InvalidArgumentError, match=match):
        call_raw(op, args, {})


# Calls whose sizes overflow 64-bit arithmetic. They run in a child process, so that a
# crash fails its test instead of ending the session.
OVERFLOW_CASES = {
    "raw_huge_strides": "lib.dcn_deform_conv2d(x, off, m, k, b, strides=[2**62, 2**62])",
    "raw_huge_explicit_paddings": (
        "lib.dcn_deform_conv2d_grad(x, off, m, k, tf.zeros([1, 3, 3, 6]), "
        "padding='EXPLICIT', explicit_paddings=[2**40] * 4)"),
    "traced_huge_dilation": "traced(dilation_rate=(2**62, 1))",
}

_CHILD = """
import sys
import tensorflow as tf
from keras_dcn._library import ops as lib
from keras_dcn.ops import deform_conv2d

x, off, m = tf.zeros([1, 5, 5, 4]), tf.zeros([1, 3, 3, 18]), tf.zeros([1, 3, 3, 9])
k, b = tf.zeros([3, 3, 4, 6]), tf.zeros([6])

def traced(**kwargs):
    spec = tf.TensorSpec([None] * 4)
    fn = tf.function(lambda *t: deform_conv2d(t[0], t[1], t[3], t[2], b, **kwargs),
                     input_signature=[spec] * 4)
    return fn(x, off, m, k)

cases = %r
for name in sys.argv[1:]:
    print("START", name, flush=True)
    try:
        eval(cases[name])
        outcome = "no error"
    except Exception as error:
        outcome = type(error).__name__ + ": " + " ".join(str(error).split())
    print("RESULT", name, outcome, flush=True)
""" % (OVERFLOW_CASES,)


@pytest.fixture(scope="module")
def overflow_outcomes():
    """{case: the error it raised, or how its process ended}. One child runs the cases
    in turn; after a crash, a new one goes on with the next case."""
    outcomes, pending = {}, list(OVERFLOW_CASES)
    while pending:
        child = subprocess.run([sys.executable, "-c", _CHILD, *pending], cwd=REPO_ROOT,
                               capture_output=True, text=True, timeout=300)
        current = None
        for line in child.stdout.splitlines():
            word, _, rest = line.partition(" ")
            name, _, outcome = rest.partition(" ")
            if word == "START":
                current = name
            elif word == "RESULT":
                outcomes[name], current = outcome, None
        if child.returncode != 0:
            tail = " ".join(child.stderr.split()[-30:])
            outcomes[current or pending[0]] = f"process died (exit {child.returncode}): ...{tail}"
        pending = [name for name in pending if name not in outcomes]
    return outcomes


@pytest.mark.slow
@pytest.mark.parametrize("case", list(OVERFLOW_CASES))
def test_overflowing_sizes_raise_instead_of_crashing(case, overflow_outcomes):
    outcome = overflow_outcomes[case]
    assert outcome.startswith(("InvalidArgumentError", "ValueError")), outcome
