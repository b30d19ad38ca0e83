"""The Mask R-CNN's training step at the demo's settings: variants side by side, and
where the time of one step goes.

    python -m benchmarks.bench_detector_step [--quick]
        [--variants=regular,dcnv1,dcnv2_convs,dcnv2]
    python -m benchmarks.bench_detector_step --variants=dcnv2:float32,dcnv2:bfloat16

Each variant of `dcn_maskrcnn_synthetic` (and `dcnv2_convs`: DCNv2's deformable
convolutions with plain RoIAlign, so that DCNv2's extra time splits into its
convolutions and its RoI pooling) is built as `make demo` builds it (ResNet-18,
slim heads, 128x128 images, batch 4; in float32, or in the mixed precision a
`variant:dtype` names) and trained on a small synthetic set with its Keras
`train_step`; the steps of the variants are interleaved, so load on the machine
slows all alike, and each time is a median, against the target of at most
STEP_TARGET times the first variant's step. The process's CPU time a step is given
too, and the cores it kept busy (CPU time over wall time).

Timed with them: the dense layers the last variant adds, alone (its offset
convolutions and RoI sibling branches, forward, backward and momentum update, with
oneDNN's kernels, in the variant's dtype). Added to the first variant's step, they
give what a step of the paper's design would take if deformable sampling cost
nothing.

Then steps of the first and of the last variant run under TensorFlow's profiler, and
their op time is added up by the part of the model the op belongs to (from the layer
names in the op's name scope), side by side with the difference, and by op type. Op
times are the ops' own wall times: ops running at the same time on different cores
each count in full, so the parts add up to more than the step.
"""

import argparse
import glob
import json
import os
import re
import statistics
import tempfile
import time
from collections import defaultdict

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402
import tf_keras  # noqa: E402
from tensorflow.python.profiler.internal import _pywrap_profiler_plugin  # noqa: E402

from official.core import task_factory  # noqa: E402

from benchmarks import timing  # noqa: E402
from keras_dcn import tf_keras as dcn_layers  # noqa: E402
from models.common import runtime  # noqa: E402
from models.configs.experiments import SYNTHETIC_EXPERIMENT  # noqa: E402
from models.training import synthetic_runs  # noqa: E402

SIZE = 128
BATCH = 4
# Step time a variant may take against the first (regular) one.
STEP_TARGET = 1.15
# Variants that take one part of DCNv2 alone, to tell where its extra time goes (no
# target): its modulated deformable convolutions in conv3-conv5 with plain RoIAlign.
PLAIN_ROI = {"deformable": False, "modulated": False}
PARTIAL_VARIANTS = {
    "dcnv2_convs": {"backbone": {"dcn_resnet": {"deformable_stages": [3, 4, 5],
                                                "modulated": True}},
                    "roi_aligner": PLAIN_ROI, "mask_roi_aligner": PLAIN_ROI},
}
# Timed with the variants: the dense layers the last variant adds, alone.
ADDED_LAYERS = "added layers alone"
# Parts of the model: the first whose pattern is found in an op's name scope and type
# ("scope/of/the/op/Type"). Every op of a deformable convolution layer (its scope is
# the layer's name, `deform_conv2d` or `deform_conv2d_<n>`) other than the op itself
# belongs to its offset branch: the offset convolution, its gradient scaling, the
# split and the sigmoid. Weight decay is the L2 term of each kernel's regularizer.
PARTS = (
    ("deformable conv op", r"DcnDeformConv2D"),
    ("RoI pooling op", r"DcnDeformRoiPool"),
    ("weight decay", r"Regularizer|L2Loss"),
    ("RoI sibling branches (fc)", r"sibling_branch"),
    ("offset branches", r"(^|/)deform_conv2d(_\d+)?/|offset_kernel|offsets_and_mask"),
    ("backbone", r"backbone|res_net|resnet"),
    ("FPN", r"decoder|fpn"),
    ("RPN head", r"rpn_head"),
    ("proposals, sampling and targets",
     r"roi_generator|roi_sampler|mask_sampler|box_sampler|anchor|box_matcher"),
    ("RoI alignment", r"roi_aligner"),
    ("detection head", r"detection_head"),
    ("mask head", r"mask_head"),
    ("losses", r"loss"),
    ("optimizer", r"SGD|Momentum|apply_gradients|ResourceApply"),
)
_PART_PATTERNS = tuple((part, re.compile(pattern, re.IGNORECASE))
                       for part, pattern in PARTS)


