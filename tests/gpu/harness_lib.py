"""ctypes bindings of the GPU harness library (harness.cu), shared by run_harness.py
(CUDA build, torch tensors) and test_device_code_on_host.py (host build, NumPy
arrays). Callers pass raw addresses; nothing here imports TensorFlow or torch."""

import ctypes
import dataclasses
import os
import pathlib
import subprocess

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent.parent
BUILD_DIR = pathlib.Path(os.environ.get("DCN_HARNESS_BUILD_DIR", HERE / "build"))
GPU_LIBRARY = BUILD_DIR / "libdcn_gpu_harness.so"
HOST_LIBRARY = BUILD_DIR / "libdcn_host_harness.so"

DTYPE_CODES = {"float16": 0, "bfloat16": 1, "float32": 2, "float64": 3}


def _sources():
    kernels = ROOT / "tf_ops" / "cc" / "kernels" / "portable"
    return [HERE / "harness.cu", HERE / "build.sh", *kernels.glob("*.cuh"),
            *kernels.glob("*.h")]


def build(host):
    """Builds the harness library if it is missing or older than its sources, and
    returns its path."""
    library = HOST_LIBRARY if host else GPU_LIBRARY
    newest = max(p.stat().st_mtime for p in _sources())
    if not library.exists() or library.stat().st_mtime < newest:
        command = ["bash", str(HERE / "build.sh")] + (["--host"] if host else [])
        subprocess.run(command, check=True, env=dict(os.environ, DCN_HARNESS_BUILD_DIR=str(BUILD_DIR)))
    return library


@dataclasses.dataclass
class ConvGeometry:
    """The fields of DeformConvGeometry (tf_ops/cc/kernels/portable/deform_conv.h)."""

    batch: int
    in_height: int
    in_width: int
    in_channels: int
    out_height: int
    out_width: int
    filters: int
    kernel_h: int
    kernel_w: int
    stride_h: int = 1
    stride_w: int = 1
    dilation_h: int = 1
    dilation_w: int = 1
    pad_top: int = 0
    pad_left: int = 0
    groups: int = 1
    deformable_groups: int = 1

    @classmethod
    def make(cls, batch, height, width, channels, filters, kernel=(3, 3), strides=(1, 1),
             pads=(0, 0, 0, 0), dilations=(1, 1), groups=1, deformable_groups=1):
        """pads = (top, bottom, left, right); output size as a convolution's."""
        kh, kw = kernel
        top, bottom, left, right = pads
        out_h = (height + top + bottom - ((kh - 1) * dilations[0] + 1)) // strides[0] + 1
        out_w = (width + left + right - ((kw - 1) * dilations[1] + 1)) // strides[1] + 1
        return cls(batch, height, width, channels, out_h, out_w, filters, kh, kw,
                   strides[0], strides[1], dilations[0], dilations[1], top, left,
                   groups, deformable_groups)

    def array(self):
        values = [getattr(self, f.name) for f in dataclasses.fields(self)]
        return (ctypes.c_int64 * len(values))(*values)

    # Shapes of the channels-last tensors.
    @property
    def taps(self):
        return self.kernel_h * self.kernel_w

    def shapes(self):
        points = self.deformable_groups * self.taps
        out = (self.batch, self.out_height, self.out_width)
        return {
            "input": (self.batch, self.in_height, self.in_width, self.in_channels),
            "offsets": out + (2 * points,),
            "mask": out + (points,),
            "kernel": (self.kernel_h, self.kernel_w, self.in_channels // self.groups,
                       self.filters),
            "bias": (self.filters,),
            "output": out + (self.filters,),
        }


@dataclasses.dataclass
class RoiGeometry:
    """The fields of DeformRoiPoolGeometry (tf_ops/cc/kernels/portable/deform_roi_pool.h)."""

    batch: int
    height: int
    width: int
    channels: int
    num_rois: int
    out_height: int = 7
    out_width: int = 7
    sampling_ratio: int = 2
    aligned: bool = True
    spatial_scale: float = 1.0
    gamma: float = 0.1

    def arrays(self):
        ints = [self.batch, self.height, self.width, self.channels, self.num_rois,
                self.out_height, self.out_width, self.sampling_ratio, int(self.aligned)]
        return ((ctypes.c_int64 * 9)(*ints),
                (ctypes.c_double * 2)(self.spatial_scale, self.gamma))


