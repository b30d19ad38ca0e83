"""Helpers shared by the layer tests: running Python in a fresh process."""

import os
import subprocess
import sys
import textwrap

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def python_env(**extra):
    """The environment of a child Python: ours, the checkout first on the path."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (REPO, env.get("PYTHONPATH")) if p)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env.update(extra)
    return env


def run_python(source, *args, env=None, timeout=240):
    """Runs `source` (code) in a fresh interpreter; returns the CompletedProcess."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(source), *args], cwd=REPO,
        env=env or python_env(), capture_output=True, text=True, timeout=timeout)


def check(result):
    """Asserts a child exited with 0, showing its output otherwise."""
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result