def _machine():
    return f"{timing.cpu_line()}; TensorFlow {tf.__version__}"


def _train_function(name, data, steps):
    """`(step, model, params)` for the variant `name` ("variant" or "variant:dtype")
    trained on `data`: `step()` runs one training step and returns its total loss."""
    variant, _, dtype = name.partition(":")
    parts = PARTIAL_VARIANTS.get(variant)
    params = runtime.experiment_params(
        SYNTHETIC_EXPERIMENT,
        synthetic_runs.budget_overrides(data, SIZE, BATCH, steps,
                                        "custom" if parts else variant,
                                        mixed_precision_dtype=dtype or "float32"),
        {"task": {"model": parts}} if parts else None)
    task = task_factory.get_task(params.task)
    with runtime.mixed_precision(params.runtime.mixed_precision_dtype):
        model = task.build_model()
    model.compile(optimizer=task.create_optimizer(params.trainer.optimizer_config,
                                                  params.runtime))
    batches = iter(task.build_inputs(params.task.train_data))
    function = model.make_train_function()
    # The step's logs (a dict of scalars): reading the total loss waits for the step.
    return (lambda: function(batches)["total_loss"]), model, params


def added_layer_shapes(model, params):
    """The dense layers `model` (a DCN Mask R-CNN as `_train_function` builds it) adds
    to the regular variant, with the shapes of one training step at SIZE, BATCH:

    * `convs`: `(input shape [N, H, W, C], offset kernel shape, strides, padding,
      dilation_rate)` of each deformable convolution's offset branch, read through
      the layers' sampling hook in one forward pass of the backbone;
    * `fcs`: `(rows, [kernel shapes])` of each deformable RoI pooling's sibling branch
      (its fc layers in order); rows are the RoIs of a step, `BATCH` times the
      sampler's RoIs per image.
    """
    convs = []

    def record(layer, inputs, offsets, mask, rois):
        convs.append((tuple(inputs.shape), tuple(layer.offset_kernel.shape),
                      layer.strides, layer.padding, layer.dilation_rate))
        return offsets, mask

    deformable = [m for m in model.backbone.submodules
                  if isinstance(m, dcn_layers.DeformConv2D)]
    for layer in deformable:
        layer.set_sampling_hook(record)
    try:
        model.backbone(tf.zeros([BATCH, SIZE, SIZE, 3]), training=False)
    finally:
        for layer in deformable:
            layer.set_sampling_hook(None)
    config = params.task.model
    fcs = []
    for aligner, per_image in ((model.roi_aligner, config.roi_sampler.num_sampled_rois),
                               (getattr(model, "mask_roi_aligner", None),
                                config.mask_sampler.num_sampled_masks)):
        pool = getattr(aligner, "pool", None)
        if pool is not None:
            kernels = [tuple(v.shape) for v in pool.trainable_variables
                       if v.shape.rank == 2]
            fcs.append((BATCH * per_image, kernels))
    return {"convs": convs, "fcs": fcs}


