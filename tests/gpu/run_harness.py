"""Checks and times the CUDA kernels of keras-dcn without TensorFlow.

On a machine with a CUDA GPU, nvcc, PyTorch and torchvision:

    python tests/gpu/run_harness.py              # build if needed, check, time
    python tests/gpu/run_harness.py --no-timing  # checks only

The kernels of tf_ops/cc/kernels/portable/deform_conv.cuh and deform_roi_pool.cuh are
built into tests/gpu/build/libdcn_gpu_harness.so (tests/gpu/build.sh) and called through
ctypes on torch CUDA tensors, on torch's current stream. Checks, in float16,
bfloat16, float32 and float64:
  * deform_conv2d forward and every gradient against torchvision.ops.deform_conv2d
    (computed in float64 from the same values; ours is channels-last, torchvision's
    NCHW), with sampling points kept inside the image, where both follow the same
    rule; border points (y <= -1, ...) separately: zero offset / mask gradient;
  * the same with tiny column chunks, split-K and 64-bit indices;
  * deform_roi_pool forward and gradients against a small torch reference (autograd
    of the formulas of API.md, in float64).
Then the forward and backward kernels are timed against torchvision's on the 3x3
convolutions of ResNet-50's conv3-conv5 (batch 2, 800x1216 image). Exit status 1 if
any check fails.
"""

import argparse
import math
import pathlib
import sys

import numpy as np
import torch
import torchvision

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))
from tests.gpu import harness_lib  # noqa: E402

DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16,
          "float32": torch.float32, "float64": torch.float64}
# Error bound: atol * (largest reference magnitude) + rtol * |reference|. The half
# types mostly pay for the rounding of their results.
TOLERANCES = {"float16": (2e-3, 4e-3), "bfloat16": (1.6e-2, 3e-2),
              "float32": (1e-4, 1e-4), "float64": (1e-9, 1e-9)}
DEVICE = "cuda"


class Report:
    def __init__(self):
        self.rows = []
        self.failures = 0

    def compare(self, check, dtype, name, got, want, mask=None):
        got = got.detach().to(torch.float64)
        want = want.detach().to(torch.float64)
        if mask is not None:
            got, want = got[mask], want[mask]
        atol, rtol = TOLERANCES[dtype]
        scale = max(1.0, float(want.abs().max())) if want.numel() else 1.0
        error = (got - want).abs()
        bound = atol * scale + rtol * want.abs()
        ok = bool(torch.isfinite(got).all()) and bool((error <= bound).all())
        worst = float((error / scale).max()) if error.numel() else 0.0
        self.rows.append((check, dtype, name, worst, ok))
        self.failures += not ok

    def expect(self, check, dtype, name, ok, detail=""):
        self.rows.append((check, dtype, name + detail, 0.0, bool(ok)))
        self.failures += not ok

    def print(self):
        print(f"{'check':<34} {'dtype':<9} {'tensor':<22} {'max err/scale':>13}  result")
        for check, dtype, name, worst, ok in self.rows:
            print(f"{check:<34} {dtype:<9} {name:<22} {worst:13.2e}  "
                  f"{'ok' if ok else 'FAIL'}")
        print(f"{len(self.rows) - self.failures} passed, {self.failures} failed")


def ptr(tensor):
    return tensor.data_ptr() if tensor is not None else None


def stream():
    return torch.cuda.current_stream().cuda_stream


def nhwc(t):
    return t.permute(0, 2, 3, 1).contiguous()


def scratch_tensor(size):
    return torch.empty(max(size, 1), dtype=torch.uint8, device=DEVICE)


# ------------------------------------------------------------------ deform_conv2d

def conv_geometry(batch, height, width, channels, filters, kernel, stride, pad,
                  dilation, groups, dg):
    return harness_lib.ConvGeometry.make(
        batch, height, width, channels, filters, kernel=kernel, strides=stride,
        pads=(pad[0], pad[0], pad[1], pad[1]), dilations=dilation, groups=groups,
        deformable_groups=dg)


