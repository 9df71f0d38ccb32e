"""Run the ``deepzen`` command in a subprocess, with the tiny test recipe importable."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


HERE = Path(__file__).resolve().parent


def cli_environment() -> dict[str, str]:
    """The environment of a ``deepzen`` subprocess: the test recipes importable, one thread each."""
    environment = dict(os.environ)
    environment["DEEPZEN_RECIPE_MODULES"] = "product_recipes"
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE), environment.get("PYTHONPATH")]))
    environment["OMP_NUM_THREADS"] = "1"  # the same arithmetic in every process, and modest CPU use
    environment["DEEPZEN_DEVICE"] = "cpu"
    return environment


def deepzen_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "deepzen.cli", *args]


def run_deepzen(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """Runs ``deepzen ARGS...`` to completion and returns the finished process (output captured)."""
    return subprocess.run(deepzen_command(*args), env=cli_environment(), capture_output=True, text=True,
                          timeout=timeout)


def start_deepzen(*args: str) -> subprocess.Popen:
    return subprocess.Popen(deepzen_command(*args), env=cli_environment(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
