"""The CUDA code compiles with nvcc, on machines without a GPU as well (compile only,
PTX for one architecture): the TensorFlow-free harness over the kernels, and the
TensorFlow launchers (tf_ops/cc/kernels/cuda/*.cu.cc) against the installed
TensorFlow's headers with the flags setup.py uses. Skipped when no nvcc is found."""

import os
import pathlib
import shutil
import subprocess

import pytest

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent.parent
ARCH = "compute_75"  # PTX only: ptxas does not run, which keeps this quick


def _find_nvcc():
    if os.environ.get("CUDA_HOME"):
        nvcc = os.path.join(os.environ["CUDA_HOME"], "bin", "nvcc")
        if os.access(nvcc, os.X_OK):
            return nvcc
    return shutil.which("nvcc")


NVCC = _find_nvcc()
pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    NVCC is None,
    reason="no nvcc ($CUDA_HOME/bin/nvcc or on PATH): the CUDA kernels cannot be "
           "compiled on this machine")]


def _run(command, **kwargs):
    result = subprocess.run(command, capture_output=True, text=True, timeout=900, **kwargs)
    assert result.returncode == 0, (
        f"{' '.join(map(str, command))}\nexit {result.returncode}\n{result.stderr[-6000:]}")


def test_harness_compiles(tmp_path):
    env = dict(os.environ, NVCC=NVCC, KERAS_DCN_CUDA_ARCHS=ARCH)
    _run(["bash", str(HERE / "build.sh"), "--compile-only", str(tmp_path / "harness.o")],
         env=env)


@pytest.mark.parametrize("source", ["deform_conv_gpu.cu.cc", "deform_roi_pool_gpu.cu.cc"])
def test_tensorflow_launcher_compiles(tmp_path, source):
    import tensorflow as tf

    tf_flags = [f for f in tf.sysconfig.get_compile_flags() if f.startswith(("-I", "-D"))]
    _run([NVCC, "-c", str(ROOT / "tf_ops" / "cc" / "kernels" / "cuda" / source),
          "-o", str(tmp_path / "launcher.o"), "-x", "cu", "-std=c++17",
          "--expt-relaxed-constexpr", "-DGOOGLE_CUDA=1", "-DEIGEN_USE_GPU", "-w",
          "-Xcompiler", "-fPIC", f"-I{ROOT}", *tf_flags,
          "-gencode", f"arch={ARCH},code={ARCH}"])
