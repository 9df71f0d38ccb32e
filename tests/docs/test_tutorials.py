"""Every Python block of the guides and tutorials under docs/ runs, so the pages cannot rot.

A page's ``python`` blocks run in order in one namespace (a later block uses an earlier block's
names), in a fresh temporary folder. A block preceded by the line ``<!-- not-run -->`` is shown
only (a command that needs a GPU, several processes or a server); the pages keep those few. The
code on the pages uses tiny budgets itself (``epochs=1``, small slices) and says which setting gives
the published number.
"""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib
import pytest
import torch

import deepzen

DOCS = Path(__file__).resolve().parents[2] / "docs"
NOT_RUN = "<!-- not-run -->"
# ```python ... ``` fences at the start of a line; the marker may sit on the line(s) before.
_BLOCK = re.compile(r"^```python[^\n]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
# The reference pages are generated; the experiments' reports are outputs of runs, not code to run.
PAGES = sorted(path for path in DOCS.rglob("*.md") if path.relative_to(DOCS).parts[0] not in ("api", "experiments"))


def python_blocks(text: str) -> tuple[list[str], int]:
    """The runnable ``python`` blocks of a page, and how many were marked not-run."""
    runnable, skipped = [], 0
    for match in _BLOCK.finditer(text):
        before = text[:match.start()].rstrip()
        if before.endswith(NOT_RUN):
            skipped += 1
        else:
            runnable.append(match.group(1))
    return runnable, skipped


def test_block_extraction_honours_the_not_run_marker():
    page = "intro\n\n```python\nx = 1\n```\n\n<!-- not-run -->\n```python\nraise SystemExit\n```\n```bash\nls\n```\n"
    assert python_blocks(page) == (["x = 1\n"], 1)


def test_every_tutorial_topic_has_a_page_with_runnable_code():
    runnable = {path.relative_to(DOCS).as_posix(): len(python_blocks(path.read_text())[0]) for path in PAGES}
    expected = ["getting-started.md", "coming-from-keras.md", "coming-from-pytorch.md", "tutorials/building-blocks.md",
                "tutorials/cnns.md", "tutorials/recurrent.md", "tutorials/transformers.md", "tutorials/gans.md",
                "tutorials/deep-rl.md", "tutorials/recommenders.md", "tutorials/transfer-learning.md",
                "tutorials/detection-segmentation-video.md", "tutorials/deployment.md"]
    assert [page for page in expected if runnable.get(page, 0) == 0] == []


@pytest.mark.parametrize("page", PAGES, ids=lambda path: path.relative_to(DOCS).as_posix())
def test_page_code_runs(page: Path, tmp_path, monkeypatch, request):
    blocks, _ = python_blocks(page.read_text())
    if not blocks:
        pytest.skip(f"{page.name} has no runnable Python")
    matplotlib.use("Agg")
    monkeypatch.chdir(tmp_path)
    # The pages' models are tiny: a second intra-op thread only spins waiting for the first.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    request.addfinalizer(lambda: torch.set_num_threads(threads))
    deepzen.seed(0)
    namespace: dict = {"__name__": "__docs__"}
    for number, block in enumerate(blocks, 1):
        code = compile(block, f"{page.relative_to(DOCS)} block {number}", "exec")
        exec(code, namespace)  # noqa: S102 - the docs' own code, the point of the test