def sampling_base(geometry):
    """[Ho, Wo, kh, kw] grids of the sampling positions before the offsets."""
    g = geometry
    ho = torch.arange(g.out_height, device=DEVICE, dtype=torch.float64)
    wo = torch.arange(g.out_width, device=DEVICE, dtype=torch.float64)
    i = torch.arange(g.kernel_h, device=DEVICE, dtype=torch.float64)
    j = torch.arange(g.kernel_w, device=DEVICE, dtype=torch.float64)
    y = (ho * g.stride_h - g.pad_top)[:, None, None, None] + (i * g.dilation_h)[:, None]
    x = (wo * g.stride_w - g.pad_left)[None, :, None, None] + (j * g.dilation_w)
    shape = (g.out_height, g.out_width, g.kernel_h, g.kernel_w)
    return y.expand(shape), x.expand(shape)


def conv_inputs(geometry, seed, inside=True, zero_offsets=False):
    """NCHW torch inputs in float64. With `inside`, every sampling point lies in
    [-0.9, H - 0.1] x [-0.9, W - 0.1], away from the border rule's lines."""
    g = geometry
    gen = torch.Generator(device="cpu").manual_seed(seed)

    def randn(*shape):
        return torch.randn(*shape, generator=gen, dtype=torch.float64).to(DEVICE)

    x = randn(g.batch, g.in_channels, g.in_height, g.in_width)
    w = randn(g.filters, g.in_channels // g.groups, g.kernel_h, g.kernel_w) / math.sqrt(
        g.taps * g.in_channels / g.groups)
    bias = randn(g.filters)
    dg, taps = g.deformable_groups, g.taps
    offsets = randn(g.batch, dg, g.kernel_h, g.kernel_w, 2, g.out_height, g.out_width)
    offsets *= 1.5
    if zero_offsets:
        offsets.zero_()
    elif inside:
        base_y, base_x = sampling_base(g)  # [Ho, Wo, kh, kw]
        base_y = base_y.permute(2, 3, 0, 1)
        base_x = base_x.permute(2, 3, 0, 1)
        y = (base_y + offsets[:, :, :, :, 0]).clamp(-0.9, g.in_height - 0.1)
        xx = (base_x + offsets[:, :, :, :, 1]).clamp(-0.9, g.in_width - 0.1)
        offsets = torch.stack([y - base_y, xx - base_x], dim=4)
    offsets = offsets.reshape(g.batch, 2 * dg * taps, g.out_height, g.out_width)
    mask = torch.rand(g.batch, dg * taps, g.out_height, g.out_width, generator=gen,
                      dtype=torch.float64).to(DEVICE)
    grad = randn(g.batch, g.filters, g.out_height, g.out_width)
    return dict(x=x, w=w, bias=bias, offsets=offsets, mask=mask, grad=grad)


def torchvision_conv(geometry, t):
    """Forward and gradients of torchvision's op in float64 on the inputs `t`."""
    g = geometry
    leaves = {k: t[k].detach().to(torch.float64).requires_grad_()
              for k in ("x", "offsets", "w", "mask", "bias")}
    out = torchvision.ops.deform_conv2d(
        leaves["x"], leaves["offsets"], leaves["w"], leaves["bias"],
        stride=(g.stride_h, g.stride_w), padding=(g.pad_top, g.pad_left),
        dilation=(g.dilation_h, g.dilation_w), mask=leaves["mask"])
    grads = torch.autograd.grad(out, list(leaves.values()), t["grad"].to(torch.float64))
    return out, dict(zip(leaves, grads))


