"""The progress bar in a Jupyter notebook: detected cleanly, one line per epoch rewritten in place."""

from __future__ import annotations

import io
import sys
import types

import numpy as np
import pytest

import deepzen
from deepzen.callbacks import ProgressBar
from deepzen.layers import Dense
from deepzen.models import Sequential
from deepzen.training.callbacks import in_notebook


class ZMQInteractiveShell:  # the class name IPython's kernel shell has
    pass


class ColabShell(ZMQInteractiveShell):  # Colab's shell extends it
    pass


class TerminalInteractiveShell:  # plain `ipython` in a terminal
    pass


def _fake_ipython(monkeypatch, shell):
    module = types.ModuleType("IPython")
    module.get_ipython = lambda: shell
    monkeypatch.setitem(sys.modules, "IPython", module)


def test_notebook_detection(monkeypatch):
    monkeypatch.delitem(sys.modules, "IPython", raising=False)
    assert not in_notebook()  # and IPython was not imported to find out
    assert "IPython" not in sys.modules
    _fake_ipython(monkeypatch, None)  # IPython imported, but not running
    assert not in_notebook()
    _fake_ipython(monkeypatch, TerminalInteractiveShell())
    assert not in_notebook()
    _fake_ipython(monkeypatch, ZMQInteractiveShell())
    assert in_notebook()
    _fake_ipython(monkeypatch, ColabShell())
    assert in_notebook()


class Stream(io.StringIO):
    def isatty(self):
        return False  # a notebook's output stream is no terminal


def _fit(stream, epochs=2):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(400, 4)).astype(np.float32), rng.normal(size=(400, 1)).astype(np.float32)
    model = Sequential([Dense(1, input_dim=4)])
    model.compile(optimizer="sgd", loss="mse")
    model.fit(x, y, batch_size=10, epochs=epochs, verbose=0, callbacks=[ProgressBar(1, interval=0.0, stream=stream)])


def test_in_a_notebook_each_epoch_is_one_line_updated_in_place(monkeypatch):
    _fake_ipython(monkeypatch, ZMQInteractiveShell())
    stream = Stream()
    _fit(stream)
    lines = stream.getvalue().split("\n")
    assert lines[-1] == "" and len(lines) == 2 * 2 + 1  # per epoch: its "Epoch i/n" header and one bar line
    assert lines[0] == "Epoch 1/2" and lines[2] == "Epoch 2/2"
    for bar in (lines[1], lines[3]):
        updates = bar.split("\r")[1:]
        assert len(updates) == 40 + 1  # every one of the 40 steps (interval 0) and the epoch's summary
        assert "\x1b" not in bar  # no terminal escape codes, which notebooks print as garbage
        assert updates[0].startswith("1/40 [") and updates[-1].startswith("40/40 - ")
        # each update covers the longer one before it, so nothing of an older update shows
        assert all(len(later) >= len(earlier.rstrip()) for earlier, later in zip(updates, updates[1:]))


def test_outside_a_notebook_a_stream_that_is_no_terminal_gets_one_line_per_epoch(monkeypatch):
    monkeypatch.delitem(sys.modules, "IPython", raising=False)
    stream = Stream()
    _fit(stream)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2 and lines[0].startswith("Epoch 1/2 - ") and "\r" not in stream.getvalue()
