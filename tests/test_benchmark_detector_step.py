"""benchmarks.bench_detector_step: the model part each profiled op is counted in, and
the dense layers a deformable variant adds to the regular one, at the demo's shapes."""

import numpy as np
import pytest
import tensorflow as tf
from official.core import task_factory

from benchmarks import bench_detector_step as bench
from models.common import runtime
from models.configs.experiments import SYNTHETIC_EXPERIMENT

SCOPE = "gradient_tape/dcn_mask_rcnn_model/deformable_res_net/deformable_residual_block_5"


@pytest.mark.parametrize("name, part", [
    (f"{SCOPE}/deform_conv2d/deform_conv2d/DcnDeformConv2DGrad/DcnDeformConv2DGrad",
     "deformable conv op"),
    (f"{SCOPE}/deform_conv2d/deform_conv2d/DcnDeformConv2DGrad_1/DcnDeformConv2DGrad",
     "deformable conv op"),
    (f"{SCOPE}/deform_conv2d_1/convolution/Conv2DBackpropFilter/"
     "_MklNativeConv2DBackpropFilter", "offset branches"),
    ("dcn_mask_rcnn_model/deformable_res_net/deformable_residual_block/deform_conv2d/"
     "sub/Sub", "offset branches"),
    ("dcn_mask_rcnn_model/deformable_res_net/deformable_residual_block/deform_conv2d_12/"
     "Sigmoid/Sigmoid", "offset branches"),
    ("gradient_tape/deformable_residual_block_5/deform_conv2d/kernel/Regularizer/mul/Mul",
     "weight decay"),
    ("dcn_mask_rcnn_model/multilevel_deformable_roi_aligner/sibling_branch/MatMul/"
     "_MklMatMul", "RoI sibling branches (fc)"),
    ("gradient_tape/dcn_mask_rcnn_model/multilevel_deformable_roi_aligner/"
     "deform_roi_pool_4/DcnDeformRoiPoolGrad/DcnDeformRoiPoolGrad", "RoI pooling op"),
    # The regular variant's convolutions are the backbone's, whatever their names.
    ("gradient_tape/dcn_mask_rcnn_model/deformable_res_net/residual_block_1/conv2d_1/"
     "Conv2D/Conv2DBackpropInput/_MklNativeConv2DBackpropInput", "backbone"),
    ("dcn_mask_rcnn_model/deformable_res_net/residual_block/undeform_conv2d/Conv2D/"
     "_MklNativeConv2D", "backbone"),
    ("SGD/SGD/update_84/ResourceApplyKerasMomentum/ResourceApplyKerasMomentum",
     "optimizer"),
    ("Iterator::Root::Prefetch/Dataset", "other"),
])
def test_ops_are_counted_in_their_part(name, part):
    assert bench._part(name) == part


@pytest.fixture(scope="module")
def dcnv2():
    overrides = {"task": {"model": {"input_size": [bench.SIZE, bench.SIZE, 3]}}}
    params = runtime.experiment_params(SYNTHETIC_EXPERIMENT, overrides)
    return task_factory.get_task(params.task).build_model(), params


def test_added_layers_are_the_offset_convolutions_and_sibling_branches(dcnv2):
    """ResNet-18's 3x3 convolutions of conv3-conv5 (two per block, two blocks a stage;
    the first of each stage reads the stage before at stride 2), each with a 27-channel
    offset branch (DCNv2: 2 x 9 offsets and 9 mask values), and the two sibling
    branches: 64 RoIs an image pooled to 7x7, 16 to 14x14, of the FPN's 64 channels,
    through two fc layers of 256 and one of 3 values a bin."""
    shapes = bench.added_layer_shapes(*dcnv2)
    expected = []
    for stage, channels in ((3, 128), (4, 256), (5, 512)):
        size = bench.SIZE // 2 ** stage
        expected.append(((bench.BATCH, 2 * size, 2 * size, channels // 2),
                         (3, 3, channels // 2, 27), (2, 2)))
        expected += [((bench.BATCH, size, size, channels), (3, 3, channels, 27),
                      (1, 1))] * 3
    assert [conv[:3] for conv in shapes["convs"]] == expected
    assert {conv[3] for conv in shapes["convs"]} == {"same"}
    assert shapes["fcs"] == [
        (bench.BATCH * 64, [(7 * 7 * 64, 256), (256, 256), (256, 3 * 7 * 7)]),
        (bench.BATCH * 16, [(14 * 14 * 64, 256), (256, 256), (256, 3 * 14 * 14)])]


def test_added_layers_step_runs_and_updates_its_weights(dcnv2):
    """The step's loss is finite and changes from one call to the next on the same
    inputs: the momentum update moved the weights."""
    step = bench.added_layers_step(*dcnv2)
    first, second = float(step()), float(step())
    assert np.isfinite(first) and np.isfinite(second)
    assert second != first


def test_added_layers_compute_in_the_variants_dtype(dcnv2):
    """Under a mixed-precision variant the added layers' products run in its dtype,
    from float32 weights, as the model's own layers do."""
    model, params = dcnv2
    mixed = params.replace(runtime={"mixed_precision_dtype": "bfloat16"})
    step = bench.added_layers_step(model, mixed)
    graph = step.get_concrete_function().graph
    products = [op for op in graph.get_operations() if op.type in ("Conv2D", "MatMul")]
    assert products and {op.get_attr("T") for op in products} == {tf.bfloat16}
    weights = [v for v in graph.variables if v.dtype.is_floating]
    assert weights and {v.dtype for v in weights} == {tf.float32}
    assert np.isfinite(float(step()))