class OurConv:
    """Our kernels on channels-last copies of NCHW inputs."""

    def __init__(self, lib, geometry, dtype, t, tuning=None):
        self.lib, self.g, self.dtype, self.tuning = lib, geometry, dtype, tuning
        cast = DTYPES[dtype]
        self.x = nhwc(t["x"]).to(cast)
        self.offsets = nhwc(t["offsets"]).to(cast)
        self.mask = nhwc(t["mask"]).to(cast)
        self.kernel = t["w"].permute(2, 3, 1, 0).contiguous().to(cast)
        self.bias = t["bias"].to(cast).contiguous()
        self.grad = nhwc(t["grad"]).to(cast)
        shapes = geometry.shapes()
        self.output = torch.empty(shapes["output"], dtype=cast, device=DEVICE)
        self.grads = {k: torch.empty(shapes[k], dtype=cast, device=DEVICE)
                      for k in ("input", "offsets", "mask", "kernel", "bias")}
        self.forward_scratch = scratch_tensor(lib.conv_scratch_bytes(dtype, False, geometry, tuning))
        self.backward_scratch = scratch_tensor(lib.conv_scratch_bytes(dtype, True, geometry, tuning))

    def values(self):
        """The inputs as our dtype rounded them, back in NCHW float64."""
        def back(t):
            return t.to(torch.float64).permute(0, 3, 1, 2).contiguous()
        return dict(x=back(self.x), offsets=back(self.offsets), mask=back(self.mask),
                    w=self.kernel.to(torch.float64).permute(3, 2, 0, 1).contiguous(),
                    bias=self.bias.to(torch.float64), grad=back(self.grad))

    def forward(self):
        self.lib.conv_forward(self.dtype, self.g, ptr(self.x), ptr(self.offsets),
                              ptr(self.mask), ptr(self.kernel), ptr(self.bias),
                              ptr(self.output), ptr(self.forward_scratch), stream(),
                              tuning=self.tuning)

    def backward(self):
        gr = self.grads
        self.lib.conv_backward(self.dtype, self.g, ptr(self.x), ptr(self.offsets),
                               ptr(self.mask), ptr(self.kernel), ptr(self.grad),
                               ptr(gr["input"]), ptr(gr["offsets"]), ptr(gr["mask"]),
                               ptr(gr["kernel"]), ptr(gr["bias"]),
                               ptr(self.backward_scratch), stream(), tuning=self.tuning)


CONV_CASES = {
    # name: (batch, H, W, C, filters, kernel, stride, pad, dilation, groups, dg)
    "3x3 pad1": (2, 9, 11, 16, 24, (3, 3), (1, 1), (1, 1), (1, 1), 1, 1),
    "3x3 s2 d2 groups2 dg4": (2, 13, 10, 24, 20, (3, 3), (2, 2), (2, 2), (2, 2), 2, 4),
    "2x3 groups3 dg2 (runs cross)": (1, 8, 9, 18, 9, (2, 3), (1, 2), (1, 0), (1, 1), 3, 2),
    "1x1 wide": (3, 6, 7, 70, 130, (1, 1), (1, 1), (0, 0), (1, 1), 1, 1),
    "3x3 C=256 (long K)": (1, 12, 14, 256, 80, (3, 3), (1, 1), (1, 1), (1, 1), 1, 1),
}


# (label, (column elements, split-K rows, 64-bit indices)); None: the defaults.
CONV_TUNINGS = (("", None), (" chunked, int64", (977, 64, 1)), (" split-K", (1 << 24, 48, 0)))


def check_conv(lib, report, dtypes):
    for case, params in CONV_CASES.items():
        geometry = conv_geometry(*params)
        base = conv_inputs(geometry, seed=len(case))
        for dtype in dtypes:
            for label, tuning in CONV_TUNINGS:
                ours = OurConv(lib, geometry, dtype, base, tuning)
                ours.forward()
                ours.backward()
                torch.cuda.synchronize()
                out, grads = torchvision_conv(geometry, ours.values())
                check = case + label
                report.compare(check, dtype, "output", ours.output, nhwc(out))
                report.compare(check, dtype, "input grad", ours.grads["input"],
                               nhwc(grads["x"]))
                report.compare(check, dtype, "offsets grad", ours.grads["offsets"],
                               nhwc(grads["offsets"]))
                report.compare(check, dtype, "mask grad", ours.grads["mask"],
                               nhwc(grads["mask"]))
                report.compare(check, dtype, "kernel grad", ours.grads["kernel"],
                               grads["w"].permute(2, 3, 1, 0))
                report.compare(check, dtype, "bias grad", ours.grads["bias"], grads["bias"])


