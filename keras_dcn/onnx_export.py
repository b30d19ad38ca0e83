"""Export of TensorFlow functions and Keras models that use keras_dcn to ONNX.

`deform_conv2d` becomes ONNX's standard `DeformConv` operator (opset 19: offsets in
torchvision's order, the same as ours, with the mask and the bias), between transposes
from and to channels_last. ONNX has no deformable RoI pooling operator, so
`deform_roi_pool` is exported as its composite of standard ops. The conversion is
tf2onnx's (`pip install tf2onnx onnx`), with a handler for our op:

    import keras_dcn.onnx_export
    keras_dcn.onnx_export.convert(
        model, [tf.TensorSpec((1, 224, 224, 3), tf.float32, name="image")],
        "model.onnx")

onnxruntime runs `DeformConv` on CPU from release 1.31.
"""

import tensorflow as tf

from keras_dcn.ops import _implementation
from keras_dcn.ops import _padding

# DeformConv exists from opset 19; tf2onnx 1.17 writes at most opset 18, whose other
# operators opset 19 keeps as they are (it only widens the types some accept).
OPSET = 19
_TF2ONNX_OPSET = 18


def _deform_conv_handler(ctx, node, name, args):
    """Replaces a `DcnDeformConv2D` node of tf2onnx's graph `ctx` by `DeformConv`."""
    inputs, offsets, mask, kernel, bias = node.input
    strides = list(node.get_attr_value("strides"))
    dilations = list(node.get_attr_value("dilations"))
    mode = node.get_attr_value("padding")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    kernel_size = tuple(ctx.get_shape(kernel)[:2])  # static: checked by `_check`
    if mode == "EXPLICIT":
        top, bottom, left, right = node.get_attr_value("explicit_paddings")
    elif mode == "VALID":
        top = bottom = left = right = 0
    else:
        top, bottom, left, right = _padding.resolve(
            tuple(ctx.get_shape(inputs)[1:3]), kernel_size, strides, dilations, "same")
    output = node.output[0]
    shape, dtype = ctx.get_shape(output), ctx.get_dtype(output)
    ctx.remove_node(node.name)

    def channels_first(tensor):
        return ctx.make_node("Transpose", [tensor], attr={"perm": [0, 3, 1, 2]}).output[0]

    weights = ctx.make_node("Transpose", [kernel], attr={"perm": [3, 2, 0, 1]}).output[0]
    deform = ctx.make_node(
        "DeformConv",
        [channels_first(inputs), weights, channels_first(offsets), bias,
         channels_first(mask)],
        attr={"kernel_shape": list(kernel_size), "strides": strides,
              "dilations": dilations, "pads": [top, left, bottom, right],
              "group": node.get_attr_value("groups"),
              "offset_group": node.get_attr_value("deformable_groups")})
    ctx.make_node("Transpose", deform.output, attr={"perm": [0, 2, 3, 1]},
                  outputs=[output], shapes=[shape], dtypes=[dtype])


def _check(graph):
    """Raises ValueError for a `DcnDeformConv2D` of `graph` that `DeformConv` cannot
    express: a kernel of unknown shape, or padding "same" on an image of unknown
    size (ONNX's pads are numbers)."""
    for op in graph.get_operations():
        if op.type != "DcnDeformConv2D":
            continue
        inputs, kernel = op.inputs[0].shape, op.inputs[3].shape
        if not kernel.is_fully_defined():
            raise ValueError(f"{op.name}: the kernel's shape must be static, got {kernel}")
        if op.get_attr("padding") == b"SAME" and None in inputs[1:3]:
            raise ValueError(
                f"{op.name}: padding 'same' needs a static image size in the input "
                f"signature, got inputs of shape {inputs}")


def convert(function, input_signature, output_path=None):
    """The ONNX model (an `onnx.ModelProto`, opset 19) of `function` (a Keras model or
    any callable of TensorFlow tensors), traced on `input_signature` (a list of
    `tf.TensorSpec`; their names become the ONNX inputs'); written to `output_path`
    when given.

    Raises:
      ImportError: tf2onnx or onnx is not installed.
      ValueError: a `deform_conv2d` whose kernel shape, or whose image size under
        padding "same", is not static.
    """
    try:
        import onnx
        import tf2onnx
    except ImportError as error:
        raise ImportError(
            "keras_dcn.onnx_export needs tf2onnx and onnx: pip install tf2onnx onnx") \
            from error
    traced = tf.function(lambda *tensors: function(*tensors))
    with _implementation.standard_ops_only(ops=("deform_roi_pool",)):
        concrete = traced.get_concrete_function(*input_signature)
    _check(concrete.graph)
    model, _ = tf2onnx.convert.from_function(
        tf.function(concrete), input_signature=input_signature, opset=_TF2ONNX_OPSET,
        custom_op_handlers={"DcnDeformConv2D": (_deform_conv_handler, [])})
    for opset in model.opset_import:
        if opset.domain in ("", "ai.onnx"):
            opset.version = OPSET
    onnx.checker.check_model(model)
    if output_path:
        onnx.save(model, output_path)
    return model