def added_layers_step(model, params):
    """A function running, on random data, the forward and backward passes and the
    momentum update of the dense layers `model` adds to the regular variant
    (`added_layer_shapes`: offset convolutions and RoI sibling branches), as oneDNN
    runs them in the variant's compute dtype (`params.runtime.mixed_precision_dtype`:
    float32 weights cast to it, as Keras' mixed precision does), and nothing of the
    deformable sampling: what the paper's design costs a step even where deformable
    sampling would cost nothing. None when the model adds no such layers."""
    shapes = added_layer_shapes(model, params)
    if not shapes["convs"] and not shapes["fcs"]:
        return None
    compute = tf.as_dtype(params.runtime.mixed_precision_dtype or "float32")
    rng = tf.random.Generator.from_seed(0)
    variables = []

    def weights(kernel_shape):
        kernel = tf.Variable(rng.normal(kernel_shape) * 0.01)
        bias = tf.Variable(tf.zeros(kernel_shape[-1:]))
        variables.extend((kernel, bias))
        return kernel, bias

    def offset_conv(kernel_shape, strides, padding, dilation):
        kernel, bias = weights(kernel_shape)
        return lambda x: tf.nn.conv2d(x, tf.cast(kernel, compute), strides,
                                      padding.upper(), dilations=dilation) \
            + tf.cast(bias, compute)

    def sibling_branch(kernel_shapes):
        fcs = [weights(shape) for shape in kernel_shapes]

        def apply(x):
            for index, (kernel, bias) in enumerate(fcs):
                x = tf.matmul(x, tf.cast(kernel, compute)) + tf.cast(bias, compute)
                x = tf.nn.relu(x) if index < len(fcs) - 1 else x
            return x
        return apply

    inputs, layers = [], []
    for shape, *conv in shapes["convs"]:
        inputs.append(tf.cast(rng.normal(shape), compute))
        layers.append(offset_conv(*conv))
    for rows, kernel_shapes in shapes["fcs"]:
        inputs.append(tf.cast(rng.normal((rows, kernel_shapes[0][0])), compute))
        layers.append(sibling_branch(kernel_shapes))
    optimizer = tf_keras.optimizers.SGD(0.01, momentum=0.9)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            tape.watch(inputs)
            loss = tf.add_n([tf.reduce_sum(tf.cast(tf.sin(layer(x)), tf.float32))
                             for x, layer in zip(inputs, layers)])
        gradients = tape.gradient(loss, inputs + variables)
        optimizer.apply_gradients(zip(gradients[len(inputs):], variables))
        return loss

    return step


def _part(name):
    """The part of the model (a name in PARTS, or "other") that the op named
    `"scope/of/the/op/Type"` belongs to."""
    for part, pattern in _PART_PATTERNS:
        if pattern.search(name):
            return part
    return "other"


def profile_step(step, logdir, repeats):
    """Self time (ms per step) of the ops `step()` runs, by model part and by op type."""
    tf.profiler.experimental.start(logdir)
    for _ in range(repeats):
        step()
    tf.profiler.experimental.stop()
    paths = glob.glob(os.path.join(logdir, "plugins", "profile", "*", "*.xplane.pb"))
    raw, ok = _pywrap_profiler_plugin.xspace_to_tools_data(paths, "framework_op_stats", {})
    if not ok:
        raise RuntimeError(f"the profiler gave no op statistics: {raw!r}")
    table = json.loads(raw)[0]
    columns = [c["id"] for c in table["cols"]]
    by_part, by_type = defaultdict(float), defaultdict(float)
    for row in table["rows"]:
        values = dict(zip(columns, (cell["v"] for cell in row["c"])))
        if values.get("host_or_device") == "Device" or "IDLE" in values["type"]:
            continue
        ms = values["total_self_time"] / 1000 / repeats
        by_part[_part(values["operation"] + "/" + values["type"])] += ms
        by_type[values["type"]] += ms
    return dict(by_part), dict(by_type)