def check_conv_border(lib, report, dtypes):
    """Zero offsets with padding 1: border taps sit exactly at y = -1 or x = -1 (and
    with stride 1, H - 1 + 1 = H for the last row). Values, input / kernel / bias
    gradients match torchvision; border points get zero offset and mask gradients."""
    geometry = conv_geometry(2, 7, 8, 8, 6, (3, 3), (1, 1), (1, 1), (1, 1), 1, 1)
    base = conv_inputs(geometry, seed=7, zero_offsets=True)
    base_y, base_x = sampling_base(geometry)  # [Ho, Wo, kh, kw]
    border = ((base_y <= -1) | (base_y >= geometry.in_height) | (base_x <= -1)
              | (base_x >= geometry.in_width))
    border = border.reshape(1, geometry.out_height, geometry.out_width, -1).expand(
        geometry.batch, -1, -1, -1)
    for dtype in dtypes:
        ours = OurConv(lib, geometry, dtype, base)
        ours.forward()
        ours.backward()
        torch.cuda.synchronize()
        out, grads = torchvision_conv(geometry, ours.values())
        check = "border points (zero offsets)"
        report.compare(check, dtype, "output", ours.output, nhwc(out))
        report.compare(check, dtype, "input grad", ours.grads["input"], nhwc(grads["x"]))
        report.compare(check, dtype, "kernel grad", ours.grads["kernel"],
                       grads["w"].permute(2, 3, 1, 0))
        report.compare(check, dtype, "bias grad", ours.grads["bias"], grads["bias"])
        offsets_grad = ours.grads["offsets"].reshape(*border.shape, 2)
        report.expect(check, dtype, "offsets grad == 0",
                      bool((offsets_grad[border] == 0).all()), " at border")
        report.expect(check, dtype, "mask grad == 0",
                      bool((ours.grads["mask"][border] == 0).all()), " at border")
        inner = ~border
        report.compare(check, dtype, "mask grad (inner)", ours.grads["mask"],
                       nhwc(grads["mask"]), mask=inner)


# ---------------------------------------------------------------- deform_roi_pool

def roi_align_read(image, y, x):
    """RoIAlign's bilinear read of image [H, W, C] at y, x (same shape S): 0 beyond
    [-1, H] x [-1, W], coordinates clamped into the image inside it. [S..., C]."""
    height, width = image.shape[0], image.shape[1]
    inside = (y >= -1) & (y <= height) & (x >= -1) & (x <= width)

    def axis(c, size):
        c = torch.where(inside, c, torch.zeros_like(c))
        c = torch.where(c <= 0, torch.zeros_like(c), c)
        low = torch.floor(c).detach()
        at_end = low >= size - 1
        low = torch.where(at_end, torch.full_like(low, size - 1), low)
        high = torch.where(at_end, low, low + 1)
        c = torch.where(at_end, low, c)
        frac = c - low
        return ((low, 1 - frac), (high, frac))

    result = 0
    for row, wy in axis(y, height):
        for col, wx in axis(x, width):
            weight = torch.where(inside, wy * wx, torch.zeros_like(wy))
            result = result + weight[..., None] * image[row.long(), col.long()]
    return result


def roi_pool_reference(features, rois, offsets, mask, geometry):
    """features [N, H, W, C], offsets [R, oh, ow, 2], mask [R, oh, ow, 1], all
    float64; rois [R, 5], float64 (then spatial_scale and gamma are used as given)
    or float32 (then they are rounded to float32 too, as the kernels of the other
    types do). Returns [R, oh, ow, C]."""
    g = geometry
    oh, ow = g.out_height, g.out_width
    attr_type = float if rois.dtype == torch.float64 else np.float32
    scale = float(attr_type(g.spatial_scale))
    gamma = float(attr_type(g.gamma))
    outputs = []
    for r in range(rois.shape[0]):
        b, x1, y1, x2, y2 = [float(v) for v in rois[r].cpu()]
        x1, y1, x2, y2 = x1 * scale, y1 * scale, x2 * scale, y2 * scale
        shift = 0.5 if g.aligned else 0.0
        roi_w, roi_h = x2 - x1, y2 - y1
        if not g.aligned:
            roi_w, roi_h = max(roi_w, 1.0), max(roi_h, 1.0)
        bin_h, bin_w = roi_h / oh, roi_w / ow
        grid_h = g.sampling_ratio if g.sampling_ratio > 0 else max(math.ceil(bin_h), 1)
        grid_w = g.sampling_ratio if g.sampling_ratio > 0 else max(math.ceil(bin_w), 1)
        ph = torch.arange(oh, device=DEVICE, dtype=torch.float64)[:, None]
        pw = torch.arange(ow, device=DEVICE, dtype=torch.float64)[None, :]
        start_y = y1 - shift + ph * bin_h + gamma * roi_h * offsets[r, :, :, 0]
        start_x = x1 - shift + pw * bin_w + gamma * roi_w * offsets[r, :, :, 1]
        iy = (torch.arange(grid_h, device=DEVICE, dtype=torch.float64) + 0.5) * bin_h / grid_h
        ix = (torch.arange(grid_w, device=DEVICE, dtype=torch.float64) + 0.5) * bin_w / grid_w
        y = start_y[:, :, None, None] + iy[None, None, :, None]
        x = start_x[:, :, None, None] + ix[None, None, None, :]
        y, x = torch.broadcast_tensors(y, x)
        values = roi_align_read(features[int(b)], y, x)  # [oh, ow, gh, gw, C]
        outputs.append(values.mean(dim=(2, 3)) * mask[r])
    return torch.stack(outputs)


