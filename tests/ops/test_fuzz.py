"""1,000 fuzzed calls of the raw and public ops (tests/ops/fuzz.py) in a child process:
every call returns a result of the right shape or raises a clear error; none crashes
the process or hangs. `make fuzz` runs 100,000."""

import os
import pathlib
import re
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow  # a child process that loads TensorFlow: ~15 s

REPO = pathlib.Path(__file__).resolve().parents[2]
CALLS = 1000
# A call takes milliseconds; minutes without an exit is a hang.
TIMEOUT_S = 300


def test_fuzzed_calls_return_or_fail_cleanly(tmp_path):
    log = tmp_path / "calls.log"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    try:
        result = subprocess.run(
            [sys.executable, "-m", "tests.ops.fuzz", "--calls", str(CALLS), "--seed", "0",
             "--log", str(log)],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"hung in {_last_call(log)}") from None
    assert result.returncode == 0, (
        f"exit status {result.returncode} in {_last_call(log)}:\n{result.stderr[-3000:]}")
    outcomes = dict(re.findall(r"^(\w+ [\w: ]+): (\d+)$", result.stdout, re.M))
    # The fuzzer reaches both ops' results and their error paths.
    for op in ("conv", "roi_pool"):
        assert int(outcomes.get(f"{op} returned", 0)) > CALLS // 10, result.stdout
        errors = sum(int(n) for key, n in outcomes.items() if key.startswith(f"{op} error"))
        assert errors > CALLS // 10, result.stdout


def _last_call(log):
    lines = log.read_text().splitlines() if log.exists() else []
    return lines[-1] if lines else "no call"