def run(quick=False, variants=("regular", "dcnv1", "dcnv2_convs", "dcnv2")):
    """Times the variants' steps side by side and profiles the first (the base of the
    ratios) and the last one, to show where the last one's extra time goes."""
    rounds = 6 if quick else 20
    with tempfile.TemporaryDirectory() as folder:
        data = synthetic_runs.prepare_data(os.path.join(folder, "data"), 16, 4, SIZE,
                                           workers=1, train_shards=1)
        built = {v: _train_function(v, data, 1000) for v in variants}
        steps = {v: step for v, (step, _, _) in built.items()}
        _, last_model, last_params = built[variants[-1]]
        added = added_layers_step(last_model, last_params)
        if added is not None:
            steps[ADDED_LAYERS] = added
        times, cpu_times = timing.interleaved_wall_and_cpu_times(steps, rounds, warmup=3)
        medians = {v: statistics.median(t) for v, t in times.items()}
        cpu_medians = {v: statistics.median(t) for v, t in cpu_times.items()}
        started = time.perf_counter()
        base, profiled = variants[0], variants[-1]
        # The profiler's first session carries its start-up cost: a step is thrown away.
        profile_step(steps[base], os.path.join(folder, "profile_warmup"), repeats=1)
        profiles = {v: profile_step(steps[v], os.path.join(folder, f"profile_{i}"),
                                    repeats=10 if quick else 30)
                    for i, v in enumerate(dict.fromkeys((base, profiled)))}
    rows = []
    for v in variants:
        ratio = medians[v] / medians[base]
        rows.append({"variant": v, "step_ms": 1000 * medians[v], "ratio": ratio,
                     "ci": timing.paired_ratio(times[v], times[base]),
                     "cpu_ms": 1000 * cpu_medians[v],
                     "cpu_ratio": cpu_medians[v] / cpu_medians[base],
                     "busy_cores": statistics.median(
                         c / w for c, w in zip(cpu_times[v], times[v])),
                     "target": "" if v == base or v.split(":")[0] in PARTIAL_VARIANTS
                               else timing.verdict(ratio, STEP_TARGET)})
    print(f"\nMask R-CNN training step, {SIZE}x{SIZE}, batch {BATCH} ({_machine()}); "
          f"median of {rounds} interleaved rounds; target: at most {STEP_TARGET}x {base}")
    for row in rows:
        low, high = row["ci"][1:]
        print(f"  {row['variant']:>14}: {row['step_ms']:7.1f} ms  x {base}: "
              f"{row['ratio']:.2f} (90% interval {low:.2f}-{high:.2f})  {row['target']}")
    print(f"CPU time of a step (every thread), x {base}, and the cores it kept busy")
    for row in rows:
        print(f"  {row['variant']:>14}: {row['cpu_ms']:7.1f} ms  x {base}: "
              f"{row['cpu_ratio']:.2f}  {row['busy_cores']:.2f} cores busy")
    floor = None
    if ADDED_LAYERS in medians:
        floor = {"ms": 1000 * medians[ADDED_LAYERS],
                 "cpu_ms": 1000 * cpu_medians[ADDED_LAYERS],
                 "step_ratio": 1 + medians[ADDED_LAYERS] / medians[base]}
        print(f"\nthe offset convolutions and RoI sibling fc layers of {profiled} alone "
              f"(forward, backward, update; in its dtype): {floor['ms']:.1f} ms, CPU "
              f"{floor['cpu_ms']:.1f} ms;\n  with them and free deformable sampling, "
              f"a step would take {floor['step_ratio']:.2f}x {base}'s")
    (base_parts, _), (parts, by_type) = profiles[base], profiles[profiled]
    print(f"\nwhere the steps go (op self time in ms a step, {profiled} against {base}; "
          f"profiled in {time.perf_counter() - started:.0f} s)")
    print(f"  {'part':>32}  {base:>9}  {profiled:>9}  {'extra':>7}")
    for part in sorted(set(parts) | set(base_parts),
                       key=lambda p: -(parts.get(p, 0) - base_parts.get(p, 0))):
        ms, base_ms = parts.get(part, 0.0), base_parts.get(part, 0.0)
        print(f"  {part:>32}  {base_ms:9.1f}  {ms:9.1f}  {ms - base_ms:+7.1f}")
    print(f"  {'total':>32}  {sum(base_parts.values()):9.1f}  {sum(parts.values()):9.1f}"
          f"  {sum(parts.values()) - sum(base_parts.values()):+7.1f}")
    total = sum(parts.values())
    print(f"\ntop op types of the {profiled} step")
    for kind, ms in sorted(by_type.items(), key=lambda item: -item[1])[:15]:
        print(f"  {kind:>32}: {ms:7.1f} ms  {100 * ms / total:5.1f}%")
    return {"machine": _machine(), "cpu": timing.cpu(), "rounds": rounds,
            "step_target": STEP_TARGET, "variants": rows, "profiled": profiled,
            "added_layers": floor,
            "by_part_ms": parts, "by_type_ms": by_type, "base_by_part_ms": base_parts,
            "base_by_type_ms": profiles[base][1]}


def report(result):
    """Writes the result to benchmarks/results/detector_step.json; returns the path."""
    return timing.write_json("detector_step", result)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds")
    parser.add_argument("--variants", default="regular,dcnv1,dcnv2_convs,dcnv2",
                        help="comma-separated, each a variant (or one of "
                             f"{sorted(PARTIAL_VARIANTS)}) or variant:dtype (dtype "
                             "float32, bfloat16 or float16); the first is the base of "
                             "the ratios; it and the last are profiled")
    args = parser.parse_args()
    print("wrote", report(run(args.quick, tuple(args.variants.split(",")))))


if __name__ == "__main__":
    main()
