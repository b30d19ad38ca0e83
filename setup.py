"""Builds keras-dcn's op library against the installed TensorFlow.

`pip install .`, `pip install -e .`, `pip wheel .` and `python -m build` compile every
C++ source under tf_ops/cc with TensorFlow's own compile and link flags
(`tf.sysconfig`) into keras_dcn/libkeras_dcn_ops.so; no Bazel is needed. The package
then requires TensorFlow of the minor version it was compiled against (for example
tensorflow>=2.20,<2.21), read from the TensorFlow of the build environment.

Machine code: by default the library targets x86-64 with AVX (-march=x86-64 -mavx).
TensorFlow's x86-64 wheels are compiled with -mavx on top of the x86-64 baseline
(the release builds in TensorFlow's .bazelrc), so no CPU that runs TensorFlow lacks
an instruction of the library; GCC counts SSE4.2 and POPCNT in with AVX, which every
AVX CPU has. The AVX-512 matrix-product micro-kernels carry their own target
attributes and are chosen at run time (KERAS_DCN_MAX_CPU_ISA caps the choice). On
other architectures the compiler's default target is used.

Environment variables:
  CXX               the C++ compiler (default g++).
  KERAS_DCN_MARCH   -march value replacing the default x86-64 with AVX: "native" for
                    the building machine's instruction set (faster where Eigen's
                    products run, on CPUs without AVX-512; the library may then fail
                    on other CPUs), or a level such as "x86-64-v3".
  KERAS_DCN_JOBS    parallel compile jobs (default: the number of CPUs).
  KERAS_DCN_SANITIZE  "1": instrument the CPU code with AddressSanitizer and
                    UndefinedBehaviorSanitizer (`make sanitize`; the library then
                    loads only with the sanitizer runtimes preloaded).
  KERAS_DCN_CUDA    "0": CPU kernels only; "1": the CUDA kernels too, fail without nvcc;
                    unset: the CUDA kernels too when an nvcc is found ($CUDA_HOME/bin/nvcc,
                    then PATH). The *.cu.cc sources are compiled with nvcc, every object
                    with -DGOOGLE_CUDA=1, and the CUDA runtime is linked in statically.
  KERAS_DCN_CUDA_ARCHS  GPU architectures, comma-separated: sm_XX (machine code) or
                    compute_XX (PTX, compiled for newer GPUs when loaded). Default:
                    sm_75,sm_80,sm_86,sm_89,sm_90,compute_90 (CUDA 13 has no sm_70;
                    older nvcc also gets sm_70).
"""

import concurrent.futures
import hashlib
import importlib.metadata
import os
import pathlib
import platform
import re
import shlex
import shutil
import subprocess

from setuptools import Extension, find_packages, setup
from setuptools.command.build_ext import build_ext

ROOT = pathlib.Path(__file__).resolve().parent
LIBRARY_NAME = "libkeras_dcn_ops.so"
# x86-64 with AVX: what TensorFlow's x86-64 wheels are compiled for (see above).
BASELINE_CPU_FLAGS = ["-march=x86-64", "-mavx"]
# KERAS_DCN_SANITIZE=1: any undefined behaviour stops the process like a memory error.
SANITIZER_FLAGS = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all",
                   "-fno-omit-frame-pointer", "-g"]


def _cpu_flags():
    """-march=$KERAS_DCN_MARCH when set; otherwise the baseline on x86-64 and the
    compiler's default elsewhere."""
    march = os.environ.get("KERAS_DCN_MARCH", "").strip()
    if march:
        return [f"-march={march}", f"-DKERAS_DCN_MARCH={march}"]
    return BASELINE_CPU_FLAGS if platform.machine() in ("x86_64", "AMD64") else []


def _tensorflow_requirement():
    """TensorFlow of the build environment's minor version, e.g. tensorflow>=2.20,<2.21:
    the op library only loads into the TensorFlow it was compiled against."""
    distributions = importlib.metadata.packages_distributions().get("tensorflow")
    if not distributions:
        raise RuntimeError("keras-dcn builds against an installed TensorFlow; none found")
    name = distributions[0]
    major, minor = (int(part) for part in importlib.metadata.version(name).split(".")[:2])
    return f"{name}>={major}.{minor},<{major}.{minor + 1}"


