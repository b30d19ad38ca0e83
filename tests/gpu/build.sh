#!/usr/bin/env bash
# Builds the GPU harness (harness.cu over the TensorFlow-free kernels in
# tf_ops/cc/kernels/portable/*.cuh):
#
#   tests/gpu/build.sh            nvcc  -> tests/gpu/build/libdcn_gpu_harness.so
#   tests/gpu/build.sh --host     g++   -> tests/gpu/build/libdcn_host_harness.so
#                                 (the same kernel bodies run as host loops; no CUDA)
#   tests/gpu/build.sh --compile-only OUTPUT.o
#                                 nvcc -c only (for machines without a GPU)
#
# Environment:
#   NVCC                  the CUDA compiler (default: $CUDA_HOME/bin/nvcc, else nvcc)
#   CXX                   the host compiler of --host (default g++)
#   KERAS_DCN_CUDA_ARCHS  GPU architectures, e.g. "sm_80,sm_90" (default: the GPUs of
#                         this machine, "native"; sm_75 with --compile-only)
#   DCN_HARNESS_BUILD_DIR where to put the library (default tests/gpu/build)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "${here}/../.." && pwd)"
out_dir="${DCN_HARNESS_BUILD_DIR:-${here}/build}"
mode="gpu"
output=""
case "${1:-}" in
  --host) mode="host" ;;
  --compile-only) mode="compile-only"; output="${2:?--compile-only needs an output file}" ;;
  "") ;;
  *) echo "usage: $0 [--host | --compile-only OUTPUT.o]" >&2; exit 2 ;;
esac

if [[ "${mode}" == "host" ]]; then
  mkdir -p "${out_dir}"
  set -x
  "${CXX:-g++}" -x c++ -std=c++17 -O2 -fPIC -shared -Wall -Wextra -I"${root}" \
    "${here}/harness.cu" -o "${out_dir}/libdcn_host_harness.so"
  exit 0
fi

if [[ -n "${NVCC:-}" ]]; then
  nvcc="${NVCC}"
elif [[ -n "${CUDA_HOME:-}" && -x "${CUDA_HOME}/bin/nvcc" ]]; then
  nvcc="${CUDA_HOME}/bin/nvcc"
else
  nvcc="nvcc"
fi

# "sm_80,compute_90" -> -gencode flags (sm_XX: machine code, compute_XX: PTX).
default_archs="native"
[[ "${mode}" == "compile-only" ]] && default_archs="sm_75"
arch_flags=()
IFS=', ' read -r -a archs <<< "${KERAS_DCN_CUDA_ARCHS:-${default_archs}}"
for arch in "${archs[@]}"; do
  case "${arch}" in
    "") ;;
    native) arch_flags+=("-arch=native") ;;
    sm_*) arch_flags+=("-gencode" "arch=compute_${arch#sm_},code=${arch}") ;;
    compute_*) arch_flags+=("-gencode" "arch=${arch},code=${arch}") ;;
    *) arch_flags+=("-gencode" "arch=compute_${arch},code=sm_${arch}") ;;
  esac
done

flags=(-x cu -std=c++17 -O3 --expt-relaxed-constexpr -Xcompiler -fPIC -I"${root}"
       "${arch_flags[@]}")
set -x
if [[ "${mode}" == "compile-only" ]]; then
  "${nvcc}" "${flags[@]}" -c "${here}/harness.cu" -o "${output}"
else
  mkdir -p "${out_dir}"
  "${nvcc}" "${flags[@]}" -shared "${here}/harness.cu" \
    -o "${out_dir}/libdcn_gpu_harness.so"
fi
