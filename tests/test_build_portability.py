"""The op library runs on every x86-64 CPU that TensorFlow's wheel runs on: built with
the default flags (x86-64 with AVX, setup.py), its machine code uses nothing newer
outside the AVX-512 code that the CPU kernels pick at run time (DISPATCHED)."""

import collections
import platform
import re
import shutil
import subprocess

import pytest

from keras_dcn import _library

# What GCC enables for setup.py's default -march=x86-64 -mavx (it counts POPCNT in
# with SSE4.2; every AVX CPU has both).
BASELINE_CPU = ("sse3", "ssse3", "sse4.1", "sse4.2", "popcnt", "avx")

# The AVX-512 code of tf_ops/cc/kernels/cpu/, compiled for AVX-512 by target
# attributes and called only where the CPU has it: cpu_gemm.cc's micro-kernels and
# packers, and channel_loops.cc's loops over channels.
DISPATCHED = re.compile(
    r"::(FloatTile<(?:true|false)>|Bfloat16Tile<(?:true|false)>)::Run<\d+>\("
    r"|keras_dcn::(PackRowPairs|PackedMatrix::PackFloat|PackedMatrix::PackBfloat16)\("
    r"|keras_dcn::\(anonymous namespace\)::(Sample|Dot|Scatter|Convert)<")
DISPATCHED_KERNELS = {"FloatTile<false>", "FloatTile<true>", "Bfloat16Tile<false>",
                      "Bfloat16Tile<true>", "PackRowPairs", "PackedMatrix::PackFloat",
                      "PackedMatrix::PackBfloat16", "Sample", "Dot", "Scatter",
                      "Convert"}


def _dispatched_kernel(name):
    """The DISPATCHED kernel a function name belongs to, or None."""
    match = DISPATCHED.search(name)
    return next((group for group in match.groups() if group), None) if match else None

_FUNCTION = re.compile(r"^[0-9a-f]+ <(.+)>:$")
_INSTRUCTION = re.compile(r"^\s*[0-9a-f]+:\t([0-9a-f ]+)\t(\S+)\s*(.*)$")
# Prefixes that may come before an EVEX one (segment and address size).
_LEGACY_PREFIXES = {"26", "2e", "36", "3e", "64", "65", "67"}
_AVX512_OPERAND = re.compile(r"%zmm|%k[0-7]\b|%[xy]mm(1[6-9]|2[0-9]|3[01])\b|\{1to\d+\}")
# Vector instructions of FMA, F16C, AVX2 and AVX-VNNI, by the start of their names.
_BEYOND_AVX_VECTOR = re.compile(
    r"^(vf(n)?m(add|sub)|vfmaddsub|vfmsubadd|vcvtph2ps|vcvtps2ph|vpbroadcast|"
    r"vbroadcasti128|vinserti128|vextracti128|vperm2i128|vpermd|vpermq|vpermps|"
    r"vpermpd|v(p)?gather|vpmaskmov|vps(ll|rl|ra)v|vpblendd|vpdp(bu|ws)sd)")
# General-purpose instructions of BMI1/2, LZCNT, MOVBE and ADX. (tzcnt is left out:
# without BMI1, GCC writes `rep bsf`, which objdump shows as tzcnt and older CPUs run
# as bsf.)
_BEYOND_AVX_SCALAR = {"andn", "bextr", "blsi", "blsmsk", "blsr", "bzhi", "mulx", "pdep",
                      "pext", "rorx", "sarx", "shlx", "shrx", "lzcnt", "movbe", "adcx",
                      "adox"}
# AVX (1) instructions whose names start with vp and that take ymm operands.
_AVX_VP_ON_YMM = ("vptest", "vpermilps", "vpermilpd", "vperm2f128")


