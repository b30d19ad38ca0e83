"""keras_dcn.ops.deform_conv2d with the CPU's instruction set capped
(KERAS_DCN_MAX_CPU_ISA): the products without the AVX-512 micro-kernels, and without
the bfloat16 ones, still match the reference and accumulate half types in float32."""

import os
import pathlib
import subprocess
import sys

import pytest

from keras_dcn import _library

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
# The checks rerun under the cap: every dtype on many tiles and odd channel counts,
# and the float32 accumulation of half types.
CHECKS = [str(pathlib.Path(__file__).with_name(name)) for name in (
    "test_deform_conv_reference.py", "test_deform_conv_dtypes.py")]
SELECTED = "over_many_tiles or odd_channels or accumulate"


@pytest.mark.slow
@pytest.mark.parametrize("isa", ["generic", "avx512"])
def test_capped_cpu_isa_matches_reference(isa):
    """The products without the micro-kernels (Eigen's), and without the bfloat16 ones,
    run the CHECKS in a process whose KERAS_DCN_MAX_CPU_ISA caps the choice."""
    env = dict(os.environ, **{_library.CPU_ISA_ENV: isa})
    check = subprocess.run(
        [sys.executable, "-c", "from keras_dcn import _library; print(_library.cpu_isa())"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert check.returncode == 0, check.stderr[-2000:]
    assert _library.CPU_ISAS.index(check.stdout.split()[-1]) <= _library.CPU_ISAS.index(isa)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *CHECKS,
         "-k", SELECTED],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stdout[-4000:]