def _tuning(tuning):
    """None, or (column_elements, split_k_rows, wide_index)."""
    if tuning is None:
        return None
    return (ctypes.c_int64 * 3)(*[int(v) for v in tuning])


class Harness:
    """The library's functions; pointer arguments are integer addresses."""

    def __init__(self, path):
        self.lib = ctypes.CDLL(str(path))
        p, i64p = ctypes.c_void_p, ctypes.POINTER(ctypes.c_int64)
        dp, u64p = ctypes.POINTER(ctypes.c_double), ctypes.POINTER(ctypes.c_uint64)
        c_int = ctypes.c_int
        signatures = {
            "dcn_has_cuda": [],
            "dcn_conv_scratch_bytes": [c_int, c_int, i64p, i64p, u64p],
            "dcn_conv_forward": [c_int, i64p, i64p] + [p] * 8,
            "dcn_conv_backward": [c_int, i64p, i64p] + [p] * 12,
            "dcn_roi_pool_scratch_bytes": [c_int, i64p, dp, u64p],
            "dcn_roi_pool_forward": [c_int, i64p, dp, c_int] + [p] * 6,
            "dcn_roi_pool_backward": [c_int, i64p, dp, c_int] + [p] * 10,
        }
        for name, argtypes in signatures.items():
            function = getattr(self.lib, name)
            function.argtypes = argtypes
            function.restype = ctypes.c_int
        self.has_cuda = bool(self.lib.dcn_has_cuda())

    @staticmethod
    def _check(name, status):
        if status != 0:
            raise RuntimeError(f"{name} failed with status {status}")

    def conv_scratch_bytes(self, dtype, backward, geometry, tuning=None):
        size = ctypes.c_uint64()
        self._check("dcn_conv_scratch_bytes", self.lib.dcn_conv_scratch_bytes(
            DTYPE_CODES[dtype], int(backward), geometry.array(), _tuning(tuning),
            ctypes.byref(size)))
        return size.value

    def conv_forward(self, dtype, geometry, input, offsets, mask, kernel, bias, output,
                     scratch, stream=0, tuning=None):
        self._check("dcn_conv_forward", self.lib.dcn_conv_forward(
            DTYPE_CODES[dtype], geometry.array(), _tuning(tuning), input, offsets, mask,
            kernel, bias, output, scratch, stream))

    def conv_backward(self, dtype, geometry, input, offsets, mask, kernel, output_grad,
                      input_grad, offsets_grad, mask_grad, kernel_grad, bias_grad,
                      scratch, stream=0, tuning=None):
        self._check("dcn_conv_backward", self.lib.dcn_conv_backward(
            DTYPE_CODES[dtype], geometry.array(), _tuning(tuning), input, offsets, mask,
            kernel, output_grad, input_grad, offsets_grad, mask_grad, kernel_grad,
            bias_grad, scratch, stream))

    def roi_pool_scratch_bytes(self, dtype, geometry):
        size = ctypes.c_uint64()
        ints, floats = geometry.arrays()
        self._check("dcn_roi_pool_scratch_bytes", self.lib.dcn_roi_pool_scratch_bytes(
            DTYPE_CODES[dtype], ints, floats, ctypes.byref(size)))
        return size.value

    def roi_pool_forward(self, dtype, geometry, features, rois, offsets, mask, output,
                         stream=0, wide_index=False):
        ints, floats = geometry.arrays()
        self._check("dcn_roi_pool_forward", self.lib.dcn_roi_pool_forward(
            DTYPE_CODES[dtype], ints, floats, int(wide_index), features, rois, offsets,
            mask, output, stream))

    def roi_pool_backward(self, dtype, geometry, features, rois, offsets, mask,
                          output_grad, features_grad, offsets_grad, mask_grad, scratch,
                          stream=0, wide_index=False):
        ints, floats = geometry.arrays()
        self._check("dcn_roi_pool_backward", self.lib.dcn_roi_pool_backward(
            DTYPE_CODES[dtype], ints, floats, int(wide_index), features, rois, offsets,
            mask, output_grad, features_grad, offsets_grad, mask_grad, scratch, stream))