def beyond_baseline(raw_bytes, mnemonic, operands):
    """The extension of one disassembled instruction that x86-64 with AVX lacks
    ("avx512", "avx2/fma/bmi/..."), or None."""
    opcode = next((b for b in raw_bytes.split() if b not in _LEGACY_PREFIXES), "")
    if opcode == "62" or _AVX512_OPERAND.search(operands):
        return "avx512"
    if _BEYOND_AVX_VECTOR.match(mnemonic) or mnemonic in _BEYOND_AVX_SCALAR:
        return "avx2/fma/bmi/..."
    if mnemonic.startswith("vp") and "%ymm" in operands and not mnemonic.startswith(
            _AVX_VP_ON_YMM):
        return "avx2/fma/bmi/..."
    if mnemonic in ("vbroadcastss", "vbroadcastsd") and operands.startswith("%xmm"):
        return "avx2/fma/bmi/..."  # from a register: AVX2 (from memory: AVX)
    return None


def scan(library):
    """{function: Counter of extensions beyond the baseline} over the library's code."""
    listing = subprocess.run(
        ["objdump", "-d", "-C", "--insn-width=16", str(library)],
        capture_output=True, text=True, check=True).stdout
    found = collections.defaultdict(collections.Counter)
    function = None
    for line in listing.splitlines():
        head = _FUNCTION.match(line)
        if head:
            function = head.group(1)
            continue
        instruction = _INSTRUCTION.match(line)
        if instruction and function is not None:
            extension = beyond_baseline(*instruction.groups())
            if extension:
                found[function][extension] += 1
    return found


@pytest.fixture(scope="module")
def library():
    if platform.machine() != "x86_64":
        pytest.skip("the baseline is x86-64's")
    if shutil.which("objdump") is None:
        pytest.skip("objdump (GNU binutils) is not installed")
    info = _library.build_info()
    if info is None:
        pytest.skip(f"{_library.library_path()} carries no build information")
    if info.march != "default":
        pytest.skip(f"{_library.library_path()} was built with -march={info.march} on "
                    "request (KERAS_DCN_MARCH, or Bazel's --config=native)")
    return _library.library_path(), info


def test_library_was_built_for_the_baseline(library):
    _, info = library
    assert info.cpu == BASELINE_CPU


def test_classifier_knows_each_kind():
    assert beyond_baseline("62 f1 7c 48 10 07", "vmovups", "(%rdi),%zmm0") == "avx512"
    assert beyond_baseline("62 e1 7c 08 28 c1", "vmovaps", "%xmm1,%xmm16") == "avx512"
    assert beyond_baseline("c4 e2 71 a8 c2", "vfmadd213ps", "%xmm2,%xmm1,%xmm0") \
        == "avx2/fma/bmi/..."
    assert beyond_baseline("c5 fd fe c1", "vpaddd", "%ymm1,%ymm0,%ymm0") \
        == "avx2/fma/bmi/..."
    assert beyond_baseline("c5 f9 fe c1", "vpaddd", "%xmm1,%xmm0,%xmm0") is None
    assert beyond_baseline("c5 fc 58 c1", "vaddps", "%ymm1,%ymm0,%ymm0") is None
    assert beyond_baseline("c4 e3 7d 18 c1 01", "vinsertf128", "$0x1,%xmm1,%ymm0,%ymm0") \
        is None
    assert beyond_baseline("c4 e2 f0 f2 c2", "andn", "%rdx,%rcx,%rax") == "avx2/fma/bmi/..."
    assert beyond_baseline("0f 55 c1", "andnps", "%xmm1,%xmm0") is None
    assert beyond_baseline("66 0f 3a 14 c0 01", "pextrb", "$0x1,%xmm0,%eax") is None
    assert beyond_baseline("f3 48 0f bc c7", "tzcnt", "%rdi,%rax") is None


def test_only_dispatched_kernels_go_beyond_the_baseline(library):
    path, _ = library
    found = scan(path)
    dispatched = {name: kinds for name, kinds in found.items() if _dispatched_kernel(name)}
    elsewhere = {name: dict(kinds) for name, kinds in found.items()
                 if not _dispatched_kernel(name)}
    # Every dispatched kernel is there, and the scan sees its AVX-512 code.
    kernels = {_dispatched_kernel(name) for name in dispatched}
    assert kernels == DISPATCHED_KERNELS, kernels
    assert all(kinds["avx512"] for kinds in dispatched.values())
    assert not elsewhere, (
        f"{sum(sum(k.values()) for k in elsewhere.values())} instructions beyond x86-64 "
        f"with AVX outside the dispatched AVX-512 code: "
        f"{dict(list(elsewhere.items())[:10])}")