def _sources():
    kernels = sorted((ROOT / "tf_ops" / "cc").rglob("*.cc"))
    return [p for p in kernels if not p.name.endswith(".cu.cc")]


def _cuda_sources():
    return sorted((ROOT / "tf_ops" / "cc").rglob("*.cu.cc"))


def _headers():
    return sorted(
        p for p in (ROOT / "tf_ops" / "cc").rglob("*") if p.suffix in (".h", ".cuh")
    )


def _find_nvcc():
    """The nvcc to compile the CUDA kernels with, or None for a CPU-only build."""
    setting = os.environ.get("KERAS_DCN_CUDA", "").strip().lower()
    if setting in ("0", "false", "no", "off"):
        return None
    candidates = []
    if os.environ.get("CUDA_HOME"):
        candidates.append(os.path.join(os.environ["CUDA_HOME"], "bin", "nvcc"))
    candidates.append(shutil.which("nvcc"))
    for nvcc in candidates:
        if nvcc and os.path.isfile(nvcc) and os.access(nvcc, os.X_OK):
            return nvcc
    if setting in ("1", "true", "yes", "on"):
        raise RuntimeError(
            "KERAS_DCN_CUDA=1 but no nvcc was found: set CUDA_HOME or put nvcc on PATH")
    return None


class CudaToolkit:
    """nvcc's version, its flags for TensorFlow's GPU headers, and the static CUDA
    runtime to link (nvcc may be a wrapper script, so nvcc itself is asked)."""

    def __init__(self, nvcc, cxx):
        self.nvcc = nvcc
        version = subprocess.run([nvcc, "--version"], capture_output=True, text=True,
                                 check=True).stdout
        match = re.search(r"release (\d+)\.(\d+)", version)
        self.version = (int(match.group(1)), int(match.group(2))) if match else (0, 0)
        self.cxx = cxx if "CXX" in os.environ else None
        self.cudart = self._find_static_runtime()

    def _find_static_runtime(self):
        dry_run = subprocess.run([self.nvcc, "--dryrun", "-E", "-x", "cu", os.devnull],
                                 capture_output=True, text=True).stderr
        dirs = re.findall(r'-L"?([^"\s]+)"?', " ".join(
            line for line in dry_run.splitlines() if "LIBRARIES=" in line))
        for top in re.findall(r"TOP=(\S+)", dry_run):
            dirs += [os.path.join(top, "lib64"), os.path.join(top, "lib")]
        for directory in dirs:
            candidate = os.path.join(directory, "libcudart_static.a")
            if os.path.isfile(candidate):
                return candidate
        raise RuntimeError(f"libcudart_static.a not found next to {self.nvcc} (looked in "
                           f"{dirs}); set KERAS_DCN_CUDA=0 for a CPU-only build")

    def arch_flags(self):
        default = ["sm_75", "sm_80", "sm_86", "sm_89", "sm_90", "compute_90"]
        if self.version < (13, 0):
            default.insert(0, "sm_70")
        archs = os.environ.get("KERAS_DCN_CUDA_ARCHS") or ",".join(default)
        flags = []
        for arch in filter(None, re.split(r"[,\s]+", archs)):
            number = re.sub(r"^(sm_|compute_)", "", arch)
            code = arch if arch.startswith("compute_") else f"sm_{number}"
            flags += ["-gencode", f"arch=compute_{number},code={code}"]
        return flags

    def compile_flags(self, tf_flags):
        # TensorFlow's -I/-D flags; its --std spelling is g++'s, so give nvcc its own.
        tf_flags = [f for f in tf_flags if f.startswith(("-I", "-D"))]
        host = ["-ccbin", self.cxx] if self.cxx else []
        return ["-x", "cu", "-std=c++17", "-O3", "-DNDEBUG", "--expt-relaxed-constexpr",
                "-DGOOGLE_CUDA=1", "-DEIGEN_USE_GPU", "-w", "-Xcompiler", "-fPIC",
                f"-I{ROOT}", *tf_flags, *host, *self.arch_flags()]

    def link_flags(self):
        # The runtime's symbols stay private to the library, so they never mix with
        # another CUDA runtime in the process (TensorFlow's, torch's, ...).
        return [self.cudart, "-Wl,--exclude-libs,libcudart_static.a",
                "-ldl", "-lrt", "-lpthread"]


