"""What an op library was built against, read from the file without loading it.

The library holds one string (tf_ops/cc/build_info.cc) such as
``keras_dcn_build_info:tensorflow=2.20.0;cuda=0;march=default;cpu=sse3,...,avx,;``
naming the TensorFlow it was compiled against, whether it has CUDA kernels, the -march
value requested instead of the default and the x86 extensions its compiler could use
anywhere in it.
"""

import dataclasses
import mmap
import os
import re

_MARKER = b"keras_dcn_build_info:"
_FIELDS = re.compile(rb"tensorflow=([^;\0]*);cuda=([01]);march=([^;\0]*);cpu=([^;\0]*);")


@dataclasses.dataclass(frozen=True)
class BuildInfo:
    """tensorflow: the version compiled against ("unknown" when the build did not say);
    cuda: whether the library has GPU kernels; march: the -march value requested
    ("default" for none, e.g. "native"); cpu: the x86 extensions the compiler could use
    anywhere, e.g. ("sse3", "ssse3", "sse4.1", "sse4.2", "popcnt", "avx")."""

    tensorflow: str
    cuda: bool
    march: str
    cpu: tuple


def read(path):
    """The BuildInfo of the library at `path`, or None for a library without one."""
    with open(path, "rb") as file:
        if os.fstat(file.fileno()).st_size == 0:
            return None
        with mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as data:
            start = data.find(_MARKER)
            fields = _FIELDS.match(data, start + len(_MARKER)) if start >= 0 else None
            if fields is None:
                return None
            tensorflow, cuda, march, cpu = (f.decode("ascii") for f in fields.groups())
    return BuildInfo(tensorflow, cuda == "1", march, tuple(filter(None, cpu.split(","))))


def minor_version(version):
    """(major, minor) of a version string such as "2.20.0" or "2.21.0-dev20250101"."""
    major, minor = re.match(r"(\d+)\.(\d+)", version).groups()
    return int(major), int(minor)
