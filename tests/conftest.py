"""Shared test setup.

Real-data tests find datasets through ``DEEPZEN_DATA`` like the library does. When it is unset and
the repository's sibling ``shared/data`` folder exists (this project's layout), the whole session
uses that folder; CI sets ``DEEPZEN_DATA`` itself.
"""

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from deepzen.data.paths import data_home

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def pytest_collection_modifyitems(config, items):
    """Tests marked ``gpu`` skip on machines without CUDA (benchmarks/gpu_check.sh runs them on a GPU)."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA (run benchmarks/gpu_check.sh on a GPU machine)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session", autouse=True)
def deepzen_data_env():
    """Sets DEEPZEN_DATA to ``../shared/data`` for the session when it is unset and that folder exists."""
    if os.environ.get("DEEPZEN_DATA") or not SHARED_DATA.is_dir():
        yield
        return
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DEEPZEN_DATA", str(SHARED_DATA))
        yield


@pytest.fixture(scope="session")
def real_dataset(deepzen_data_env):
    """``real_dataset("mnist")`` -> that dataset's folder; skips the test when the folder is absent.

    Session-scoped so module-scoped fixtures that load a real dataset once can use it.
    """

    def folder(name: str) -> Path:
        path = data_home() / name
        if not path.is_dir():
            pytest.skip(f"real dataset {name!r} not found in {path} (set DEEPZEN_DATA)")
        return path

    return folder


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models on one intra-op thread: a second thread only adds synchronization (and stalls on a busy
    machine). Use with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def chromium_executable() -> str:
    """Debian's chromium for the Playwright tests (``.ci/run`` installs it; Playwright cannot download its own
    browsers here), installed with apt-get when missing; the test skips only when that fails."""
    found = shutil.which("chromium") or ("/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None)
    if found:
        return found
    prefix = [] if os.geteuid() == 0 else ["sudo", "-n"]
    if prefix and not shutil.which("sudo"):
        pytest.skip("chromium is not installed and cannot be: not root and no sudo (apt-get install chromium)")
    try:
        install = subprocess.run(prefix + ["apt-get", "install", "-y", "-q", "chromium"], capture_output=True,
                                 text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as error:
        pytest.skip(f"chromium is not installed and apt-get install chromium failed: {error}")
    found = shutil.which("chromium")
    if not found:
        pytest.skip(f"chromium is not installed and apt-get install chromium failed: {install.stderr[-500:]}")
    return found


@pytest.fixture(scope="session")
def translator_run(real_dataset, tmp_path_factory):
    """A ``multi30k-transformer`` run trained for 3 steps on 300 pairs (tiny), its beam search written for 6
    test sentences (``test_beam.de``); shared by the tests of ``deepzen predict`` and of serving."""
    pytest.importorskip("sentencepiece")
    pytest.importorskip("sacrebleu")
    from deepzen import cli

    real_dataset("multi30k")
    folder = tmp_path_factory.mktemp("runs") / "translation"
    settings = {"max_train_pairs": 300, "max_eval_pairs": 6, "max_steps": 3, "warmup_steps": 1, "vocab_size": 200,
                "d_model": 16, "num_heads": 2, "num_layers": 1, "intermediate_dim": 32, "batch_size": 100,
                "beam_size": 2}
    assert cli.main(["train", "multi30k-transformer", "--run-dir", str(folder),
                     *[part for key, value in settings.items() for part in ("--set", f"{key}={value}")]]) == 0
    return folder
