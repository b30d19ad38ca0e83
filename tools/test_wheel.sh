#!/usr/bin/env bash
# Installs a built keras-dcn wheel into a fresh virtual environment that holds only
# TensorFlow (the version requirements.txt pins) and runs tools/smoke_test_wheel.py
# there, from outside the source tree: with the CPU kernels' best products, then with
# Eigen's (KERAS_DCN_MAX_CPU_ISA=generic).
#
# Usage: tools/test_wheel.sh dist/keras_dcn-<version>-<tags>.whl
#
# Environment:
#   PYTHON  interpreter of the new environment (default: python3.11, else python3)
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
wheel="$(realpath "$1")"
python="${PYTHON:-$(command -v python3.11 || command -v python3)}"
tensorflow="$(grep -E '^tensorflow==' "${repo_root}/requirements.txt")"

scratch="$(mktemp -d)"
trap 'rm -rf "${scratch}"' EXIT
log() { printf '[test_wheel] %s\n' "$*" >&2; }

start=${SECONDS}
"${python}" -m venv "${scratch}/venv"
"${scratch}/venv/bin/python" -m pip install --quiet "${tensorflow}" "${wheel}"
"${scratch}/venv/bin/python" -m pip check
log "fresh environment with ${tensorflow} and $(basename "${wheel}") in $((SECONDS - start))s"

cd "${scratch}"
for isa in "" generic; do
  start=${SECONDS}
  KERAS_DCN_MAX_CPU_ISA="${isa}" "${scratch}/venv/bin/python" \
    "${repo_root}/tools/smoke_test_wheel.py"
  log "smoke test passed in $((SECONDS - start))s (KERAS_DCN_MAX_CPU_ISA=${isa:-unset})"
done
