"""Builds keras-dcn's op library against the installed TensorFlow.

`pip install .` and `pip install -e .` compile every C++ source under tf_ops/cc with
TensorFlow's own compile and link flags (`tf.sysconfig`) into
keras_dcn/libkeras_dcn_ops.so; no Bazel is needed.

Environment variables:
  CXX               the C++ compiler (default g++).
  KERAS_DCN_MARCH   value of -march (default "native": the building machine's vector
                    instructions; use e.g. "x86-64-v3" for a library that runs elsewhere).
  KERAS_DCN_JOBS    parallel compile jobs (default: the number of CPUs).
"""

import concurrent.futures
import os
import pathlib
import shlex
import subprocess

from setuptools import Extension, find_packages, setup
from setuptools.command.build_ext import build_ext

ROOT = pathlib.Path(__file__).resolve().parent
LIBRARY_NAME = "libkeras_dcn_ops.so"


def _sources():
    kernels = sorted((ROOT / "tf_ops" / "cc").rglob("*.cc"))
    return [p for p in kernels if not p.name.endswith(".cu.cc")]


def _headers():
    return sorted(
        p for p in (ROOT / "tf_ops" / "cc").rglob("*") if p.suffix in (".h", ".cuh")
    )


class BuildTfOps(build_ext):
    """Compiles the op library with TensorFlow's flags instead of Python's."""

    def get_ext_filename(self, fullname):
        package = fullname.split(".")[:-1]
        return os.path.join(*package, LIBRARY_NAME)

    def build_extension(self, ext):
        import tensorflow as tf  # the TensorFlow the library will be loaded into

        cxx = os.environ.get("CXX", "g++")
        march = os.environ.get("KERAS_DCN_MARCH", "native")
        jobs = int(os.environ.get("KERAS_DCN_JOBS", os.cpu_count() or 1))
        compile_flags = [
            "-O3", f"-march={march}", "-fPIC", "-DNDEBUG", "-w",
            f"-I{ROOT}", *tf.sysconfig.get_compile_flags(),
        ]
        link_flags = tf.sysconfig.get_link_flags()

        build_dir = pathlib.Path(self.build_temp) / "tf_ops"
        build_dir.mkdir(parents=True, exist_ok=True)
        newest_header = max((h.stat().st_mtime for h in _headers()), default=0)

        def compile_one(source):
            obj = build_dir / (source.relative_to(ROOT).as_posix().replace("/", "_") + ".o")
            if obj.exists() and obj.stat().st_mtime > max(source.stat().st_mtime, newest_header):
                return obj
            command = [cxx, "-c", str(source), "-o", str(obj), *compile_flags]
            print(" ".join(shlex.quote(c) for c in command), flush=True)
            subprocess.run(command, check=True)
            return obj

        with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
            objects = list(pool.map(compile_one, _sources()))

        output = pathlib.Path(self.get_ext_fullpath(ext.name))
        output.parent.mkdir(parents=True, exist_ok=True)
        command = [cxx, "-shared", *map(str, objects), "-o", str(output), *link_flags]
        print(" ".join(shlex.quote(c) for c in command), flush=True)
        subprocess.run(command, check=True)


setup(
    packages=find_packages(include=["keras_dcn", "keras_dcn.*"]),
    ext_modules=[
        Extension(
            "keras_dcn.libkeras_dcn_ops",
            sources=[str(p.relative_to(ROOT)) for p in _sources()],
            depends=[str(p.relative_to(ROOT)) for p in _headers()],
        )
    ],
    cmdclass={"build_ext": BuildTfOps},
)