ROI_CASES = {
    "aligned ratio2": dict(aligned=True, sampling_ratio=2, spatial_scale=0.25),
    "unaligned adaptive": dict(aligned=False, sampling_ratio=0, spatial_scale=0.125),
}


def check_roi_pool(lib, report, dtypes):
    gen = torch.Generator(device="cpu").manual_seed(3)
    batch, height, width, channels = 2, 20, 24, 40
    features64 = torch.randn(batch, height, width, channels, generator=gen,
                             dtype=torch.float64)
    # Random boxes in image pixels (feature map x 4 .. x 8), some partly outside.
    num_rois = 12
    corners = torch.rand(num_rois, 4, generator=gen, dtype=torch.float64) * \
        torch.tensor([200.0, 170, 200, 170], dtype=torch.float64)
    corners -= 20
    x1, x2 = torch.minimum(corners[:, 0], corners[:, 2]), torch.maximum(corners[:, 0], corners[:, 2])
    y1, y2 = torch.minimum(corners[:, 1], corners[:, 3]), torch.maximum(corners[:, 1], corners[:, 3])
    index = torch.randint(0, batch, (num_rois,), generator=gen).double()
    rois64 = torch.stack([index, x1, y1, x2, y2], dim=1).to(DEVICE)
    # The kernels read float64 boxes for float64 and float32 boxes for the others.
    rois_of = {dtype: rois64 if dtype == "float64" else rois64.float() for dtype in DTYPES}
    for case, params in ROI_CASES.items():
        geometry = harness_lib.RoiGeometry(batch, height, width, channels, num_rois,
                                           out_height=7, out_width=6, gamma=0.1, **params)
        oh, ow = geometry.out_height, geometry.out_width
        offsets64 = torch.randn(num_rois, oh, ow, 2, generator=gen, dtype=torch.float64) * 0.3
        mask64 = torch.rand(num_rois, oh, ow, 1, generator=gen, dtype=torch.float64)
        mask64[0, 0, 0] = 0.0
        grad64 = torch.randn(num_rois, oh, ow, channels, generator=gen, dtype=torch.float64)
        for dtype in dtypes:
            cast = DTYPES[dtype]
            features, offsets, mask, grad = (t.to(DEVICE).to(cast).contiguous() for t in
                                              (features64, offsets64, mask64, grad64))
            output = torch.empty(num_rois, oh, ow, channels, dtype=cast, device=DEVICE)
            grads = [torch.empty_like(t) for t in (features, offsets, mask)]
            scratch = scratch_tensor(lib.roi_pool_scratch_bytes(dtype, geometry))
            rois = rois_of[dtype]
            lib.roi_pool_forward(dtype, geometry, ptr(features), ptr(rois), ptr(offsets),
                                 ptr(mask), ptr(output), stream())
            lib.roi_pool_backward(dtype, geometry, ptr(features), ptr(rois), ptr(offsets),
                                  ptr(mask), ptr(grad), *(ptr(t) for t in grads),
                                  ptr(scratch), stream())
            torch.cuda.synchronize()
            leaves = [t.to(torch.float64).requires_grad_() for t in (features, offsets, mask)]
            want = roi_pool_reference(*leaves[:1], rois, *leaves[1:], geometry)
            want_grads = torch.autograd.grad(want, leaves, grad.to(torch.float64))
            check = f"roi_pool {case}"
            report.compare(check, dtype, "output", output, want)
            for name, got, expected in zip(("features grad", "offsets grad", "mask grad"),
                                           grads, want_grads):
                report.compare(check, dtype, name, got, expected)