class BuildTfOps(build_ext):
    """Compiles the op library with TensorFlow's flags instead of Python's."""

    def get_ext_filename(self, fullname):
        package = fullname.split(".")[:-1]
        return os.path.join(*package, LIBRARY_NAME)

    def build_extension(self, ext):
        import tensorflow as tf  # the TensorFlow the library will be loaded into

        cxx = os.environ.get("CXX", "g++")
        jobs = int(os.environ.get("KERAS_DCN_JOBS", os.cpu_count() or 1))
        compile_flags = [
            "-O3", *_cpu_flags(), "-fPIC", "-DNDEBUG", "-w",
            f"-I{ROOT}", f"-DKERAS_DCN_TF_VERSION={tf.__version__}",
            *tf.sysconfig.get_compile_flags(),
        ]
        link_flags = tf.sysconfig.get_link_flags()
        if os.environ.get("KERAS_DCN_SANITIZE") == "1":
            compile_flags += SANITIZER_FLAGS
            link_flags = link_flags + SANITIZER_FLAGS
        sources = _sources()
        nvcc = _find_nvcc()
        cuda = CudaToolkit(nvcc, cxx) if nvcc else None
        nvcc_flags = []
        if cuda:
            print(f"keras_dcn: building the CUDA kernels with {nvcc} "
                  f"(CUDA {cuda.version[0]}.{cuda.version[1]})", flush=True)
            compile_flags.append("-DGOOGLE_CUDA=1")
            nvcc_flags = cuda.compile_flags(tf.sysconfig.get_compile_flags())
            link_flags = cuda.link_flags() + link_flags
            sources = sources + _cuda_sources()

        # Objects of different flags (CPU-only or CUDA builds, ...) live apart.
        flags_tag = hashlib.sha1(repr((cxx, compile_flags, nvcc, nvcc_flags)).encode())
        build_dir = pathlib.Path(self.build_temp) / "tf_ops" / flags_tag.hexdigest()[:12]
        build_dir.mkdir(parents=True, exist_ok=True)
        newest_header = max((h.stat().st_mtime for h in _headers()), default=0)

        def compile_one(source):
            obj = build_dir / (source.relative_to(ROOT).as_posix().replace("/", "_") + ".o")
            if obj.exists() and obj.stat().st_mtime > max(source.stat().st_mtime, newest_header):
                return obj
            if source.name.endswith(".cu.cc"):
                command = [nvcc, "-c", str(source), "-o", str(obj), *nvcc_flags]
            else:
                command = [cxx, "-c", str(source), "-o", str(obj), *compile_flags]
            print(" ".join(shlex.quote(c) for c in command), flush=True)
            subprocess.run(command, check=True)
            return obj

        with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
            objects = list(pool.map(compile_one, sources))

        output = pathlib.Path(self.get_ext_fullpath(ext.name))
        output.parent.mkdir(parents=True, exist_ok=True)
        command = [cxx, "-shared", *map(str, objects), "-o", str(output), *link_flags]
        print(" ".join(shlex.quote(c) for c in command), flush=True)
        subprocess.run(command, check=True)


setup(
    packages=find_packages(include=["keras_dcn", "keras_dcn.*"]),
    install_requires=[_tensorflow_requirement(), "keras>=3.10,<4", "numpy>=1.26"],
    ext_modules=[
        Extension(
            "keras_dcn.libkeras_dcn_ops",
            sources=[str(p.relative_to(ROOT)) for p in _sources()],
            depends=[str(p.relative_to(ROOT)) for p in _headers()],
        )
    ],
    cmdclass={"build_ext": BuildTfOps},
)
