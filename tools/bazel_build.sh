#!/usr/bin/env bash
# Builds the keras-dcn TensorFlow custom-op library with Bazel, offline.
#
# Usage: tools/bazel_build.sh [extra bazel build flags...]
#   e.g. tools/bazel_build.sh --config=native
#
# Environment:
#   PYTHON_BIN_PATH  Python whose TensorFlow is built against
#                    (default: .venv/bin/python in the repo, else python3)
#   BAZEL            Bazel executable to use (default: bazel)
#   BAZEL_JOBS       parallel jobs (default: 2, suited to small CI runners)
#
# Prints the absolute path of the built library on the last line of stdout.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${repo_root}"

BAZEL="${BAZEL:-bazel}"
BAZEL_JOBS="${BAZEL_JOBS:-2}"

log() { printf '[bazel_build] %s\n' "$*" >&2; }

if ! command -v "${BAZEL}" >/dev/null 2>&1; then
  log "${BAZEL} not found; installing Debian's bazel-bootstrap"
  SUDO=""
  if [[ "$(id -u)" -ne 0 ]]; then
    if command -v sudo >/dev/null 2>&1; then
      SUDO="sudo"
    else
      log "need root (or sudo) to install bazel-bootstrap"
      exit 1
    fi
  fi
  ${SUDO} apt-get update
  ${SUDO} env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y --no-install-recommends bazel-bootstrap
  BAZEL=bazel
fi

log "using $("${BAZEL}" --version 2>/dev/null | head -n1) ($(command -v "${BAZEL}"))"
if [[ -n "${PYTHON_BIN_PATH:-}" ]]; then
  log "PYTHON_BIN_PATH=${PYTHON_BIN_PATH}"
fi

# --config=ci (see .bazelrc) keeps output plain and parallelism low; every
# external repository is local, and downloads are disabled in .bazelrc.
start=${SECONDS}
"${BAZEL}" build \
  --config=ci \
  --jobs="${BAZEL_JOBS}" \
  --local_cpu_resources="${BAZEL_JOBS}" \
  "$@" \
  //tf_ops/...
log "build finished in $((SECONDS - start))s"

# bazel-bin is the convenience symlink to the output tree of this build; ask
# Bazel directly if it is missing (e.g. with --symlink_prefix).
library="${repo_root}/bazel-bin/tf_ops/libkeras_dcn_ops.so"
if [[ ! -f "${library}" ]]; then
  library="$("${BAZEL}" info --config=ci "$@" bazel-bin)/tf_ops/libkeras_dcn_ops.so"
fi
if [[ ! -f "${library}" ]]; then
  log "build reported success but ${library} is missing"
  exit 1
fi
echo "${library}"