# ------------------------------------------------------------------------ timing

def cuda_time(fn, repeats, warmup=3):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return float(np.median(times))


STAGES = (("conv3", 100, 152, 128), ("conv4", 50, 76, 256), ("conv5", 25, 38, 512))


def timing(lib, dtypes, repeats):
    print(f"\nResNet-50 3x3 convolutions, batch 2, 800x1216 image, median of {repeats} "
          f"({torch.cuda.get_device_name()}):")
    print(f"{'stage':<6} {'shape (H x W x C)':<18} {'dtype':<9} {'ours fwd':>9} "
          f"{'tv fwd':>9} {'ratio':>6} {'ours bwd':>9} {'tv bwd':>9} {'ratio':>6}  (ms)")
    for stage, height, width, channels in STAGES:
        geometry = conv_geometry(2, height, width, channels, channels, (3, 3), (1, 1),
                                 (1, 1), (1, 1), 1, 1)
        base = conv_inputs(geometry, seed=1, inside=False)
        for dtype in dtypes:
            ours = OurConv(lib, geometry, dtype, base)
            ours_fwd = cuda_time(ours.forward, repeats)
            ours_bwd = cuda_time(ours.backward, repeats)
            tv_fwd = tv_bwd = float("nan")
            try:
                cast = DTYPES[dtype]
                leaves = [base[k].to(cast).requires_grad_()
                          for k in ("x", "offsets", "w", "mask", "bias")]

                def tv_forward():
                    return torchvision.ops.deform_conv2d(
                        leaves[0], leaves[1], leaves[2], leaves[4], padding=(1, 1),
                        mask=leaves[3])

                tv_fwd = cuda_time(tv_forward, repeats)
                out = tv_forward()
                grad = base["grad"].to(cast)
                tv_bwd = cuda_time(
                    lambda: torch.autograd.grad(out, leaves, grad, retain_graph=True),
                    repeats)
            except RuntimeError as error:  # e.g. a dtype torchvision lacks
                print(f"  (torchvision {dtype}: {str(error).splitlines()[0]})")
            print(f"{stage:<6} {f'{height}x{width}x{channels}':<18} {dtype:<9} "
                  f"{ours_fwd:9.3f} {tv_fwd:9.3f} {tv_fwd / ours_fwd:6.2f} "
                  f"{ours_bwd:9.3f} {tv_bwd:9.3f} {tv_bwd / ours_bwd:6.2f}")
            del ours
            torch.cuda.empty_cache()
    print("ratio = torchvision time / ours (> 1: ours is faster)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--no-timing", action="store_true", help="checks only")
    parser.add_argument("--dtypes", default="float16,bfloat16,float32,float64",
                        help="comma-separated dtypes to check")
    parser.add_argument("--timing-dtypes", default="float32,float16")
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("run_harness.py needs a CUDA GPU (torch.cuda.is_available() is False)")

    lib = harness_lib.Harness(harness_lib.build(host=False))
    print(f"harness: {harness_lib.GPU_LIBRARY}; torch {torch.__version__}, torchvision "
          f"{torchvision.__version__}, GPU {torch.cuda.get_device_name()}")
    dtypes = [d for d in args.dtypes.split(",") if d]
    report = Report()
    check_conv(lib, report, dtypes)
    check_conv_border(lib, report, dtypes)
    check_roi_pool(lib, report, dtypes)
    report.print()
    if not args.no_timing:
        timing(lib, [d for d in args.timing_dtypes.split(",") if d], args.repeats)
    sys.exit(1 if report.failures else 0)


if __name__ == "__main__":
    main()
